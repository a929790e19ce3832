"""The AudioSocket server and port with real sockets; the test plays Asterisk with raw TCP clients.

What the fake Asterisk sends is shaped like the recorded 22.10.1 traffic: the UUID frame first,
20 ms slin frames, DTMF at digit end, a plain TCP close for a hangup. What it receives is read
with the simulator's parser, which applies res_audiosocket's rules (a zero-length audio frame is
an error there, as it is in Asterisk).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncIterator

import pytest

from controller.asterisk.audiosocket import (
    Audio, ServerFrameParser, audio_frame, call_id_frame, digit_frame,
)
from controller.asterisk.audiosocket_port import AudioSocketMediaPort
from controller.asterisk.audiosocket_server import AudioSocketServer
from controller.audio import tone

UUID = "b88255fe-7912-49de-bc10-aeecc2380c9f"  # app_realtime's
OTHER = "5121ee53-12cc-44fb-814e-4c6a4571b46e"  # chan_slin16's
PAYLOAD_TIMEOUT_S = 0.2


class Calls:
    """The controller's side: calls announced over AMI, looked up by VOXGATE_ID."""

    def __init__(self) -> None:
        self.ports: dict[str, AudioSocketMediaPort] = {}
        self.asked: list[str] = []
        self.server = AudioSocketServer(self.resolve, payload_timeout_s=PAYLOAD_TIMEOUT_S, first_frame_timeout_s=0.5)
        self.asterisks: list[FakeAsterisk] = []

    async def resolve(self, voxgate_id: str) -> AudioSocketMediaPort | None:
        self.asked.append(voxgate_id)
        return self.ports.get(voxgate_id)

    def add(self, call_id: str = UUID, **kw) -> AudioSocketMediaPort:
        port = self.ports[call_id] = AudioSocketMediaPort(call_id, **kw)
        port.closes = []
        port.on_closed = port.closes.append
        return port


