"""Pieces every MediaPort shares, whatever carries the audio (audio fork, AudioSocket, chan_websocket)."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from controller.audio import FRAME_MS
from controller.call import AudioFrame, MediaTap


@dataclass
class PacingStats:
    """Outbound pacing: how late frames left versus their schedule."""

    frames: int = 0
    late_frames: int = 0  # left more than one frame period after their due time
    max_late_ms: float = 0.0
    total_late_ms: float = 0.0

    def record(self, late_s: float) -> None:
        self.frames += 1
        late_ms = max(0.0, late_s * 1000)
        self.total_late_ms += late_ms
        self.max_late_ms = max(self.max_late_ms, late_ms)
        if late_ms > FRAME_MS:
            self.late_frames += 1


class InboundFrames:
    """Caller frames queued for the call with their arrival time, until the stream ends.

    The queue is bounded: a stalled consumer loses the oldest audio, never the newest.
    """

    def __init__(self, limit: int = 250) -> None:
        self._queue: asyncio.Queue[AudioFrame | None] = asyncio.Queue(limit)
        self._ended = False
        self.count = 0
        self.dropped = 0

    @property
    def ended(self) -> bool:
        return self._ended

    def push(self, pcm: bytes, sample_rate: int) -> None:
        if self._ended:
            return
        frame = AudioFrame(pcm, sample_rate, self.count, time.monotonic())
        self.count += 1
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    def end(self) -> None:
        """No more frames: every reader of frames() finishes once it has the queued ones."""
        if self._ended:
            return
        self._ended = True
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def frames(self) -> AsyncIterator[AudioFrame]:
        while True:
            frame = await self._queue.get()
            if frame is None:
                self._queue.put_nowait(None)  # for the next reader: the stream stays ended
                return
            yield frame


async def one_chunk(pcm: bytes) -> AsyncIterator[bytes]:
    """play() as a play_stream() of a single chunk."""
    yield pcm


class PortBase(ABC):
    """What every MediaPort keeps the same way: the caller's frames, the tap, pacing, waiting to connect."""

    def __init__(self, queue_frames: int) -> None:
        self.tap: MediaTap | None = None
        self.pacing = PacingStats()
        self._inbound = InboundFrames(queue_frames)
        self._attached = asyncio.Event()

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Each transport knows when it has its connection."""

    @property
    def frames_in(self) -> int:
        return self._inbound.count

    @property
    def frames_dropped(self) -> int:
        return self._inbound.dropped

    def frames(self) -> AsyncIterator[AudioFrame]:
        return self._inbound.frames()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._attached.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.connected
