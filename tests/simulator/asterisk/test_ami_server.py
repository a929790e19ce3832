"""The fake Asterisk's AMI against the recorded session: exact bytes where nothing varies, the recorded
key order everywhere else; login, events of a call, and the call-control actions voxgate sends."""

from __future__ import annotations

import asyncio
from functools import cache

import pytest

from controller.asterisk import ami
from controller.asterisk.audiosocket import Audio
from controller.audio import rms
from controller.simulator.asterisk.fake_asterisk import FakeAsterisk
from controller.simulator.caller import Dtmf, Hangup, Wait, WaitFor
from tests.asterisk.ami_fixtures import received, sent
from tests.simulator.asterisk.ast_helpers import AmiClient, AudioSocketServer

# Recorded actions replayed as they were sent: their replies do not depend on the PBX's state.
REPLAYED = ("events-on", "unknown-action", "getvar-missing-variable", "setvar-global",
            "getvar-global", "userevent-1")


@cache
def recorded_messages() -> list[tuple[ami.AmiMessage, bytes]]:
    out = []
    for item, raw in received():
        if item["kind"] == "banner":
            continue
        parser = ami.AmiParser()
        parser.feed(raw)
        out.append((parser.messages()[0], raw))
    return out


def recorded_reply(action_id: str) -> bytes:
    return next(raw for m, raw in recorded_messages() if isinstance(m, ami.AmiResponse) and m.action_id == action_id)


def recorded_event(name: str, of_channel: bool = True) -> ami.AmiEvent:
    """The first recorded event called `name`, preferring one about a channel (not a global VarSet)."""
    events = [m for m, _ in recorded_messages() if isinstance(m, ami.AmiEvent) and m.name == name]
    about = [m for m in events if m.get("Uniqueid") not in (None, "none")]
    return (about if of_channel and about else events)[0]


def keys(message: ami.AmiEvent | ami.AmiResponse) -> list[str]:
    return [k for k, _ in message.fields]


def sent_action(action_id: str) -> bytes:
    return next(raw for raw in sent() if f"ActionID: {action_id}\r\n".encode() in raw)


@pytest.fixture
async def server():
    async with AudioSocketServer() as srv:
        yield srv


@pytest.fixture
async def pbx(server):
    async with FakeAsterisk("voxgate", "s3cret", audiosocket=server.address, speed=4) as fake:
        yield fake


