"""Sans-I/O chan_websocket (Asterisk 22.6+/20.16+): call media over a WebSocket Asterisk opens to us.

`Dial(WebSocket/<websocket_client.conf id>/c(slin16)v(k=v,...))` makes Asterisk the WebSocket
client: `GET <uri path>?<v() params, commas turned into &>`, subprotocol "media". Its first TEXT
message is MEDIA_START; then BINARY frames of raw samples (one per ptime, no header) and TEXT
events. We answer with BINARY audio of any size (Asterisk re-frames it and plays one frame per
tick) and TEXT commands. Events and commands are plain text (`MARK_MEDIA name`) or, with the
dial option f(json), JSON; the format is detected per message. Facts confirmed against a real
Asterisk 22.10.1 in tests/fixtures/asterisk/chan_websocket_scenarios.json.

Both sides live here, as in audiosocket.py: voxgate parses events and renders commands; the PBX
simulator's fake Asterisk renders events and parses commands with chan_websocket's rules.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SUBPROTOCOL = "media"
MAX_FRAME_BYTES = 65535
"""res_http_websocket's limit for one incoming frame, header included; a bigger frame makes Asterisk
hang up (cause 38, network out of order) and reset the TCP connection without a close handshake."""
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES - 4
"""Largest BINARY payload we may send: a server frame of 126..65535 bytes has a 4-byte header."""
MAX_COMMAND_BYTES = 128
"""Longer TEXT messages are ignored by Asterisk with only a WARNING in its log: a mark would vanish."""
QUEUE_MAX_FRAMES = 1000
"""A BINARY message arriving while this many frames are queued is dropped silently, whole."""
XOFF_FRAMES = 900
"""MEDIA_XOFF when the queue reaches this many frames..."""
XON_FRAMES = 800
"""...and MEDIA_XON on the first tick it is back below this many."""
PTIME_MS = 20
"""The ptime (default_ms) Asterisk uses for every format voxgate frames."""
DEFAULT_MAX_LEAD_MS = 1000
DEFAULT_REFILL_MS = 200
DIRECTIONS = ("both", "in", "out")
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class WebSocketMediaError(ValueError):
    """A chan_websocket message or command that is malformed or cannot be used."""


class ControlFormat(StrEnum):
    """How TEXT events and commands are written (chan_websocket.conf control_message_format names)."""

    PLAIN = "plain-text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """An Asterisk media format voxgate can frame: samples are little-endian when 16-bit."""

    name: str
    sample_rate: int
    sample_width: int
    silence: int
    """The byte value of a silent sample (0 for slin, 0xff for ulaw, 0xd5 for alaw)."""

    @property
    def is_l16(self) -> bool:
        return self.sample_width == 2

    def frame_bytes(self, ms: int) -> int:
        """Bytes in `ms` of audio: Asterisk's optimal_frame_size for ms = ptime."""
        return self.sample_rate * ms // 1000 * self.sample_width


AUDIO_FORMATS: dict[str, AudioFormat] = {f.name: f for f in (
    AudioFormat("slin", 8000, 2, 0), AudioFormat("slin12", 12000, 2, 0), AudioFormat("slin16", 16000, 2, 0),
    AudioFormat("slin24", 24000, 2, 0), AudioFormat("slin32", 32000, 2, 0), AudioFormat("slin44", 44100, 2, 0),
    AudioFormat("slin48", 48000, 2, 0), AudioFormat("slin96", 96000, 2, 0), AudioFormat("slin192", 192000, 2, 0),
    AudioFormat("ulaw", 8000, 1, 0xFF), AudioFormat("alaw", 8000, 1, 0xD5),
)}
OPTIMAL_FRAME_BYTES: dict[str, int] = {name: f.frame_bytes(PTIME_MS) for name, f in AUDIO_FORMATS.items()}
"""The optimal_frame_size MEDIA_START announces per format: one ptime of samples (slin16 640)."""


# ---------------------------------------------------------------- Asterisk -> app events


