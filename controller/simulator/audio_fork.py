"""Simulated mod_audio_fork media bug: the WebSocket client FreeSWITCH runs for uuid_audio_fork.

It reproduces what FreeSWITCH 1.10.12 did on the wire with jambonz freeswitch-modules@30f2189
("jambonz": bidirectional streaming, marks, stop_play) and drachtio-freeswitch-modules@88e1465
("classic"), as recorded in tests/fixtures/freeswitch/audio_fork_ws*.json. Where the recordings
are silent the behaviour follows the modules' lws_glue.cpp / audio_pipe.cpp.

The socket runs on websockets' sans-I/O ClientProtocol over asyncio streams so that the upgrade
request is exactly libwebsockets': Host without the port, fixed header order, no User-Agent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI

from controller.audio import Resampler, frame_bytes, mix

SUBPROTOCOL = "audio.drachtio.org"
JAMBONZ = "jambonz"
CLASSIC = "classic"
MIXES = ("mono", "mixed", "stereo")
DEFAULT_BUGNAME = "audio_fork"
FORK_API_MAX_ARGS = 10  # uuid_audio_fork's argv[10]: the tenth argument keeps the unsplit rest

CONNECT_FAILED = "Unable to connect"
HANDSHAKE_REJECTED = "HS: ws upgrade response not 101"
AUDIO_BUFFER_SECS = 2  # MOD_AUDIO_FORK_BUFFER_SECS default: audio queued before frames are dropped
HANDSHAKE_TIMEOUT = 10.0  # libwebsockets timeout_secs in the module's context
CLOSE_TIMEOUT = 5.0
READ_SIZE = 65536

_DATA_EVENTS = ("transcription", "transfer", "error", "disconnect")
_RAW_EXTENSIONS = {8000: ".r8", 16000: ".r16", 24000: ".r24", 32000: ".r32", 48000: ".r48", 64000: ".r64"}
_SCHEMES = {
    "ws://": (False, 80), "WS://": (False, 80), "http://": (False, 80), "HTTP://": (False, 80),
    "wss://": (True, 443), "WSS://": (True, 443), "https://": (True, 443), "HTTPS://": (True, 443),
}
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}
_ABSENT = object()

# The module numbers temp files with one process-wide counter (static playCount), not per bug.
_play_count = itertools.count()


class ForkHost(Protocol):
    """What the bug needs from the simulated channel it is attached to."""

    uuid: str
    sample_rate: int
    tmp_dir: Path

    def fire_custom(self, subclass: str, body: str | None) -> None: ...

    def break_playback(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ForkArgs:
    """Arguments of 'uuid_audio_fork <uuid> start ...'.

    bidirectional mirrors the module's bidirectionalAudio_enabled, which defaults to on: it is what
    lets playAudio through, so it is True unless the start command says otherwise.
    """

    url: str
    mix: str
    rate: int
    bugname: str = DEFAULT_BUGNAME
    metadata: str | None = None
    bidirectional: bool = True
    bidi_stream: bool = False
    bidi_rate: int | None = None


def split_api_args(text: str, max_args: int | None = None) -> list[str]:
    """Split an API argument string the way switch_separate_string(' ') does.

    Spaces separate arguments, a single-quoted run stays one argument (quotes removed) and a
    backslash escapes the next character, so a JSON argument with an unquoted space becomes
    several arguments. With max_args the last argument keeps the unsplit rest, like the
    fixed-size argv arrays of FreeSWITCH APIs.
    """
    raw: list[str] = []
    limit = max_args or len(text) + 1
    i, n = 0, len(text)
    while i < n and len(raw) < limit:
        start = i
        if len(raw) == limit - 1:
            raw.append(text[start:])
            break
        while i < n and text[i] == " ":
            i += 1
        quoted = False
        while i < n:
            c = text[i]
            if c == "\\":
                i += 1
            elif c == "'":
                quoted = not quoted
            elif c == " " and not quoted:
                break
            i += 1
        raw.append(text[start:i])
        while i < n and text[i] == " ":
            i += 1
    return [_cleanup_arg(arg) for arg in raw]


def _cleanup_arg(arg: str) -> str:
    """cleanup_separated_string(): drop paired quotes, resolve escapes, trim outer spaces."""
    s = arg.lstrip(" ")
    out: list[str] = []
    end = 0
    quoted = False
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            e = s[i + 1]
            if e in "'\"\\" or e in _UNESCAPE:
                out.append(_UNESCAPE.get(e, e))
                end = len(out)
                i += 2
                continue
        if c == "'" and (quoted or "'" in s[i + 1:]):
            quoted = not quoted
            if quoted:
                end = len(out)
        else:
            out.append(c)
            if c != " " or quoted:
                end = len(out)
        i += 1
    return "".join(out[:end])


def parse_ws_url(url: str) -> tuple[str, int, str, bool]:
    """(host, port, path with query, secure) as the module's parse_ws_uri() reads a URL."""
    for prefix, (secure, port) in _SCHEMES.items():
        if url.startswith(prefix):
            break
    else:
        raise ValueError(f"invalid websocket uri: {url}")
    match = re.search(r"([^/:]+):?([0-9]*)?(/.*)?$", url[len(prefix):])
    if not match:
        raise ValueError(f"invalid websocket uri: {url}")
    host, port_text, path = match.groups()
    return host, int(port_text) if port_text else port, path or "/", secure


