"""Sans-I/O Asterisk AudioSocket: frames in, typed events out; PCM in, paced frames out.

Wire format (res_audiosocket, confirmed against Asterisk 22.10.1 in tests/fixtures/asterisk):
1 type byte, 2-byte big-endian payload length, payload. Asterisk is the TCP client; its first
frame is 0x01 with the 16-byte call UUID, then signed-linear audio and 0x03 DTMF (one ASCII
digit at digit end). 22.10.1 never sends 0x00 or 0xff: a hangup is a plain TCP close.

Both directions live here: voxgate parses what Asterisk sends and encodes audio back, and the
PBX simulator encodes Asterisk's frames and reads the server's with res_audiosocket's rules.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import IntEnum

FRAME_MS = 20
HEADER_BYTES = 3
MAX_PAYLOAD = 0xFFFF
DTMF_DIGITS = frozenset("0123456789*#ABCD")
# No catching up after a stall: Asterisk forwards frames untouched (no jitter buffer, no re-timing)
# and the caller's phone has already played the stall as silence, so a catch-up burst recovers
# nothing and lands on a buffer that may still hold a frame or two: with a 60 ms phone buffer, a
# 3-frame catch-up lost 45 frames over four 80 ms stalls where 1 lost none. A recorded 4.8 s burst
# left only ~2.3 s audible on the caller's leg. The stall becomes slipped time instead.
MAX_BURST_FRAMES = 1
# app_audiosocket hangs up after 2000 ms without a frame in either direction (MAX_WAIT_TIMEOUT_MSEC);
# the channel driver has no such limit. For the simulator's fake Asterisk.
APP_IDLE_TIMEOUT_S = 2.0


class Kind(IntEnum):
    """Frame types (include/asterisk/res_audiosocket.h, 22.x numbering)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    SLIN12 = 0x11
    SLIN16 = 0x12
    SLIN24 = 0x13
    SLIN32 = 0x14
    SLIN44 = 0x15
    SLIN48 = 0x16
    SLIN96 = 0x17
    SLIN192 = 0x18
    ERROR = 0xFF