@dataclass(frozen=True, slots=True)
class MediaStart:
    """The first TEXT message: which channel this connection carries and its media format.

    channel_id is the WebSocket channel's own uniqueid (its Linkedid is the caller's); the call's
    identity reaches voxgate through the v() parameters in the request's query string.
    """

    connection_id: str
    channel: str
    channel_id: str
    format: str
    optimal_frame_size: int
    ptime: int
    control_format: ControlFormat
    channel_variables: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Only in the JSON format: the WebSocket channel's variables."""

    @property
    def audio(self) -> AudioFormat | None:
        """None for formats voxgate cannot frame (opus, g729, ...: Asterisk forces passthrough)."""
        return AUDIO_FORMATS.get(self.format)

    @property
    def sample_rate(self) -> int | None:
        audio = self.audio
        return None if audio is None else audio.sample_rate

    @property
    def is_l16(self) -> bool:
        """16-bit signed little-endian PCM (slin*), as opposed to ulaw/alaw bytes."""
        audio = self.audio
        return audio is not None and audio.is_l16


@dataclass(frozen=True, slots=True)
class MediaXoff:
    """Asterisk's queue holds >= 900 frames: stop sending audio until MediaXon."""


@dataclass(frozen=True, slots=True)
class MediaXon:
    """The queue is back below 800 frames (also sent on the tick after a FLUSH_MEDIA during XOFF)."""


@dataclass(frozen=True, slots=True)
class QueueDrained:
    """Answer to REPORT_QUEUE_DRAINED (one-shot): the queue became empty; it survives FLUSH_MEDIA."""


@dataclass(frozen=True, slots=True)
class MarkProcessed:
    """Playback reached a MARK_MEDIA: all audio sent before it has been played to the caller."""

    name: str