def parse_start_args(args: list[str], generation: str = JAMBONZ) -> ForkArgs:
    """ForkArgs from the arguments after 'start'; ValueError when FreeSWITCH would not start the fork.

    The classic module has no bidirectional arguments: whatever follows the bugname is the
    metadata, so '{...} true true 8000' reaches the server as one text frame.
    """
    if len(args) < 3:
        raise ValueError("start needs <url> <mix> <rate>")
    url, mix_type, rate_text = args[:3]
    parse_ws_url(url)
    if mix_type not in MIXES:
        raise ValueError(f"invalid mix type: {mix_type}, must be mono, mixed, or stereo")
    rate = {"8k": 8000, "16k": 16000}.get(rate_text) or _atoi(rate_text)
    if rate <= 0 or rate % 8000:
        raise ValueError(f"invalid sample rate: {rate_text}")
    rest = args[3:]
    if generation == CLASSIC and len(rest) > 2:
        rest = [rest[0], " ".join(rest[1:])]
    if len(rest) >= 5:
        return ForkArgs(url, mix_type, rate, rest[0] or DEFAULT_BUGNAME, rest[1] or None,
                        rest[2] == "true", rest[3] == "true", _atoi(rest[4]) or None)
    if len(rest) >= 2:
        return ForkArgs(url, mix_type, rate, rest[0], rest[1] or None)
    if rest and rest[0][:1] in ("{", "["):
        return ForkArgs(url, mix_type, rate, metadata=rest[0])
    if rest:
        return ForkArgs(url, mix_type, rate, bugname=rest[0])
    return ForkArgs(url, mix_type, rate)


