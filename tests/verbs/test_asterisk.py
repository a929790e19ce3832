"""The same verbs on Asterisk, over AudioSocket and chan_websocket: say, gather, record, hangup."""

from __future__ import annotations

import asyncio

import pytest

from controller.audio import Pcm, resample
from controller.call import CallGone
from controller.simulator.caller import Dtmf, Hangup, Listen, Say, Wait, WaitFor
from tests.audio_match import locate
from tests.verbs.rig import barge_in_s, fast_engines, run_call, utterance

LONG = "This sentence is long on purpose so that the caller has all the time in the world to cut it short."
MEDIA = ["audiosocket", "websocket"]


@pytest.mark.parametrize("media", MEDIA)
async def test_a_key_stops_say_and_the_retried_gather_takes_it(tmp_path, sqlite_url, media):
    async def flow(call, kept):
        await call.answer()
        kept["said"] = await call.say(LONG)
        kept["result"] = await call.gather(choices={"1": ["sales"], "2": ["support"]}, timeout=3,
                                           invalid_prompt="Press one or two.")

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.2), Dtmf("9"), Listen(0.3, timeout=5),
                                                      Dtmf("2"), Wait(0.5), Hangup()], pbx="asterisk", media=media)
    said, result = out.kept["said"], out.kept["result"]
    assert said.interrupted_by == "dtmf" and 600 < said.heard_ms < 2000
    assert (result.kind, result.choice, result.attempts) == ("dtmf", "2", 2)


@pytest.mark.parametrize("media", MEDIA)
async def test_speech_stops_say_and_a_spoken_answer_is_gathered(tmp_path, sqlite_url, media):
    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather(LONG, speech=True, timeout=5)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.2), Say(utterance("u03")),
                                                      Wait(1.5), Hangup()], pbx="asterisk", media=media,
                         engines=fast_engines("a manager please"))
    assert out.kept["result"].kind == "speech" and out.kept["result"].text == "a manager please"
    assert 0 < barge_in_s(out.channel, utterance("u03")) < 0.4  # measured: 0.16-0.18 s


async def test_no_input_on_asterisk(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather("Anything?", timeout=0.5, retries=1)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(4), Hangup()], pbx="asterisk")
    assert (out.kept["result"].kind, out.kept["result"].attempts) == ("no_input", 2)
    assert len(out.channel.agent_speech) == 2  # the prompt, and again


async def test_hangup_mid_gather_raises_call_gone_promptly_on_asterisk(tmp_path, sqlite_url):
    async def flow(call, kept):
        call.on_hangup(lambda cause: kept.setdefault("hung_up_at", asyncio.get_running_loop().time()))
        await call.answer()
        await call.gather(speech=True, timeout=10)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.0), Hangup()], pbx="asterisk",
                         finish_after_hangup=5)
    assert isinstance(out.kept["raised"], CallGone)
    # the caller's TCP close is the hangup; AMI's Hangup event (and the hook) may come after it
    assert out.kept["raised_at"] - out.kept.get("hung_up_at", out.kept["raised_at"]) < 0.3


@pytest.mark.parametrize("media", MEDIA)
async def test_record_until_silence_on_asterisk(tmp_path, sqlite_url, media):
    async def flow(call, kept):
        await call.answer()
        kept["rec"] = await call.record(max_s=15, silence_s=1.0)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.6), Say(utterance("u02")),
                                                      Wait(2.5), Hangup()], pbx="asterisk", media=media)
    rec = out.kept["rec"]
    assert rec.ended_by == "silence", rec
    _, score = locate(utterance("u02").data, resample(Pcm(rec.pcm, rec.sample_rate), 8000).data)
    assert score > 0.9 and rec.duration < utterance("u02").duration + 1.2
