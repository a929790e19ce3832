"""The voice agent on a simulated call: turns, barge-in, robustness, failures, records.

Caller audio is real speech (the shared synthetic utterances, or lines the embedded TTS speaks);
the VAD is always the real Silero model. Engines with fixed latencies stand in where a test is
about voxgate's behaviour rather than an engine's. Barge-in, a plain turn and the spoken fallback
run on every PBX setup (fixture pbx_setup); the rest, whose engines are the point, on FreeSWITCH.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.agent.conversation import AgentConfig, BargeIn, Engines
from controller.agent.factory import build_engines, warm_up
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.agent.whisper import WhisperStt
from controller.audio import Pcm, read_wav, resample
from controller.demo import caller_script
from controller.flows import FlowRegistry, builtin_flows
from controller.records.store import list_turns
from controller.simulator.caller import CallerScript, Hangup, Listen, Say, Wait, WaitFor
from tests.e2e.conftest import PBX_SETUPS, make_settings, start_rig, stop_rig, stored_call
from tests.e2e.pbx_rig import start_pbx_rig, stop_pbx_rig

SPEECH = Path(__file__).parents[1] / "fixtures" / "speech"
LONG_GREETING = ("Hello and welcome. This greeting is long on purpose, so that the caller has every "
                 "chance to talk over it, which is exactly what this test wants them to do today.")


def utterance(name: str, voice: str = "flite") -> Pcm:
    return read_wav(SPEECH / voice / "8k" / f"{name}.wav")


def noise(name: str) -> Pcm:
    pcm = read_wav(SPEECH / "noise" / f"{name}_8000.wav")
    return Pcm(pcm.data[:8000 * 2 * 3], 8000)  # three seconds


def agent_flow(config: AgentConfig) -> FlowRegistry:
    registry = FlowRegistry()

    @registry.register("agent")
    async def flow(call) -> str:
        await call.answer()
        result = await call.agent(config)
        if result.reason != "caller_hangup":
            await call.hangup()
        return result.reason

    return registry


async def _turns(rig, channel, timeout=60):
    cdr = await stored_call(rig.controller, rig.database_url, channel, timeout)
    return cdr, list_turns(rig.database_url, channel.uuid)


ONE_LINE = (WaitFor("answer"), Listen(0.4), Say(utterance("u03")), Listen(0.5, timeout=10), Hangup())


async def converse(tmp_path, sqlite_url, config: AgentConfig, engines: Engines, steps, *,
                   setup: str = "fs-streaming"):
    """One simulated call to an agent flow on a PBX setup: (channel, cdr, turns) once its records are stored."""
    rig = await start_pbx_rig(setup, tmp_path, sqlite_url, flows=agent_flow(config), engines=engines)
    try:
        channel = await rig.call(CallerScript(list(steps)), flow="agent")
        cdr, turns = await _turns(rig, channel)
    finally:
        await stop_pbx_rig(rig)
    assert cdr["pbx"] == rig.pbx_name
    return channel, cdr, turns


def fixed_engines(**llm) -> Engines:
    return Engines(stt=FixedStt("Can I speak to a manager please"),
                   llm=FixedLlm(llm.pop("reply", "Sure, one moment please."), **llm),
                   tts=FixedTts(), vad=SileroVad())


# ---------------------------------------------------------------- the whole thing, real engines


@pytest.fixture(scope="module")
def embedded():
    engines = build_engines(make_settings("sqlite://"))
    asyncio.run(warm_up(engines, progress=lambda _: None))
    return engines


async def test_spoken_conversation_with_the_embedded_engines(tmp_path, sqlite_url, embedded):
    rig = await start_rig(tmp_path, sqlite_url, flows=builtin_flows(), engines=embedded)
    try:
        channel = await rig.call(await caller_script(embedded.tts), flow="assistant")
        cdr, turns = await _turns(rig, channel, timeout=120)
    finally:
        await stop_rig(rig)
    assert channel.script_error is None
    assert cdr["outcome"] == "end_call" and cdr["hangup_cause"] == "NORMAL_CLEARING"
    said = [t["text"] for t in turns if t["speaker"] == "caller"]
    assert len(said) == 6 and "45721" in said[1].replace(" ", "")
    agent = [t for t in turns if t["speaker"] == "agent"]
    greeting = agent[0]
    assert greeting["interrupted"] and greeting["barge_in_ms"] < 400
    assert greeting["text"].startswith(greeting["heard_text"]) and len(greeting["heard_text"]) < len(greeting["text"])
    assert "45721 shipped" in agent[2]["text"] and "nine to six" in agent[3]["text"]
    assert agent[5]["text"] == AgentConfig(system_prompt="").dont_know
    assert agent[-1]["text"] == "Thanks for calling Acme. Goodbye!"
    for turn in agent[1:]:
        assert 0 < turn["stt_ms"] <= turn["llm_first_token_ms"] <= turn["tts_first_audio_ms"] <= \
            turn["voice_to_voice_ms"] < 2500
        assert turn["engines"] == {"stt": "whisper", "llm": "grounded", "tts": "hibari", "vad": "silero"}
    assert [t["seq"] for t in turns] == list(range(len(turns)))
    tool_calls = [c["name"] for t in agent for c in t["detail"].get("tool_calls", [])]
    assert tool_calls == ["order_status", "end_call"]


# ---------------------------------------------------------------- barge-in


async def test_caller_speech_stops_the_agent_and_the_record_says_what_was_heard(tmp_path, sqlite_url, pbx_setup):
    config = AgentConfig(system_prompt="test", greeting=LONG_GREETING)
    channel, cdr, turns = await converse(tmp_path, sqlite_url, config, fixed_engines(), [
        WaitFor("answer"), Wait(2.5), Say(utterance("u03")), Listen(0.5), Hangup()], setup=pbx_setup)
    greeting, caller, reply = turns[:3]
    assert greeting["interrupted"] and 0 < greeting["barge_in_ms"] < 400
    assert LONG_GREETING.startswith(greeting["heard_text"]) and 0 < len(greeting["heard_text"]) < len(LONG_GREETING)
    assert caller["text"] == "Can I speak to a manager please"
    assert reply["text"] == "Sure, one moment please." and not reply["interrupted"]
    # at the PBX: the agent's audio stopped soon after the caller started talking: speech start ->
    # confirmed onset (~250 ms of speech) -> flush -> what was in flight (Asterisk's phone: its 60 ms jitter buffer)
    spoke_at = channel.caller_speech[0][0]
    stopped_at = next(end for start, end in channel.agent_speech if start <= spoke_at <= end + 0.05)
    # ~0.3-0.46 s on an idle machine (bench/agent.py measures it); the bound only proves the stop happened
    # promptly, far inside the 8 s greeting, with room for a CI machine under load (0.72 s seen)
    assert 0 <= stopped_at - spoke_at < 1.0, f"agent audio went on {stopped_at - spoke_at:.3f} s"
    assert cdr["outcome"] == "caller_hangup"


async def test_noise_dtmf_and_ringback_never_interrupt(tmp_path, sqlite_url):
    config = AgentConfig(system_prompt="test", greeting=LONG_GREETING)
    engines = Engines(stt=WhisperStt(), llm=FixedLlm("unused"), tts=FixedTts(ms_per_char=110), vad=SileroVad())
    sounds = [Say(noise(sound)) for sound in ("pinknoise", "brownnoise", "dtmf", "ring")]
    channel, _, turns = await converse(tmp_path, sqlite_url, config, engines, [
        WaitFor("answer"), Wait(1.0), *sounds, Listen(0.5, timeout=15), Hangup()])
    greeting = turns[0]
    assert channel.caller_speech[-1][1] < channel.agent_speech[0][1]  # all of it played over the agent
    assert not greeting["interrupted"] and greeting["heard_text"] == greeting["text"] == LONG_GREETING
    assert "false_interruptions" not in greeting["detail"]  # not even a pause
    assert [t["speaker"] for t in turns] == ["agent"]  # no caller turn was made of the noise


async def test_a_backchannel_pauses_then_the_agent_resumes(tmp_path, sqlite_url, embedded):
    okay = bytearray()
    async for chunk in embedded.tts.synthesize("Okay."):
        okay.extend(chunk.pcm)
    config = AgentConfig(system_prompt="test", greeting=LONG_GREETING, barge_in=BargeIn(guard_ms=100))
    engines = Engines(stt=embedded.stt, llm=FixedLlm("unused"), tts=FixedTts(), vad=SileroVad())
    _, _, turns = await converse(tmp_path, sqlite_url, config, engines, [
        WaitFor("answer"), Wait(2.0), Say(resample(Pcm(bytes(okay), 24000), 8000)), Listen(0.6, timeout=20), Hangup()])
    greeting = turns[0]
    assert not greeting["interrupted"] and greeting["heard_text"] == LONG_GREETING
    assert greeting["detail"].get("false_interruptions") == 1  # it paused for the "okay", then went on
    assert [t["speaker"] for t in turns] == ["agent"]


# ---------------------------------------------------------------- engines failing


# a stall (filler, then the fallback after the timeout) on every PBX; how the model fails is no PBX's business
@pytest.mark.parametrize(("failure", "setup"), [("fail", "fs-streaming"), *(("stall", s) for s in PBX_SETUPS)])
async def test_a_failing_or_stalled_model_gets_the_spoken_fallback(tmp_path, sqlite_url, failure, setup):
    config = AgentConfig(system_prompt="test", greeting="Hi.", dead_air_s=0.6, engine_timeout_s=1.5)
    engines = fixed_engines(**{failure: True})
    channel, cdr, turns = await converse(tmp_path, sqlite_url, config, engines, [
        WaitFor("answer"), Listen(0.4), Say(utterance("u03")), Listen(0.6, timeout=10), Hangup()], setup=setup)
    assert channel.script_error is None  # the caller heard the agent answer something
    reply = turns[2]
    assert reply["speaker"] == "agent" and reply["text"] == ""
    assert reply["detail"]["fallback"] == ("fixed-llm: scripted failure" if failure == "fail" else "timed out")
    heard_after = [start - channel.caller_speech[0][1] for start, _ in channel.agent_speech
                   if start > channel.caller_speech[0][1]]
    assert heard_after and heard_after[0] < config.dead_air_s + 0.5  # never more dead air than the limit
    if failure == "stall":
        assert reply["detail"]["filler"] is True
    assert cdr["outcome"] == "caller_hangup" and cdr["error"] is None


async def test_a_recogniser_failure_loses_one_utterance_and_the_caller_is_asked_again(tmp_path, sqlite_url):
    config = AgentConfig(system_prompt="test", greeting="Hi.")
    engines = Engines(stt=FixedStt("Can I speak to a manager please", failures=1), llm=FixedLlm("Sure."),
                      tts=FixedTts(), vad=SileroVad())
    channel, cdr, turns = await converse(tmp_path, sqlite_url, config, engines, [
        *ONE_LINE[:-1], Say(utterance("u03")), Listen(0.5, timeout=10), Hangup()])
    assert channel.script_error is None
    assert [(t["speaker"], t["text"]) for t in turns] == [
        ("agent", "Hi."), ("agent", config.fallback), ("caller", "Can I speak to a manager please"),
        ("agent", "Sure.")]
    assert turns[1]["detail"]["fallback"] == "stt: fixed-stt: scripted failure"
    assert cdr["error"] is None


# ---------------------------------------------------------------- hosted engines, through the settings


async def test_hosted_engines_from_the_settings_drive_the_same_conversation(tmp_path, sqlite_url):
    from tests.agent.fake_services import FakeDeepgram, FakeOpenAI

    async with FakeOpenAI() as openai, FakeDeepgram() as deepgram:
        deepgram.script.words = "can I speak to a manager please".split()
        deepgram.script.word_s = 0.25
        openai.chat.text = ["Sure", ", connecting", " you now."]
        openai.speech.seconds = 0.6
        settings = make_settings(sqlite_url, VOXGATE_STT="deepgram", VOXGATE_DEEPGRAM_URL=deepgram.url,
                                 VOXGATE_DEEPGRAM_API_KEY=deepgram.api_key, VOXGATE_LLM="openai",
                                 VOXGATE_TTS="openai", VOXGATE_OPENAI_BASE_URL=openai.base_url,
                                 VOXGATE_OPENAI_API_KEY=openai.api_key)
        engines = build_engines(settings)
        config = AgentConfig(system_prompt="You are a test.", greeting="Hi.")
        channel, _, turns = await converse(tmp_path, sqlite_url, config, engines, ONE_LINE)
    assert channel.script_error is None
    assert [(t["speaker"], t["text"]) for t in turns] == [
        ("agent", "Hi."), ("caller", "can I speak to a manager please"), ("agent", "Sure, connecting you now.")]
    assert turns[2]["engines"] == {"stt": "deepgram", "llm": "openai-chat", "tts": "openai-speech", "vad": "silero"}
    assert turns[2]["voice_to_voice_ms"] is not None
    chat = [r for r in openai.requests if r.path.endswith("/chat/completions")][-1].json
    assert chat["messages"][0] == {"role": "system", "content": "You are a test."}
    assert chat["messages"][-1] == {"role": "user", "content": "can I speak to a manager please"}
    assert deepgram.sessions and "Finalize" in deepgram.sessions[0].controls


async def test_stored_transcripts_are_redacted_but_the_agent_heard_everything(tmp_path, sqlite_url, pbx_setup):
    card = "4556 7375 8689 9855"
    config = AgentConfig(system_prompt="test", greeting="Hi.")
    llm = FixedLlm("Thanks, I have your card ending 9855.")
    engines = Engines(stt=FixedStt(f"my card is {card}"), llm=llm, tts=FixedTts(), vad=SileroVad())
    channel, cdr, turns = await converse(tmp_path, sqlite_url, config, engines, ONE_LINE, setup=pbx_setup)
    assert channel.script_error is None and cdr["outcome"] == "caller_hangup"
    assert [(t["speaker"], t["interrupted"]) for t in turns] == [("agent", False), ("caller", False), ("agent", False)]
    caller = turns[1]
    assert caller["text"] == "my card is [card]" and caller["detail"]["redactions"] == {"card": 1}
    assert turns[2]["text"] == "Thanks, I have your card ending 9855."  # four digits are not a number to hide
    assert llm.requests[0][-1].content == f"my card is {card}"  # the model still got what was said
