"""Simulated channels: event sequences and headers, media into `heard`, DTMF, CDR, media bugs, pacing."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from websockets.asyncio.server import serve

from controller.audio import Pcm, rms, tone
from controller.esl import protocol as esl
from controller.simulator.caller import Dtmf, Hangup, Say, Wait, WaitFor
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.fixture_data import esl_sessions, received_stream
from tests.simulator.sim_helpers import EslPeer, sendmsg, tone_wav

PARKED_CALL = [
    "CHANNEL_STATE", "CHANNEL_CREATE", "CHANNEL_CALLSTATE", "CHANNEL_STATE", "CHANNEL_STATE",
    "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_PARK",
    "CHANNEL_ANSWER", "CHANNEL_CALLSTATE",
    "CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CHANNEL_STATE",
]


RECORDED_LEGS = ("3f28fbf9-28a9-4df4-8bf9-9c3a4c50279e", "a1a1a1a1-0000-4000-8000-00000000000a")


def recorded_by_name() -> dict[str, esl.EslEvent]:
    """The first recorded event of each name on a channel (plain session with the full call)."""
    parser = esl.EslParser()
    parser.feed(received_stream(esl_sessions("esl_inbound_session.json")[1]))
    events: dict[str, esl.EslEvent] = {}
    for frame in parser.frames():
        event = esl.parse_event(frame) if frame.content_type == "text/event-plain" else None
        if event and event.unique_id in RECORDED_LEGS:
            events.setdefault(event.name, event)
    return events


def without_variables(event: esl.EslEvent) -> list[str]:
    """Header names but the variables, and those that come and go with the call's state (an app's
    argument, the hangup cause)."""
    return [k for k in event.headers if not k.startswith("variable_") and k not in ("Application-Data", "Hangup-Cause")]


@pytest.fixture
async def switch(tmp_path):
    async with FakeFreeSwitch("ClueCon", tmp_dir=tmp_path, speed=5) as fs:
        yield fs


async def watcher(switch: FakeFreeSwitch, events: str = "plain ALL") -> EslPeer:
    peer = await EslPeer.connect(switch.esl_port)
    await peer.next()
    await peer.reply("auth ClueCon\n\n")
    await peer.reply(f"event {events}\n\n")
    return peer


async def test_parked_call_events_and_their_headers(switch):
    peer = await watcher(switch, "plain ALL")
    call = await switch.place_call([], variables={"voxgate_flow": "demo"})
    await peer.event("CHANNEL_PARK")
    await peer.reply(f"api uuid_answer {call.uuid}\n\n")
    await peer.reply(f"api uuid_kill {call.uuid}\n\n")
    await asyncio.wait_for(call.ended.wait(), 3)
    await peer.reply("api version\n\n")
    ours = [e for e in peer.events if e.unique_id == call.uuid]
    assert [e.name for e in ours] == PARKED_CALL
    assert [k for _, k in call.events] == PARKED_CALL
    recorded = recorded_by_name()
    for event in ours:
        assert without_variables(event) == without_variables(recorded[event.name]), event.name
    create, park, hangup, complete = (next(e for e in ours if e.name == n) for n in
                                      ("CHANNEL_CREATE", "CHANNEL_PARK", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"))
    assert (create.get("Channel-Name"), create.get("Caller-Caller-ID-Name"), create.get("Answer-State")) == \
        ("loopback/1000-b", "Sim Caller", "ringing")
    assert (park.get("Answer-State"), park.get("variable_voxgate_flow")) == ("ringing", "demo")
    assert hangup.get("Hangup-Cause") == "NORMAL_CLEARING"
    # HANGUP_COMPLETE names the cause twice: before the channel block and after Answer-State
    assert b"Event-Sequence: %s\nHangup-Cause: NORMAL_CLEARING\nChannel-State: CS_REPORTING\n" % \
        complete.get("Event-Sequence").encode() in peer.raw
    assert complete.get("Caller-Channel-Hangup-Time") == complete.get("variable_end_uepoch")
    sequence = [int(e.get("Event-Sequence")) for e in ours]
    assert sequence == sorted(sequence)


async def test_cdr_variables_are_computed_from_the_call(switch):
    call = await switch.place_call([Wait(1.3), Hangup("USER_BUSY")], variables={"voxgate_flow": "billing"})
    await asyncio.sleep(switch.clock.real(0.4))
    call.answer()
    await asyncio.wait_for(call.ended.wait(), 3)
    v = call.variables
    start, answer, end = (int(v[f"{n}_uepoch"]) for n in ("start", "answer", "end"))
    assert start < answer < end
    assert (end - start) / 1e6 == pytest.approx(1.3, abs=0.15)
    assert int(v["uduration"]) == end - start and int(v["billusec"]) == end - answer
    assert int(v["mduration"]) == end // 1000 - start // 1000 and int(v["billmsec"]) == end // 1000 - answer // 1000
    assert int(v["duration"]) == end // 1_000_000 - start // 1_000_000
    assert int(v["billsec"]) == end // 1_000_000 - answer // 1_000_000
    assert int(v["answermsec"]) == answer // 1000 - start // 1000
    assert (v["hangup_cause"], v["hangup_cause_q850"], v["voxgate_flow"]) == ("USER_BUSY", "17", "billing")
    assert v["caller_id"] == '"Sim Caller" <15551230001>' and v["digits_dialed"] == "none"
    assert (v["last_app"], v.get("last_arg")) == ("park", None)
    assert call.hangup_cause == "USER_BUSY" and call.answered_at == pytest.approx(answer / 1e6)


async def test_unanswered_call_bills_nothing(switch):
    call = await switch.place_call([Wait(0.3), Hangup("ORIGINATOR_CANCEL")])
    await asyncio.wait_for(call.ended.wait(), 3)
    v = call.variables
    assert (v["answer_epoch"], v["answer_uepoch"], v["billsec"], v["billusec"]) == ("0", "0", "0", "0")
    assert "answer_stamp" not in v
    assert (v["hangup_cause"], v["hangup_cause_q850"]) == ("ORIGINATOR_CANCEL", "16")
    assert call.heard == bytearray()


async def test_playback_goes_into_what_the_caller_heard(switch, tmp_path):
    wav = tone_wav(tmp_path / "prompt.wav", 600)
    peer = await watcher(switch, "plain PLAYBACK_START PLAYBACK_STOP CHANNEL_EXECUTE_COMPLETE")
    call = await switch.place_call([])
    await peer.reply(f"api uuid_answer {call.uuid}\n\n")
    await peer.reply(sendmsg("playback", str(wav), call.uuid, event_uuid="e1"))
    start = await peer.event("PLAYBACK_START")
    assert start.get("Playback-File-Path") == str(wav)
    stop = await peer.event("PLAYBACK_STOP")
    assert (stop.get("Playback-Status"), stop.get("variable_playback_samples"), stop.get("variable_playback_ms")) == \
        ("done", "4800", "600")
    complete = await peer.event("CHANNEL_EXECUTE_COMPLETE")
    assert (complete.get("Application"), complete.get("Application-Data"), complete.get("Application-UUID"),
            complete.get("Application-Response")) == ("playback", str(wav), "e1", "FILE PLAYED")
    heard = np.frombuffer(bytes(call.heard), "<i2")
    loud = np.flatnonzero(np.abs(heard) > 1000)
    assert (loud[-1] - loud[0]) / 8000 == pytest.approx(0.6, abs=0.03)
    assert rms(heard[loud[0]:loud[-1]].tobytes()) == pytest.approx(8000 / 2 ** 0.5, rel=0.05)
    call.hangup()


async def test_uuid_break_stops_the_playback(switch, tmp_path):
    wav = tone_wav(tmp_path / "long.wav", 3000)
    peer = await watcher(switch, "plain PLAYBACK_STOP")
    call = await switch.place_call([])
    await peer.reply(f"api uuid_answer {call.uuid}\n\n")
    await peer.reply(sendmsg("playback", str(wav), call.uuid))
    await peer.reply(sendmsg("playback", str(wav), call.uuid))
    await asyncio.sleep(switch.clock.real(0.5))
    assert (await peer.reply(f"api uuid_break {call.uuid} all\n\n")).text == "+OK\n"
    stop = await peer.event("PLAYBACK_STOP")
    assert stop.get("Playback-Status") == "break"
    assert int(stop.get("variable_playback_ms")) < 1500
    await asyncio.sleep(switch.clock.real(0.3))
    assert [k for _, k in call.events].count("PLAYBACK_START") == 1  # 'all' dropped the queued one
    assert (await peer.reply("api uuid_break nobody\n\n")).text == "-ERR No such channel!\n"
    call.hangup()


async def test_playback_of_silence_and_of_a_missing_file(switch):
    call = await switch.place_call([])
    call.enqueue("playback", "silence_stream://400")
    call.enqueue("playback", "/nonexistent/file.wav")
    await asyncio.sleep(switch.clock.real(0.7))
    kinds = [k for _, k in call.events]
    assert kinds.count("PLAYBACK_START") == kinds.count("PLAYBACK_STOP") == 1
    assert "CHANNEL_PROGRESS_MEDIA" in kinds  # playback pre-answers an unanswered call
    assert call.variables["current_application_response"] == "FILE NOT FOUND"
    assert len(call.heard) >= 400 * 16 and rms(bytes(call.heard)) == 0
    call.hangup()
    await asyncio.wait_for(call.ended.wait(), 3)
    assert call.variables["billsec"] == "0" and call.variables["progress_media_uepoch"] != "0"


async def test_sendmsg_loops_repeat_the_application(switch, tmp_path):
    wav = tone_wav(tmp_path / "beep.wav", 100)
    peer = await watcher(switch, "plain CHANNEL_EXECUTE_COMPLETE")
    call = await switch.place_call([])
    await peer.reply(sendmsg("playback", str(wav), call.uuid, loops="2"))
    done = [await peer.event("CHANNEL_EXECUTE_COMPLETE") for _ in range(2)]
    assert [(e.get("Application"), e.get("variable_current_loop"), e.get("variable_total_loops")) for e in done] \
        == [("playback", "1", "2"), ("playback", "2", "2")]
    assert "current_loop" not in call.variables
    call.hangup()


async def test_classic_fork_has_no_stop_play(tmp_path):
    async with FakeFreeSwitch("ClueCon", esl_port=None, tmp_dir=tmp_path, generation="classic") as fs:
        call = await fs.place_call([])
        assert await fs.api("uuid_audio_fork", f"{call.uuid} start ws://127.0.0.1:9/x mono 8k") == "+OK Success\n"
        assert "CHANNEL_PROGRESS_MEDIA" in [k for _, k in call.events]  # the module pre-answers
        assert await fs.api("uuid_audio_fork", f"{call.uuid} stop_play") == "-ERR Operation Failed\n"
        assert await fs.api("uuid_audio_fork", f"{call.uuid} stop") == "+OK Success\n"


async def test_dtmf_from_the_caller_and_from_voxgate(switch):
    peer = await watcher(switch, "plain DTMF")
    call = await switch.place_call([WaitFor("answer"), Dtmf("12#", gap_s=0.1)])
    await peer.reply(f"api uuid_answer {call.uuid}\n\n")
    pressed = [await peer.event("DTMF") for _ in range(3)]
    assert [(e.get("DTMF-Digit"), e.get("DTMF-Duration"), e.get("DTMF-Source")) for e in pressed] == \
        [("1", "2000", "rtp"), ("2", "2000", "rtp"), ("#", "2000", "rtp")]
    assert list(pressed[0].headers)[-3:] == ["DTMF-Digit", "DTMF-Duration", "DTMF-Source"]
    assert not any(k.startswith("variable_") for k in pressed[0].headers)
    reply = await peer.reply(f"api uuid_send_dtmf {call.uuid} 9w8\n\n")
    assert reply.text == f"+OK {call.uuid} sent DTMF 9w8.\n"
    sent = [await peer.event("DTMF") for _ in range(2)]
    assert [(e.get("DTMF-Digit"), e.get("DTMF-Source")) for e in sent] == [("9", "UNKNOWN"), ("8", "UNKNOWN")]
    assert (call.dtmf_received, call.dtmf_sent) == (["1", "2", "#"], ["9", "8"])
    call.hangup()
    await asyncio.wait_for(call.ended.wait(), 3)
    assert call.variables["digits_dialed"] == "12#98"


async def test_media_clock_keeps_20ms_pacing_and_catches_up_after_a_stall():
    async with FakeFreeSwitch("ClueCon", esl_port=None, speed=1) as fs:
        call = await fs.place_call([])
        call.answer()
        started = time.monotonic()
        await asyncio.sleep(0.3)
        time.sleep(0.1)  # stall the event loop
        await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        ticks = len(call.heard) // 320
        assert ticks == pytest.approx(elapsed / 0.02, abs=3)
        call.hangup()


async def test_transfer_hands_the_call_away(switch):
    peer = await watcher(switch, "plain CHANNEL_EXECUTE CHANNEL_HANGUP")
    call = await switch.place_call([])
    assert (await peer.reply(f"api uuid_transfer {call.uuid} 2000 XML default\n\n")).text == "+OK\n"
    execute = await peer.event("CHANNEL_EXECUTE")
    while execute.get("Application") != "transfer":
        execute = await peer.event("CHANNEL_EXECUTE")
    assert execute.get("Application-Data") == "2000"
    await asyncio.wait_for(call.ended.wait(), 3)
    assert (call.transferred_to, call.hangup_cause) == ("2000", "NORMAL_CLEARING")


async def test_an_application_the_simulator_lacks_hangs_up_like_an_invalid_one(switch):
    call = await switch.place_call([])
    call.enqueue("bridge", "user/1000")
    await asyncio.wait_for(call.ended.wait(), 3)
    assert call.hangup_cause == "DESTINATION_OUT_OF_ORDER"
    assert [k for _, k in call.events].count("CHANNEL_EXECUTE") == 1  # park; no event for 'bridge'


async def test_a_broken_script_hangs_up_its_call(switch):
    call = await switch.place_call([Say("/nonexistent/hello.wav")])
    await asyncio.wait_for(call.ended.wait(), 3)
    assert call.hangup_cause == "NORMAL_CLEARING" and call.script_error.startswith("FileNotFoundError")


async def test_wait_for_timeout_ends_the_script_and_the_call(switch):
    call = await switch.place_call([WaitFor("PLAYBACK_STOP", timeout=0.5), Dtmf("1")])
    await asyncio.wait_for(call.ended.wait(), 3)
    assert call.script_error == "no PLAYBACK_STOP within 0.5 s"
    assert call.dtmf_received == [] and call.hangup_cause == "NORMAL_CLEARING"


async def test_audio_fork_streams_the_call_to_a_websocket(switch):
    """uuid_audio_fork with a real WebSocket server: what the caller says reaches it in 320-byte frames."""
    received: asyncio.Queue = asyncio.Queue()

    async def handler(ws):
        async for message in ws:
            await received.put(message)
        await received.put(None)

    async with serve(handler, "127.0.0.1", 0, subprotocols=["audio.drachtio.org"], compression=None) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/fork"
        peer = await watcher(switch, "plain MEDIA_BUG_START MEDIA_BUG_STOP CUSTOM mod_audio_fork::connect")
        call = await switch.place_call([WaitFor("mod_audio_fork::connect"), Say(Pcm(tone(440, 400, 8000), 8000))])
        await peer.reply(f"api uuid_answer {call.uuid}\n\n")
        start = f"api uuid_audio_fork {call.uuid} start {url} mono 8k {{\"callSid\":\"{call.uuid}\"}}\n\n"
        assert (await peer.reply(start)).text == "+OK Success\n"
        bug_start = await peer.event("MEDIA_BUG_START")
        assert (bug_start.get("Media-Bug-Function"), bug_start.get("Media-Bug-Target")) == ("audio_fork", "N/A")
        assert list(bug_start.headers).index("Media-Bug-Function") < list(bug_start.headers).index("Channel-State")
        connect = await peer.event("mod_audio_fork::connect")
        assert connect.body is None and connect.unique_id == call.uuid
        assert json.loads(await asyncio.wait_for(received.get(), 3)) == {"callSid": call.uuid}
        assert (await peer.reply(start)).text == "-ERR Operation Failed\n"  # one bug per bugname
        frames = [await asyncio.wait_for(received.get(), 3) for _ in range(40)]
        assert {len(f) for f in frames} == {320}
        assert max(rms(f) for f in frames) > 4000
        for verb in ("pause", "resume", "stop_play"):
            assert (await peer.reply(f"api uuid_audio_fork {call.uuid} {verb}\n\n")).text == "+OK Success\n", verb
        stop = f"api uuid_audio_fork {call.uuid} stop {{\"final\":true}}\n\n"
        assert (await peer.reply(stop)).text == "+OK Success\n"
        assert (await peer.event("MEDIA_BUG_STOP")).get("Media-Bug-Function") == "audio_fork"
        rest = []
        while (message := await asyncio.wait_for(received.get(), 3)) is not None:
            rest.append(message)
        assert rest[-1] == '{"final":true}'
        assert (await peer.reply(stop)).text == "-ERR Operation Failed\n"
        assert (await peer.reply(f"api uuid_audio_fork {call.uuid} send_text\n\n")).text == "-ERR no reply\n"
        call.hangup()