def _atoi(text: str) -> int:
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def upgrade_request(host: str, path: str, key: str) -> Request:
    """The HTTP upgrade libwebsockets 4.1 sends for mod_audio_fork, header for header."""
    return Request(path, Headers([
        ("Pragma", "no-cache"),
        ("Cache-Control", "no-cache"),
        ("Host", host),
        ("Origin", f"http://{host}"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Protocol", SUBPROTOCOL),
        ("Sec-WebSocket-Version", "13"),
    ]))


def mark_message(name: str, event: str) -> str:
    """The module's mark notification, built by string concatenation (odd spacing, no escaping)."""
    return '{"type": "mark", "data": {"name":"' + name + '", "event": "' + event + '"}}'


def _compact(value: object) -> str:
    """cJSON_PrintUnformatted(): no spaces, raw UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _b64decode(text: str) -> bytes:
    """Lenient like the module's base64_decode(): stops at the first non-base64 character."""
    s = re.match(r"[A-Za-z0-9+/]*", text).group()
    s = s[:len(s) - (len(s) % 4 == 1)]
    return base64.b64decode(s + "=" * (-len(s) % 4))


class StreamPlayout:
    """Server-streamed audio of a jambonz bidirectional fork, played the way dub_speech_frame plays it.

    Audio waits in a prebuffer until 160 ms of it is there (80 ms after the first release), then
    moves to the playout buffer at the channel rate. A mark sticks to the start of the next binary
    message and reports "playout" when playout reaches it; a mark that no audio follows reports on
    the first tick that finds the playout buffer empty. The module marks positions with an in-band
    0xFFFF sample that resampling smears away, so with a stream rate other than the channel rate
    marks never report "playout", only "cleared" at the next killAudio. Here marks are positions,
    so real audio samples of -1 are never mistaken for them.
    """

    MAX_MARKS = 30

    def __init__(self, stream_rate: int, channel_rate: int) -> None:
        self._resampler = Resampler(stream_rate, channel_rate) if stream_rate != channel_rate else None
        self._downscale = max(1, stream_rate // channel_rate)
        self._threshold = 320 * self._downscale * 4
        self._odd = b""
        self._pre = bytearray()
        self._pre_marks: list[int] = []
        self._out = bytearray()
        self._out_marks: deque[int] = deque()
        self._inventory: deque[str] = deque()
        self._in_use: deque[str] = deque()
        self._cleared: deque[str] = deque()
        self._kill = False

    @property
    def buffered(self) -> int:
        """Bytes waiting in the playout buffer (the prebuffer not included)."""
        return len(self._out)

    def feed(self, data: bytes) -> None:
        data = self._odd + data
        even = len(data) - len(data) % 2
        self._odd = data[even:]
        if self._inventory:
            self._in_use.extend(self._inventory)
            self._pre_marks.extend([len(self._pre) // 2] * len(self._inventory))
            self._inventory.clear()
        self._pre += data[:even]
        if len(self._pre) // 2 + len(self._pre_marks) < self._threshold:
            return
        self._threshold = 320 * self._downscale * 2
        keep = len(self._pre) // 2 % self._downscale * 2
        chunk = bytes(self._pre[:len(self._pre) - keep])
        del self._pre[:len(self._pre) - keep]
        if self._resampler:
            chunk = self._resampler.convert(chunk)
        else:
            self._out_marks.extend(len(self._out) // 2 + pos for pos in self._pre_marks)
        self._pre_marks.clear()
        self._out += chunk

    def mark(self, name: str) -> None:
        if len(self._in_use) + len(self._inventory) < self.MAX_MARKS:
            self._inventory.append(name)

    def clear_marks(self) -> None:
        """Pending marks are dropped without a notification."""
        self._cleared.extend(self._in_use)
        self._cleared.extend(self._inventory)
        self._in_use.clear()
        self._inventory.clear()

    def kill(self) -> None:
        """killAudio: the module empties the buffer on its next write tick, not at once."""
        self._kill = True

    def stop_play(self) -> None:
        """stop_play: the playout buffer goes at once; marks in it are silently lost."""
        self._out.clear()
        self._out_marks.clear()

    def take(self, samples: int) -> tuple[bytes | None, list[str]]:
        """The next tick's audio (None if nothing plays) and the mark messages it produces."""
        if self._kill:
            self._kill = False
            self.stop_play()
            names = [*self._in_use, *self._inventory]
            self._cleared.extend(self._in_use)
            self._in_use.clear()
            self._inventory.clear()
            return None, [mark_message(name, "cleared") for name in names]
        if self._in_use or self._cleared:
            return self._take_past_marks(samples)
        count = min(len(self._out) // 2, samples)
        if count:
            audio = bytes(self._out[:count * 2])
            del self._out[:count * 2]
            return audio.ljust(samples * 2, b"\0"), []
        if self._inventory:
            return None, [mark_message(self._inventory.popleft(), "playout")]
        return None, []

    def _take_past_marks(self, samples: int) -> tuple[bytes | None, list[str]]:
        messages: list[str] = []
        slots, pos, available = samples, 0, len(self._out) // 2
        while slots and (pos < available or self._out_marks):
            if self._out_marks and self._out_marks[0] == pos:
                self._out_marks.popleft()
                slots -= 1
                names = self._cleared or self._in_use
                if names:
                    name = names.popleft()
                    if names is self._in_use:
                        messages.append(mark_message(name, "playout"))
                continue
            step = min(slots, (self._out_marks[0] if self._out_marks else available) - pos)
            pos += step
            slots -= step
        audio = bytes(self._out[:pos * 2])
        del self._out[:pos * 2]
        self._out_marks = deque(mark - pos for mark in self._out_marks)
        return (audio.ljust(samples * 2, b"\0") if pos else None), messages


class _Framer:
    """One fork frame per 20 ms tick, always the exact size the module sends.

    The resamplers keep state across ticks; their start-up delay is filled with leading silence so
    that no tick comes out short.
    """

    def __init__(self, mix_type: str, channel_rate: int, rate: int) -> None:
        self._mix = mix_type
        self._size = frame_bytes(rate)
        channels = 2 if mix_type == "stereo" else 1
        self._resamplers = [Resampler(channel_rate, rate) for _ in range(channels)]
        self._carry = [b""] * channels

    def frame(self, read_pcm: bytes, write_pcm: bytes) -> bytes:
        if self._mix == "stereo":
            left = np.frombuffer(self._fit(0, read_pcm), "<i2")
            right = np.frombuffer(self._fit(1, write_pcm), "<i2")
            return np.column_stack((left, right)).tobytes()
        return self._fit(0, mix(read_pcm, write_pcm) if self._mix == "mixed" else read_pcm)

    def _fit(self, channel: int, pcm: bytes) -> bytes:
        out = self._carry[channel] + self._resamplers[channel].convert(pcm)
        if len(out) < self._size:
            out = bytes(self._size - len(out)) + out
        self._carry[channel] = out[self._size:]
        return out[:self._size]


class AudioForkBug:
    """One mod_audio_fork media bug on a simulated channel.

    Like the module, a bug whose connect failed or whose server went away stays attached (a new
    start with its bugname fails) until stop() or hangup() removes it. After graceful-shutdown
    every later write, including the close at stop or hangup, becomes a zero-length binary frame,
    so the socket stays open until the server closes it.
    """

    def __init__(self, host: ForkHost, args: ForkArgs, generation: str = JAMBONZ) -> None:
        if generation not in (JAMBONZ, CLASSIC):
            raise ValueError(f"unknown mod_audio_fork generation: {generation}")
        self.host = host
        self.args = args
        self.generation = generation
        self.frames_sent = 0
        self.frames_dropped = 0
        self.binary_discarded = 0
        self._state = "connecting"
        self._attached = True
        self._paused = False
        self._graceful = False
        self._overrun_notified = False
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ws: ClientProtocol | None = None
        self._eof_sent = False
        self._fragments: list[bytes] | None = None
        self._files: list[Path] = []
        self._framer = _Framer(args.mix, host.sample_rate, args.rate)
        channels = 2 if args.mix == "stereo" else 1
        self._max_buffered = frame_bytes(args.rate, channels) * 50 * AUDIO_BUFFER_SECS
        streaming = generation == JAMBONZ and args.bidirectional and args.bidi_stream
        self._playout = StreamPlayout(args.bidi_rate or host.sample_rate, host.sample_rate) if streaming else None
        self._plays_audio = generation == CLASSIC or (args.bidirectional and not args.bidi_stream)

    @property
    def state(self) -> str:
        """connecting, connected, failed (connect failed) or closed (by the server, stop or hangup)."""
        return self._state

    async def start(self) -> None:
        """Schedule the connect and return: the API answers before the socket exists."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def on_tick(self, read_pcm: bytes, write_pcm: bytes) -> None:
        """The channel's 20 ms: what it read (caller) and wrote (what the caller hears)."""
        if not self._attached or self._state != "connected" or self._paused or self._graceful:
            return
        frame = self._framer.frame(read_pcm, write_pcm)
        if self._writer.transport.get_write_buffer_size() + len(frame) > self._max_buffered:
            self.frames_dropped += 1
            if not self._overrun_notified:
                self._overrun_notified = True
                self._fire("buffer_overrun", None)
            return
        self._send_binary(frame)
        self.frames_sent += 1

    def take_playout(self, nbytes: int) -> bytes | None:
        """The server-streamed audio to mix into this tick's write stream (jambonz streaming only)."""
        if self._playout is None or not self._attached:
            return None
        audio, messages = self._playout.take(nbytes // 2)
        for text in messages:
            self._send_text(text)
        return audio

    async def send_text(self, text: str) -> None:
        self._send_text(text)

    async def pause(self) -> None:
        self._paused = True

    async def resume(self) -> None:
        self._paused = False

    async def graceful_shutdown(self) -> None:
        """Stop the audio and send a zero-length binary frame so the server flushes its last replies."""
        self._graceful = True
        self._send_binary(b"")

    def stop_play(self) -> bool:
        """Drop streamed audio at once; False where the module has no stop_play (classic)."""
        if self.generation == CLASSIC:
            return False
        if self._playout:
            self._playout.stop_play()
        return True

    async def stop(self, text: str | None = None) -> None:
        """Detach: final text, close 1000 with no reason, FIN; temp files go."""
        if not self._attached:
            return
        if self._state == "connected":
            if self._graceful:
                self._send_binary(b"")
            else:
                if text:
                    self._ws.send_text(text.encode())
                self._ws.send_close(CloseCode.NORMAL_CLOSURE, "")
                self._flush()
        elif self._state == "connecting" and self._task:
            self._task.cancel()
        self._attached = False
        self._state = "closed"
        for path in self._files:
            path.unlink(missing_ok=True)

    async def hangup(self) -> None:
        """The channel hung up: the module cleans up as for a stop without text."""
        await self.stop()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the simulated FreeSWITCH going away)."""
        if self._task:
            self._task.cancel()
        if self._state in ("connecting", "connected"):
            self._state = "closed"

    async def _run(self) -> None:
        host, port, path, secure = parse_ws_url(self.args.url)
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=secure or None), HANDSHAKE_TIMEOUT)
        except (OSError, TimeoutError):
            self._fail(CONNECT_FAILED)
            return
        self._ws = ClientProtocol(WebSocketURI(secure, host, port, path, ""),
                                  subprotocols=[Subprotocol(SUBPROTOCOL)], max_size=None)
        self._ws.send_request(upgrade_request(host, path, self._ws.key))
        self._flush()
        try:
            while await self._pump(reader):
                pass
        finally:
            self._writer.close()

    async def _pump(self, reader: asyncio.StreamReader) -> bool:
        """Read once and act on it; False when the connection is over."""
        timeout = HANDSHAKE_TIMEOUT if self._state == "connecting" else CLOSE_TIMEOUT if self._eof_sent else None
        try:
            data = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
        except (ConnectionError, TimeoutError):
            data = b""
        if data:
            self._ws.receive_data(data)
        else:
            self._ws.receive_eof()
        for event in self._ws.events_received():
            if isinstance(event, Response):
                self._on_response(event)
            else:
                self._on_frame(event)
        self._flush()
        if not data:
            if self._state == "connecting":
                self._fail(CONNECT_FAILED)
            self._dropped()
        return bool(data) and self._state != "failed"

    def _on_response(self, response: Response) -> None:
        if self._ws.handshake_exc is not None:
            self._fail(HANDSHAKE_REJECTED if response.status_code != 101 else CONNECT_FAILED)
            return
        self._state = "connected"
        self._fire("connect", None)
        if self.args.metadata:
            self._send_text(self.args.metadata)

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT and not frame.fin:
            self._fragments = [frame.data]
        elif frame.opcode is Opcode.TEXT:
            self._on_text(frame.data)
        elif frame.opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(frame.data)
            if frame.fin:
                text, self._fragments = b"".join(self._fragments), None
                self._on_text(text)
        elif frame.opcode in (Opcode.BINARY, Opcode.CONT):
            self._on_binary(frame.data)
        elif frame.opcode is Opcode.CLOSE:
            self._dropped()

    def _on_binary(self, data: bytes) -> None:
        if self._playout is not None and self._attached:
            self._playout.feed(data)
        else:
            self.binary_discarded += 1

    def _on_text(self, raw: bytes) -> None:
        if not self._attached:
            return
        try:
            message = json.loads(raw)
        except ValueError:
            return
        kind = message.get("type") if isinstance(message, dict) else None
        data = message.get("data", _ABSENT) if isinstance(message, dict) else _ABSENT
        if not isinstance(kind, str):
            kind = "json"
        if kind == "playAudio":
            if self._plays_audio and isinstance(data, dict):
                self._play_audio(dict(data))
        elif kind == "killAudio":
            self._fire("kill_audio", None)
            self.host.break_playback()
            if self._playout:
                self._playout.kill()
        elif kind == "mark" and self._playout:
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                self._playout.mark(data["name"])
        elif kind == "clearMarks" and self._playout:
            self._playout.clear_marks()
        elif kind in _DATA_EVENTS:
            self._fire(kind, None if data is _ABSENT else _compact(data))
        elif kind == "json":
            self._fire("json", _compact(message))

    def _play_audio(self, data: dict) -> None:
        """Write the audio to a temp file and announce it; playing it is the application's job.

        Like the module's unchecked ofstream, a file that cannot be written is still announced.
        """
        content = data.pop("audioContent", None)
        extension = _audio_extension(data)
        if extension and isinstance(content, str):
            path = Path(self.host.tmp_dir) / f"{self.host.uuid}_{next(_play_count)}.tmp{extension}"
            with contextlib.suppress(OSError):
                path.write_bytes(_b64decode(content))
            self._files.append(path)
            data["file"] = str(path)
        self._fire("play_audio", _compact(data))

    def _fail(self, reason: str) -> None:
        self._state = "failed"
        if self._attached:
            self._fire("connect_failed", '{"reason":"' + reason + '"}')

    def _dropped(self) -> None:
        """The server closed or the TCP connection broke while the bug was connected."""
        if self._state != "connected":
            return
        self._state = "closed"
        if self._attached:
            self._fire("disconnect", None)

    def _fire(self, name: str, body: str | None) -> None:
        self.host.fire_custom(f"mod_audio_fork::{name}", body)

    def _send_text(self, text: str) -> None:
        if self._graceful:
            self._send_binary(b"")
        elif self._state == "connected" and not self._eof_sent:
            self._ws.send_text(text.encode())
            self._flush()

    def _send_binary(self, data: bytes) -> None:
        if self._state == "connected" and not self._eof_sent:
            self._ws.send_binary(data)
            self._flush()

    def _flush(self) -> None:
        for data in self._ws.data_to_send():
            if not data:
                self._write_eof()
            elif not self._eof_sent and not self._writer.is_closing():
                self._writer.write(data)
        if self._ws.state in (State.CLOSING, State.CLOSED):
            self._write_eof()

    def _write_eof(self) -> None:
        """libwebsockets sends its FIN right after a close frame, without waiting for the peer's."""
        if self._eof_sent:
            return
        self._eof_sent = True
        if self._writer.can_write_eof() and not self._writer.is_closing():
            self._writer.write_eof()


def _audio_extension(data: dict) -> str | None:
    """Temp file extension for a playAudio payload; None for an unsupported audioContentType."""
    content_type = data.get("audioContentType")
    if content_type == "raw":
        rate = data.get("sampleRate")
        valid = isinstance(rate, (int, float)) and not isinstance(rate, bool)
        return _RAW_EXTENSIONS.get(int(rate) if valid else 0, ".r16")
    if content_type in ("wave", "wav"):
        return ".wav"
    return None
