"""A call's MediaPort over mod_audio_fork: caller frames in, paced agent audio out.

Inbound frames are queued for the call with their arrival time. Outbound audio goes either
as streamed L16 frames (jambonz module) or as playAudio files that FreeSWITCH writes and
voxgate plays with uuid_broadcast (classic module).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from controller.audio import FRAME_MS, Resampler, frame_bytes, to_mono
from controller.audiofork import protocol as fork
from controller.call import PlayResult
from controller.esl.protocol import EslFrame
from controller.media import PortBase, one_chunk

log = logging.getLogger(__name__)

PREBUFFER_S = 0.16  # mod_audio_fork holds 160 ms before it starts playing streamed audio
LEAD_FRAMES = 3  # frames sent ahead of the first one's due time, so FreeSWITCH never runs dry
MARK_GRACE_S = 1.0
# The module releases streamed audio from its prebuffer in 80 ms steps; a shorter tail waits for
# more audio that never comes, so every utterance ends with silence that pushes it out.
TAIL_PAD_FRAMES = 5


EslApi = Callable[[str], Awaitable[EslFrame]]


class ForkMediaPort(PortBase):
    """MediaPort for one call's audio fork."""

    def __init__(self, call_uuid: str, spec: fork.ForkSpec, esl_api: EslApi, *, queue_frames: int = 250) -> None:
        super().__init__(queue_frames)
        self.call_uuid = call_uuid
        self.spec = spec
        self.sample_rate = spec.rate
        self._esl_api = esl_api
        self._ws: ServerConnection | None = None
        self._play_lock = asyncio.Lock()
        self._generation = 0
        self._mark_seq = 0
        self._marks: dict[str, asyncio.Future[str]] = {}
        self._files: dict[str, asyncio.Future[str]] = {}
        self._file_started: dict[str, float] = {}  # when each broadcast was accepted
        self._file_waiter: asyncio.Future[str] | None = None
        self._closed = False
        self.metadata: str | None = None
        self.frames_rejected = 0

    # ------------------------------------------------------------ inbound

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def attach(self, ws: ServerConnection) -> None:
        """Run one WebSocket from FreeSWITCH until it closes: metadata first, then frames."""
        if self._ws is not None:
            await ws.close(1008, "this call already has a media connection")
            return
        self._ws = ws
        self._attached.set()
        channels = self.spec.channels
        frame_align = 2 * channels
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    if not message:
                        continue  # graceful-shutdown sends one zero-length frame
                    if len(message) % frame_align:
                        self.frames_rejected += 1
                        log.warning("call %s: dropped a %d-byte audio frame (not whole %d-channel L16 samples)",
                                    self.call_uuid, len(message), channels)
                        continue
                    self._push(to_mono(message, channels) if channels == 2 else message)
                elif self.metadata is None:
                    self.metadata = message
                else:
                    self._on_text(message)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._attached.clear()
            self._end_playout()

    def _push(self, pcm: bytes) -> None:
        if self._closed:
            return
        if self.tap is not None:
            self.tap.caller(pcm, self.sample_rate)
        self._inbound.push(pcm, self.sample_rate)

    def _on_text(self, text: str) -> None:
        report = fork.parse_client_text(text)
        if isinstance(report, fork.MarkReport):
            waiter = self._marks.pop(report.name, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(report.event)

    def close(self) -> None:
        """The call is over: end the frame stream, playback waiters and the WebSocket."""
        if self._closed:
            return
        self._closed = True
        self._end_playout()
        self._inbound.end()
        if self._ws is not None:  # after graceful-shutdown FreeSWITCH never closes it itself
            asyncio.ensure_future(self._ws.close(1000, "call ended"))

    def _end_playout(self) -> None:
        self._generation += 1
        for waiter in [*self._marks.values(), *self._files.values(), self._file_waiter]:
            if waiter is not None and not waiter.done():
                waiter.set_result("cleared")
        self._marks.clear()
        self._files.clear()

    # ------------------------------------------------------------ outbound

    async def play(self, pcm: bytes, sample_rate: int) -> PlayResult:
        """Play to the caller; returns when played out or flushed, with what was heard."""
        return await self.play_stream(one_chunk(pcm), sample_rate)

    async def play_stream(self, chunks: AsyncIterator[bytes], sample_rate: int,
                          on_first_frame: Callable[[float], None] | None = None) -> PlayResult:
        """Play audio while it is still being produced (TTS sentence by sentence).

        `on_first_frame` gets the monotonic time the first frame left for the PBX.
        """
        generation = self._generation  # a flush while this play waits for the lock cancels it too
        async with self._play_lock:
            if generation != self._generation:
                return PlayResult(0, 0, True)
            if self.spec.streaming:
                return await _StreamPlay(self, sample_rate, on_first_frame).run(chunks)
            return await self._play_classic_stream(chunks, sample_rate, on_first_frame)

    async def flush(self) -> None:
        """Barge-in: stop what plays now and drop what is queued."""
        self._generation += 1
        if not self.spec.streaming:
            # uuid_break can drop a broadcast before it starts: then no PLAYBACK_STOP comes.
            # Until PLAYBACK_STOP says more, what was heard is the time since the broadcast began.
            now = time.monotonic()
            for path, waiter in self._files.items():
                if not waiter.done():
                    waiter.set_result(f"break:{int((now - self._file_started.get(path, now)) * 1000)}")
            if self._file_waiter is not None and not self._file_waiter.done():
                self._file_waiter.set_result("cleared")
        ws = self._ws
        if ws is not None:
            try:
                await ws.send(fork.kill_audio())
            except ConnectionClosed:
                pass
        if not self.spec.streaming:
            await self._esl_api(f"uuid_break {self.call_uuid} all")

    async def _play_classic_stream(self, chunks: AsyncIterator[bytes], sample_rate: int,
                                   on_first_frame: Callable[[float], None] | None) -> PlayResult:
        """Classic module: each chunk becomes one playAudio file, broadcast in turn."""
        played = total = 0
        async for pcm in chunks:
            result = await self._play_classic(pcm, sample_rate, on_first_frame)
            on_first_frame = None
            played, total = played + result.played_ms, total + result.total_ms
            if result.interrupted:
                return PlayResult(played, total, True)
        return PlayResult(played, total, False)

    async def send_frame(self, generation: int, frame: bytes) -> bool:
        """One streamed frame, unless the WebSocket is gone or a flush came first."""
        ws = self._ws
        if ws is None or generation != self._generation:
            return False
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return False
        if self.tap is not None:
            self.tap.agent(frame, self.spec.stream_rate)
        return True

    async def send_mark(self) -> tuple[str, asyncio.Future[str]] | None:
        """A named position in the stream; the future resolves to "playout" or "cleared"."""
        ws = self._ws
        if ws is None:
            return None
        self._mark_seq += 1
        name = f"vx{self._mark_seq}"
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._marks[name] = waiter
        try:
            await ws.send(fork.mark(name))
        except ConnectionClosed:
            self._marks.pop(name, None)
            return None
        return name, waiter

    def forget_mark(self, name: str) -> None:
        self._marks.pop(name, None)

    @property
    def generation(self) -> int:
        return self._generation

    async def _play_classic(self, pcm: bytes, sample_rate: int,
                            on_first_frame: Callable[[float], None] | None = None) -> PlayResult:
        rate = 8000 if sample_rate <= 8000 else 16000
        data = Resampler(sample_rate, rate).convert(pcm)
        total_ms = len(data) * 1000 // (2 * rate)
        ws = self._ws
        if ws is None:
            return PlayResult(0, total_ms, True)
        generation = self._generation
        loop = asyncio.get_running_loop()
        self._file_waiter = loop.create_future()
        try:
            await ws.send(fork.play_audio(data, rate))
            path = await asyncio.wait_for(self._file_waiter, 5.0)
        except (ConnectionClosed, asyncio.TimeoutError):
            return PlayResult(0, total_ms, True)
        finally:
            self._file_waiter = None
        if path == "cleared" or generation != self._generation:
            return PlayResult(0, total_ms, True)
        done: asyncio.Future[str] = loop.create_future()
        self._files[path] = done
        reply = await self._esl_api(f"uuid_broadcast {self.call_uuid} {path} aleg")
        if generation != self._generation:  # barged in while the broadcast was being queued
            self._files.pop(path, None)
            await self._esl_api(f"uuid_break {self.call_uuid} all")
            return PlayResult(0, total_ms, True)
        if not reply.ok:
            self._files.pop(path, None)
            log.error("call %s: uuid_broadcast refused: %s", self.call_uuid, reply.text.strip())
            return PlayResult(0, total_ms, True)
        self._file_started[path] = time.monotonic()
        if self.tap is not None:  # the whole file, even if a barge-in cuts it: the module reports no position
            self.tap.agent(data, rate)
        if on_first_frame is not None:
            on_first_frame(self._file_started[path])
        try:
            result = await asyncio.wait_for(done, total_ms / 1000 + 5.0)
        except asyncio.TimeoutError:
            return PlayResult(0, total_ms, True)
        finally:
            self._files.pop(path, None)
            self._file_started.pop(path, None)
        status, _, played = result.partition(":")
        if status == "done":
            return PlayResult(total_ms, total_ms, False)
        return PlayResult(min(int(played or 0), total_ms), total_ms, True)

    def on_play_audio(self, body: dict) -> None:
        """ESL mod_audio_fork::play_audio: the classic module wrote our audio to a file."""
        waiter = self._file_waiter
        if waiter is not None and not waiter.done():
            path = body.get("file")
            if isinstance(path, str):
                waiter.set_result(path)
            else:
                log.error("call %s: FreeSWITCH could not write playAudio: %s", self.call_uuid, body)
                waiter.set_result("cleared")

    def on_playback_stop(self, path: str, status: str, played_ms: int) -> None:
        """ESL PLAYBACK_STOP for a file this port broadcast."""
        waiter = self._files.get(path)
        if waiter is not None and not waiter.done():
            waiter.set_result(f"{status}:{played_ms}")


class _StreamPlay:
    """One streamed playback: paced frames, a mark after each chunk, what the caller heard.

    Frames follow an absolute schedule (catching up after a stall). When the producer is
    late with the next chunk the PBX has run dry, so the schedule restarts with a new lead.
    """

    def __init__(self, port: ForkMediaPort, sample_rate: int,
                 on_first_frame: Callable[[float], None] | None) -> None:
        self.port = port
        self.rate = port.spec.stream_rate
        self.size = frame_bytes(self.rate)
        self.resampler = Resampler(sample_rate, self.rate)
        self.on_first_frame = on_first_frame
        self.generation = port.generation
        self.t0 = 0.0
        self.sent = 0
        self.heard_floor = 0  # frames surely played before the last restart of the schedule
        self.audio_bytes = 0
        self.marks: list[tuple[int, str, asyncio.Future[str]]] = []  # (frames before it, name, waiter)
        self.first_at: float | None = None

    async def run(self, chunks: AsyncIterator[bytes]) -> PlayResult:
        pending = b""
        complete = True
        async for chunk in chunks:
            audio = self.resampler.convert(chunk)
            self.audio_bytes += len(audio)
            pending += audio
            whole = len(pending) - len(pending) % self.size
            if not await self._send(pending[:whole]):
                complete = False
                break
            pending = pending[whole:]
            await self._mark()
        if complete:
            tail = pending + bytes(-len(pending) % self.size + self.size * TAIL_PAD_FRAMES)
            complete = await self._send(tail)
        if complete:
            if await self._played_out():
                return PlayResult(self.total_ms, self.total_ms, False, self.first_at)
        return PlayResult(self._heard_ms(), self.total_ms, True, self.first_at)

    @property
    def total_ms(self) -> int:
        return self.audio_bytes * 1000 // (2 * self.rate)

    async def _send(self, data: bytes) -> bool:
        period = FRAME_MS / 1000
        if self.sent == 0:
            self.t0 = time.monotonic()
        elif data and self.t0 + (self.sent - LEAD_FRAMES) * period < time.monotonic() - period:
            # the producer was late: FreeSWITCH played everything and waits, so start a new lead
            self.heard_floor = self.sent
            self.t0 = time.monotonic() - self.sent * period
        for offset in range(0, len(data), self.size):
            due = self.t0 + (self.sent - LEAD_FRAMES) * period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not await self.port.send_frame(self.generation, data[offset:offset + self.size]):
                return False
            now = time.monotonic()
            if self.first_at is None:
                self.first_at = now
                if self.on_first_frame is not None:
                    self.on_first_frame(now)
            self.port.pacing.record(now - max(due, self.t0))
            self.sent += 1
        return True

    async def _mark(self) -> None:
        mark = await self.port.send_mark()
        if mark is not None:
            self.marks.append((self.sent, *mark))

    async def _played_out(self) -> bool:
        """Wait for the last mark; marks never report if FreeSWITCH resamples, so time bounds it."""
        mark = await self.port.send_mark()
        if mark is None:
            return False
        name, waiter = mark
        left = (self.sent - self._estimate()) * FRAME_MS / 1000
        try:
            outcome = await asyncio.wait_for(waiter, max(left, 0) + PREBUFFER_S + MARK_GRACE_S)
        except asyncio.TimeoutError:
            self.port.forget_mark(name)
            return self.generation == self.port.generation
        return outcome == "playout"

    def _estimate(self) -> int:
        """Frames FreeSWITCH has played by now, from the schedule (it starts after its prebuffer)."""
        played = int((time.monotonic() - self.t0 - PREBUFFER_S) * 1000 // FRAME_MS)
        return max(self.heard_floor, min(played, self.sent))

    def _heard_ms(self) -> int:
        """Marks bound the estimate: one reported played is a floor, one cleared a ceiling."""
        frames = self._estimate()
        for position, name, waiter in self.marks:
            self.port.forget_mark(name)
            if not waiter.done():
                continue
            if waiter.result() == "playout":
                frames = max(frames, position)
            elif waiter.result() == "cleared":
                frames = min(frames, position)
        return min(frames * FRAME_MS, self.total_ms)
