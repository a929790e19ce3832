"""hold()/unhold(): music looped by voxgate, heard by the caller, paused for other audio, gone at unhold."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from controller.audio import Pcm, tone
from controller.simulator.caller import Hangup, Wait, WaitFor
from controller.verbs.music import hold_music
from tests.audio_match import locate
from tests.verbs.conftest import wav_bytes
from tests.verbs.rig import loud_spans, run_call


def test_the_built_in_music_is_a_seamless_gentle_loop():
    music = hold_music(8000)
    samples = np.frombuffer(music.data, "<i2").astype(np.float64)
    assert music.duration == 16.0 and hold_music(8000) is music  # made once per rate
    windows = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    levels = np.sqrt((windows * windows).mean(axis=1))
    assert levels.min() > 500 and np.abs(samples).max() < 0.35 * 32768  # never silent, never loud
    steps = np.abs(np.diff(samples))
    assert abs(samples[0] - samples[-1]) < 3 * steps.mean() + 3 * steps.std()  # no click where it loops


def loud_between(out, start: float, end: float) -> float:
    """Seconds of audible far-end audio the caller heard between two loop times."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in out.channel.agent_speech)


@pytest.mark.parametrize("mode", ["streaming", "classic"])
async def test_hold_music_is_heard_until_unhold(tmp_path, sqlite_url, mode):
    async def flow(call, kept):
        await call.answer()
        loop = asyncio.get_running_loop()
        await call.hold()
        kept["held_at"] = loop.time()
        await asyncio.sleep(3.0)
        await call.unhold()
        kept["unheld_at"] = loop.time()
        await asyncio.sleep(1.5)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(5.5), Hangup()], mode=mode)
    held, unheld = out.kept["held_at"], out.kept["unheld_at"]
    assert loud_between(out, held, unheld) > 2.3, out.channel.agent_speech
    stop_margin = 0.3 if mode == "streaming" else 0.6  # classic: uuid_break after the file started
    assert loud_between(out, unheld + stop_margin, unheld + 1.5) == 0, "the music went on after unhold"
    _, score = locate(hold_music(8000).data[:16000], bytes(out.channel.heard))
    assert score > 0.9, f"the caller did not hear the hold music ({score:.2f})"


async def test_a_given_wav_loops_and_pauses_while_the_flow_speaks(tmp_path, sqlite_url):
    beep = tmp_path / "beep.wav"
    beep.write_bytes(wav_bytes(Pcm(tone(600, 300, 16000, 7000) + bytes(16000 * 2 // 5), 16000)))  # 0.7 s

    async def flow(call, kept):
        await call.answer()
        loop = asyncio.get_running_loop()
        await call.hold(beep)
        await asyncio.sleep(2.2)
        kept["said_at"] = loop.time()
        kept["said"] = await call.say("Thanks for holding.")
        kept["said_end"] = loop.time()
        await asyncio.sleep(1.5)
        await call.unhold()

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(6.5), Hangup()])
    assert out.kept["said"].interrupted_by is None
    heard = bytes(out.channel.heard)
    beeps = [end - start for start, end in loud_spans(heard)]
    assert len(beeps) >= 5, beeps  # three before the say, two after it
    # the say was heard whole, not mixed with or queued behind the music
    assert abs(max(beeps) - len("Thanks for holding.") * 0.06) < 0.12, beeps
    assert loud_between(out, out.kept["said_end"] + 0.1, out.kept["said_end"] + 1.5) > 0.4  # the music is back


async def test_hangup_while_held_ends_the_music_quietly(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        await call.hold()
        kept["hold"] = call._hold
        await asyncio.sleep(10)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.5), Hangup()])
    await asyncio.sleep(0.3)
    assert not out.kept["hold"].playing
    assert out.cdr["outcome"] == "abandoned" and out.cdr["error"] is None
