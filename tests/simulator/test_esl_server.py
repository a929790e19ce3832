"""The simulated Event Socket, inbound and outbound, against the bytes a real FreeSWITCH 1.10.12 sent."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from controller.esl import protocol as esl
from controller.simulator.caller import Wait
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.fixture_data import esl_sessions, received_chunks, received_stream, sent_commands
from tests.simulator.sim_helpers import EslPeer, VoxgateOutbound, sendmsg, tone_wav

INBOUND = esl_sessions("esl_inbound_session.json")
OUTBOUND = esl_sessions("esl_outbound_session.json")
JOB_3 = "aaaaaaaa-0000-4000-8000-000000000003"


def wire(frame: esl.EslFrame) -> bytes:
    """A reply frame back to bytes (its headers keep their order)."""
    return esl.encode_frame(list(frame.headers.items()), frame.body)


def recorded_replies(session: dict) -> dict[int, list[bytes]]:
    """Per command sent, the non-event chunks FreeSWITCH answered with before the next command."""
    replies: dict[int, list[bytes]] = {}
    index = -1
    for entry in session["entries"]:
        if entry["dir"] == ">>>":
            index += 1
            replies[index] = []
        elif entry["dir"] == "<<<" and index >= 0 and entry["kind"] != "EOF" \
                and not entry["kind"].startswith("text/event"):
            replies[index].append(entry["bytes_or_text"].encode())
    return replies


def first_frame(data: bytes) -> esl.EslFrame:
    parser = esl.EslParser()
    parser.feed(data)
    return parser.frames()[0]


def recorded_events_all(session: dict) -> list[esl.EslEvent]:
    """The events of a recorded session, in order (not the outbound connect reply)."""
    parser = esl.EslParser()
    parser.feed(received_stream(session))
    return [e for f in parser.frames() if f.content_type.startswith("text/event") and (e := esl.parse_event(f))]


def recorded_events(session: dict, name: str) -> list[esl.EslEvent]:
    return [e for e in recorded_events_all(session) if e.kind == name]


def header_names(event: esl.EslEvent) -> list[str]:
    return [k for k in event.headers if not k.startswith("variable_")]


@pytest.fixture
async def switch(tmp_path):
    async with FakeFreeSwitch("ClueCon", tmp_dir=tmp_path, speed=5) as fs:
        yield fs


async def authed(switch: FakeFreeSwitch, subscribe: str | None = None) -> EslPeer:
    peer = await EslPeer.connect(switch.esl_port)
    assert (await peer.next()).content_type == "auth/request"
    assert (await peer.reply("auth ClueCon\n\n")).reply_text == "+OK accepted"
    if subscribe:
        assert (await peer.reply(f"event {subscribe}\n\n")).ok
    return peer


# ---------------------------------------------------------------------------------------- inbound


async def test_wrong_password_is_byte_for_byte_the_recording(switch):
    session = INBOUND[0]
    peer = await EslPeer.connect(switch.esl_port)
    for command in sent_commands(session):
        peer.send(command.decode())
    await peer.closed()
    assert bytes(peer.raw) == received_stream(session)


async def test_replies_are_byte_for_byte_the_recording(switch):
    session = INBOUND[1]
    commands = [c.decode() for c in sent_commands(session)]
    recorded = recorded_replies(session)
    peer = await EslPeer.connect(switch.esl_port)
    assert wire(await peer.next()) == received_chunks(session)[0]
    # auth, event plain ALL, version, uuid_kill of nobody, unknown api, unknown verb, audio fork on
    # nobody, audio fork usage, bgapi status with a Job-UUID, bgapi originate of the recorded A leg
    for index in (0, 1, 2, 4, 5, 6, 7, 8, 9, 11):
        assert [wire(await peer.reply(commands[index]))] == recorded[index], commands[index]
    job = await peer.event("BACKGROUND_JOB")
    while job.get("Job-UUID") != JOB_3:
        job = await peer.event("BACKGROUND_JOB")
    assert job.body == "+OK a1a1a1a1-0000-4000-8000-00000000000a\n"
    for index in (14, 19):  # uuid_send_dtmf and uuid_kill of the originated leg
        assert [wire(await peer.reply(commands[index]))] == recorded[index], commands[index]
    status = await peer.reply("api status\n\n")
    assert re.fullmatch(r"UP 0 years, 0 days, 0 hours, \d+ minutes?, \d+ seconds?, \d+ milliseconds?, "
                        r"\d+ microseconds?\nFreeSWITCH \(Version 1\.10\.12-release git a88d069 2024-08-02 "
                        r"21:02:27Z 64bit\) is ready\n\d+ session\(s\) since startup\n(.*\n){5}", status.text)
    peer.send(commands[20])  # exit: +OK bye, the disconnect notice, then the socket closes
    rest = [wire(f) for f in await peer.closed() if not f.content_type.startswith("text/event")]
    assert rest == recorded[20]


async def test_api_events_carry_the_recorded_headers(switch):
    recorded = {e.get("API-Command-Argument"): e for e in recorded_events(INBOUND[1], "API")}
    peer = await authed(switch, "plain API")
    for command in ("api uuid_kill 00000000-0000-0000-0000-000000000000",
                    "api uuid_audio_fork 00000000-0000-0000-0000-000000000000 start ws://127.0.0.1:8090/nobody mono 8k",
                    "api uuid_audio_fork"):
        await peer.reply(command + "\n\n")
        ours = await peer.event("API")
        theirs = recorded[ours.get("API-Command-Argument")]
        assert header_names(ours) == header_names(theirs)
        assert ours.get("API-Command-Argument") == theirs.get("API-Command-Argument")
        assert ours.get("Event-Calling-Function") == "switch_api_execute"
        assert ours.get("FreeSWITCH-Hostname") == "sim" and ours.get("FreeSWITCH-IPv4") == "127.0.0.1"


async def test_json_session_replies_and_event_keys_match_the_recording(switch):
    session = INBOUND[2]
    commands = [c.decode() for c in sent_commands(session)]
    recorded = recorded_replies(session)
    parser = esl.EslParser()
    parser.feed(received_stream(session))
    recorded_json = [json.loads(f.body) for f in parser.frames() if f.content_type == "text/event-json"]
    peer = await EslPeer.connect(switch.esl_port)
    await peer.next()
    for index in (0, 1, 2, 3):
        assert [wire(await peer.reply(commands[index]))] == recorded[index], commands[index]
    api_event = await peer.until(lambda f: f.content_type == "text/event-json")
    job = await peer.until(lambda f: f.content_type == "text/event-json" and b"BACKGROUND_JOB" in f.body)
    ours_api, ours_job = json.loads(api_event.body), json.loads(job.body)
    assert list(ours_api) == list(recorded_json[1])  # the API event of bgapi status
    assert list(ours_job) == list(recorded_json[2])
    assert ours_job["Job-UUID"] == "bbbbbbbb-0000-4000-8000-000000000001"
    assert ours_job["_body"].startswith("UP 0 years") and ours_job["Content-Length"] == str(len(ours_job["_body"]))
    peer.send(commands[8])
    rest = [wire(f) for f in await peer.closed() if not f.content_type.startswith("text/event")]
    assert rest == recorded[8]


async def test_commands_before_auth_are_refused(switch):
    peer = await EslPeer.connect(switch.esl_port)
    await peer.next()
    assert (await peer.reply("api status\n\n")).reply_text == "-ERR command not found"
    assert (await peer.reply("event plain ALL\n\n")).reply_text == "-ERR command not found"
    assert (await peer.reply("auth ClueCon\n\n")).reply_text == "+OK accepted"
    assert (await peer.reply("api version\n\n")).text.startswith("FreeSWITCH Version 1.10.12")


async def test_unknown_api_and_no_api_event_without_subscription(switch):
    peer = await authed(switch)
    reply = await peer.reply("api frobnicate now\n\n")
    assert wire(reply) == esl.api_response("-ERR frobnicate Command not found!\n")
    await peer.reply("api version\n\n")
    assert peer.events == []
    assert (await peer.reply("event plain\n\n")).reply_text == "-ERR no keywords supplied"
    assert (await peer.reply("noevents\n\n")).reply_text == "-ERR not listening for events"


async def test_bgapi_generates_a_job_uuid_and_matches_its_background_job(switch):
    peer = await authed(switch, "plain BACKGROUND_JOB")
    reply = await peer.reply("bgapi uuid_getvar nobody x\n\n")
    job_uuid = reply.headers["Job-UUID"]
    assert reply.reply_text == f"+OK Job-UUID: {job_uuid}"
    job = await peer.event("BACKGROUND_JOB")
    assert (job.get("Job-UUID"), job.get("Job-Command"), job.get("Job-Command-Arg")) == \
        (job_uuid, "uuid_getvar", "nobody x")
    assert job.body == "-ERR No such channel!\n"


async def test_subscriptions_formats_and_filters(switch):
    plain = await authed(switch, "plain CHANNEL_PARK CHANNEL_ANSWER")
    as_json = await authed(switch, "json CHANNEL_HANGUP_COMPLETE")
    filtered = await authed(switch, "plain ALL")
    assert (await filtered.reply("filter variable_voxgate_flow second\n\n")).reply_text == \
        "+OK filter added. [variable_voxgate_flow]=[second]"
    first = await switch.place_call([], variables={"voxgate_flow": "first"})
    second = await switch.place_call([], variables={"voxgate_flow": "second"})
    for call in (first, second):
        await plain.reply(f"api uuid_answer {call.uuid}\n\n")
        await plain.event("CHANNEL_ANSWER")
        await plain.reply(f"api uuid_kill {call.uuid} USER_BUSY\n\n")
        await call.ended.wait()
    done = await as_json.until(lambda f: f.content_type == "text/event-json")
    second_done = await as_json.until(lambda f: f.content_type == "text/event-json")
    assert set(plain.event_names()) == {"CHANNEL_PARK", "CHANNEL_ANSWER"}
    assert [json.loads(d.body)["variable_voxgate_flow"] for d in (done, second_done)] == ["first", "second"]
    assert json.loads(done.body)["variable_hangup_cause_q850"] == "17"
    await filtered.reply("api version\n\n")
    assert {e.unique_id for e in filtered.events} == {second.uuid}
    assert "CHANNEL_DESTROY" in filtered.event_names()
    assert (await plain.reply("nixevent CHANNEL_PARK\n\n")).reply_text == "+OK events nixed"
    assert (await plain.reply("noevents\n\n")).reply_text == "+OK no longer listening for events"


async def test_custom_subclasses_follow_the_custom_keyword(switch):
    peer = await authed(switch, "plain CUSTOM mod_audio_fork::connect_failed")
    call = await switch.place_call([])
    await peer.reply(f"api uuid_answer {call.uuid}\n\n")
    reply = await peer.reply(f"api uuid_audio_fork {call.uuid} start ws://127.0.0.1:9/nobody mono 8k\n\n")
    assert reply.text == "+OK Success\n"
    failed = await peer.event("mod_audio_fork::connect_failed")
    assert list(failed.headers)[:2] == ["Event-Subclass", "Event-Name"]
    assert json.loads(failed.body) == {"reason": "Unable to connect"}
    assert peer.event_names() == ["mod_audio_fork::connect_failed"]
    again = await peer.reply(f"api uuid_audio_fork {call.uuid} start ws://127.0.0.1:9/nobody mono 8k\n\n")
    assert again.text == "-ERR Operation Failed\n"  # the failed bug stays attached until stop


async def test_originate_and_show_channels(switch):
    peer = await authed(switch)
    empty = await peer.reply("api show channels as json\n\n")
    assert empty.text == '{"row_count": 0}\n'
    reply = await peer.reply("api originate {origination_uuid=b1b1b1b1-0000-4000-8000-00000000000a,"
                             "origination_caller_id_number=15551230009}loopback/555/default &park()\n\n")
    assert reply.text == "+OK b1b1b1b1-0000-4000-8000-00000000000a\n"
    table = json.loads((await peer.reply("api show channels as json\n\n")).text)
    assert table["row_count"] == 1
    row = table["rows"][0]
    assert {k: row[k] for k in ("uuid", "direction", "name", "state", "cid_num", "dest", "application",
                                "callstate")} == {
        "uuid": "b1b1b1b1-0000-4000-8000-00000000000a", "direction": "outbound", "name": "loopback/555-a",
        "state": "CS_EXECUTE", "cid_num": "15551230009", "dest": "555", "application": "park",
        "callstate": "ACTIVE"}
    assert (await peer.reply("api show channels count\n\n")).text == "\n1 total.\n"
    assert (await peer.reply("api originate sofia/gateway/x/1000 &park()\n\n")).text == "-ERR CHAN_NOT_IMPLEMENTED\n"


# ---------------------------------------------------------------------------------------- outbound


async def test_outbound_session_follows_the_recording(switch, tmp_path):
    """Recorded call 1: connect, myevents, playback events, linger, getvar, answer, playback, hangup, exit."""
    session = OUTBOUND[0]
    commands = [c.decode() for c in sent_commands(session)]
    recorded = recorded_replies(session)
    wav = tone_wav(tmp_path / "short8k.wav", 400)
    async with VoxgateOutbound() as voxgate:
        call = await switch.place_call([], destination="300", caller_id_number="15551230003", caller_id_name="",
                                       variables={"my_custom_var": "hello_from_dialplan"},
                                       outbound_socket=voxgate.address)
        peer = await voxgate.accept()
        connect = await peer.reply(commands[0])
        theirs = esl.connect_reply_headers(first_frame(recorded[0][0]))
        ours = esl.connect_reply_headers(connect)
        # same headers in the same order, but for the recording's originate variables and the order of
        # current_application(_data), which FreeSWITCH sets in an order the captures do not pin down
        moving = ("variable_origination", "variable_current_application")
        assert [k for k in ours if not k.startswith(moving)] == [k for k in theirs if not k.startswith(moving)]
        assert {k for k in ours if k.startswith(moving[1])} == {k for k in theirs if k.startswith(moving[1])}
        assert ours["Unique-ID"] == call.uuid and ours["Channel-Name"] == "loopback/300-b"
        assert ours["variable_my_custom_var"] == "hello_from_dialplan"
        assert ours["variable_current_application_data"] == f"127.0.0.1:{voxgate.address[1]} async full"
        for index in (1, 2, 3, 4, 5):  # myevents, event plain PLAYBACK_*, linger, getvar, sendmsg answer
            assert [wire(await peer.reply(commands[index]))] == recorded[index], commands[index]
        await peer.event("CHANNEL_EXECUTE_COMPLETE")
        playback = sendmsg("playback", str(wav), event_uuid="11110000-0000-4000-8000-0000000000e1")
        assert (await peer.reply(playback)).reply_text == "+OK"
        stop = await peer.event("PLAYBACK_STOP")
        assert (stop.get("Playback-Status"), stop.get("variable_playback_samples")) == ("done", "3200")
        complete = await peer.event("CHANNEL_EXECUTE_COMPLETE")
        assert (complete.get("Application-UUID"), complete.get("Application-Response")) == \
            ("11110000-0000-4000-8000-0000000000e1", "FILE PLAYED")
        getvar = await peer.reply(f"api uuid_getvar {call.uuid} my_custom_var\n\n")
        assert wire(getvar) == recorded[7][0]
        assert (await peer.reply(commands[8])).reply_text == "+OK"  # sendmsg hangup
        linger = await peer.until(lambda f: f.content_type == "text/disconnect-notice")
        assert wire(linger) == recorded[8][1].replace(b"28023d39-040e-4616-9a6a-e5a441533fca", call.uuid.encode())
        recorded_names = [e.kind for e in recorded_events_all(session)]
        assert peer.event_names() == recorded_names
        for ours_event, theirs_event in zip(peer.events, recorded_events_all(session)):
            assert header_names(ours_event) == header_names(theirs_event), ours_event.kind
        await asyncio.sleep(0.2)
        assert not call.ended.is_set()  # lingering forever holds the session: no CHANNEL_DESTROY yet
        peer.send(commands[9])  # exit
        rest = [wire(f) for f in await peer.closed()]
        assert rest == [r.replace(b"28023d39-040e-4616-9a6a-e5a441533fca", call.uuid.encode())
                        for r in recorded[9]]
        await asyncio.wait_for(call.ended.wait(), 2)
    done = dict(call.variables)
    assert (done["hangup_cause"], done["last_app"], done["last_arg"]) == ("NORMAL_CLEARING", "playback", str(wav))


async def test_linger_n_says_goodbye_after_n_seconds(switch):
    async with VoxgateOutbound() as voxgate:
        call = await switch.place_call([Wait(0.5)], outbound_socket=voxgate.address)
        peer = await voxgate.accept()
        await peer.reply("connect\n\n")
        assert (await peer.reply("myevents\n\n")).reply_text == "+OK Events Enabled"
        assert (await peer.reply("myevents\n\n")).reply_text == "-ERR aready enabled."
        assert (await peer.reply("linger 2\n\n")).reply_text == "+OK will linger 2 seconds"
        await peer.reply(sendmsg("answer"))
        await peer.event("CHANNEL_ANSWER")
        await peer.reply(f"api uuid_kill {call.uuid} ORIGINATOR_CANCEL\n\n")
        complete = await peer.event("CHANNEL_HANGUP_COMPLETE")
        assert complete.get("variable_hangup_cause_q850") == "16"  # 487 is not Q.850: FreeSWITCH says 16
        linger = await peer.next()
        assert linger.headers == {"Content-Type": "text/disconnect-notice", "Controlled-Session-UUID": call.uuid,
                                  "Content-Disposition": "linger", "Channel-Name": call.name,
                                  "Linger-Time": "2", "Content-Length": "0"}
        started = time.monotonic()
        goodbye = await peer.next()
        assert time.monotonic() - started >= 2 / switch.clock.speed - 0.05
        assert goodbye.headers["Content-Disposition"] == "disconnect"
        assert goodbye.body.decode() == esl.DISCONNECT_TEXT
        assert await peer.closed() == []
        await asyncio.wait_for(call.ended.wait(), 2)


async def test_without_linger_the_socket_closes_at_hangup(switch):
    async with VoxgateOutbound() as voxgate:
        call = await switch.place_call([], outbound_socket=voxgate.address)
        peer = await voxgate.accept()
        await peer.reply("connect\n\n")
        await peer.reply("myevents json\n\n")
        await peer.reply(sendmsg("hangup", "USER_BUSY"))
        rest = await peer.closed()
        kinds = [json.loads(f.body)["Event-Name"] if f.content_type == "text/event-json" else f.content_type
                 for f in rest]
        assert kinds[-2:] == ["CHANNEL_HANGUP_COMPLETE", "text/disconnect-notice"]
        assert "CHANNEL_DESTROY" not in kinds
        await asyncio.wait_for(call.ended.wait(), 2)
        assert call.hangup_cause == "USER_BUSY"


async def test_exit_mid_playback_finishes_the_file_then_hangs_up(switch, tmp_path):
    wav = tone_wav(tmp_path / "long.wav", 1500)
    async with VoxgateOutbound() as voxgate:
        call = await switch.place_call([], outbound_socket=voxgate.address)
        peer = await voxgate.accept()
        await peer.reply("connect\n\n")
        await peer.reply("myevents\n\n")
        await peer.reply(sendmsg("answer"))
        await peer.reply(sendmsg("playback", str(wav)))
        await peer.reply("event plain PLAYBACK_START\n\n")
        await peer.event("CHANNEL_EXECUTE")
        await peer.event("CHANNEL_EXECUTE")
        assert (await peer.reply("exit\n\n")).reply_text == "+OK bye"
        await peer.closed()
        await asyncio.wait_for(call.ended.wait(), 3)
    assert call.hangup_cause == "NORMAL_CLEARING"
    assert call.heard_pcm().duration == pytest.approx(1.5, abs=0.1)
    assert [k for _, k in call.events if k.startswith("PLAYBACK")] == ["PLAYBACK_START", "PLAYBACK_STOP"]


async def test_outbound_connection_refused_ends_the_call(switch):
    async with VoxgateOutbound() as voxgate:
        address = voxgate.address
    call = await switch.place_call([], outbound_socket=address)
    await asyncio.wait_for(call.ended.wait(), 2)
    # the socket application returns after 'Socket Error!' and the dialplan runs out
    assert call.hangup_cause == "NORMAL_CLEARING"
    assert not call.answered


async def test_myevents_keeps_other_channels_out(switch):
    async with VoxgateOutbound() as voxgate:
        mine = await switch.place_call([], outbound_socket=voxgate.address)
        peer = await voxgate.accept()
        await peer.reply("connect\n\n")
        await peer.reply("myevents\n\n")
        other = await switch.place_call([])
        await peer.reply(f"api uuid_answer {other.uuid}\n\n")
        await peer.reply(sendmsg("answer"))
        await peer.event("CHANNEL_ANSWER")
        await peer.reply(f"api uuid_kill {other.uuid}\n\n")
        await asyncio.wait_for(other.ended.wait(), 2)
        await peer.reply("api version\n\n")
        assert {e.unique_id for e in peer.events} == {mine.uuid}
        assert "API" not in peer.event_names()
        await peer.reply("event plain BACKGROUND_JOB\n\n")
        job_uuid = (await peer.reply(f"bgapi uuid_getvar {mine.uuid} uuid\n\n")).headers["Job-UUID"]
        job = await peer.event("BACKGROUND_JOB")  # no Unique-ID, but Job-Owner-UUID names this channel
        assert (job.get("Job-UUID"), job.get("Job-Owner-UUID"), job.body) == (job_uuid, mine.uuid, mine.uuid)


async def test_dropped_outbound_socket_ends_the_call(switch):
    async with VoxgateOutbound() as voxgate:
        call = await switch.place_call([], outbound_socket=voxgate.address)
        peer = await voxgate.accept()
        await peer.reply("connect\n\n")
        await peer.reply("myevents\n\n")
        await peer.reply(sendmsg("answer"))
        await peer.event("CHANNEL_EXECUTE_COMPLETE")
        call.drop_outbound_socket()
        assert [f for f in await peer.closed() if f.content_type == "text/disconnect-notice"] == []
        await asyncio.wait_for(call.ended.wait(), 2)
    assert call.hangup_cause == "NORMAL_CLEARING" and call.answered