@dataclass(frozen=True, slots=True)
class MediaBufferingCompleted:
    """The audio sent before STOP_MEDIA_BUFFERING has been played (queued like a mark)."""

    correlation_id: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key press, reported once at its end (DTMF_END; there is no begin event)."""

    digit: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """Answer to GET_STATUS. queue_full is the XOFF state (it stays true until the next XON)."""

    channel_id: str
    queue_length: int
    xon_level: int
    xoff_level: int
    queue_full: bool
    bulk_media: bool
    media_paused: bool


@dataclass(frozen=True, slots=True)
class CommandError:
    """ERROR: a command Asterisk refused (bad JSON, not allowed in passthrough, bad direction)."""

    channel_id: str
    text: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event this module does not know; newer Asterisk versions may add some."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)


Event = (MediaStart | MediaXoff | MediaXon | QueueDrained | MarkProcessed | MediaBufferingCompleted
         | Dtmf | QueueStatus | CommandError | UnknownEvent)


@dataclass(frozen=True, slots=True)
class Hangup:
    """How the WebSocket ended; chan_websocket has no hangup event, the close is the hangup.

    1000: Asterisk hung up (the caller or the dialplan hung up, or we sent HANGUP).
    1001: Asterisk's reply to our own close; it then hangs the channel up (cause 16).
    None (1006 in websockets): no close handshake, e.g. after a frame over 65535 bytes.
    """

    code: int | None
    reason: str = ""

    @property
    def normal(self) -> bool:
        return self.code in (1000, 1001)


_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_START_FIELDS = ("connection_id", "channel", "channel_id", "format", "optimal_frame_size", "ptime")
_STATUS_INTS = ("queue_length", "xon_level", "xoff_level")
_STATUS_BOOLS = ("queue_full", "bulk_media", "media_paused")
_NO_DATA = {"MEDIA_XOFF": MediaXoff(), "MEDIA_XON": MediaXon(), "QUEUE_DRAINED": QueueDrained()}


def parse_event(text: str) -> Event:
    """One TEXT message from Asterisk, in either control format (JSON when it starts with '{')."""
    body = text.strip()
    if not body:
        raise WebSocketMediaError("empty TEXT message from Asterisk")
    if body.startswith("{"):
        return _parse_json_event(text)
    return _parse_plain_event(body, text)


def expect_media_start(message: str | bytes) -> MediaStart:
    """The first message of a connection, which Asterisk always makes a TEXT MEDIA_START."""
    if not isinstance(message, str):
        raise WebSocketMediaError(f"first message is {len(message)} bytes of BINARY, not the MEDIA_START text")
    event = parse_event(message)
    if not isinstance(event, MediaStart):
        raise WebSocketMediaError(f"first message is not MEDIA_START: {message[:80]!r}")
    return event


def _parse_plain_event(body: str, text: str) -> Event:
    name, _, rest = body.partition(" ")
    if not _EVENT_NAME.match(name):
        raise WebSocketMediaError(f"not a chan_websocket event: {text[:80]!r}")
    if name in _NO_DATA:
        return _NO_DATA[name]
    if name == "MEDIA_MARK_PROCESSED":
        return MarkProcessed(rest)
    if name == "MEDIA_BUFFERING_COMPLETED":
        return MediaBufferingCompleted(rest)
    if name == "ERROR":
        # error_text is last and may hold spaces and colons of its own.
        head, found, error_text = rest.partition("error_text:")
        if not found:
            raise WebSocketMediaError(f"ERROR without error_text: {text[:80]!r}")
        return CommandError(_Fields(name, _plain_fields(head, text), text).get_str("channel_id"), error_text)
    if name in ("MEDIA_START", "DTMF_END", "STATUS"):
        return _typed_event(name, _Fields(name, _plain_fields(rest, text), text), ControlFormat.PLAIN)
    try:
        fields: dict[str, Any] = _plain_fields(rest, text)
    except WebSocketMediaError:
        fields = {"data": rest}
    return UnknownEvent(name, fields)


def _plain_fields(rest: str, text: str) -> dict[str, str]:
    """key:value words; a word without a colon continues the previous value (values may hold spaces)."""
    fields: dict[str, str] = {}
    key = None
    for word in rest.split():
        name, colon, value = word.partition(":")
        if colon and name:
            key = name
            fields[key] = value
        elif key is None:
            raise WebSocketMediaError(f"expected key:value after the event name: {text[:80]!r}")
        else:
            fields[key] += " " + word
    return fields


def _parse_json_event(text: str) -> Event:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise WebSocketMediaError(f"TEXT message is not valid JSON ({exc}): {text[:80]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise WebSocketMediaError(f"JSON message without a string 'event': {text[:80]!r}")
    name = data["event"]
    fields = _Fields(name, data, text)
    if name in _NO_DATA:
        return _NO_DATA[name]
    if name == "MEDIA_MARK_PROCESSED":
        return MarkProcessed(fields.get_str("correlation_id", ""))
    if name == "MEDIA_BUFFERING_COMPLETED":
        return MediaBufferingCompleted(fields.get_str("correlation_id", ""))
    if name == "ERROR":
        return CommandError(fields.get_str("channel_id"), fields.get_str("error_text"))
    if name in ("MEDIA_START", "DTMF_END", "STATUS"):
        return _typed_event(name, fields, ControlFormat.JSON)
    return UnknownEvent(name, {k: v for k, v in data.items() if k != "event"})


def _typed_event(name: str, f: _Fields, control_format: ControlFormat) -> Event:
    if name == "MEDIA_START":
        variables = f.data.get("channel_variables", {})
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            raise WebSocketMediaError(f"MEDIA_START channel_variables is not an object of strings: {f.text[:80]!r}")
        start = MediaStart(*(f.get_str(k) for k in _START_FIELDS[:4]), f.get_int("optimal_frame_size"),
                           f.get_int("ptime"), control_format, variables)
        if start.optimal_frame_size <= 0 or start.ptime <= 0:
            raise WebSocketMediaError(f"MEDIA_START with a non-positive frame size or ptime: {f.text[:80]!r}")
        return start
    if name == "DTMF_END":
        digit = f.get_str("digit")
        if digit not in DTMF_DIGITS:
            raise WebSocketMediaError(f"DTMF_END digit {digit!r} is not one DTMF key")
        return Dtmf(digit, f.get_str("channel_id"))
    return QueueStatus(f.get_str("channel_id"), *(f.get_int(k) for k in _STATUS_INTS),
                       *(f.get_bool(k) for k in _STATUS_BOOLS))


@dataclass(slots=True)
class _Fields:
    """Typed access to one event's fields, whichever format they came in (plain values are text)."""

    event: str
    data: Mapping[str, Any]
    text: str

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise WebSocketMediaError(f"{self.event} without {key!r}: {self.text[:120]!r}")
        return self.data[key]

    def get_str(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default) if default is not None else self._get(key)
        if not isinstance(value, str):
            raise WebSocketMediaError(f"{self.event} {key} is {value!r}, not a string")
        return value

    def get_int(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise WebSocketMediaError(f"{self.event} {key} is {value!r}, not a whole number")

    def get_bool(self, key: str) -> bool:
        value = self._get(key)
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise WebSocketMediaError(f"{self.event} {key} is {value!r}, not true/false")


def render_event(event: Event, control_format: ControlFormat, channel_id: str) -> str:
    """What Asterisk 22.10.1 sends for `event` (for the simulator's fake Asterisk).

    channel_id fills the JSON events that carry it while their plain form does not.
    """
    if control_format is ControlFormat.JSON:
        return json.dumps(_json_body(event, channel_id), separators=(",", ":"), ensure_ascii=False)
    match event:
        case MediaStart():
            return "MEDIA_START " + " ".join(f"{k}:{getattr(event, k)}" for k in _START_FIELDS)
        case MarkProcessed(name):
            return f"MEDIA_MARK_PROCESSED {name}" if name else "MEDIA_MARK_PROCESSED"
        case MediaBufferingCompleted(cid):
            return f"MEDIA_BUFFERING_COMPLETED {cid}" if cid else "MEDIA_BUFFERING_COMPLETED"
        case Dtmf(digit, cid):
            return f"DTMF_END digit:{digit} channel_id:{cid}"
        case QueueStatus():
            return "STATUS channel_id:" + event.channel_id + "".join(
                f" {k}:{getattr(event, k)}" for k in _STATUS_INTS) + "".join(
                f" {k}:{str(getattr(event, k)).lower()}" for k in _STATUS_BOOLS)
        case CommandError(cid, text):
            return f"ERROR channel_id:{cid} error_text:{text}"
        case UnknownEvent(name, fields):
            return " ".join([name, *(f"{k}:{v}" for k, v in fields.items())])
    return _EVENT_NAMES[type(event)]


_EVENT_NAMES: dict[type, str] = {MediaXoff: "MEDIA_XOFF", MediaXon: "MEDIA_XON", QueueDrained: "QUEUE_DRAINED"}


def _json_body(event: Event, channel_id: str) -> dict[str, Any]:
    match event:
        case MediaStart():
            return {"event": "MEDIA_START", **{k: getattr(event, k) for k in _START_FIELDS},
                    "channel_variables": dict(event.channel_variables)}
        case MarkProcessed(name):
            return {"event": "MEDIA_MARK_PROCESSED", "channel_id": channel_id, "correlation_id": name}
        case MediaBufferingCompleted(cid):
            return {"event": "MEDIA_BUFFERING_COMPLETED", "channel_id": channel_id, "correlation_id": cid}
        case Dtmf(digit, cid):
            return {"event": "DTMF_END", "channel_id": cid, "digit": digit}
        case QueueStatus():
            return {"event": "STATUS", "channel_id": event.channel_id,
                    **{k: getattr(event, k) for k in _STATUS_INTS + _STATUS_BOOLS}}
        case CommandError(cid, text):
            return {"event": "ERROR", "channel_id": cid, "error_text": text}
        case UnknownEvent(name, fields):
            return {"event": name, **fields}
    return {"event": _EVENT_NAMES[type(event)], "channel_id": channel_id}


# ---------------------------------------------------------------- app -> Asterisk commands


@dataclass(frozen=True, slots=True)
class Commands:
    """Renders commands in the call's control format, as Asterisk 22.10.1 took them.

    In the JSON format Asterisk answers a plain-text command with ERROR "Unable to parse JSON
    command"; in plain text it ignores an unknown command with only a log WARNING.
    """

    control_format: ControlFormat = ControlFormat.PLAIN

    def answer(self) -> str:
        """Answer the channel; only needed with the dial option n (no auto-answer)."""
        return self._render("ANSWER")

    def hangup(self) -> str:
        """Hang the channel up (cause 16); Asterisk then closes the WebSocket with 1000."""
        return self._render("HANGUP")

    def flush_media(self) -> str:
        """Barge-in: drop every queued frame and mark at once (no MEDIA_MARK_PROCESSED for them)."""
        return self._render("FLUSH_MEDIA")

    def mark_media(self, name: str) -> str:
        """MEDIA_MARK_PROCESSED <name> comes back when playback reaches this point."""
        return self._render("MARK_MEDIA", "correlation_id", _checked_id(name))

    def pause_media(self) -> str:
        """Stop playing the queue (the caller gets no frames at all, not silence); keeps it."""
        return self._render("PAUSE_MEDIA")

    def continue_media(self) -> str:
        return self._render("CONTINUE_MEDIA")

    def start_media_buffering(self) -> str:
        """Keep partial frames between BINARY messages instead of dropping them."""
        return self._render("START_MEDIA_BUFFERING")

    def stop_media_buffering(self, correlation_id: str | None = None) -> str:
        """Queue the partial frame (short) and MEDIA_BUFFERING_COMPLETED behind the audio."""
        if correlation_id is None:
            return self._render("STOP_MEDIA_BUFFERING")
        return self._render("STOP_MEDIA_BUFFERING", "correlation_id", _checked_id(correlation_id))

    def report_queue_drained(self) -> str:
        """One QUEUE_DRAINED when the queue is next empty."""
        return self._render("REPORT_QUEUE_DRAINED")

    def get_status(self) -> str:
        return self._render("GET_STATUS")

    def set_media_direction(self, direction: str) -> str:
        """JSON format only. From voxgate's view: 'out' = Asterisk stops sending us media."""
        if self.control_format is not ControlFormat.JSON:
            raise WebSocketMediaError("SET_MEDIA_DIRECTION exists only in the JSON control format")
        if direction not in DIRECTIONS:
            raise WebSocketMediaError(f"media direction must be one of {DIRECTIONS}, not {direction!r}")
        return self._render("SET_MEDIA_DIRECTION", "direction", direction)

    def _render(self, name: str, key: str = "", value: str | None = None) -> str:
        if self.control_format is ControlFormat.JSON:
            body = {"command": name} if value is None else {"command": name, key: value}
            text = json.dumps(body, ensure_ascii=False)
        else:
            text = name if value is None else f"{name} {value}"
        if len(text.encode()) > MAX_COMMAND_BYTES:
            raise WebSocketMediaError(f"{name} command is {len(text.encode())} bytes; Asterisk ignores "
                                      f"TEXT messages over {MAX_COMMAND_BYTES}")
        return text


def _checked_id(name: str) -> str:
    """Plain text carries the id as the rest of the line; Asterisk strips it and echoes it back."""
    if not name or any(c.isspace() or not c.isprintable() for c in name):
        raise WebSocketMediaError(f"mark/correlation id {name!r} must be non-empty, "
                                  f"without spaces or control characters")
    return name


@dataclass(frozen=True, slots=True)
class Command:
    """A command as Asterisk reads it; argument is the correlation id or the direction."""

    name: str
    argument: str | None = None


def parse_command(text: str, control_format: ControlFormat) -> Command:
    """What chan_websocket makes of a TEXT message from the app (for the simulator's fake Asterisk).

    A WebSocketMediaError here is where Asterisk answers ERROR "Unable to parse JSON command".
    """
    body = text.strip()
    if control_format is ControlFormat.PLAIN:
        name, _, argument = body.partition(" ")
        return Command(name, argument or None)
    try:
        data = json.loads(body)
    except ValueError:
        raise WebSocketMediaError("Unable to parse JSON command") from None
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        raise WebSocketMediaError("Unable to parse JSON command")
    argument = data.get("direction") if data["command"] == "SET_MEDIA_DIRECTION" else data.get("correlation_id")
    return Command(data["command"], argument if isinstance(argument, str) else None)


# ---------------------------------------------------------------- binary media


class MediaFramer:
    """Cuts outbound audio into the whole frames Asterisk keeps, and checks inbound frames.

    Asterisk cuts each BINARY message into optimal_frame_size frames and silently drops a
    remainder shorter than one frame (without START_MEDIA_BUFFERING), so the framer holds a
    partial frame back until more audio comes or the tail is asked for, padded with silence.
    In passthrough (dial option p) each message is played as one frame: one frame per message.
    """

    def __init__(self, frame_size: int, sample_width: int = 2, silence: int = 0, *,
                 passthrough: bool = False) -> None:
        if frame_size <= 0 or frame_size % sample_width or frame_size > MAX_MESSAGE_BYTES:
            raise WebSocketMediaError(f"frame size {frame_size} is not a positive multiple of the "
                                      f"{sample_width}-byte sample up to {MAX_MESSAGE_BYTES} bytes")
        self.frame_size = frame_size
        self.sample_width = sample_width
        self.message_bytes = frame_size if passthrough else MAX_MESSAGE_BYTES // frame_size * frame_size
        self._silence = bytes([silence])
        self._partial = bytearray()
        self.dropped: dict[str, int] = {}
        """Inbound frames refused, by reason."""

    @classmethod
    def for_start(cls, start: MediaStart, *, passthrough: bool = False) -> MediaFramer:
        audio = start.audio
        if audio is None:
            raise WebSocketMediaError(f"voxgate cannot frame {start.format!r} audio (dial with c(slin16), "
                                      f"c(slin) or c(ulaw))")
        return cls(start.optimal_frame_size, audio.sample_width, audio.silence, passthrough=passthrough)

    @property
    def held_bytes(self) -> int:
        """Bytes of a partial frame waiting for more audio."""
        return len(self._partial)

    def cut(self, pcm: bytes, *, end: bool = False) -> bytes:
        """The whole frames of (held partial + pcm); end=True pads the tail to a frame with silence."""
        buf = self._partial
        buf += pcm
        whole = len(buf) - len(buf) % self.frame_size
        if end and whole < len(buf):
            buf += self._silence * (self.frame_size - len(buf) + whole)
            whole = len(buf)
        frames = bytes(buf[:whole])
        del buf[:whole]
        return frames

    def reset(self) -> None:
        """Forget the held partial frame (barge-in)."""
        self._partial.clear()

    def messages(self, frames: bytes) -> list[bytes]:
        """Whole frames split into BINARY messages that fit one WebSocket frame."""
        step = self.message_bytes
        return [frames[i:i + step] for i in range(0, len(frames), step)]

    def check_inbound(self, data: bytes) -> bytes | None:
        """A frame from Asterisk, or None (counted in `dropped`) when it holds no whole samples.

        Frames may be shorter than optimal_frame_size: the caller's last frame is (456 of 640
        bytes recorded), so only empty frames and a partial sample are refused.
        """
        if not data:
            return self._drop("empty frame")
        if len(data) % self.sample_width:
            return self._drop("partial sample")
        return data

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return None


# ---------------------------------------------------------------- sender state


@dataclass(frozen=True, slots=True)
class Flushed:
    """What a barge-in cut. Positions are ms of the call's outbound stream (MediaSession.position_ms)."""

    heard_ms: float
    """Estimated position the caller had heard when FLUSH_MEDIA went out."""
    discarded_ms: float
    """Audio queued in Asterisk or held here that will never be played."""
    dropped_marks: tuple[str, ...]
    """Marks that will never be reported: FLUSH_MEDIA discards them silently."""


_SESSION_COMMANDS = {"FLUSH_MEDIA": "flush", "MARK_MEDIA": "mark", "PAUSE_MEDIA": "pause",
                     "CONTINUE_MEDIA": "resume", "REPORT_QUEUE_DRAINED": "report_queue_drained"}


class MediaSession:
    """Sender side of one call: flow control, Asterisk's queue, marks, barge-in.

    Asterisk paces what we send (one frame per ptime from its queue), so voxgate does not pace;
    it bounds the queue instead: audio is released only while Asterisk's estimated queue is
    under max_lead_ms and no MEDIA_XOFF is in force, which keeps barge-in losses and the
    heard-position estimate small and stays far from the 1000-frame limit past which Asterisk
    drops whole messages without telling. Once full, the queue is topped up only after refill_ms
    of it has played, so a steady stream costs one wakeup and one message per refill_ms rather
    than per frame. Marks travel in order with the audio and record the stream position before
    them, so MEDIA_MARK_PROCESSED says exactly what the caller heard.

    Use: send_audio()/mark()/flush()/send_command()...; then send every messages_to_send(now)
    item (str as TEXT, bytes as BINARY); call it again at next_send_time(now) and after each
    received event. `now` is any monotonic clock in seconds (loop.time()). Positions are ms of
    the outbound stream: every frame released to Asterisk counts; a flush skips what it discards.
    """

    def __init__(self, start: MediaStart, *, passthrough: bool = False,
                 max_lead_ms: int = DEFAULT_MAX_LEAD_MS, refill_ms: int = DEFAULT_REFILL_MS) -> None:
        if not start.ptime <= max_lead_ms < XOFF_FRAMES * start.ptime:
            raise WebSocketMediaError(f"max_lead_ms must be from one ptime ({start.ptime}) to below "
                                      f"the XOFF level ({XOFF_FRAMES * start.ptime})")
        self.start = start
        self.passthrough = passthrough
        self.commands = Commands(start.control_format)
        self.framer = MediaFramer.for_start(start, passthrough=passthrough)
        self.frame_ms = start.ptime
        self.xoff = False
        self.paused = False
        self.heard_ms = 0
        """Position confirmed by the last MEDIA_MARK_PROCESSED."""
        self._lead_frames = max_lead_ms // start.ptime
        self._refill_frames = max(1, min(refill_ms, max_lead_ms) // start.ptime)
        self._urgent: list[str] = []
        self._backlog: deque[bytearray | str] = deque()
        self._accepted = 0
        self._released = 0
        self._marks: dict[str, int] = {}
        self._playout_end = 0.0
        self._paused_queue_ms = 0.0

    @property
    def position_ms(self) -> int:
        """End of the outbound stream so far: where a mark placed now would sit."""
        return self._accepted * self.frame_ms

    @property
    def outstanding_marks(self) -> tuple[str, ...]:
        return tuple(self._marks)

    def queued_ms(self, now: float) -> float:
        """Estimated audio in Asterisk's queue, not yet played."""
        if self.paused:
            return self._paused_queue_ms
        return max(0.0, (self._playout_end - now) * 1000.0)

    def played_ms(self, now: float) -> float:
        """Estimated position the caller has heard."""
        return self._released * self.frame_ms - self.queued_ms(now)

    # -- what the call wants

    def send_audio(self, pcm: bytes, *, end: bool = False) -> None:
        """Queue audio; end=True pads its tail to a whole frame (Asterisk drops a partial one)."""
        self._add_frames(self.framer.cut(pcm, end=end))

    def mark(self, name: str) -> None:
        """Mark the end of the audio sent so far (its partial tail padded and sent first)."""
        self._refuse_in_passthrough("MARK_MEDIA")
        if name in self._marks:
            raise WebSocketMediaError(f"mark {name!r} is already outstanding")
        text = self.commands.mark_media(name)
        self._add_frames(self.framer.cut(b"", end=True))
        self._marks[name] = self._accepted
        self._backlog.append(text)

    def flush(self, now: float) -> Flushed:
        """Barge-in: drop everything not yet played, here and in Asterisk, and say what was heard."""
        heard = self.played_ms(now)
        discarded = (self._accepted - self._released) * self.frame_ms + self.queued_ms(now)
        dropped = tuple(self._marks)
        self._marks.clear()
        self._backlog.clear()
        self.framer.reset()
        self._accepted = self._released
        if not self.passthrough:
            # Asterisk refuses FLUSH_MEDIA in passthrough; there only our own backlog goes.
            self._urgent.append(self.commands.flush_media())
            self._set_queued(now, 0.0)
            # Its queue is empty at once; the MEDIA_XON it sends on the next tick changes nothing.
            self.xoff = False
        return Flushed(heard, discarded, dropped)

    def pause(self, now: float) -> None:
        """Stop playback, keeping the queue; the caller hears nothing (no silence frames either)."""
        self._refuse_in_passthrough("PAUSE_MEDIA")
        if not self.paused:
            self._paused_queue_ms = self.queued_ms(now)
            self.paused = True
            self._urgent.append(self.commands.pause_media())

    def resume(self, now: float) -> None:
        if self.paused:
            self.paused = False
            self._playout_end = now + self._paused_queue_ms / 1000.0
            self._urgent.append(self.commands.continue_media())

    def report_queue_drained(self) -> None:
        """One QUEUE_DRAINED once the audio sent so far has played (the request travels behind it)."""
        self._refuse_in_passthrough("REPORT_QUEUE_DRAINED")
        self._backlog.append(self.commands.report_queue_drained())

    def send_command(self, text: str) -> None:
        """Send a command built with self.commands at once (ANSWER, HANGUP, GET_STATUS, ...).

        The commands that move playback go through their methods, which keep the estimates right.
        """
        name = parse_command(text, self.start.control_format).name
        if name in _SESSION_COMMANDS:
            raise WebSocketMediaError(f"send {name} with MediaSession.{_SESSION_COMMANDS[name]}(), "
                                      f"which keeps the playback position right")
        self._urgent.append(text)

    # -- the wire

    def messages_to_send(self, now: float) -> list[str | bytes]:
        """Commands due now, then the audio (and marks behind it) the queue bound lets go."""
        out: list[str | bytes] = list(self._urgent)
        self._urgent.clear()
        if self.xoff:
            return out
        allowed = self._allowed_frames(now)
        backlog = self._backlog
        while backlog:
            item = backlog[0]
            if isinstance(item, str):
                out.append(backlog.popleft())
                continue
            if allowed <= 0:
                break
            take = min(allowed, len(item) // self.framer.frame_size)
            size = take * self.framer.frame_size
            out.extend(self.framer.messages(bytes(item[:size])))
            del item[:size]
            if not item:
                backlog.popleft()
            allowed -= take
            self._released += take
            self._set_queued(now, self.queued_ms(now) + take * self.frame_ms)
        return out

    def next_send_time(self, now: float) -> float | None:
        """When messages_to_send has something again; None while only an event (XON, resume) can help."""
        if self._urgent:
            return now
        if not self._backlog or self.xoff:
            return None
        if isinstance(self._backlog[0], str) or self._allowed_frames(now):
            return now
        if self.paused:
            return None
        low_water_ms = (self._lead_frames - self._refill_frames) * self.frame_ms
        return now + (self.queued_ms(now) - low_water_ms) / 1000.0

    def receive_text(self, text: str, now: float) -> Event:
        """Parse an event and apply it: XOFF/XON gate the audio; a processed mark fixes the position."""
        event = parse_event(text)
        match event:
            case MediaXoff():
                self.xoff = True
            case MediaXon():
                self.xoff = False
            case MarkProcessed(name) if name in self._marks:
                position = self._marks.pop(name)
                self.heard_ms = position * self.frame_ms
                # The mark is exact where the clock estimate drifts: re-anchor on it.
                self._set_queued(now, max(0, self._released - position) * self.frame_ms)
            case MediaStart():
                raise WebSocketMediaError("second MEDIA_START on one connection")
        return event

    def receive_binary(self, data: bytes) -> bytes | None:
        """Caller audio from Asterisk, or None when the frame was unusable (see framer.dropped)."""
        return self.framer.check_inbound(data)

    def _allowed_frames(self, now: float) -> int:
        """Frames that may go now: none until the queue is down to lead - refill, then up to lead."""
        queued_frames = math.ceil(self.queued_ms(now) / self.frame_ms - 1e-9)
        if queued_frames > self._lead_frames - self._refill_frames:
            return 0
        return self._lead_frames - queued_frames

    def _add_frames(self, frames: bytes) -> None:
        if not frames:
            return
        tail = self._backlog[-1] if self._backlog else None
        if isinstance(tail, bytearray):
            tail += frames
        else:
            self._backlog.append(bytearray(frames))
        self._accepted += len(frames) // self.framer.frame_size

    def _set_queued(self, now: float, ms: float) -> None:
        if self.paused:
            self._paused_queue_ms = ms
        else:
            self._playout_end = now + ms / 1000.0

    def _refuse_in_passthrough(self, command: str) -> None:
        if self.passthrough:
            raise WebSocketMediaError(f"{command} is not supported in passthrough mode (Asterisk answers ERROR)")
