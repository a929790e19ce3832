"""The conversation's pure parts: sentences, turn tracking, grounding, tools."""

from __future__ import annotations

import asyncio
import json

import pytest

from controller.agent.engines import Message, ToolCall
from controller.agent.grounded import KNOWLEDGE, GroundedModel, Intent, spoken_digits
from controller.agent.knowledge import Fact, Knowledge
from controller.agent.sentences import SentenceSplitter
from controller.agent.tools import EndCall, run_tool, tool
from controller.agent.turns import (
    SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, TurnSettings, VoiceTracker, looks_complete,
)


def test_sentences_come_out_as_soon_as_they_end_and_abbreviations_do_not_cut():
    splitter = SentenceSplitter(first_clause_words=50)
    out = []
    for piece in ["Dr. Smith will ", "see you at 3.30 today", ". Is that ", "fine? Great"]:
        out += splitter.feed(piece)
    assert out == ["Dr. Smith will see you at 3.30 today.", "Is that fine?"]
    assert splitter.flush() == ["Great"]


def test_the_first_sentence_may_be_cut_at_a_clause_to_speak_sooner():
    splitter = SentenceSplitter(first_clause_words=4)
    assert splitter.feed("We are open from nine to six, Mon") == ["We are open from nine to six,"]
    assert splitter.feed("day to Saturday, all year. Bye") == ["Monday to Saturday, all year."]


def _track(probs, settings=TurnSettings(), window=0.032):
    tracker = VoiceTracker(settings, window)
    return [(round(i * window, 3), e) for i, p in enumerate(probs, 1) if (e := tracker.push(p, i * window))]


def test_voice_tracker_start_pause_resume_end():
    # 2 windows under min_speech_ms (96) then real speech, a 7-window pause (224 ms), speech, long silence
    probs = [0.9, 0.1] + [0.9] * 10 + [0.0] * 8 + [0.9] * 5 + [0.0] * 40
    events = _track(probs)
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded]
    started = events[0][1]
    assert started.onset_at == pytest.approx(2 * 0.032)  # the blip before did not count
    paused = events[1][1]
    assert paused.speech_end_at == pytest.approx(12 * 0.032)


def test_noise_blips_shorter_than_min_speech_never_start_a_turn():
    assert _track([0.9, 0.2, 0.9, 0.1, 0.8, 0.0] * 20) == []


@pytest.mark.parametrize("text,complete", [
    ("I'd like to check the status of my order.", True), ("My number is", False), ("and", False),
    ("Can I speak to a manager please", True), ("I want to, um", False), ("", False), ("So my order,", False),
    ("I forgot my password and cannot log in.", True), ("I put it in", False)])
def test_looks_complete(text, complete):
    assert looks_complete(text) is complete


@pytest.mark.parametrize("text,digits", [
    ("My order number is four five seven two one", "45721"), ("it's 45721.", "45721"),
    ("eight six three nine, thanks", "8639"), ("4-5-7 2 1", "45721"), ("no numbers here", "")])
def test_spoken_digits(text, digits):
    assert spoken_digits(text) == digits


async def _reply(model, messages, tools):
    return [d async for d in model.stream(messages, tools)]


def test_grounded_model_asks_for_a_slot_then_calls_the_tool_then_reads_the_result():
    @tool
    def order_status(order_number: str) -> dict:
        """Order status."""
        return {"say": f"Order {order_number} is on its way."}

    intents = [Intent("order", ("check status of my order",), tool="order_status", slot="order_number",
                      ask="What is your order number?")]
    model = GroundedModel(intents, "Sorry?")
    specs = [order_status.spec]
    history = [Message("system", "be nice"), Message("user", "I'd like to check the status of my order")]
    first = asyncio.run(_reply(model, history, specs))
    assert "".join(d.text for d in first) == "What is your order number?"
    history += [Message("assistant", "What is your order number?"), Message("user", "four five seven two one")]
    (call,) = asyncio.run(_reply(model, history, specs))
    assert call.tool_call == ToolCall(call.tool_call.id, "order_status", {"order_number": "45721"})
    outcome = asyncio.run(run_tool({"order_status": order_status}, call.tool_call))
    history.append(Message("tool", outcome.content(), tool_call_id=call.tool_call.id))
    said = "".join(d.text for d in asyncio.run(_reply(model, history, specs)))
    assert said == "Order 45721 is on its way."


