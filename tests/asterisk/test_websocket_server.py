"""The chan_websocket server and port with real sockets; the test plays Asterisk with a websockets client.

The fake Asterisk does what 22.10.1 was recorded doing: Basic credentials and subprotocol "media"
on the upgrade, MEDIA_START first, 20 ms BINARY frames, DTMF_END, a queue it plays one frame per
20 ms (so MEDIA_MARK_PROCESSED comes when the audio before the mark has played), FLUSH_MEDIA
emptying it, HANGUP answered with CLOSE 1000.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from controller.asterisk.websocket_media import (
    SUBPROTOCOL, ControlFormat, Dtmf, MarkProcessed, MediaStart, MediaXoff, MediaXon, parse_command, render_event,
)
from controller.asterisk.websocket_port import WebSocketMediaPort
from controller.asterisk.websocket_server import WebSocketMediaServer
from controller.audio import tone, ulaw_encode

UUID = "9f1c2a44-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
OTHER = "1e2d3c4b-5a69-4788-9766-554433221100"
USER, PASSWORD = "asterisk", "s3cret-media-pass"
CHANNEL_ID = "1795472603.64"
FRAME_S = 0.02


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Calls:
    """The controller's side: calls announced over AMI, looked up by VOXGATE_ID."""

    def __init__(self) -> None:
        self.ports: dict[str, WebSocketMediaPort] = {}
        self.server = WebSocketMediaServer(self.resolve, username=USER, password=PASSWORD)

    async def resolve(self, voxgate_id: str) -> WebSocketMediaPort | None:
        return self.ports.get(voxgate_id)

    def add(self, call_id: str = UUID) -> WebSocketMediaPort:
        port = self.ports[call_id] = WebSocketMediaPort(call_id)
        port.closes = []
        port.on_closed = port.closes.append
        return port

    def url(self, call_id: str = UUID, path: str = "/media") -> str:
        return f"ws://127.0.0.1:{self.server.port}{path}?voxgate_id={call_id}"


class FakeAsterisk:
    """One chan_websocket channel: sends caller audio and events, plays what it gets in real time."""

    def __init__(self, ws: ClientConnection, start: MediaStart, *, obey_marks: bool = True) -> None:
        self.ws = ws
        self.start = start
        self.obey_marks = obey_marks
        self.received: list[tuple[float, str | bytes]] = []
        self.queued_at_arrival: list[float] = []  # seconds of audio still queued when each message came
        self.playout_end = 0.0
        self._marks: list[asyncio.TimerHandle] = []
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def dial(cls, calls: Calls, call_id: str = UUID, *, fmt: str = "slin16", frame: int = 640,
                   control: ControlFormat = ControlFormat.PLAIN, obey_marks: bool = True) -> FakeAsterisk:
        ws = await connect(calls.url(call_id), subprotocols=[SUBPROTOCOL], additional_headers=_basic(USER, PASSWORD),
                           compression=None, user_agent_header=None)
        start = MediaStart("voxgate", "WebSocket/voxgate/0x55b6b31424f0", CHANNEL_ID, fmt, frame, 20, control)
        asterisk = cls(ws, start, obey_marks=obey_marks)
        await asterisk.event(start)
        return asterisk

    async def event(self, event) -> None:
        await self.ws.send(render_event(event, self.start.control_format, CHANNEL_ID))

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in self.ws:
                now = loop.time()
                self.received.append((time.monotonic(), message))
                if isinstance(message, bytes):
                    self.queued_at_arrival.append(max(0.0, self.playout_end - now))
                    frames = len(message) // self.start.optimal_frame_size
                    self.playout_end = max(self.playout_end, now) + frames * FRAME_S
                else:
                    await self._command(message, now)
        except ConnectionClosed:
            pass

    async def _command(self, text: str, now: float) -> None:
        command = parse_command(text, self.start.control_format)
        if command.name == "MARK_MEDIA" and self.obey_marks:
            done = MarkProcessed(command.argument or "")
            self._marks.append(asyncio.get_running_loop().call_at(
                max(now, self.playout_end), lambda: asyncio.ensure_future(self.event(done))))
        elif command.name == "FLUSH_MEDIA":
            self.playout_end = now
            for mark in self._marks:
                mark.cancel()
        elif command.name == "HANGUP":
            await self.ws.close(1000)

    def binary(self, since: float = 0.0) -> list[tuple[float, bytes]]:
        return [(t, m) for t, m in self.received if isinstance(m, bytes) and t >= since]

    def texts(self) -> list[tuple[float, str]]:
        return [(t, m) for t, m in self.received if isinstance(m, str)]

    async def hang_up(self) -> None:
        await self.ws.close(1000)
        await self._task


