"""examples/ivr_menu.py: keys, speech, retries, the submenu and the transfer to a queue."""

from __future__ import annotations

import pytest

from controller.agent.conversation import Engines
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.simulator.caller import Dtmf, Listen, Say, Wait, WaitFor
from tests.audio_match import locate
from tests.examples.conftest import place, spoken

MODULE = "examples.ivr_menu"


def keys_only() -> Engines:
    """Key presses need no recogniser: a tone for the prompts, a transcript nobody asks for."""
    return Engines(stt=FixedStt("unused"), llm=FixedLlm("unused"), tts=FixedTts(), vad=SileroVad())


async def test_one_key_to_sales_transfers_to_the_sales_queue(tmp_path, sqlite_url):
    placed = await place(tmp_path, sqlite_url, MODULE, "ivr", [WaitFor("answer"), Wait(0.5), Dtmf("1"),
                                                              WaitFor("hangup", timeout=20)], keys_only())
    cdr = placed.cdr
    assert cdr["flow"] == "ivr" and cdr["outcome"] == "transferred"
    assert cdr["state"] == {"answers": [{"kind": "dtmf", "choice": "1", "heard": "1"}], "queue": "sales"}
    assert [(t["destination"], t["reason"]) for t in placed.transfers] == [("2001", "sales")]


async def test_silence_then_the_support_submenu(tmp_path, sqlite_url):
    # says nothing through the first menu (no input: the notice and the menu again), then 2, then 2
    placed = await place(tmp_path, sqlite_url, MODULE, "ivr", [
        WaitFor("answer"), Wait(8.0), Dtmf("2"), Wait(1.0), Dtmf("2"), WaitFor("hangup", timeout=20)], keys_only())
    assert placed.cdr["outcome"] == "transferred"
    assert placed.cdr["state"]["answers"] == [{"kind": "dtmf", "choice": "2", "heard": "2"},
                                              {"kind": "dtmf", "choice": "2", "heard": "2"}]
    assert [t["destination"] for t in placed.transfers] == ["2102"]


@pytest.mark.parametrize("pbx", ["freeswitch", "asterisk"])
async def test_wrong_keys_every_time_end_with_a_goodbye(tmp_path, sqlite_url, pbx):
    extra = {"media": "audiosocket"} if pbx == "asterisk" else {}
    placed = await place(tmp_path, sqlite_url, MODULE, "ivr", [
        WaitFor("answer"), Wait(0.5), Dtmf("9"), Wait(1.5), Dtmf("8"), Wait(1.5), Dtmf("7"),
        WaitFor("hangup", timeout=20)], keys_only(), pbx=pbx, **extra)
    cdr = placed.cdr
    assert cdr["outcome"] == "no_choice" and cdr["hangup_cause"] == "NORMAL_CLEARING"
    assert cdr["state"]["answers"] == [{"kind": "invalid", "choice": None, "heard": "7"}]
    assert placed.transfers == []


async def test_spoken_answers_with_the_embedded_engines(tmp_path, sqlite_url, embedded):
    support = await spoken(embedded.tts, "I need some help from support.")
    technical = await spoken(embedded.tts, "Technical help please.")
    placed = await place(tmp_path, sqlite_url, MODULE, "ivr", [
        WaitFor("answer"), Listen(1.2, timeout=30), Say(support), Listen(1.2, timeout=30), Say(technical),
        WaitFor("hangup", timeout=30)], embedded, timeout=90)
    assert placed.channel.script_error is None
    answers = placed.cdr["state"]["answers"]
    assert [(a["kind"], a["choice"]) for a in answers] == [("speech", "2"), ("speech", "2")], answers
    assert "support" in answers[0]["heard"].lower() and "technical" in answers[1]["heard"].lower()
    # short one-word answers ("Support.") are often misheard by Whisper tiny at 8 kHz: callers speak phrases
    assert [t["destination"] for t in placed.transfers] == ["2102"]
    said = await spoken(embedded.tts, "Connecting you to technical.")
    # all but the last 300 ms: the transfer right after it stops the audio still in flight (see the issue note)
    _, score = locate(said.data[:len(said.data) - said.sample_rate * 2 * 3 // 10], bytes(placed.channel.heard))
    assert score > 0.8, f"the caller did not hear where they were sent (correlation {score:.2f})"