def test_grounded_model_answers_from_the_facts_the_agent_adds_and_admits_what_it_does_not_know():
    model = GroundedModel([], "I don't know that one.")
    kb = Knowledge([Fact("opening hours", "We open at nine.", ("hours", "open", "close")),
                    Fact("returns", "Thirty days to return.", ("return", "refund"))])
    (score, fact), = kb.search("what time do you close today", limit=1)
    assert fact.topic == "opening hours" and score > 0
    history = [Message("system", fact.answer, name=KNOWLEDGE), Message("user", "when do you close")]
    assert "".join(d.text for d in asyncio.run(_reply(model, history, []))) == "We open at nine."
    unknown = [Message("user", "what is the meaning of life")]
    assert kb.search(unknown[0].content) == []
    assert "".join(d.text for d in asyncio.run(_reply(model, unknown, []))) == "I don't know that one."


def test_tool_schema_from_the_signature_and_failures_become_outcomes():
    @tool(timeout_s=0.05)
    async def slow(order_number: str, count: int = 1) -> str:
        """Slow tool."""
        await asyncio.sleep(1)
        return "late"

    @tool
    def broken() -> str:
        """Breaks."""
        raise RuntimeError("database down")

    @tool
    def bye() -> EndCall:
        """Ends."""
        return EndCall("Goodbye!")

    assert slow.spec.parameters == {"type": "object", "required": ["order_number"], "properties": {
        "order_number": {"type": "string"}, "count": {"type": "integer"}}}
    tools = {t.spec.name: t for t in (slow, broken, bye)}
    timed_out = asyncio.run(run_tool(tools, ToolCall("1", "slow", {"order_number": "1"})))
    assert timed_out.error == "timed out after 0.05 s"
    failed = asyncio.run(run_tool(tools, ToolCall("2", "broken", {})))
    assert failed.error == "RuntimeError: database down" and json.loads(failed.content())["error"]
    missing = asyncio.run(run_tool(tools, ToolCall("3", "nope", {})))
    assert "no tool named 'nope'" in missing.error
    bad_args = asyncio.run(run_tool(tools, ToolCall("4", "broken", {"x": 1})))
    assert bad_args.error.startswith("TypeError")
    ended = asyncio.run(run_tool(tools, ToolCall("5", "bye", {})))
    assert ended.action == EndCall("Goodbye!") and json.loads(ended.content()) == {"ok": True, "say": "Goodbye!"}


def test_a_tool_gets_the_call_it_runs_on_and_the_model_cannot_give_it():
    class FakeCallState:  # stands in for the Call a conversation binds: only its state is read here
        state: dict = {}

    @tool
    async def note(topic: str, call: NotImportedHere) -> str:  # noqa: F821 - as with Call under TYPE_CHECKING
        """Notes the topic in the call's state."""
        call.state["topic"] = topic
        return "noted"

    assert note.spec.parameters == {"type": "object", "required": ["topic"], "properties": {
        "topic": {"type": "string"}}}
    on_call = FakeCallState()
    tools = {note.spec.name: note.on(on_call)}
    done = asyncio.run(run_tool(tools, ToolCall("1", "note", {"topic": "billing"})))
    assert done.error is None and on_call.state == {"topic": "billing"}
    forged = asyncio.run(run_tool(tools, ToolCall("2", "note", {"topic": "x", "call": "forged"})))
    assert forged.error == "argument 'call' is voxgate's to give, not the model's"
    assert on_call.state == {"topic": "billing"}

    @tool
    def bye() -> EndCall:
        """Ends."""
        return EndCall("Goodbye!")
    assert bye.on(on_call) is bye  # nothing to bind
