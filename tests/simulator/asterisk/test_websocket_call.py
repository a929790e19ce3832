"""Calls over chan_websocket: the upgrade request, MEDIA_START, media pacing, the queue and its
commands (marks, flush, pause, buffering, XOFF/XON), DTMF_END, JSON control, hangup in both directions."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from controller.audio import rms, tone
from controller.simulator.asterisk.fake_asterisk import FakeAsterisk
from controller.simulator.asterisk.websocket_client import WebSocketTarget
from controller.simulator.caller import Dtmf, Hangup, Wait, WaitFor
from tests.asterisk.websocket_fixtures import scenario, texts
from tests.simulator.asterisk.ast_helpers import AmiClient

SECOND_16K = tone(500, 1000, 16000)


class MediaServer:
    """voxgate's media WebSocket, reduced to a queue of connections and what each received."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[Peer] = asyncio.Queue()
        self.uri = ""

    async def __aenter__(self) -> MediaServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, subprotocols=["media"], max_size=None,
                                   ping_interval=None)
        self.uri = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/media"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _handle(self, connection: ServerConnection) -> None:
        peer = Peer(connection)
        await self.connections.put(peer)
        await peer.run()

    async def accept(self, timeout: float = 5.0) -> Peer:
        return await asyncio.wait_for(self.connections.get(), timeout)


class Peer:
    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.texts: list[str] = []
        self.binary: list[tuple[float, bytes]] = []
        self.closed = asyncio.Event()
        self._new = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for message in self.connection:
                if isinstance(message, str):
                    self.texts.append(message)
                else:
                    self.binary.append((loop.time(), message))
                self._new.set()
        except ConnectionClosed:
            pass
        self.closed.set()
        self._new.set()

    async def text(self, match: str, timeout: float = 5.0) -> str:
        """The first TEXT message starting with (or, JSON, naming the event) `match`."""
        async with asyncio.timeout(timeout):
            while True:
                for text in self.texts:
                    if text.startswith(match) or f'"event":"{match}"' in text:
                        return text
                self._new.clear()
                await self._new.wait()

    async def send(self, message: str | bytes) -> None:
        await self.connection.send(message)


@pytest.fixture
async def media():
    async with MediaServer() as server:
        yield server


@pytest.fixture
async def pbx(media):
    target = WebSocketTarget(media.uri, "asterisk", "pa55")
    async with FakeAsterisk("voxgate", "s3cret", websocket=target) as fake:
        yield fake


