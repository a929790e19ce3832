"""AmiClient over real sockets, against a fake Asterisk replaying the bytes Asterisk 22.10.1 sent."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import Callable

import pytest

from controller.asterisk import ami
from controller.asterisk.manager import (
    AmiActionError, AmiClient, AmiConnectionLost, AmiLoginError, AmiState, AmiTimeout,
)
from tests.asterisk.ami_fixtures import index, received, sent

SECRET = "testsecret"  # manager.conf of the recording
WRONG_SECRET = "wrong-secret"
_ACTION_ID = re.compile(rb"ActionID: ([^\r]*)\r\n")


def _action_id(raw: bytes) -> str:
    match = _ACTION_ID.search(raw)
    assert match is not None
    return match.group(1).decode()


def _key(raw: bytes) -> bytes:
    """An action with its ActionID blanked: ours and the recorded one then compare equal."""
    return _ACTION_ID.sub(b"ActionID: *\r\n", raw, count=1)


def _with_id(raw: bytes, old: str, new: str) -> bytes:
    return raw.replace(b"ActionID: " + old.encode() + b"\r\n", b"ActionID: " + new.encode() + b"\r\n")


def _recording() -> tuple[bytes, dict[str, bytes], dict[str, list[bytes]], dict[str, float]]:
    """The banner; each recorded action by ActionID; what Asterisk sent after it; how long its reply took."""
    rx, tx = iter(received()), iter(sent())
    banner, actions, replies, delays = b"", {}, {}, {}
    current, sent_at = None, 0.0
    for item in index():
        if item["dir"] == ">>>":
            raw = next(tx)
            current, sent_at = _action_id(raw), item["t_ms"]
            actions[current], replies[current] = raw, []
            continue
        _, raw = next(rx)
        if item["kind"] == "banner":
            banner = banner or raw
        elif current is not None:
            if not replies[current]:
                delays[current] = (item["t_ms"] - sent_at) / 1000
            replies[current].append(raw)
    return banner, actions, replies, delays


BANNER, ACTIONS, REPLIES, REPLY_DELAYS = _recording()
LOGIN_REFUSAL_DELAY = REPLY_DELAYS["login-bad"]  # Asterisk's anti brute-force delay, ~1 s
CLOSES_AFTER = {"login-bad", "logoff-1"}  # Asterisk closes the socket after these replies


def _parse(raw: bytes) -> ami.AmiResponse | ami.AmiEvent:
    parser = ami.AmiParser()
    parser.feed(raw)
    (message,) = parser.messages()
    assert not isinstance(message, ami.Banner)
    return message


def _recorded(recorded_id: str, ours: str) -> bytes:
    """The recorded action, as this client would send it under its own ActionID."""
    return _with_id(ACTIONS[recorded_id], recorded_id, ours)


class FakeAsterisk:
    """Asterisk's end of AMI: answers each action with what Asterisk sent after the same recorded action.

    Actions are matched byte for byte with the ActionID blanked (Login by its secret); repeated
    actions take the recorded replies in turn. Replies are the recorded bytes, with only the
    ActionID rewritten to the client's.
    """

    def __init__(self) -> None:
        self.replies: dict[str, list[bytes]] = dict(REPLIES)
        self.delays: dict[str, float] = {"login-bad": LOGIN_REFUSAL_DELAY}
        self.drop_on: str | None = None  # first connection closes, unanswered, on this action
        self.actions: list[list[bytes]] = []  # what each connection received
        self._by_key: dict[bytes, list[str]] = {}
        for recorded_id, raw in ACTIONS.items():
            if not recorded_id.startswith("login") and recorded_id != "ping-before-login":
                self._by_key.setdefault(_key(raw), []).append(recorded_id)
        self._seen: dict[bytes, int] = {}
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def connections(self) -> int:
        return len(self.actions)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def push(self, raw: bytes, split_at: int | None = None) -> None:
        """Unsolicited bytes on the live connection, optionally in two TCP writes."""
        writer = self._writers[-1]
        for part in (raw,) if split_at is None else (raw[:split_at], raw[split_at:]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.02)

    def _recorded_id(self, raw: bytes) -> str:
        if raw.startswith(b"Action: Login\r\n"):
            return "login-ok" if b"\r\nSecret: " + SECRET.encode() + b"\r\n" in raw else "login-bad"
        candidates = self._by_key.get(_key(raw), ["unknown-action"])
        turn = self._seen.get(_key(raw), 0)
        self._seen[_key(raw)] = turn + 1
        return candidates[min(turn, len(candidates) - 1)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received_here: list[bytes] = []
        self.actions.append(received_here)
        self._writers.append(writer)
        writer.write(BANNER)
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                received_here.append(raw)
                recorded = self._recorded_id(raw)
                if recorded == self.drop_on and self.connections == 1:
                    break
                reply = b"".join(_with_id(m, recorded, _action_id(raw)) for m in self.replies[recorded])
                delay = self.delays.get(recorded, 0.0)
                if delay:
                    task = asyncio.create_task(self._later(writer, delay, reply, recorded in CLOSES_AFTER))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    continue
                writer.write(reply)
                await writer.drain()
                if recorded in CLOSES_AFTER:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        writer.close()

    @staticmethod
    async def _later(writer: asyncio.StreamWriter, delay: float, reply: bytes, close: bool) -> None:
        await asyncio.sleep(delay)
        if not writer.is_closing():
            writer.write(reply)
            if close:
                writer.close()


async def _until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def asterisk():
    server = FakeAsterisk()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_client(asterisk):
    clients: list[AmiClient] = []

    def make(secret: str = SECRET, port: int | None = None,
             **options) -> tuple[AmiClient, list[ami.AmiEvent]]:
        events: list[ami.AmiEvent] = []
        settings = dict(connect_timeout=3.0, action_timeout=1.0, backoff=(0.01, 0.05), ping_interval=None)
        options.setdefault("on_event", events.append)
        client = AmiClient("127.0.0.1", port or asterisk.port, "test", secret, **{**settings, **options})
        clients.append(client)
        return client, events

    yield make
    for client in clients:
        await client.stop(0.2)


async def _started(make_client, **options) -> tuple[AmiClient, list[ami.AmiEvent]]:
    client, events = make_client(**options)
    await client.start(timeout=3)
    return client, events


# ---------------------------------------------------------------- login and lifecycle


async def test_start_waits_for_the_login_reply_then_runs_on_connected(asterisk, make_client):
    calls: list[bool] = []

    async def on_connected() -> None:
        calls.append(client.connected)

    client, _ = make_client(on_connected=on_connected)
    assert client.state is AmiState.IDLE
    await client.start(timeout=3)
    assert asterisk.actions == [[b"Action: Login\r\nActionID: voxgate-1\r\nUsername: test\r\n"
                                 b"Secret: testsecret\r\nEvents: on\r\n\r\n"]]
    assert calls == [True] and client.connected and client.state is AmiState.CONNECTED
    assert repr(client) == f"<AmiClient test@127.0.0.1:{asterisk.port} connected>"


async def test_refused_login_raises_after_the_recorded_delay_and_is_not_retried(asterisk, make_client,
                                                                                  caplog):
    caplog.set_level(logging.DEBUG)
    client, _ = make_client(secret=WRONG_SECRET)
    began = time.monotonic()
    with pytest.raises(AmiLoginError, match="Authentication failed") as caught:
        await client.start(timeout=3)
    assert time.monotonic() - began >= LOGIN_REFUSAL_DELAY * 0.9
    assert isinstance(caught.value, ami.AmiLoginError)  # the sans-I/O layer's type too
    await asyncio.sleep(0.1)
    assert asterisk.connections == 1 and client.state is AmiState.STOPPED
    assert WRONG_SECRET not in str(caught.value) + caplog.text + repr(client)


async def test_start_gives_up_after_its_timeout_when_nothing_listens(make_client):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client, _ = make_client(port=port)
    began = time.monotonic()
    with pytest.raises(AmiTimeout, match=f"127.0.0.1:{port} not available within 0.3 s"):
        await client.start(timeout=0.3)
    assert time.monotonic() - began < 1.0 and client.state is AmiState.STOPPED


async def test_stop_logs_off_closes_and_does_not_reconnect(asterisk, make_client):
    client, _ = await _started(make_client)
    await client.stop()
    assert asterisk.actions[0][-1] == _recorded("logoff-1", "voxgate-2")
    await asyncio.sleep(0.1)
    assert asterisk.connections == 1 and client.state is AmiState.STOPPED
    with pytest.raises(AmiConnectionLost):
        await client.send("Ping")


async def test_stop_is_bounded_when_logoff_gets_no_reply(asterisk, make_client):
    asterisk.delays["logoff-1"] = 5.0
    client, _ = await _started(make_client)
    began = time.monotonic()
    await client.stop(timeout=0.2)
    assert time.monotonic() - began < 0.5 and not client.connected


# ---------------------------------------------------------------- actions and replies


async def test_reply_is_matched_even_when_an_event_comes_first(make_client):
    client, events = await _started(make_client)
    response = await client.send("Getvar", {"Variable": "LABGLOBAL"})  # recorded: VarSet, then the Response
    assert response.ok and response.get("Value") == "hello world"
    assert [(e.name, e.get("Uniqueid")) for e in events] == [("VarSet", "none")]


async def test_replies_are_matched_by_action_id_not_by_order(asterisk, make_client):
    asterisk.delays["corestatus-1"] = 0.2
    client, _ = await _started(make_client)
    status = asyncio.create_task(client.send("CoreStatus"))
    version = await client.send("Command", {"Command": "core show version"})
    assert not status.done()
    assert version.output == ("Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on "
                              "2026-11-23 22:11:44 UTC",)
    assert (await status).get("CoreProcessedCalls") == "43"
    listing = await client.send("Command", {"Command": "dialplan show 110@test"})
    assert len(listing.output) == 9 and listing.output[7] == ""  # a blank CLI line stays a line


async def test_an_action_times_out_and_its_late_reply_is_dropped(asterisk, make_client):
    asterisk.delays["corestatus-1"] = 0.3
    client, events = await _started(make_client, action_timeout=0.1)
    with pytest.raises(AmiTimeout, match="no reply to CoreStatus within 0.1 s"):
        await client.send("CoreStatus")
    assert (await client.send("Command", {"Command": "core show version"})).ok
    await asyncio.sleep(0.3)  # the late CoreStatus reply has arrived by now
    assert (await client.send("Ping")).get("Ping") == "Pong"
    assert client.connected and events == []


async def test_list_collects_items_that_overtake_the_response(asterisk, make_client):
    response, *items = REPLIES["coreshowchannels-1"]
    unrelated = REPLIES["originate-call2"][-1]  # a Newexten of the parked call
    asterisk.replies["coreshowchannels-1"] = [items[0], unrelated, *items[1:], response]
    client, events = await _started(make_client)
    channels = await client.core_show_channels()
    assert [(c.uniqueid, c.linkedid) for c in channels] == [("lab-park-1", "lab-park-1"),
                                                             ("lab-park-2", "lab-park-1")]
    assert channels[0].get("BridgeId") == ""  # an empty last header is kept (panoramisk drops it)
    assert [e.name for e in events] == ["Newexten"]  # the items are the list's, not on_event's
    status = await client.list("Status", {"Channel": "Local/park@test-00000017;2",
                                          "Variables": "PARKVAR,CHANNEL(state)"})
    assert status.ok and [e.name for e in status.events] == ["Status"]
    assert status.complete is not None and status.complete.name == "StatusComplete"


CONVENIENCE = [
    ("hangup-1", lambda c: c.hangup("Local/park@test-00000017;2", 16), None),
    ("redirect-1", lambda c: c.redirect("Local/park@test-00000017;1", "test", "redirected"), None),
    ("setvar-1", lambda c: c.setvar("Local/park@test-00000017;2", "PARKVAR", "changed-by-ami"), None),
    ("getvar-1", lambda c: c.getvar("Local/park@test-00000017;2", "PARKVAR"), "initial"),
    ("getvar-func", lambda c: c.getvar("Local/park@test-00000017;2", "CHANNEL(state)"), "Up"),
    ("mute-1", lambda c: c.mute_audio("Local/park@test-00000017;1", "all", True), None),
    ("unmute-1", lambda c: c.mute_audio("Local/park@test-00000017;1", "all", False), None),
    ("playdtmf-1", lambda c: c.play_dtmf("Local/park@test-00000017;1", "5", 150), None),
]


@pytest.mark.parametrize(("recorded_id", "call", "expected"), CONVENIENCE, ids=[c[0] for c in CONVENIENCE])
async def test_convenience_actions_send_the_recorded_bytes(asterisk, make_client, recorded_id, call,
                                                           expected):
    client, _ = await _started(make_client)
    assert await call(client) == expected
    assert asterisk.actions[0][-1] == _recorded(recorded_id, "voxgate-2")


async def test_refused_actions_raise_with_asterisks_message(make_client):
    client, _ = await _started(make_client)
    with pytest.raises(AmiActionError, match="AMI Getvar refused: No such channel") as caught:
        await client.getvar("Local/nonexistent@test-00000000;1", "X")
    assert caught.value.response.response == "Error"
    with pytest.raises(AmiActionError, match="Hangup refused: No such channel"):
        await client.hangup("Local/nonexistent@test-00000000;1")


# ---------------------------------------------------------------- originate


ORIGINATES = [
    ("originate-call1", dict(channel="Local/110@test", context="test", exten="speaker", priority=1,
                             caller_id='"AMI Lab" <2000>', ring_timeout=20, account="lab-acct",
                             variables={"ASUUID": "c6dc7876-6c55-4b0c-8eec-58514498cfed",
                                        "RECNAME": "ami_call1", "SPEAKER_WAIT": "1",
                                        "SPEECH": "/opt/ast/sounds/short8k"}),
     ("answered", "1795472530.50")),
    ("originate-call2", dict(channel="Local/park@test", context="test", exten="hold",
                             caller_id='"Park Test" <3000>', channel_id="lab-park-1",
                             other_channel_id="lab-park-2"),
     ("answered", "lab-park-1")),
    ("originate-badtech", dict(channel="Foo/bar", application="Wait", data="1"), ("failed", None)),
]


@pytest.mark.parametrize(("recorded_id", "arguments", "expected"), ORIGINATES, ids=[o[0] for o in ORIGINATES])
async def test_originate_is_async_and_ends_with_its_originate_response(asterisk, make_client, recorded_id,
                                                                       arguments, expected):
    client, events = await _started(make_client)
    outcome = await client.originate(**arguments, timeout=2)
    assert asterisk.actions[0][-1] == _recorded(recorded_id, "voxgate-2")
    assert b"Async: true\r\n" in asterisk.actions[0][-1]
    assert (outcome.result, outcome.uniqueid) == expected
    assert outcome.action_id == "voxgate-2" and outcome.answered == (expected[0] == "answered")
    delivered_by_then = list(events)
    if outcome.uniqueid is not None:  # the call's first events were routable before its outcome
        assert any(e.name == "Newchannel" and e.uniqueid == outcome.uniqueid for e in delivered_by_then)
    recorded_events = [_parse(_with_id(m, recorded_id, "voxgate-2")) for m in REPLIES[recorded_id][1:]]
    await _until(lambda: len(events) == len(recorded_events))
    assert events == recorded_events  # every event, OriginateResponse included, in wire order


async def test_originate_failure_that_overtakes_the_queued_reply(asterisk, make_client):
    queued, failure = REPLIES["originate-badtech"]
    asterisk.replies["originate-badtech"] = [failure, queued]
    client, events = await _started(make_client)
    outcome = await client.originate("Foo/bar", application="Wait", data="1", timeout=1)
    assert (outcome.answered, outcome.result, outcome.reason) == (False, "failed", 0)
    assert outcome.channel == "Foo/bar"
    assert [e.name for e in events] == ["OriginateResponse"]


async def test_originate_times_out_without_an_originate_response(asterisk, make_client):
    asterisk.replies["originate-badtech"] = REPLIES["originate-badtech"][:1]
    client, _ = await _started(make_client)
    with pytest.raises(AmiTimeout, match="no OriginateResponse for Foo/bar within"):
        await client.originate("Foo/bar", application="Wait", data="1", timeout=0.2)
    assert client.connected


# ---------------------------------------------------------------- events


async def test_every_event_reaches_on_event_unknown_types_and_utf8_included(asterisk, make_client):
    queued, echo = REPLIES["userevent-1"]
    asterisk.replies["userevent-1"] = [echo, queued]  # the echo overtakes the Response
    client, events = await _started(make_client)
    response = await client.send("UserEvent", {"UserEvent": "LabEvent", "Header1": "value one",
                                               "Header2": "value: two"})
    assert response.ok and response.message == "Event Sent"
    raw = ("Event: VoxgateFuture\r\nPrivilege: call,all\r\nUniqueid: 1.2\r\nNote: Grüße\r\n"
           "Empty: \r\n\r\n").encode()
    await asterisk.push(raw, split_at=raw.index("ü".encode()) + 1)  # split inside a UTF-8 character
    await _until(lambda: len(events) == 2)
    assert [(e.name, e.action_id) for e in events] == [("UserEvent", response.action_id),
                                                        ("VoxgateFuture", None)]
    assert events[0].get("Header2") == "value: two"
    assert events[1].get("Note") == "Grüße" and events[1].get("Empty") == ""


async def test_an_exception_in_on_event_does_not_break_the_session(asterisk, make_client):
    def explode(event: ami.AmiEvent) -> None:
        raise RuntimeError("handler bug")

    client, _ = await _started(make_client, on_event=explode)
    response = await client.send("Getvar", {"Variable": "LABGLOBAL"})  # its VarSet goes to explode()
    assert response.get("Value") == "hello world" and client.connected


# ---------------------------------------------------------------- connection loss


async def test_connection_loss_fails_pending_actions_then_reconnects_and_resyncs(asterisk, make_client):
    asterisk.drop_on = "getvar-1"
    asterisk.replies["originate-call2"] = REPLIES["originate-call2"][:1]  # queued, no outcome yet
    resyncs: list[list[str | None]] = []

    async def on_connected() -> None:
        resyncs.append([c.uniqueid for c in await client.core_show_channels()])

    client, _ = make_client(on_connected=on_connected)
    await client.start(timeout=3)
    call = asyncio.create_task(client.originate("Local/park@test", context="test", exten="hold",
                                                caller_id='"Park Test" <3000>', channel_id="lab-park-1",
                                                other_channel_id="lab-park-2", timeout=5))
    await _until(lambda: any(a.startswith(b"Action: Originate") for a in asterisk.actions[0]))
    with pytest.raises(AmiConnectionLost, match="lost"):
        await client.getvar("Local/park@test-00000017;2", "PARKVAR")
    with pytest.raises(AmiConnectionLost):
        await call
    await _until(lambda: len(resyncs) == 2)
    assert resyncs == [["lab-park-1", "lab-park-2"]] * 2 and client.connected
    resent = [a.split(b"\r\n")[0] for a in asterisk.actions[1]]
    assert resent == [b"Action: Login", b"Action: CoreShowChannels"]  # nothing replayed
    assert await client.getvar("Local/park@test-00000017;2", "PARKVAR") == "changed-by-ami"


async def test_missing_pong_closes_the_session_and_reconnects(asterisk, make_client):
    asterisk.delays["ping-1"] = 5.0
    reconnected = asyncio.Event()

    async def on_connected() -> None:
        if asterisk.connections >= 2:
            reconnected.set()

    await _started(make_client, on_connected=on_connected, ping_interval=0.05, action_timeout=0.1)
    await asyncio.wait_for(reconnected.wait(), 3)
    assert _key(asterisk.actions[0][-1]) == _key(ACTIONS["ping-1"])


async def test_the_secret_stays_out_of_logs_reprs_and_errors(asterisk, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError) as caught:
        AmiClient("127.0.0.1", 1, "test", "line\r\nAction: Originate", on_event=print)
    assert "Originate" not in str(caught.value)
    asterisk.drop_on = "getvar-1"
    asterisk.delays["corestatus-1"] = 5.0
    client, _ = await _started(make_client, action_timeout=0.1)
    errors: list[Exception] = []
    for action in (client.send("CoreStatus"), client.getvar("Local/park@test-00000017;2", "PARKVAR"),
                   client.getvar("Local/nonexistent@test-00000000;1", "X")):
        try:
            await action
        except Exception as exc:  # timeout, connection lost, then (reconnected) refused
            errors.append(exc)
            await _until(lambda: client.connected)
    assert [type(e) for e in errors] == [AmiTimeout, AmiConnectionLost, AmiActionError]
    await client.stop()
    assert "reconnecting" in caplog.text
    assert SECRET not in caplog.text + repr(client) + repr(vars(client)) + "".join(map(str, errors))
