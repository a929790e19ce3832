"""play(): local WAV at any rate, http(s) WAV, a file only FreeSWITCH can read; interruption; clear errors."""

from __future__ import annotations

import asyncio

import pytest

from controller import prompts
from controller.audio import Pcm, resample
from controller.call import CommandFailed
from controller.simulator.caller import Dtmf, Hangup, Listen, Wait, WaitFor
from tests.audio_match import locate
from tests.verbs.conftest import PROMPT as PROMPT_NAME
from tests.verbs.conftest import prompt_at, wav_bytes
from tests.verbs.rig import run_call

PROMPT = prompts.load(PROMPT_NAME)[0]
PROMPT_MS = len(PROMPT) * 1000 // 16000


@pytest.mark.parametrize("mode", ["streaming", "classic"])
async def test_a_local_wav_at_another_rate_is_resampled_and_heard(tmp_path, sqlite_url, mode):
    stereo = prompt_at(44100)
    wav = tmp_path / "prompt-44k-stereo.wav"
    wav.write_bytes(wav_bytes(Pcm(b"".join(stereo.data[i:i + 2] * 2 for i in range(0, len(stereo.data), 2)),
                                  44100, 2)))

    async def flow(call, kept):
        await call.answer()
        kept["played"] = await call.play(wav)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.5, timeout=10), Hangup()], mode=mode)
    played = out.kept["played"]
    assert played.interrupted_by is None and abs(played.total_ms - PROMPT_MS) <= 40
    _, score = locate(PROMPT, bytes(out.channel.heard))
    assert score > 0.9, f"the prompt was not heard faithfully ({score:.2f})"


async def test_a_wav_url_is_fetched_and_heard(tmp_path, sqlite_url, audio_server):
    async def flow(call, kept):
        await call.answer()
        kept["played"] = await call.play(f"{audio_server}/prompt.wav")

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.5, timeout=10), Hangup()])
    assert out.kept["played"].interrupted_by is None
    _, score = locate(PROMPT, bytes(out.channel.heard))
    assert score > 0.9


async def test_a_bad_url_is_a_clear_error_and_the_call_goes_on(tmp_path, sqlite_url, audio_server):
    async def flow(call, kept):
        await call.answer()
        for name in ("missing.wav", "page"):
            try:
                await call.play(f"{audio_server}/{name}")
            except CommandFailed as exc:
                kept[name] = str(exc)
        kept["after"] = await call.play(Pcm(*prompts.load("goodbye")))

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.5, timeout=10), Hangup()])
    assert "HTTP 404" in out.kept["missing.wav"] and "not a WAV file" in out.kept["page"]
    assert out.kept["after"].interrupted_by is None


async def test_a_file_only_freeswitch_reads_is_played_by_freeswitch_and_a_key_stops_it(tmp_path, sqlite_url):
    raw = tmp_path / "prompt.r8"  # raw L16 at 8 kHz: FreeSWITCH plays it, voxgate reads only WAV
    raw.write_bytes(resample(prompt_at(8000), 8000).data)

    async def flow(call, kept):
        await call.answer()
        kept["whole"] = await call.play(str(raw))
        await asyncio.sleep(1.0)
        kept["cut"] = await call.play(str(raw))

    out = await run_call(tmp_path, sqlite_url, flow, [
        WaitFor("answer"), Listen(0.6, timeout=10), Wait(0.9), Dtmf("5"), Wait(1.0), Hangup()])
    whole, cut = out.kept["whole"], out.kept["cut"]
    assert whole.interrupted_by is None and abs(whole.heard_ms - PROMPT_MS) <= 40
    assert cut.interrupted_by == "dtmf" and 300 < cut.heard_ms < 1200
    assert out.channel.agent_speech[-1][1] - out.channel.agent_speech[0][0] < PROMPT_MS / 1000 + 1.0 + 2.0
    _, score = locate(PROMPT, bytes(out.channel.heard))
    assert score > 0.95


async def test_on_asterisk_a_file_voxgate_cannot_read_is_a_clear_error(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        try:
            await call.play("/var/lib/asterisk/sounds/en/hello-world.gsm")
        except CommandFailed as exc:
            kept["error"] = str(exc)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.0), Hangup()], pbx="asterisk")
    assert "needs a WAV readable by voxgate" in out.kept["error"]
