"""record(): until silence, a terminator, max_s or the hangup (which returns what was recorded)."""

from __future__ import annotations

import asyncio
import stat

import pytest

from controller.agent.conversation import Engines
from controller.agent.fixed import FixedLlm, FixedTts
from controller.agent.silero import SileroVad
from controller.agent.whisper import WhisperStt
from controller.audio import read_wav, tone
from controller.simulator.caller import Dtmf, Hangup, Say, Wait, WaitFor
from tests.audio_match import locate
from tests.verbs.rig import run_call, utterance

U01_S = utterance("u01").duration


async def test_silence_ends_the_recording_which_is_saved_private_and_transcribed(tmp_path, sqlite_url):
    engines = Engines(stt=WhisperStt(), llm=FixedLlm("unused"), tts=FixedTts(), vad=SileroVad())
    target = tmp_path / "message.wav"

    async def flow(call, kept):
        await call.answer()
        kept["rec"] = await call.record(max_s=20, silence_s=1.0, path=target, transcribe=True)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.8), Say(utterance("u01")),
                                                      Wait(3.0), Hangup()], engines=engines)
    rec = out.kept["rec"]
    assert rec.ended_by == "silence" and rec.sample_rate == 8000
    assert U01_S < rec.duration < U01_S + 0.8 + 0.5, rec  # the wait before the words, the words, a breath
    assert "status of my order" in rec.text.lower(), rec.text
    _, score = locate(utterance("u01").data, rec.pcm)
    assert score > 0.9, f"the recording is not what the caller said ({score:.2f})"
    assert rec.path == str(target) and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert read_wav(target).data == rec.pcm
    _, beep = locate(tone(1000, 250, 8000, 6000), bytes(out.channel.heard))
    assert beep > 0.9, "the caller did not hear the beep"


async def test_a_terminator_key_ends_it_and_other_keys_do_not(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["rec"] = await call.record(max_s=20, silence_s=None, beep=False, terminators="#*")

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.5), Say(utterance("u02")),
                                                      Dtmf("5"), Wait(0.5), Dtmf("*"), Wait(0.5), Hangup()])
    rec = out.kept["rec"]
    assert rec.ended_by == "dtmf" and utterance("u02").duration + 0.5 < rec.duration < utterance("u02").duration + 2


async def test_max_s_ends_a_caller_who_goes_on(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["rec"] = await call.record(max_s=1.5, silence_s=2.0, beep=False)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Say(utterance("u01")), Wait(0.5),
                                                      Hangup()])
    rec = out.kept["rec"]
    assert rec.ended_by == "max_s" and abs(rec.duration - 1.5) < 0.15, rec


@pytest.mark.parametrize("pbx", ["freeswitch", "asterisk"])
async def test_hangup_returns_what_was_recorded(tmp_path, sqlite_url, pbx):
    async def flow(call, kept):
        await call.answer()
        kept["rec"] = await call.record(max_s=30, silence_s=5.0)
        kept["returned_at"] = asyncio.get_running_loop().time()
        call.state["voicemail_s"] = round(kept["rec"].duration, 1)  # after the hangup: still stored

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.5), Say(utterance("u03")),
                                                      Hangup()], pbx=pbx, finish_after_hangup=10)
    rec = out.kept["rec"]
    assert rec.ended_by == "hangup", rec
    _, score = locate(utterance("u03").data, rec.pcm)
    assert score > 0.9 and utterance("u03").duration < rec.duration < utterance("u03").duration + 1.0
    assert "raised" not in out.kept and out.cdr["outcome"] == "completed"
    assert out.cdr["state"] == {"voicemail_s": round(rec.duration, 1)}
