"""The audio fork WebSocket server with real sockets: auth, framing, limits, playback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from controller import tokens
from controller.audio import frame_bytes, tone
from controller.audiofork import protocol as fork
from controller.audiofork.media import TAIL_PAD_FRAMES, ForkMediaPort
from controller.audiofork.server import AudioForkServer, fork_url
from controller.esl.protocol import EslFrame

SECRET = "test-secret-0123456789"
UUID = "f0000001-0000-4000-8000-00000000000a"


class Harness:
    def __init__(self, spec_kwargs=None):
        self.ports: dict[str, ForkMediaPort] = {}
        self.api_calls: list[str] = []
        self.spec_kwargs = spec_kwargs or {}
        self.server = AudioForkServer(SECRET, self.ports.get, max_message=4096)

    async def api(self, command: str) -> EslFrame:
        self.api_calls.append(command)
        return EslFrame({"Content-Type": "api/response"}, b"+OK Message sent\n")

    def add(self, uuid=UUID, **kw):
        spec = fork.ForkSpec(url="ws://unused", **{**self.spec_kwargs, **kw})
        port = ForkMediaPort(uuid, spec, self.api)
        self.ports[uuid] = port
        return port

    def url(self, uuid=UUID, token=None, ttl=30):
        token = token if token is not None else tokens.mint(SECRET, uuid, ttl)
        return fork_url(f"ws://127.0.0.1:{self.server.port}", uuid, token)


@pytest.fixture
async def harness():
    h = Harness()
    await h.server.start("127.0.0.1", 0)
    yield h
    await h.server.stop()


def _connect(url):
    # the module's own request: subprotocol, Origin, no-cache headers, no extensions, no UA
    return connect(url, subprotocols=[fork.SUBPROTOCOL], origin="http://127.0.0.1", compression=None,
                   user_agent_header=None, additional_headers={"Pragma": "no-cache", "Cache-Control": "no-cache"})


@pytest.mark.parametrize("why,make_url,status", [
    ("no token", lambda h: f"ws://127.0.0.1:{h.server.port}/fork/{UUID}", 401),
    ("bad signature", lambda h: h.url(token=tokens.mint("other-secret-0123456", UUID, 30)), 403),
    ("expired", lambda h: h.url(token=tokens.mint(SECRET, UUID, 1, now=time.time() - 60)), 403),
    ("other call", lambda h: h.url(token=tokens.mint(SECRET, "another-call", 30)), 403),
    ("unknown call", lambda h: h.url(uuid="c0000000-0000-4000-8000-000000000000"), 404),
    ("unknown path", lambda h: f"ws://127.0.0.1:{h.server.port}/other", 404),
])
async def test_refuses_anything_without_a_valid_token_for_an_expected_call(harness, why, make_url, status):
    harness.add()
    with pytest.raises(InvalidStatus) as info:
        async with _connect(make_url(harness)):
            pass
    assert info.value.response.status_code == status
    assert harness.server.refused == 1


async def test_metadata_then_frames_reach_the_call_with_arrival_times(harness):
    port = harness.add()
    async with _connect(harness.url()) as ws:
        assert ws.subprotocol == fork.SUBPROTOCOL
        await ws.send('{"callSid":"%s"}' % UUID)
        for i in range(5):
            await ws.send(bytes([i]) * frame_bytes(8000))
        frames = []
        async for frame in port.frames():
            frames.append(frame)
            if len(frames) == 5:
                break
    assert port.metadata == '{"callSid":"%s"}' % UUID
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert all(len(f.pcm) == 320 and f.sample_rate == 8000 for f in frames)
    assert frames[3].pcm[0] == 3 and frames[0].received <= frames[4].received


async def test_stereo_frames_deliver_the_caller_channel(harness):
    port = harness.add(mix="stereo")
    left = tone(440, 20, 8000)
    right = bytes(len(left))
    stereo = b"".join(left[i:i + 2] + right[i:i + 2] for i in range(0, len(left), 2))
    async with _connect(harness.url()) as ws:
        await ws.send("{}")
        await ws.send(stereo)
        frame = await anext(port.frames())
    assert frame.pcm == left


async def test_malformed_frames_are_counted_not_fatal(harness):
    port = harness.add()
    async with _connect(harness.url()) as ws:
        await ws.send("{}")
        await ws.send(b"\x01\x02\x03")  # not whole samples
        await ws.send(b"")  # graceful-shutdown's zero-length frame
        await ws.send(bytes(320))
        frame = await anext(port.frames())
    assert len(frame.pcm) == 320 and port.frames_rejected == 1


async def test_oversized_message_closes_only_that_connection(harness):
    harness.add()
    port2 = harness.add(uuid="b0000000-0000-4000-8000-000000000002")
    async with _connect(harness.url()) as ws, _connect(harness.url(uuid=port2.call_uuid)) as ws2:
        await ws.send("{}")
        await ws.send(bytes(8192))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 2)
        assert info.value.rcvd.code == 1009
        await ws2.send("{}")
        await ws2.send(bytes(320))
        assert len((await anext(port2.frames())).pcm) == 320


async def test_second_connection_for_the_same_call_is_refused(harness):
    harness.add()
    async with _connect(harness.url()) as first:
        await first.send("{}")
        await asyncio.sleep(0.05)
        async with _connect(harness.url()) as second:
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(second.recv(), 2)
            assert info.value.rcvd.code == 1008


async def test_streaming_play_is_paced_and_ends_on_the_playout_mark(harness):
    port = harness.add(streaming=True)
    audio = tone(440, 400, 8000)
    async with _connect(harness.url()) as ws:
        await ws.send("{}")
        await port.wait_connected(1)
        play = asyncio.create_task(port.play(audio, 8000))
        arrivals, marks = [], []
        while len(marks) < 2:  # one after the chunk, one after the tail
            message = await ws.recv()
            if isinstance(message, bytes):
                arrivals.append(time.monotonic())
            else:
                marks.append((len(arrivals), json.loads(message)))
        assert [position for position, _ in marks] == [20, 20 + TAIL_PAD_FRAMES]
        mark = marks[-1][1]
        assert len(arrivals) == 20 + TAIL_PAD_FRAMES  # the audio, then silence that flushes the prebuffer
        span = arrivals[-1] - arrivals[0]
        assert 0.38 <= span <= 0.6  # 3 frames sent ahead, the rest every 20 ms
        await ws.send('{"type": "mark", "data": {"name":"%s", "event": "playout"}}' % mark["data"]["name"])
        result = await asyncio.wait_for(play, 2)
    assert result.played_ms == 400 and not result.interrupted
    assert port.pacing.late_frames == 0


async def test_flush_sends_kill_audio_and_reports_what_was_heard(harness):
    port = harness.add(streaming=True)
    async with _connect(harness.url()) as ws:
        await ws.send("{}")
        await port.wait_connected(1)
        play = asyncio.create_task(port.play(tone(440, 3000, 8000), 8000))
        await asyncio.sleep(0.5)
        await port.flush()
        texts = []
        while not texts:
            message = await ws.recv()
            if isinstance(message, str):
                texts.append(json.loads(message))
        result = await asyncio.wait_for(play, 2)
    assert texts[0] == {"type": "killAudio"}
    assert result.interrupted and 250 <= result.played_ms <= 450


async def test_classic_play_goes_through_a_playaudio_file_and_uuid_broadcast():
    h = Harness({"streaming": False})
    await h.server.start("127.0.0.1", 0)
    port = h.add()
    try:
        async with _connect(h.url()) as ws:
            await ws.send("{}")
            await port.wait_connected(1)
            play = asyncio.create_task(port.play(tone(440, 200, 16000), 16000))
            message = json.loads(await ws.recv())
            assert message["type"] == "playAudio" and message["data"]["sampleRate"] == 16000
            path = f"/tmp/{UUID}_0.tmp.r16"
            port.on_play_audio({"audioContentType": "raw", "sampleRate": 16000, "file": path})
            await asyncio.sleep(0.05)
            assert h.api_calls == [f"uuid_broadcast {UUID} {path} aleg"]
            port.on_playback_stop(path, "done", 200)
            result = await asyncio.wait_for(play, 2)
            assert result.played_ms == 200 and not result.interrupted
            await port.flush()
            assert json.loads(await ws.recv()) == {"type": "killAudio"}
            assert h.api_calls[-1] == f"uuid_break {UUID} all"
    finally:
        await h.server.stop()
