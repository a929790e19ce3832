"""say(): TTS through the media port, cut short by a key (kept for gather) or by the caller talking."""

from __future__ import annotations

import asyncio

import pytest

from controller.call import CallGone
from controller.simulator.caller import Dtmf, Hangup, Listen, Say, Wait, WaitFor
from tests.verbs.rig import barge_in_s, run_call, utterance

LONG = "This sentence is long on purpose so that the caller has all the time in the world to cut it short."


async def test_say_plays_to_the_end(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["said"] = await call.say("Hello there.")

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.5, timeout=10), Hangup()])
    said = out.kept["said"]
    assert said.interrupted_by is None and not said.interrupted
    assert said.heard_ms == said.total_ms == len("Hello there.") * 60  # FixedTts: 60 ms a character
    assert out.channel.agent_speech, "the caller heard nothing"
    heard_s = sum(end - start for start, end in out.channel.agent_speech)
    assert abs(heard_s - 0.72) < 0.15


@pytest.mark.parametrize("mode", ["streaming", "classic"])
async def test_a_key_stops_say_and_stays_for_the_gather(tmp_path, sqlite_url, mode):
    async def flow(call, kept):
        await call.answer()
        kept["said"] = await call.say(LONG)
        kept["stopped_at"] = asyncio.get_running_loop().time()
        kept["gathered"] = await call.gather(max_digits=1, timeout=1.0, retries=0)

    out = await run_call(tmp_path, sqlite_url, flow, [
        WaitFor("answer"), Wait(1.5), Dtmf("7"), Wait(1.5), Hangup()], mode=mode)
    said, gathered = out.kept["said"], out.kept["gathered"]
    assert said.interrupted_by == "dtmf"
    assert 1000 < said.heard_ms <= said.total_ms < len(LONG) * 60  # total: what the TTS had made by then
    assert gathered.kind == "dtmf" and gathered.digits == "7" and gathered.attempts == 1
    # the caller stopped hearing the prompt soon after the key
    pressed_at = out.channel.agent_speech[0][0] + said.heard_ms / 1000
    assert out.channel.agent_speech[0][1] - pressed_at < 0.5
    assert sum(end - start for start, end in out.channel.agent_speech) < 2.5


async def test_a_key_typed_ahead_skips_the_prompt(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        await asyncio.sleep(0.8)  # the key comes meanwhile
        kept["said"] = await call.say(LONG)
        kept["typed"] = call.keypad.pending

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Dtmf("3"), Wait(1.5), Hangup()])
    assert out.kept["said"].interrupted_by == "dtmf" and out.kept["said"].heard_ms == 0
    assert out.kept["typed"] == 1
    assert not out.channel.agent_speech


async def test_caller_speech_stops_say(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["said"] = await call.say(LONG)
        await asyncio.sleep(2.5)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.2), Say(utterance("u03")),
                                                      Wait(0.5), Hangup()])
    said = out.kept["said"]
    assert said.interrupted_by == "speech" and 800 < said.heard_ms < 2500
    went_on = barge_in_s(out.channel, utterance("u03"))
    assert 0 < went_on < 0.4, f"say went on {went_on:.2f} s over the caller"  # measured: 0.15-0.16 s


async def test_not_interruptible_plays_through_keys_and_speech(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["said"] = await call.say("A short thing said in full.", interruptible=False)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.5), Dtmf("1"),
                                                      Say(utterance("u05")), Wait(0.5), Hangup()])
    said = out.kept["said"]
    assert said.interrupted_by is None and said.heard_ms == said.total_ms


async def test_hangup_mid_say_raises_call_gone_promptly(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        await call.say(LONG)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.0), Hangup()],
                         finish_after_hangup=5)
    assert isinstance(out.kept["raised"], CallGone)
    assert out.cdr["outcome"] == "abandoned"
    assert out.kept["raised_at"] - out.channel.agent_speech[0][0] < 1.0 + 0.6


async def test_cancelling_say_stops_the_audio_and_the_port_plays_on(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        task = asyncio.create_task(call.say(LONG))
        await asyncio.sleep(1.2)
        task.cancel()
        kept["cancelled_at"] = asyncio.get_running_loop().time()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.6)
        kept["after"] = await call.say("Still here.")

    # after a killAudio the module reports later marks late: the second say ends on the port's time bound
    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(5.0), Hangup()])
    first, second = out.channel.agent_speech[0], out.channel.agent_speech[-1]
    assert first[1] - out.kept["cancelled_at"] < 0.4, "the cancelled say kept playing"
    assert second is not first and out.kept["after"].interrupted_by is None


async def test_speech_from_before_the_say_does_not_stop_it(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        await asyncio.sleep(2.5)  # the caller talks meanwhile, and nobody listens
        kept["said"] = await call.say("Now it is my turn to speak.")

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.1), Say(utterance("u03")),
                                                      Listen(0.3, timeout=10), Hangup()])
    assert out.kept["said"].interrupted_by is None