@pytest.fixture
async def calls():
    calls = Calls()
    await calls.server.start("127.0.0.1", 0)
    yield calls
    await calls.server.stop()


async def _status(url: str, headers: dict[str, str]) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, subprotocols=[SUBPROTOCOL], additional_headers=headers):
            pass
    return info.value


@pytest.mark.parametrize("why,headers,url,status", [
    ("no credentials", {}, lambda c: c.url(), 401),
    ("wrong password", _basic(USER, "not-the-password"), lambda c: c.url(), 401),
    ("wrong user", _basic("intruder", PASSWORD), lambda c: c.url(), 401),
    ("not basic", {"Authorization": "Bearer abc"}, lambda c: c.url(), 401),
    ("unknown call", _basic(USER, PASSWORD), lambda c: c.url(OTHER), 404),
    ("no voxgate_id", _basic(USER, PASSWORD), lambda c: f"ws://127.0.0.1:{c.server.port}/media", 404),
    ("other path", _basic(USER, PASSWORD), lambda c: c.url(path="/other"), 404),
])
async def test_credentials_and_the_call_are_checked_before_the_upgrade(calls, caplog, why, headers, url, status):
    calls.add()
    caplog.set_level(logging.DEBUG)
    error = await _status(url(calls), headers)
    assert error.response.status_code == status and calls.server.refused == 1
    if status == 401:
        assert error.response.headers["WWW-Authenticate"] == 'Basic realm="voxgate"'
    assert PASSWORD not in caplog.text and "not-the-password" not in caplog.text


async def test_media_start_sets_the_format_and_caller_frames_arrive_at_once(calls):
    port = calls.add()
    digits: list[str] = []
    port.on_dtmf = digits.append
    asterisk = await FakeAsterisk.dial(calls)
    assert asterisk.ws.subprotocol == SUBPROTOCOL
    assert await port.wait_connected(1) and port.sample_rate == 16000
    frames = port.frames()
    for i in range(5):
        sent = time.monotonic()
        await asterisk.ws.send(bytes([i + 1]) * 640)
        frame = await asyncio.wait_for(anext(frames), 1)
        assert frame.received - sent < 0.01
        assert frame.seq == i and frame.pcm[0] == i + 1 and frame.sample_rate == 16000
    await asterisk.event(Dtmf("5", CHANNEL_ID))
    await asyncio.sleep(0.05)
    assert digits == ["5"]
    await asterisk.hang_up()


