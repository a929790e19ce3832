"""A call's MediaPort over Asterisk AudioSocket: caller frames in, agent audio out at 20 ms a frame.

Asterisk plays each frame the moment it arrives (no jitter buffer, no queue, no flush command),
so voxgate is the caller's playout clock: one frame per 20 ms on an absolute schedule, silence
in every idle slot (the AudioSocket() app hangs up after 2 s without a frame either way), and a
barge-in just stops sending. What has been sent is what the caller heard, ~0.2 ms later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from controller.asterisk.audiosocket import FRAME_MS, HEADER_BYTES, Audio, AudioSocketParser, Digit, Pacer
from controller.audio import Resampler
from controller.call import PlayResult
from controller.media import PortBase, one_chunk

log = logging.getLogger(__name__)

DEFAULT_RATE = 8000  # what the AudioSocket() app always speaks; c(slin16) shows itself with its first frame
_PERIOD_S = FRAME_MS / 1000


@dataclass(eq=False)
class _Playout:
    """The play in progress: audio queued for it, audio the sender has let go, how it ended."""

    on_first_frame: Callable[[float], None] | None
    queued: int = 0
    sent: int = 0
    first_at: float | None = None
    complete: bool = False  # every chunk is queued
    interrupted: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def sent_audio(self, nbytes: int, now: float) -> None:
        self.sent += nbytes
        if self.first_at is None:
            self.first_at = now
            if self.on_first_frame is not None:
                self.on_first_frame(now)
        self.check()

    def check(self) -> None:
        if self.complete and self.sent >= self.queued:
            self.done.set()

    def interrupt(self) -> None:
        self.interrupted = True
        self.done.set()


FIRST_AUDIO_WAIT_S = 0.2  # Asterisk sends a frame every 20 ms while the caller's line carries audio


class AudioSocketMediaPort(PortBase):
    """MediaPort for one call's AudioSocket connection.

    The call layer sets `on_dtmf(digit)` for key presses and `on_closed(reason)` to learn that
    the connection ended (in Asterisk 22 the caller hanging up is a plain TCP close); `tap`
    records both directions. AudioSocketServer drives attach/receive/detach.
    """

    def __init__(self, call_id: str, *, sample_rate: int = DEFAULT_RATE, queue_frames: int = 250) -> None:
        super().__init__(queue_frames)
        self.call_id = call_id
        self.sample_rate = sample_rate
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_closed: Callable[[str], None] | None = None
        self.closed_reason: str | None = None
        self._rate_known = False
        self._first_audio = asyncio.Event()
        self._inbound_rejected = 0
        self._used = False
        self._closed = False
        self._writer: asyncio.StreamWriter | None = None
        self._parser: AudioSocketParser | None = None
        self._pacer: Pacer | None = None
        self._sender: asyncio.Task[None] | None = None
        self._play_lock = asyncio.Lock()
        self._generation = 0
        self._playout: _Playout | None = None

    # ------------------------------------------------------------ the connection (AudioSocketServer)

    @property
    def in_use(self) -> bool:
        """A connection came already: one per call, and none after the call ended."""
        return self._used or self._closed

    def attach(self, writer: asyncio.StreamWriter, parser: AudioSocketParser) -> bool:
        """Take the call's connection and start the keep-alive schedule; False if it is not the first."""
        if self.in_use:
            return False
        self._used = True
        self._writer, self._parser = writer, parser
        pacer = self._pacer = Pacer(self.sample_rate)
        pacer.keep_alive(asyncio.get_running_loop().time())
        self._sender = asyncio.create_task(self._send(writer), name=f"audiosocket-send-{self.call_id}")
        self._attached.set()
        return True

    def receive(self, event: Audio | Digit) -> None:
        """One inbound frame, already parsed."""
        if isinstance(event, Digit):
            if self.on_dtmf is not None:
                self.on_dtmf(event.digit)
            return
        if not self._rate_known:
            self._rate_known = True
            self._first_audio.set()
            self._adopt_rate(event.sample_rate)
        elif event.sample_rate != self.sample_rate:
            self._inbound_rejected += 1
            return
        if self.tap is not None:
            self.tap.caller(event.pcm, event.sample_rate)
        self._inbound.push(event.pcm, event.sample_rate)

    def detach(self, reason: str) -> None:
        """The connection is gone: frames() ends, playback stops, the call layer hears why."""
        if self._writer is None:
            return
        self._stop_media()
        if not self._closed:
            self.closed_reason = reason
            if self.on_closed is not None:
                self.on_closed(reason)

    @property
    def frames_rejected(self) -> int:
        """Inbound frames dropped as unusable: odd or empty audio, bad DTMF, a change of rate."""
        dropped = sum(self._parser.dropped.values()) if self._parser is not None else 0
        return dropped + self._inbound_rejected

    # ------------------------------------------------------------ MediaPort

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def wait_connected(self, timeout: float) -> bool:
        """Connected, and the first audio frame told the rate (c(slin16) is only known from it), if it comes soon."""
        try:
            await asyncio.wait_for(self._attached.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        try:
            await asyncio.wait_for(self._first_audio.wait(), FIRST_AUDIO_WAIT_S)
        except asyncio.TimeoutError:
            pass  # a silent line: play at the default rate; Asterisk reads each frame's type byte
        return self.connected

    async def play(self, pcm: bytes, sample_rate: int) -> PlayResult:
        """Play to the caller; returns when the last frame has left, or at a flush."""
        return await self.play_stream(one_chunk(pcm), sample_rate)

    async def play_stream(self, chunks: AsyncIterator[bytes], sample_rate: int,
                          on_first_frame: Callable[[float], None] | None = None) -> PlayResult:
        """Play audio while it is still being produced; `on_first_frame` gets the first frame's send time."""
        generation = self._generation  # a flush while this play waits for the lock cancels it too
        async with self._play_lock:
            pacer = self._pacer
            if generation != self._generation or pacer is None or not self.connected:
                return PlayResult(0, 0, True)
            playout = self._playout = _Playout(on_first_frame)
            try:
                await self._queue_stream(playout, pacer, chunks, sample_rate)
                await playout.done.wait()
            finally:
                self._playout = None
                if not playout.done.is_set():  # cancelled: what it queued must not play under the next one
                    pacer.flush()
            return PlayResult(_ms(playout.sent, pacer.sample_rate), _ms(playout.queued, pacer.sample_rate),
                              playout.interrupted, playout.first_at)

    async def flush(self) -> None:
        """Barge-in: nothing more leaves; the frame on the wire is the last the caller hears."""
        self._generation += 1
        if self._pacer is not None:
            self._pacer.flush()
        if self._playout is not None:
            self._playout.interrupt()

    def close(self) -> None:
        """The call is over: end frames() and playback, and close the connection (Asterisk's hangup)."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        self._stop_media()
        if writer is not None:
            writer.close()

    # ------------------------------------------------------------ inside

    def _adopt_rate(self, rate: int) -> None:
        """Answer at the rate the channel speaks, unless audio at the old rate is already queued."""
        pacer = self._pacer
        if rate == self.sample_rate or pacer is None:
            self.sample_rate = rate
            return
        self.sample_rate = rate
        if self._play_lock.locked() or pacer.queued_ms:
            return  # Asterisk takes each frame's rate from its type byte: the old rate still plays right
        replacement = Pacer(rate)
        replacement.keep_alive(pacer.next_due())  # the same slots: keep-alive never stops a schedule
        self._pacer = replacement

    async def _queue_stream(self, playout: _Playout, pacer: Pacer, chunks: AsyncIterator[bytes],
                            sample_rate: int) -> None:
        """Hand whole frames to the pacer as they come: a partial one would be padded mid-sentence."""
        resampler = Resampler(sample_rate, pacer.sample_rate)
        frame = pacer.frame_bytes
        pending = bytearray()
        async for chunk in chunks:
            if playout.interrupted:
                return
            pending += resampler.convert(chunk)
            whole = len(pending) - len(pending) % frame
            self._queue(playout, pacer, pending[:whole])
            del pending[:whole]
        if playout.interrupted:
            return
        self._queue(playout, pacer, pending)
        playout.complete = True
        playout.check()

    def _queue(self, playout: _Playout, pacer: Pacer, pcm: bytearray) -> None:
        if pcm:
            pacer.push(bytes(pcm), asyncio.get_running_loop().time())
            playout.queued += len(pcm)

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        """The schedule: every slot one frame in one write, audio when queued, silence otherwise."""
        loop = asyncio.get_running_loop()
        try:
            while not writer.is_closing():
                delay = self._pacer.next_due() - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                pacer = self._pacer  # read again: the rate may have changed meanwhile
                now = loop.time()
                before = pacer.sent_bytes
                frames = pacer.poll(now)
                if frames:
                    self._write(writer, pacer, frames, now)
                    self._sent(pacer, frames, pacer.sent_bytes - before, now)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass  # the reader sees the same loss and detaches the port

    def _write(self, writer: asyncio.StreamWriter, pacer: Pacer, frames: list[bytes], now: float) -> None:
        last_due = pacer.next_due() - _PERIOD_S
        for i, frame in enumerate(frames):
            writer.write(frame)  # one write per frame: Asterisk waits only ~5 ms for the rest of a split frame
            self.pacing.record(now - (last_due - (len(frames) - 1 - i) * _PERIOD_S))

    def _sent(self, pacer: Pacer, frames: list[bytes], audio_bytes: int, now: float) -> None:
        """Audio (not keep-alive silence) that left: the tap and the playout learn of it."""
        if not audio_bytes:
            return
        if self.tap is not None:
            audio_frames = -(-audio_bytes // pacer.frame_bytes)  # audio comes first; silence only after the queue ran dry
            for frame in frames[:audio_frames]:
                self.tap.agent(frame[HEADER_BYTES:], pacer.sample_rate)
        if self._playout is not None:
            self._playout.sent_audio(audio_bytes, now)

    def _stop_media(self) -> None:
        self._writer = None
        self._attached.clear()
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        if self._pacer is not None:
            self._pacer.flush()
        if self._playout is not None:
            self._playout.interrupt()
        self._inbound.end()


def _ms(nbytes: int, rate: int) -> int:
    return nbytes * 1000 // (2 * rate)