RATE_OF_KIND: dict[int, int] = {
    Kind.SLIN: 8000, Kind.SLIN12: 12000, Kind.SLIN16: 16000, Kind.SLIN24: 24000, Kind.SLIN32: 32000,
    Kind.SLIN44: 44100, Kind.SLIN48: 48000, Kind.SLIN96: 96000, Kind.SLIN192: 192000,
}
KIND_OF_RATE: dict[int, int] = {rate: kind for kind, rate in RATE_OF_KIND.items()}
FRAME_BYTES: dict[int, int] = {rate: rate * FRAME_MS // 1000 * 2 for rate in KIND_OF_RATE}
"""Bytes of 16-bit mono PCM in one 20 ms frame, per sample rate."""


class AudioSocketError(ValueError):
    """The peer broke the AudioSocket protocol; the connection cannot be trusted any more."""


@dataclass(frozen=True, slots=True)
class CallId:
    """The first frame: the AudioSocket() / dial-string UUID, as canonical lowercase text."""

    uuid: str


@dataclass(frozen=True, slots=True)
class Audio:
    """16-bit signed little-endian mono PCM; the rate comes from the frame's type byte."""

    pcm: bytes = field(repr=False)
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Digit:
    """A DTMF digit, reported once when the key is released (no begin, no duration)."""

    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """An explicit 0x00 frame (Asterisk 22.10.1 closes the socket instead)."""


@dataclass(frozen=True, slots=True)
class PeerError:
    """A 0xff frame; the code is the optional bit-packed byte (1 hangup, 2 forwarding, 4 memory)."""

    code: int | None


Event = CallId | Audio | Digit | Hangup | PeerError


class _Framer(ABC):
    """Splits a byte stream into (type, payload) frames, whatever the chunking."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        """Parse every complete frame now buffered; a partial one waits for more bytes."""
        buf = self._buf
        buf += data
        events: list[Event] = []
        pos, end = 0, len(buf)
        with memoryview(buf) as view:
            while end - pos >= HEADER_BYTES:
                stop = pos + HEADER_BYTES + (buf[pos + 1] << 8 | buf[pos + 2])
                if stop > end:
                    break
                event = self._frame(buf[pos], view[pos + HEADER_BYTES:stop])
                if event is not None:
                    events.append(event)
                pos = stop
        del buf[:pos]
        return events

    def _truncation(self) -> str | None:
        """What is missing when the stream stops now, or None at a frame boundary."""
        have = len(self._buf)
        if not have:
            return None
        if have < HEADER_BYTES:
            return f"{have} of the {HEADER_BYTES} header bytes arrived ({HEADER_BYTES - have} missing)"
        want = self._buf[1] << 8 | self._buf[2]
        got = have - HEADER_BYTES
        return (f"a 0x{self._buf[0]:02x} frame announced {want} payload bytes, {got} arrived "
                f"({want - got} missing)")

    @abstractmethod
    def _frame(self, kind: int, payload: memoryview) -> Event | None:
        """One whole frame as an event (None: dropped); each direction has its own rules."""


class AudioSocketParser(_Framer):
    """Incremental parser for what Asterisk sends: feed() chunks, get events; eof() at close.

    Errors (AudioSocketError) are for what leaves the call unidentified or the stream
    untrustworthy: a first frame that is not a 16-byte UUID, a second UUID, an unknown type,
    a frame after a hangup, a close mid-frame. A frame that is well delimited but unusable
    (empty or odd-length audio, a DTMF payload that is not one digit) is dropped and counted
    in `dropped` instead: one lost 20 ms frame or key press must not hang up a live caller.
    """

    def __init__(self) -> None:
        super().__init__()
        self.call_id: str | None = None
        self.hung_up = False
        self.dropped: dict[str, int] = {}

    def eof(self) -> None:
        """The peer closed the connection: the hangup in 22.10.1. Raises unless it ended cleanly."""
        missing = self._truncation()
        if missing is not None:
            raise AudioSocketError(f"AudioSocket connection closed mid-frame: {missing}")
        if self.call_id is None:
            raise AudioSocketError("AudioSocket connection closed before the UUID frame "
                                   "(AudioSocket() on an unanswered channel does this: Answer() first)")

    def _frame(self, kind: int, payload: memoryview) -> Event | None:
        if self.hung_up:
            raise AudioSocketError(f"0x{kind:02x} frame after the hangup frame")
        if self.call_id is None:
            return self._first(kind, payload)
        rate = RATE_OF_KIND.get(kind)
        if rate is not None:
            if not payload or len(payload) % 2:
                return self._drop(f"{'empty' if not payload else 'odd-length'} audio")
            return Audio(bytes(payload), rate)
        if kind == Kind.DTMF:
            digit = bytes(payload).decode("latin-1").upper()
            if digit not in DTMF_DIGITS:
                return self._drop("bad DTMF payload")
            return Digit(digit)
        if kind == Kind.HANGUP:
            self.hung_up = True
            return Hangup()
        if kind == Kind.ERROR:
            return PeerError(payload[0] if payload else None)
        if kind == Kind.UUID:
            raise AudioSocketError(f"second UUID frame on call {self.call_id}: one connection carries one call")
        raise AudioSocketError(f"unknown AudioSocket frame type 0x{kind:02x} ({len(payload)} payload bytes)")

    def _first(self, kind: int, payload: memoryview) -> CallId:
        if kind != Kind.UUID:
            raise AudioSocketError(f"first AudioSocket frame is type 0x{kind:02x}, not the 0x01 UUID frame")
        if len(payload) != 16:
            raise AudioSocketError(f"UUID frame carries {len(payload)} bytes, not 16")
        self.call_id = str(uuid.UUID(bytes=bytes(payload)))
        return CallId(self.call_id)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class ServerFrameParser(_Framer):
    """What res_audiosocket makes of the bytes a server sends, for the PBX simulator.

    Audio of any length from one byte (odd ones too) is played as it arrives; 0x00 ends the
    connection; a zero-length audio frame or any other type makes Asterisk hang up the call.
    """

    def eof(self) -> None:
        """The server closed: Asterisk treats it as a hangup, unless a frame was cut short."""
        missing = self._truncation()
        if missing is not None:
            raise AudioSocketError(f"Failed to read payload from AudioSocket: {missing}")

    def _frame(self, kind: int, payload: memoryview) -> Event:
        rate = RATE_OF_KIND.get(kind)
        if rate is not None:
            if not payload:
                raise AudioSocketError("Invalid message length received from AudioSocket server.")
            return Audio(bytes(payload), rate)
        if kind == Kind.HANGUP:
            return Hangup()
        raise AudioSocketError(f"Received AudioSocket message other than hangup or audio (type 0x{kind:02x})")


# ---------------------------------------------------------------- frames (server -> Asterisk)


def audio_frame(pcm: bytes, sample_rate: int) -> bytes:
    """One audio frame, to be written with a single send (Asterisk waits only ~5 ms for a split frame)."""
    kind = KIND_OF_RATE.get(sample_rate)
    if kind is None:
        raise ValueError(f"AudioSocket has no frame type for {sample_rate} Hz (rates: {sorted(KIND_OF_RATE)})")
    if not pcm:
        raise ValueError("empty audio frame: Asterisk answers it with 'Invalid message length' and hangs up")
    if len(pcm) % 2:
        raise ValueError(f"{len(pcm)}-byte audio frame is not whole 16-bit samples")
    if len(pcm) > MAX_PAYLOAD:
        raise ValueError(f"{len(pcm)}-byte audio frame exceeds the {MAX_PAYLOAD}-byte length field")
    return bytes((kind, len(pcm) >> 8, len(pcm) & 0xFF)) + pcm


def hangup_frame() -> bytes:
    """0x00: the AudioSocket() app returns and the dialplan continues; the channel driver hangs up."""
    return bytes((Kind.HANGUP, 0, 0))


# ---------------------------------------------------------------- frames (Asterisk -> server), for the simulator
# Never send these to Asterisk: it logs "message other than hangup or audio" and hangs up.


def call_id_frame(call_uuid: str) -> bytes:
    """The first frame Asterisk sends: 0x01 with the UUID's 16 bytes (RFC 4122 order)."""
    return bytes((Kind.UUID, 0, 16)) + uuid.UUID(call_uuid).bytes


def digit_frame(digit: str) -> bytes:
    """A 0x03 frame with one ASCII digit, as Asterisk sends at DTMF end."""
    if digit not in DTMF_DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return bytes((Kind.DTMF, 0, 1)) + digit.encode("ascii")


# ---------------------------------------------------------------- outbound pacing


class Pacer:
    """Queued PCM out as one 20 ms frame per 20 ms on an absolute schedule; pure, time passed in.

    Asterisk plays each frame the moment it arrives (no jitter buffer), so send times are the
    caller's playout times: a burst is mostly lost, a late frame is a gap. After a stall the
    pacer sends at most `max_burst` frames at once (by default one: no catch-up); lateness beyond
    that is given up (`slipped_ms`) and the audio goes on from where it stopped, nothing dropped. A trailing partial frame is padded with silence.
    Without keep-alive the schedule stops when the queue is empty and the next push() starts a
    new one; with keep-alive every slot carries a frame, silence when there is no audio.
    """

    def __init__(self, sample_rate: int = 8000, *, max_burst: int = MAX_BURST_FRAMES) -> None:
        if sample_rate not in KIND_OF_RATE:
            raise ValueError(f"AudioSocket has no frame type for {sample_rate} Hz")
        if max_burst < 1:
            raise ValueError("max_burst must be at least 1 frame")
        self.sample_rate = sample_rate
        self.max_burst = max_burst
        self.frame_bytes = FRAME_BYTES[sample_rate]
        self._header = bytes((KIND_OF_RATE[sample_rate], self.frame_bytes >> 8, self.frame_bytes & 0xFF))
        self._silence = self._header + bytes(self.frame_bytes)
        self._period = FRAME_MS / 1000
        self._queue = bytearray()
        self._keepalive = False
        self._t0: float | None = None  # due time of slot 0 of the running schedule
        self._slots = 0  # slots of that schedule already used (sent or given up)
        self._free_at = float("-inf")  # end of the last frame sent: a new schedule never starts before it
        self.sent_bytes = 0
        self.silence_frames = 0
        self.slipped_ms = 0

    def push(self, pcm: bytes, now: float) -> None:
        """Queue audio; an idle pacer starts its schedule at `now` (first frame due at once)."""
        if len(pcm) % 2:
            raise ValueError(f"{len(pcm)} bytes of PCM is not whole 16-bit samples")
        self._queue += pcm
        if pcm and self._t0 is None:
            self._start(now)

    def keep_alive(self, now: float) -> None:
        """From `now` on, fill every idle slot with silence: the AudioSocket() app hangs up after
        2 s without a frame either way, and a steady stream keeps the caller's RTP flowing."""
        self._keepalive = True
        if self._t0 is None:
            self._start(now)

    def poll(self, now: float) -> list[bytes]:
        """The frames due by `now`, each a complete frame for one write."""
        if self._t0 is None:
            return []
        owed = self._slots_due(now) - self._slots
        if owed <= 0:
            return []
        if owed > self.max_burst:
            self._slots += owed - self.max_burst
            self.slipped_ms += (owed - self.max_burst) * FRAME_MS
            owed = self.max_burst
        frames = []
        for _ in range(owed):
            frames.append(self._next_frame())
            self._slots += 1
            if not self._queue and not self._keepalive:
                self._stop()
                break
        return frames

    def next_due(self) -> float | None:
        """When the next frame is due (monotonic seconds), or None when there is nothing to send."""
        if self._t0 is None:
            return None
        return self._t0 + self._slots * self._period

    def flush(self) -> int:
        """Barge-in: drop everything not yet sent; returns the milliseconds dropped."""
        dropped = self._ms(len(self._queue))
        self._queue.clear()
        if self._t0 is not None and not self._keepalive:
            self._stop()
        return dropped

    @property
    def queued_ms(self) -> int:
        return self._ms(len(self._queue))

    @property
    def sent_ms(self) -> int:
        """Queued audio sent so far (padding and keep-alive silence excluded): what the caller
        has heard, since Asterisk forwards a frame within a millisecond."""
        return self._ms(self.sent_bytes)

    def _ms(self, nbytes: int) -> int:
        return nbytes * 1000 // (2 * self.sample_rate)

    def _start(self, now: float) -> None:
        self._t0 = max(now, self._free_at)
        self._slots = 0

    def _stop(self) -> None:
        self._free_at = self._t0 + self._slots * self._period
        self._t0 = None

    def _slots_due(self, now: float) -> int:
        """Slots whose due time is at or before `now`, compared exactly as next_due() computes them."""
        t0, period = self._t0, self._period
        n = max(0, int((now - t0) / period) + 1)
        while n and t0 + (n - 1) * period > now:
            n -= 1
        while t0 + n * period <= now:
            n += 1
        return n

    def _next_frame(self) -> bytes:
        queue = self._queue
        if not queue:
            self.silence_frames += 1
            return self._silence
        take = min(len(queue), self.frame_bytes)
        frame = self._header + queue[:take]
        del queue[:take]
        self.sent_bytes += take
        if take < self.frame_bytes:
            frame += bytes(self.frame_bytes - take)
        return frame


__all__ = [
    "APP_IDLE_TIMEOUT_S", "FRAME_BYTES", "FRAME_MS", "KIND_OF_RATE", "MAX_BURST_FRAMES", "MAX_PAYLOAD",
    "RATE_OF_KIND", "Audio", "AudioSocketError", "AudioSocketParser", "CallId", "Digit", "Event", "Hangup",
    "Kind", "Pacer", "PeerError", "ServerFrameParser", "audio_frame", "call_id_frame", "digit_frame",
    "hangup_frame",
]