async def test_play_keeps_a_modest_lead_and_ends_when_asterisk_has_played_it(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    firsts: list[float] = []

    async def tts():
        for _ in range(4):
            yield tone(440, 250, 24000)  # resampled to the call's 16 kHz

    started = time.monotonic()
    result = await port.play_stream(tts(), 24000, firsts.append)
    elapsed = time.monotonic() - started
    audio = asterisk.binary()
    assert result.played_ms == result.total_ms == 1000 and not result.interrupted
    assert 0.98 <= elapsed <= 1.15  # the last mark came back when the last frame had played
    assert sum(len(m) for _, m in audio) == 50 * 640 and all(len(m) % 640 == 0 and len(m) <= 65531 for _, m in audio)
    assert max(asterisk.queued_at_arrival) <= 0.2 + 1e-3  # never more than the lead queued in Asterisk
    assert min(asterisk.queued_at_arrival[1:]) > 0  # and never ran dry mid-play
    assert firsts == [result.first_frame_at] and port.pacing.late_frames == 0


async def test_flush_sends_flush_media_at_once_and_reports_what_was_heard(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    play = asyncio.create_task(port.play(tone(440, 3000, 16000), 16000))
    await asyncio.sleep(0.5)
    flushed_at = time.monotonic()
    await port.flush()
    result = await asyncio.wait_for(play, 1)
    await asyncio.sleep(0.1)
    flush_seen = [t for t, text in asterisk.texts() if text == "FLUSH_MEDIA"]
    assert flush_seen and flush_seen[0] - flushed_at < 0.01
    assert not asterisk.binary(since=flushed_at)  # nothing released after the barge-in
    heard_ms = (flushed_at - asterisk.binary()[0][0]) * 1000
    assert result.interrupted and abs(result.played_ms - heard_ms) <= 40


async def test_xoff_holds_the_audio_and_xon_resumes_it(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    play = asyncio.create_task(port.play(tone(440, 1500, 16000), 16000))
    await asyncio.sleep(0.3)
    await asterisk.event(MediaXoff())
    await asyncio.sleep(0.02)
    held_from = time.monotonic()
    await asyncio.sleep(0.4)
    assert not asterisk.binary(since=held_from)
    resumed_at = time.monotonic()
    await asterisk.event(MediaXon())
    result = await asyncio.wait_for(play, 3)
    assert asterisk.binary(since=resumed_at)[0][0] - resumed_at < 0.03
    assert result.played_ms == 1500 and not result.interrupted


async def test_hangup_asks_asterisk_and_its_close_ends_the_call_media(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    await port.hangup()
    await asyncio.wait_for(asterisk._task, 1)
    assert [text for _, text in asterisk.texts()] == ["HANGUP"]
    assert [frame async for frame in port.frames()] == []
    assert not port.connected and len(port.closes) == 1 and "hung up" in port.closes[0]
    assert (await port.play(tone(440, 100, 16000), 16000)).interrupted


async def test_the_call_layer_closing_the_port_closes_the_websocket(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    port.close()
    await asyncio.wait_for(asterisk._task, 1)
    assert asterisk.ws.close_code == 1000 and port.closes == []


async def test_a_second_connection_for_the_same_call_is_refused(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    error = await _status(calls.url(), _basic(USER, PASSWORD))
    assert error.response.status_code == 409 and port.connected
    await asterisk.hang_up()


async def test_the_tap_sees_both_directions(calls):
    port = calls.add()
    seen: list[tuple[str, bytes, int]] = []

    class Tap:
        def caller(self, pcm: bytes, rate: int) -> None:
            seen.append(("caller", pcm, rate))

        def agent(self, pcm: bytes, rate: int) -> None:
            seen.append(("agent", pcm, rate))

    port.tap = Tap()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    await asterisk.ws.send(b"\x02\x00" * 320)
    await asyncio.sleep(0.02)
    await port.play(tone(440, 100, 16000), 16000)
    assert seen[0] == ("caller", b"\x02\x00" * 320, 16000)
    agent = [pcm for who, pcm, rate in seen if who == "agent" and rate == 16000]
    assert b"".join(agent) == tone(440, 100, 16000) and len(agent) == 5  # frame by frame, as it left
    await asterisk.hang_up()


async def test_json_control_and_ulaw_media(calls):
    port = calls.add()
    digits: list[str] = []
    port.on_dtmf = digits.append
    asterisk = await FakeAsterisk.dial(calls, fmt="ulaw", frame=160, control=ControlFormat.JSON)
    await port.wait_connected(1)
    caller = tone(300, 20, 8000)
    await asterisk.ws.send(ulaw_encode(caller))
    frame = await asyncio.wait_for(anext(port.frames()), 1)
    assert port.sample_rate == frame.sample_rate == 8000 and len(frame.pcm) == 320
    await asterisk.event(Dtmf("#", CHANNEL_ID))
    result = await port.play(tone(440, 200, 8000), 8000)
    assert result.played_ms == 200 and digits == ["#"]
    assert sum(len(m) for _, m in asterisk.binary()) == 10 * 160
    assert all(text.startswith('{"command": "MARK_MEDIA"') for _, text in asterisk.texts())
    await asterisk.hang_up()


async def test_a_mark_that_never_comes_back_is_bounded_by_time(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls, obey_marks=False)
    await port.wait_connected(1)
    started = time.monotonic()
    result = await port.play(tone(440, 100, 16000), 16000)
    assert result.played_ms == 100 and time.monotonic() - started < 1.5
    await asterisk.hang_up()


async def test_a_bad_connection_does_not_disturb_another_call(calls, caplog):
    bad_port, good_port = calls.add(), calls.add(OTHER)
    caplog.set_level(logging.WARNING)
    bad = await FakeAsterisk.dial(calls)
    good = await FakeAsterisk.dial(calls, OTHER)
    await asyncio.gather(bad_port.wait_connected(1), good_port.wait_connected(1))
    await bad.ws.send("not an event at all")  # ignored with a warning
    await bad.ws.send(bytes(100_000))  # over the size limit: that connection is closed
    await asyncio.wait_for(bad._task, 1)
    assert bad.ws.close_code == 1009 and bad_port.closes and not bad_port.connected
    assert "ignored a TEXT message" in caplog.text
    await good.ws.send(bytes(640))
    assert len((await asyncio.wait_for(anext(good_port.frames()), 1)).pcm) == 640
    assert (await good_port.play(tone(440, 100, 16000), 16000)).played_ms == 100
    await good.hang_up()


async def test_a_connection_that_does_not_start_with_media_start_is_closed(calls):
    port = calls.add()
    ws = await connect(calls.url(), subprotocols=[SUBPROTOCOL], additional_headers=_basic(USER, PASSWORD))
    await ws.send(bytes(640))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 1)
    assert ws.close_code == 1003 and "not the MEDIA_START" in port.closes[0]