async def test_upgrade_request_and_media_start_have_the_recorded_form(pbx, media):
    call = await pbx.place_call([WaitFor("park"), Wait(0.3), Hangup()], media="websocket")
    peer = await media.accept()
    request = peer.connection.request
    assert request.path == f"/media?voxgate_id={call.voxgate_id}"
    recorded = scenario("ws_basic")["handshake"]["request"].split("\r\n")[1:-2]
    recorded_names = [line.split(":")[0] for line in recorded]
    names = [name for name, _ in request.headers.raw_items()]
    assert names == recorded_names[:4] + ["Authorization"] + recorded_names[4:]
    assert request.headers["Authorization"] == "Basic YXN0ZXJpc2s6cGE1NQ=="
    assert request.headers["Host"] == media.uri.split("/")[2]
    start = await peer.text("MEDIA_START")
    leg = call.media_legs[0]
    assert leg.request.startswith(f"GET /media?voxgate_id={call.voxgate_id} HTTP/1.1\r\n".encode())
    recorded_start = texts("ws_basic")[0]
    key_order = re.findall(r" (\w+):", start)
    assert key_order == re.findall(r" (\w+):", recorded_start)
    peer_channel = call.dialed[0]
    assert f"channel:{peer_channel.name} channel_id:{peer_channel.uniqueid} " in start
    assert start.endswith("format:slin16 optimal_frame_size:640 ptime:20")
    await asyncio.wait_for(peer.closed.wait(), 5)
    assert peer.connection.close_code == 1000 and peer.connection.close_reason == ""
    frames = [data for _, data in peer.binary]
    assert frames and {len(f) for f in frames} == {640}
    gaps = [b - a for (a, _), (b, _) in zip(peer.binary, peer.binary[1:])]
    assert 0.018 < sorted(gaps)[len(gaps) // 2] < 0.022


async def test_queued_audio_is_played_in_real_time_with_marks_and_queue_drained(pbx, media):
    call = await pbx.place_call([WaitFor("park"), Wait(2.5), Hangup()], media="websocket")
    peer = await media.accept()
    await peer.send(SECOND_16K + bytes(300))  # a trailing partial frame is dropped without buffering
    await peer.send("MARK_MEDIA one-second")
    await peer.send("REPORT_QUEUE_DRAINED")
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await peer.text("MEDIA_MARK_PROCESSED one-second")
    assert 0.9 < loop.time() - sent < 1.2
    await peer.text("QUEUE_DRAINED")
    await asyncio.wait_for(call.ended.wait(), 5)
    voiced = sum(1 for i in range(0, len(call.heard), 320) if rms(bytes(call.heard[i:i + 320])) > 1000)
    assert 48 <= voiced <= 51
    assert call.media_legs[0].bytes_discarded == 300


async def test_flow_control_flush_pause_and_status(pbx, media):
    call = await pbx.place_call([WaitFor("park"), Wait(3.0), Hangup()], media="websocket")
    peer = await media.accept()
    for _ in range(21):  # 21 s of audio at once: past XOFF (900) and the 1000-frame limit
        await peer.send(SECOND_16K)
    await peer.text("MEDIA_XOFF")
    await peer.send("GET_STATUS")
    status = await peer.text("STATUS")
    assert "queue_length:1000 xon_level:800 xoff_level:900 queue_full:true" in status
    assert call.media_legs[0].messages_dropped == 1
    await peer.send("PAUSE_MEDIA")
    await asyncio.sleep(0.3)
    heard = len(call.heard)
    await asyncio.sleep(0.3)
    assert rms(bytes(call.heard[heard:])) < 50  # paused: nothing reaches the caller
    await peer.send("CONTINUE_MEDIA")
    await peer.send("FLUSH_MEDIA")
    await peer.text("MEDIA_XON")
    await peer.send("GET_STATUS")
    await asyncio.sleep(0.1)
    assert "queue_length:0 " in peer.texts[-1] and "queue_full:false" in peer.texts[-1]
    await asyncio.wait_for(call.ended.wait(), 5)


async def test_buffering_keeps_partial_frames_and_reports_after_playout(pbx, media):
    call = await pbx.place_call([WaitFor("park"), Wait(2.0), Hangup()], media="websocket")
    peer = await media.accept()
    await peer.send("START_MEDIA_BUFFERING")
    for i in range(0, 10000, 1000):
        await peer.send(SECOND_16K[i:i + 1000])
    await peer.send("STOP_MEDIA_BUFFERING buf-1")
    await peer.text("MEDIA_BUFFERING_COMPLETED buf-1")
    assert call.media_legs[0].frames_played == 16  # 15 whole frames and a short 400-byte one
    await asyncio.wait_for(call.ended.wait(), 5)


async def test_dtmf_end_events_and_hangup_command(pbx, media):
    client = await AmiClient.logged_in(pbx.ami_port)
    call = await pbx.place_call([WaitFor("park"), Dtmf("7"), WaitFor("hangup", timeout=5)], media="websocket")
    peer = await media.accept()
    dtmf = await peer.text("DTMF_END")
    assert dtmf == f"DTMF_END digit:7 channel_id:{call.dialed[0].uniqueid}"
    await peer.send("HANGUP")
    await asyncio.wait_for(peer.closed.wait(), 3)
    assert peer.connection.close_code == 1000
    await asyncio.wait_for(call.ended.wait(), 3)
    await client.event("Hangup", Channel=call.dialed[0].name)
    hangup = await client.event("Hangup", Channel=call.name)
    assert hangup.get("Cause") == "16"
    assert call.script_error is None
    await client.close()


async def test_json_control(pbx, media):
    call = await pbx.place_call([WaitFor("park"), Wait(1.0), Hangup()], media="websocket", websocket_json=True)
    peer = await media.accept()
    start = json.loads(await peer.text("MEDIA_START"))
    assert list(start) == list(json.loads(texts("ws_json")[0]))
    assert list(start["channel_variables"]) == ["DIALEDPEERNUMBER", "MEDIA_WEBSOCKET_CONNECTION_ID",
                                                "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE"]
    await peer.send("GET_STATUS")
    error = json.loads(await peer.text("ERROR"))
    assert error == {"event": "ERROR", "channel_id": call.dialed[0].uniqueid,
                     "error_text": "Unable to parse JSON command"}
    await peer.send(json.dumps({"command": "SET_MEDIA_DIRECTION", "direction": "out"}))
    await asyncio.sleep(0.1)
    count = len(peer.binary)
    await asyncio.sleep(0.2)
    assert len(peer.binary) == count
    await asyncio.wait_for(call.ended.wait(), 5)


async def test_app_close_is_answered_1001_and_ends_the_call(pbx, media):
    call = await pbx.place_call([WaitFor("park"), WaitFor("hangup", timeout=5)], media="websocket")
    peer = await media.accept()
    await peer.text("MEDIA_START")
    await peer.connection.close(1000, "app done")
    assert peer.connection.protocol.close_rcvd.code == 1001
    await asyncio.wait_for(call.ended.wait(), 3)
    assert call.script_error is None
