"""The AudioSocket connection Asterisk 22.10.1 makes to voxgate, as recorded (audiosocket.txt).

Asterisk is the TCP client: 2 s connect timeout, the 0x01 UUID frame first, then one audio frame
per 20 ms the caller's channel produced (0x10 slin 8 kHz for the AudioSocket() app, 0x12 slin16
for Dial(AudioSocket/.../c(slin16))) and a 0x03 frame when a key is released. A hangup is a
plain TCP close: never 0x00, never 0xff.

What voxgate sends back is handled with res_audiosocket's rules (ServerFrameParser) and played
the moment it arrives: there is no jitter buffer in Asterisk, so the caller's phone gets frames
at voxgate's pace. The phone keeps at most JITTER_MS of audio ahead of its playout; a frame that
arrives while that much is waiting is lost, which is why a burst (the recorded app_burst: 241
frames in 6 ms) is mostly lost and a slow sender is heard as choppy audio.
"""

from __future__ import annotations

import asyncio
import logging

from controller.asterisk.audiosocket import (
    Audio, AudioSocketError, Hangup, ServerFrameParser, audio_frame, call_id_frame, digit_frame,
)
from controller.audio import Resampler, frame_bytes
from controller.simulator.asterisk.channel import RateDoubler
from controller.simulator.events import SimClock

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0  # MAX_CONNECT_TIMEOUT_MSEC
JITTER_MS = 60  # the caller phone's jitter buffer: the smallest common one (3 frames)
CHANNEL_RATE = 8000
READ_SIZE = 65536
NORMAL_CLEARING = 16


class AudioSocketLeg:
    """One AudioSocket connection carrying a caller channel's media (a MediaLeg).

    `sample_rate` is the wire rate of what Asterisk sends (8000 for the app, 16000 for c(slin16)).
    `idle_timeout` is the app's limit without a frame either way (None for the channel driver).
    `failed` says the app returned -1 (error, idle timeout): the call hangs up instead of going on.
    """

    def __init__(self, clock: SimClock, host: str, port: int, call_uuid: str, sample_rate: int, *,
                 idle_timeout: float | None) -> None:
        self.clock = clock
        self.host = host
        self.port = port
        self.call_uuid = call_uuid
        self.sample_rate = sample_rate
        self.idle_timeout = idle_timeout
        self.done = asyncio.Event()
        self.cause = NORMAL_CLEARING
        self.failed = False
        self.end_reason = ""  # closed | hangup_frame | error: ... | idle_timeout | connect_failed | asterisk_closed
        self.frames_sent = 0
        self.digits_sent: list[str] = []
        self.frames_received = 0
        self.frames_lost = 0  # arrived while the phone's jitter buffer was full
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._parser = ServerFrameParser()
        self._buffer = bytearray()  # what the phone will play, at CHANNEL_RATE
        if sample_rate not in (CHANNEL_RATE, 2 * CHANNEL_RATE):
            raise ValueError(f"the simulated AudioSocket sends slin or slin16, not {sample_rate} Hz")
        self._up = RateDoubler() if sample_rate != CHANNEL_RATE else None
        self._down: dict[int, Resampler] = {}
        self._last_activity = clock.now()

    async def connect(self) -> bool:
        """Connect and send the UUID frame; False when nothing answered (the app returns -1)."""
        try:
            reader, self._writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                          self.clock.real(CONNECT_TIMEOUT))
        except (OSError, TimeoutError) as exc:
            log.warning("Connecting to '%s:%d' failed: %s", self.host, self.port, exc)
            self._end("connect_failed", failed=True)
            return False
        self._write(call_id_frame(self.call_uuid))
        self._last_activity = self.clock.now()
        self._task = asyncio.ensure_future(self._read(reader))
        return True

    # ------------------------------------------------------------------ MediaLeg

    def caller_frame(self, pcm: bytes | None) -> None:
        if pcm is None or self.done.is_set():
            return
        wire = self._up.convert(pcm) if self._up is not None else pcm
        self._write(audio_frame(wire, self.sample_rate))
        self.frames_sent += 1
        self._last_activity = self.clock.now()

    def caller_digit(self, digit: str) -> None:
        if not self.done.is_set():
            self._write(digit_frame(digit))
            self.digits_sent.append(digit)
            self._last_activity = self.clock.now()

    def playout(self, nbytes: int) -> bytes | None:
        """The caller's 20 ms: what the phone plays now; also where the app's idle limit runs out."""
        if (self.idle_timeout is not None and not self.done.is_set()
                and self.clock.now() - self._last_activity >= self.idle_timeout):
            log.error("Reached timeout after %d ms of no activity on AudioSocket connection",
                      self.idle_timeout * 1000)
            self._end("idle_timeout", failed=True)
            self.close()
        if not self._buffer:
            return None
        frame = bytes(self._buffer[:nbytes])
        del self._buffer[:nbytes]
        return frame.ljust(nbytes, b"\0")

    def close(self) -> None:
        """Asterisk hangs up its side: TCP FIN, no 0x00 frame."""
        self._end("asterisk_closed")
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()

    # ------------------------------------------------------------------ the server's bytes

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(READ_SIZE):
                self._receive(data)
                if self.done.is_set():
                    break
            else:
                self._parser.eof()
                self._end("closed")
        except AudioSocketError as exc:
            log.error("%s", exc)
            self._end(f"error: {exc}", failed=True)
        except ConnectionError:
            self._end("closed")
        self.close()

    def _receive(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if isinstance(event, Hangup):
                self._end("hangup_frame")
                return
            if isinstance(event, Audio):
                self._last_activity = self.clock.now()
                self._play(event)

    def _play(self, audio: Audio) -> None:
        """Into the phone's jitter buffer, unless it is already JITTER_MS ahead (then the frame is lost)."""
        self.frames_received += 1
        if len(self._buffer) >= frame_bytes(CHANNEL_RATE, ms=JITTER_MS):
            self.frames_lost += 1
            return
        pcm = audio.pcm[:len(audio.pcm) // 2 * 2]  # an odd last byte is half a sample: Asterisk drops it
        if audio.sample_rate != CHANNEL_RATE:
            # Each frame's type byte sets its rate (0x10 on a slin16 channel is transcoded, as recorded).
            resampler = self._down.setdefault(audio.sample_rate, Resampler(audio.sample_rate, CHANNEL_RATE))
            pcm = resampler.convert(pcm)
        self._buffer += pcm

    # ------------------------------------------------------------------ plumbing

    def _write(self, frame: bytes) -> None:
        """Each frame in one write: Asterisk does the same (and waits only ~5 ms for a split one)."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(frame)

    def _end(self, reason: str, *, failed: bool = False) -> None:
        if self.done.is_set():
            return
        self.end_reason = reason
        self.failed = failed
        self.done.set()