async def test_banner_refused_login_and_permission_denied_are_the_recorded_bytes(pbx):
    bad = await AmiClient.connect(pbx.ami_port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    bad.writer.write(ami.login_action("login-bad", "voxgate", "wrong-secret"))
    await asyncio.wait_for(bad.closed.wait(), 3)
    assert loop.time() - started >= 0.9 / pbx.clock.speed  # the anti brute-force second, simulated
    assert bytes(bad.raw) == received()[0][1] + recorded_reply("login-bad")

    client = await AmiClient.connect(pbx.ami_port)
    client.writer.write(sent_action("ping-before-login"))
    await client.until(lambda m: isinstance(m, ami.AmiResponse))
    assert bytes(client.raw) == received()[0][1] + recorded_reply("ping-before-login")
    await client.close()


async def test_session_replies_match_the_recording(pbx):
    client = await AmiClient.connect(pbx.ami_port)
    client.writer.write(sent_action("login-ok").replace(b"Username: test", b"Username: voxgate")
                        .replace(b"Secret: testsecret", b"Secret: s3cret"))
    login = await client.until(lambda m: isinstance(m, ami.AmiResponse))
    assert client.raw.endswith(recorded_reply("login-ok"))
    ping = await client.ask("Ping")
    assert keys(ping) == ["Response", "ActionID", "Ping", "Timestamp"] and login.ok
    for action_id in REPLAYED:
        start = len(client.raw)
        client.writer.write(sent_action(action_id))
        await client.until(lambda m, a=action_id: isinstance(m, ami.AmiResponse) and m.action_id == a)
        assert bytes(client.raw[start:]).startswith(recorded_reply(action_id)), action_id
    bad_format = await client.event("RequestBadFormat")
    assert keys(bad_format) == keys(recorded_event("RequestBadFormat", of_channel=False))
    assert bad_format.get("RequestType") == "Action: FooBar"
    user = await client.event("UserEvent")
    assert user.fields == recorded_event("UserEvent", of_channel=False).fields
    varset = await client.event("VarSet")
    assert varset.fields == recorded_event("VarSet", of_channel=False).fields
    start = len(client.raw)
    client.writer.write(sent_action("logoff-1"))
    await asyncio.wait_for(client.closed.wait(), 3)
    assert bytes(client.raw[start:]) == recorded_reply("logoff-1")


async def test_a_call_shows_the_contract_events_in_the_recorded_forms(pbx, server):
    client = await AmiClient.logged_in(pbx.ami_port)
    call = await pbx.place_call([WaitFor("park"), Dtmf("4"), Wait(0.3), Hangup()], flow="support",
                                variables={"CUSTOMER": "42"}, caller_id_number="5551000", caller_id_name="Ann")
    await server.accept()
    await asyncio.wait_for(call.ended.wait(), 5)
    hangup = await client.event("Hangup", Channel=call.name)
    ours = client.events(call.name)
    assert [(e.name, e.get("Variable") or e.get("Application") or e.get("UserEvent")) for e in ours] == [
        ("Newchannel", None), ("VarSet", "CUSTOMER"), ("Newexten", "Answer"), ("Newstate", None),
        ("Newexten", "Set"), ("VarSet", "VOXGATE_ID"), ("Newexten", "Set"), ("VarSet", "VOXGATE_FLOW"),
        ("Newexten", "UserEvent"), ("UserEvent", "VoxgateCall"), ("Newexten", "AudioSocket"),
        ("DTMFBegin", None), ("DTMFEnd", None), ("HangupRequest", None), ("Cdr", None), ("Hangup", None)]
    user = next(e for e in ours if e.name == "UserEvent")
    assert [(k, v) for k, v in user.fields][-4:] == [("UserEvent", "VoxgateCall"), ("VoxgateId", call.voxgate_id),
                                                     ("Flow", "support"), ("Media", "audiosocket")]
    assert (user.get("CallerIDNum"), user.get("CallerIDName"), user.get("Exten"), user.get("Context")) == \
        ("5551000", "Ann", "1000", "voxgate")
    assert user.uniqueid == user.linkedid == call.uniqueid
    for event in ours:
        recorded = keys(recorded_event(event.name))
        if event.name == "UserEvent":  # its own headers follow UserEvent:
            recorded = recorded[:recorded.index("UserEvent") + 1]
        assert keys(event)[:len(recorded)] == recorded, event.name
    cdr = next(e for e in ours if e.name == "Cdr")
    assert (cdr.get("Disposition"), cdr.get("LastApplication"), cdr.get("CallerID")) == \
        ("ANSWERED", "AudioSocket", '"Ann" <5551000>')
    assert (hangup.get("Cause"), hangup.get("Cause-txt")) == ("16", "Normal Clearing")
    await client.close()


async def test_getvar_playdtmf_redirect_and_hangup_on_a_live_call(pbx, server):
    client = await AmiClient.logged_in(pbx.ami_port)
    call = await pbx.place_call([WaitFor("hangup", timeout=30)])
    peer = await server.accept()
    await peer.wait(lambda: peer.of(Audio))
    reply = await client.ask("Getvar", {"Channel": call.name, "Variable": "VOXGATE_ID"})
    assert keys(reply) == ["Response", "ActionID", "Variable", "Value"] and reply.get("Value") == call.voxgate_id
    state = await client.ask("Getvar", {"Channel": call.name, "Variable": "CHANNEL(state)"})
    assert state.get("Value") == "Up"
    missing = await client.ask("Getvar", {"Channel": "PJSIP/nobody-00000000", "Variable": "X"})
    assert keys(missing) == keys(next(m for m, _ in recorded_messages() if getattr(m, "action_id", "") ==
                                      "getvar-nochan")) and missing.message == "No such channel"

    loop = asyncio.get_running_loop()
    started = loop.time()
    played = await client.ask("PlayDTMF", {"Channel": call.name, "Digit": "5", "Duration": 200})
    assert played.message == "DTMF successfully queued" and loop.time() - started >= 0.19 / pbx.clock.speed
    assert call.dtmf_sent == ["5"]
    await asyncio.sleep(0.1)
    assert max(rms(bytes(call.heard[i:i + 320])) for i in range(0, len(call.heard), 320)) > 1000

    muted = await client.ask("MuteAudio", {"Channel": call.name, "Direction": "in", "State": "on"})
    assert keys(muted) == ["Response", "ActionID"]  # no Message, as recorded
    await asyncio.sleep(0.05)
    frames = len(peer.of(Audio))
    await asyncio.sleep(0.1)
    assert len(peer.of(Audio)) == frames  # the caller's audio no longer reaches voxgate
    await client.ask("MuteAudio", {"Channel": call.name, "Direction": "in", "State": "off"})
    await peer.wait(lambda: len(peer.of(Audio)) > frames)

    moved = await client.ask("Redirect", {"Channel": call.name, "Context": "default", "Exten": "hold",
                                          "Priority": 1})
    assert moved.message == "Redirect successful"
    await asyncio.wait_for(peer.eof.wait(), 3)  # the AudioSocket leg is closed, the call goes on
    wait = await client.event("Newexten", Channel=call.name, Application="Wait")
    assert (wait.get("Context"), wait.get("Exten"), wait.get("Priority")) == ("default", "hold", "1")
    assert not call.hung_up and call.redirects == [("default", "hold", 1)]

    start = len(client.messages)
    client.send("Hangup", {"Channel": call.name, "Cause": 16}, action_id="hangup-1")
    await asyncio.wait_for(call.ended.wait(), 3)
    await client.event("Hangup", Channel=call.name)
    after = [(m.name if isinstance(m, ami.AmiEvent) else m.message) for m in client.messages[start:]
             if isinstance(m, ami.AmiResponse) or m.get("Channel") == call.name]
    assert after == ["Channel Hungup", "SoftHangupRequest", "Cdr", "Hangup"]
    nochan = await client.ask("Hangup", {"Channel": "PJSIP/nobody-00000000"})
    assert nochan.message == "No such channel" and keys(nochan) == ["Response", "ActionID", "Message"]
    await client.close()


async def test_core_show_channels_lists_the_caller_and_its_media_channel(pbx, server):
    client = await AmiClient.logged_in(pbx.ami_port)
    call = await pbx.place_call([WaitFor("hangup", timeout=30)], media="audiosocket-dial")
    await server.accept()
    await client.event("BridgeEnter", Channel=call.name)
    collector = ami.ListCollector()
    collector.expect("coreshowchannels-1")
    start = len(client.messages)
    client.send("CoreShowChannels", action_id="coreshowchannels-1")
    await client.event("CoreShowChannelsComplete")
    for message in client.messages[start:]:
        collector.feed(message)
    (listed,) = collector.finished()
    assert keys(listed.response) == keys(next(m for m, _ in recorded_messages()
                                              if getattr(m, "action_id", "") == "coreshowchannels-1"))
    assert [e.get("Channel") for e in listed.events] == [call.name, call.dialed[0].name]
    assert all(keys(e) == keys(recorded_event("CoreShowChannel")) for e in listed.events)
    assert listed.events[0].get("Application") == "Dial" and listed.events[0].get("BridgeId")
    assert keys(listed.complete) == keys(recorded_event("CoreShowChannelsComplete"))
    assert listed.complete.get("ListItems") == "2"
    call.hangup()
    await asyncio.wait_for(call.ended.wait(), 3)
    await client.close()


async def test_originate_async_sync_and_unknown_technology(pbx, server):
    pbx.callee_script = (Wait(0.5), Hangup())
    client = await AmiClient.logged_in(pbx.ami_port)
    reply = await client.ask("Originate", {"Channel": "PJSIP/5550100@trunk", "Context": "voxgate", "Exten": "2000",
                                           "Priority": 1, "CallerID": '"Voxgate" <2000>', "Async": "true",
                                           "ChannelId": "out-1", "Variable": {"VOXGATE_FLOW": "outbound"}})
    assert reply.message == "Originate successfully queued"
    answered = await client.event("OriginateResponse", ActionID=reply.action_id)
    assert keys(answered) == keys(recorded_event("OriginateResponse"))
    assert (answered.get("Response"), answered.get("Reason"), answered.uniqueid) == ("Success", "4", "out-1")
    user = await client.event("UserEvent", Uniqueid="out-1")
    assert user.get("Flow") == "outbound"
    await server.accept()
    await client.event("Hangup", Uniqueid="out-1")

    failed = await client.ask("Originate", {"Channel": "Foo/bar", "Application": "Wait", "Data": "1",
                                            "Async": "true"})
    outcome = await client.event("OriginateResponse", ActionID=failed.action_id)
    recorded = next(m for m, _ in recorded_messages() if isinstance(m, ami.AmiEvent)
                    and m.get("ActionID") == "originate-badtech")
    assert [f for f in outcome.fields if f[0] != "ActionID"] == [f for f in recorded.fields if f[0] != "ActionID"]
    assert ami.originate_outcome(outcome).result == "failed"

    sync = await client.ask("Originate", {"Channel": "Foo/bar", "Application": "Wait", "Data": "1"})
    assert (sync.response, sync.message) == ("Error", "Originate failed")
    ok = await client.ask("Originate", {"Channel": "PJSIP/5550101@trunk", "Application": "Wait", "Data": "1"})
    assert ok.message == "Originate successfully queued"
    await asyncio.sleep(0.1)
    assert not any(isinstance(m, ami.AmiEvent) and m.name == "OriginateResponse" and m.action_id == ok.action_id
                   for m in client.messages)
    await client.close()