class FakeAsterisk:
    """One AudioSocket connection as Asterisk makes it; timestamps every frame voxgate sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received: list[tuple[float, Audio]] = []
        self.eof = asyncio.Event()
        self._parser = ServerFrameParser()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def dial(cls, calls: Calls, call_id: str = UUID) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", calls.server.port)
        asterisk = cls(reader, writer)
        calls.asterisks.append(asterisk)
        await asterisk.send(call_id_frame(call_id))
        return asterisk

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                now = time.monotonic()
                for event in self._parser.feed(data):  # raises on a zero-length audio frame
                    assert isinstance(event, Audio), event
                    self.received.append((now, event))
            self._parser.eof()  # raises if voxgate cut a frame short
        except ConnectionResetError:
            pass  # we closed with keep-alive frames unread
        finally:
            self.eof.set()

    def audio(self, since: float = 0.0) -> list[tuple[float, Audio]]:
        """Frames that carried sound (not keep-alive silence)."""
        return [(t, f) for t, f in self.received if t >= since and any(f.pcm)]

    async def frames_until(self, count: int, timeout: float = 3.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.005)

    async def hang_up(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
        await self._task


@pytest.fixture
async def calls():
    calls = Calls()
    await calls.server.start("127.0.0.1", 0)
    yield calls
    await calls.server.stop()
    for asterisk in calls.asterisks:
        await asterisk.hang_up()


def _gaps(times: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in zip(times, times[1:])]


async def _closed_by_server(asterisk: FakeAsterisk) -> None:
    await asyncio.wait_for(asterisk.eof.wait(), 2)


async def test_the_uuid_frame_pairs_the_connection_with_its_call_and_frames_arrive_at_once(calls):
    port = calls.add()
    digits: list[str] = []
    port.on_dtmf = digits.append
    asterisk = await FakeAsterisk.dial(calls)
    assert await port.wait_connected(1)
    assert calls.asked == [UUID]
    frames = port.frames()
    latencies = []
    for i in range(5):
        sent = time.monotonic()
        await asterisk.send(audio_frame(bytes([i + 1]) * 320, 8000))
        frame = await asyncio.wait_for(anext(frames), 1)
        latencies.append(frame.received - sent)
        assert frame.seq == i and frame.pcm[0] == i + 1 and frame.sample_rate == 8000
        await asyncio.sleep(0.02)
    await asterisk.send(digit_frame("1") + digit_frame("#"))
    await asyncio.sleep(0.05)
    assert digits == ["1", "#"]
    assert max(latencies) < 0.01 and port.frames_in == 5
    await asterisk.hang_up()


async def test_a_call_nobody_announced_is_closed_and_logged(calls, caplog):
    calls.add()
    caplog.set_level(logging.WARNING)
    asterisk = await FakeAsterisk.dial(calls, OTHER)
    await _closed_by_server(asterisk)
    assert asterisk.received == [] and calls.server.refused == 1
    assert f"no call announced with VOXGATE_ID {OTHER}" in caplog.text


async def test_silence_keeps_the_connection_alive_every_20_ms_while_nothing_plays(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await asyncio.sleep(0.5)
    times = [t for t, _ in asterisk.received]
    assert 22 <= len(times) <= 28
    assert all(f.sample_rate == 8000 and f.pcm == bytes(320) for _, f in asterisk.received)
    assert max(_gaps(times)) < 35
    assert port.pacing.late_frames == 0
    await asterisk.hang_up()


async def test_play_is_paced_one_frame_per_20_ms_and_reports_what_was_heard(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    started = time.monotonic()
    result = await port.play(tone(440, 600, 16000), 16000)  # resampled to the call's 8 kHz
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.05)
    audio = asterisk.audio()
    assert len(audio) == 30 and all(len(f.pcm) == 320 and f.sample_rate == 8000 for _, f in audio)
    gaps = _gaps([t for t, _ in audio])
    assert min(gaps) > 12 and max(gaps) < 30 and abs(statistics.median(gaps) - 20) < 2  # never a burst
    assert result.played_ms == result.total_ms == 600 and not result.interrupted
    assert 0.56 <= elapsed <= 0.7 and result.first_frame_at is not None
    assert port.pacing.late_frames == 0
    await asterisk.hang_up()


async def test_flush_stops_the_audio_within_one_frame(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    play = asyncio.create_task(port.play(tone(440, 3000, 8000), 8000))
    await asyncio.sleep(0.3)
    flushed_at = time.monotonic()
    await port.flush()
    assert time.monotonic() - flushed_at < 0.005
    result = await asyncio.wait_for(play, 1)
    await asyncio.sleep(0.2)
    assert not asterisk.audio(since=flushed_at + 0.005)  # the next slot is silence
    heard = len(asterisk.audio())
    assert result.interrupted and result.played_ms == heard * 20 and 260 <= result.played_ms <= 340
    assert asterisk.received[-1][1].pcm == bytes(320)  # the keep-alive goes on
    await asterisk.hang_up()


async def test_a_stream_of_uneven_chunks_plays_without_gaps(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    audio = tone(300, 500, 8000)
    firsts: list[float] = []

    async def tts() -> AsyncIterator[bytes]:
        for offset in range(0, len(audio), 802):  # 50 ms and a sample, every 30 ms
            yield audio[offset:offset + 802]
            await asyncio.sleep(0.03)

    result = await port.play_stream(tts(), 8000, firsts.append)
    await asyncio.sleep(0.05)
    sounding = [i for i, (_, f) in enumerate(asterisk.received) if any(f.pcm)]
    assert sounding == list(range(sounding[0], sounding[0] + 25))  # no silence slipped in mid-sentence
    assert b"".join(f.pcm for _, f in asterisk.audio()) == audio
    assert result.played_ms == result.total_ms == 500 and firsts == [result.first_frame_at]
    await asterisk.hang_up()


async def test_the_tap_sees_both_directions_as_they_pass(calls):
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
    await asterisk.send(audio_frame(b"\x01\x00" * 160, 8000))
    await port.play(tone(440, 100, 8000), 8000)
    assert seen[0] == ("caller", b"\x01\x00" * 160, 8000)
    agent = [pcm for who, pcm, rate in seen if who == "agent" and rate == 8000]
    assert b"".join(agent) == tone(440, 100, 8000) and len(agent) == 5  # sound only, not keep-alive
    await asterisk.hang_up()


async def test_a_slin16_channel_is_answered_at_16_khz(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await asterisk.send(audio_frame(bytes(640), 16000))
    frame = await asyncio.wait_for(anext(port.frames()), 1)
    assert frame.sample_rate == port.sample_rate == 16000
    result = await port.play(tone(440, 100, 16000), 16000)
    assert result.played_ms == 100
    assert all(len(f.pcm) == 640 and f.sample_rate == 16000 for _, f in asterisk.audio())
    assert asterisk.received[-1][1].sample_rate == 16000
    await asterisk.send(audio_frame(bytes(320), 8000))  # a channel does not change its rate mid-call
    await asyncio.sleep(0.05)
    assert port.frames_rejected == 1 and port.frames_in == 1
    await asterisk.hang_up()


async def test_a_tcp_close_ends_the_frames_and_tells_the_call(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    play = asyncio.create_task(port.play(tone(440, 2000, 8000), 8000))
    await asyncio.sleep(0.1)
    await asterisk.hang_up()
    frames = [frame async for frame in port.frames()]  # ends
    result = await asyncio.wait_for(play, 1)
    assert frames == [] and not port.connected and result.interrupted
    # a FIN, or a reset when keep-alive frames were still unread in the closed socket
    assert len(port.closes) == 1 and ("hung up" in port.closes[0] or "connection lost" in port.closes[0])
    assert (await port.play(tone(440, 100, 8000), 8000)).interrupted


async def test_the_call_layer_closing_the_port_closes_the_connection(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    port.close()
    await _closed_by_server(asterisk)
    assert [frame async for frame in port.frames()] == [] and port.closes == []


async def test_a_header_whose_payload_never_comes_closes_only_that_call(calls, caplog):
    stuck, healthy = calls.add(), calls.add(OTHER)
    caplog.set_level(logging.WARNING)
    bad = await FakeAsterisk.dial(calls)
    good = await FakeAsterisk.dial(calls, OTHER)
    await asyncio.gather(stuck.wait_connected(1), healthy.wait_connected(1))
    await bad.send(audio_frame(bytes(320), 8000)[:103])  # header announcing 320 bytes, then 100
    await _closed_by_server(bad)
    assert "announced 320 payload bytes" in stuck.closes[0] and not stuck.connected
    assert "announced 320 payload bytes" in caplog.text
    await good.send(audio_frame(bytes(320), 8000))
    assert len((await asyncio.wait_for(anext(healthy.frames()), 1)).pcm) == 320
    assert max(_gaps([t for t, _ in good.received])) < 35  # its keep-alive never stalled
    assert healthy.connected and healthy.closes == []
    await good.hang_up()


async def test_a_frame_cut_by_the_close_is_reported(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    await asterisk.send(audio_frame(bytes(320), 8000)[:103])
    await asterisk.hang_up()
    await asyncio.wait_for(anext(port.frames(), None), 1)
    assert "mid-frame" in port.closes[0] and "220 missing" in port.closes[0]


async def test_odd_and_oversized_audio_frames_follow_the_parser_rules(calls):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await asterisk.send(bytes((0x10, 0x01, 0x41)) + bytes(321))  # odd length: dropped, the call goes on
    await asterisk.send(audio_frame(b"\x07" * 65534, 8000))  # the largest even frame the length field allows
    await asterisk.send(audio_frame(bytes(320), 8000))
    frames = port.frames()
    first = await asyncio.wait_for(anext(frames), 1)
    second = await asyncio.wait_for(anext(frames), 1)
    assert len(first.pcm) == 65534 and first.pcm[-1] == 7 and len(second.pcm) == 320
    assert port.frames_rejected == 1 and port.connected
    await asterisk.hang_up()


@pytest.mark.parametrize("frame,why", [
    (bytes((0x05, 0, 1, 0)), "unknown AudioSocket frame type 0x05"),
    (call_id_frame(UUID), "second UUID frame"),
])
async def test_a_frame_that_breaks_the_protocol_closes_the_connection(calls, frame, why):
    port = calls.add()
    asterisk = await FakeAsterisk.dial(calls)
    await asterisk.send(frame)
    await _closed_by_server(asterisk)
    assert why in port.closes[0]


async def test_a_connection_that_does_not_start_with_the_uuid_is_refused(calls, caplog):
    calls.add()
    caplog.set_level(logging.WARNING)
    reader, writer = await asyncio.open_connection("127.0.0.1", calls.server.port)
    writer.write(audio_frame(bytes(320), 8000))
    assert await asyncio.wait_for(reader.read(), 1) == b""
    assert calls.server.refused == 1 and "not the 0x01 UUID frame" in caplog.text
    writer.close()
    await writer.wait_closed()


async def test_a_second_connection_for_the_same_call_is_refused(calls):
    port = calls.add()
    first = await FakeAsterisk.dial(calls)
    await port.wait_connected(1)
    second = await FakeAsterisk.dial(calls)
    await _closed_by_server(second)
    count = len(first.received)
    await asyncio.sleep(0.1)
    assert len(first.received) >= count + 4 and port.connected and calls.server.refused == 1
    await first.hang_up()
