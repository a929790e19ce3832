"""The chan_websocket connection Asterisk 22.10.1 opens to voxgate, as recorded (chan_websocket.txt).

`Dial(WebSocket/voxgate/c(slin16)[f(json)]v(k=v,...))` with a websocket_client.conf entry
[voxgate] (uri, username/password, protocols = media): Asterisk is the WebSocket client. Its
upgrade request is res_http_websocket's, header for header (Authorization only with a username);
then MEDIA_START, then one BINARY frame of caller audio per 20 ms.

What voxgate sends is queued the way chan_websocket does: BINARY messages are cut into
optimal_frame_size frames (a remainder is dropped unless START_MEDIA_BUFFERING), a message
arriving while 1000 frames wait is dropped whole, MEDIA_XOFF at 900 queued and MEDIA_XON below
800; a 20 ms timer plays one frame per tick. Marks and buffering-completed notices travel in the
queue behind their audio; FLUSH_MEDIA empties it at once. Text commands go through
controller.asterisk.websocket_media's parser, events through its renderer.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI

from controller.asterisk.websocket_media import (
    DIRECTIONS, MAX_COMMAND_BYTES, MAX_FRAME_BYTES, QUEUE_MAX_FRAMES, SUBPROTOCOL, XOFF_FRAMES, XON_FRAMES,
    CommandError, ControlFormat, Dtmf, Event, MarkProcessed, MediaBufferingCompleted, MediaStart, MediaXoff,
    MediaXon, QueueDrained, QueueStatus, WebSocketMediaError, parse_command, render_event,
)
from controller.audio import Resampler
from controller.simulator.asterisk.channel import RateDoubler
from controller.simulator.events import SimClock

if TYPE_CHECKING:
    from controller.simulator.asterisk.channel import MediaChannel

log = logging.getLogger(__name__)

CONNECTION_ID = "voxgate"  # the websocket_client.conf section the dialplan names
CONNECT_TIMEOUT = 1.0  # connection_timeout in websocket_client.conf
FORMAT = "slin16"
WIRE_RATE = 16000
CHANNEL_RATE = 8000
FRAME_BYTES = 640  # optimal_frame_size of slin16 at ptime 20
PTIME = 20
READ_SIZE = 65536
NORMAL_CLEARING = 16
NETWORK_OUT_OF_ORDER = 38  # a frame over 65535 bytes: hangup and a TCP reset, no close handshake


@dataclass(frozen=True, slots=True)
class WebSocketTarget:
    """A websocket_client.conf entry: where voxgate's media server is and how to log in to it."""

    uri: str
    username: str = ""
    password: str = ""


def upgrade_request(target: WebSocketTarget, query: str, key: str) -> Request:
    """res_http_websocket's GET: path of the uri plus the v() parameters, headers in its order."""
    parts = urlsplit(target.uri)
    headers = [("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Host", parts.netloc.rpartition("@")[2])]
    if target.username:
        userinfo = f"{target.username}:{target.password}".encode()
        headers.append(("Authorization", "Basic " + base64.b64encode(userinfo).decode()))
    headers += [("Sec-WebSocket-Protocol", SUBPROTOCOL), ("Sec-WebSocket-Key", key)]
    return Request((parts.path or "/") + (f"?{query}" if query else ""), Headers(headers))


def dial_query(dial_string: str) -> str:
    """The v(k=v,...) dial option as the request's query string (commas become &)."""
    match = re.search(r"v\(([^)]*)\)", dial_string)
    return match.group(1).replace(",", "&") if match else ""


class _AsteriskProtocol(ClientProtocol):
    """chan_websocket answers the app's close with 1001 (going away), not an echo of its code."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE and self.state is State.OPEN:
            self.send_close(CloseCode.GOING_AWAY)
        super().recv_frame(frame)


class WebSocketLeg:
    """One chan_websocket connection carrying a caller channel's media (a MediaLeg)."""

    def __init__(self, clock: SimClock, target: WebSocketTarget, channel: MediaChannel, dial_string: str, *,
                 json_control: bool = False) -> None:
        self.clock = clock
        self.target = target
        self.channel = channel
        self.query = dial_query(dial_string)
        self.control = ControlFormat.JSON if json_control else ControlFormat.PLAIN
        self.done = asyncio.Event()
        self.cause = NORMAL_CLEARING
        self.end_reason = ""  # hangup | app_closed | closed | frame_too_big | connect_failed | asterisk_closed
        self.request: bytes = b""  # the upgrade request as sent
        self.commands: list[str] = []  # every TEXT message voxgate sent
        self.events_sent: list[str] = []  # every TEXT message sent to voxgate
        self.frames_sent = 0
        self.frames_played = 0
        self.messages_dropped = 0  # arrived while the queue was full
        self.bytes_discarded = 0  # partial frames dropped without buffering
        self._queue: deque[bytes | Event] = deque()  # frames, and the notices queued behind them
        self._queued_frames = 0
        self._partial = bytearray()
        self._buffering = False
        self._paused = False
        self._xoff = False
        self._report_drained = False
        self._direction = "both"
        self._up = RateDoubler()
        self._down = Resampler(WIRE_RATE, CHANNEL_RATE)
        self._ws: ClientProtocol | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._early: list[Frame] = []

    async def connect(self) -> bool:
        """Connect, upgrade, send MEDIA_START; False when the server cannot be reached or refuses."""
        parts = urlsplit(self.target.uri)
        secure = parts.scheme == "wss"
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if secure else 80)
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=secure or None), self.clock.real(CONNECT_TIMEOUT))
            self._ws = _AsteriskProtocol(WebSocketURI(secure, host, port, parts.path or "/", self.query),
                                         subprotocols=[Subprotocol(SUBPROTOCOL)], max_size=None)
            request = upgrade_request(self.target, self.query, self._ws.key)
            self.request = request.serialize()
            self._ws.send_request(request)
            self._flush()
            if not await asyncio.wait_for(self._handshake(reader), self.clock.real(CONNECT_TIMEOUT)):
                raise ConnectionError("upgrade refused")
        except (OSError, TimeoutError) as exc:
            log.warning("Websocket connection to %s failed: %s", self.target.uri, exc)
            if self._writer is not None:
                self._writer.close()
            self._end("connect_failed")
            return False
        self._send_event(MediaStart(CONNECTION_ID, self.channel.name, self.channel.uniqueid, FORMAT, FRAME_BYTES,
                                    PTIME, self.control, dict(self.channel.variables)))
        self._task = asyncio.ensure_future(self._read(reader))
        return True

    async def _handshake(self, reader: asyncio.StreamReader) -> bool:
        """Read up to the 101; frames that came in the same read wait in _early for the reader."""
        while data := await reader.read(READ_SIZE):
            self._ws.receive_data(data)
            events = self._ws.events_received()
            if events and isinstance(events[0], Response):
                self._early = [e for e in events[1:] if isinstance(e, Frame)]
                return self._ws.handshake_exc is None
        return False

    # ------------------------------------------------------------------ MediaLeg

    def caller_frame(self, pcm: bytes | None) -> None:
        """One BINARY frame of caller audio; none while the caller sends nothing or direction is out."""
        if pcm is None or self.done.is_set() or self._direction == "out":
            return
        self._send_binary(self._up.convert(pcm))
        self.frames_sent += 1

    def caller_digit(self, digit: str) -> None:
        self._send_event(Dtmf(digit, self.channel.uniqueid))

    def playout(self, nbytes: int) -> bytes | None:
        """The 20 ms timer: XON when the queue fell below 800; play one frame unless paused."""
        if self._xoff and self._queued_frames < XON_FRAMES:
            self._xoff = False
            self._send_event(MediaXon())
        if self._paused or self.done.is_set():
            return None
        frame = None
        if self._queue and isinstance(self._queue[0], bytes):
            frame = self._queue.popleft()
            self._queued_frames -= 1
            self.frames_played += 1
        while self._queue and not isinstance(self._queue[0], bytes):
            self._send_event(self._queue.popleft())
        if frame is None:
            if self._report_drained and not self._queue:
                self._report_drained = False
                self._send_event(QueueDrained())
            return None
        return self._down.convert(frame).ljust(nbytes, b"\0")[:nbytes]

    def close(self) -> None:
        """Asterisk hangs up: CLOSE 1000 with no reason, then FIN."""
        self._end("asterisk_closed")
        if self._ws is not None and self._ws.state is State.OPEN:
            self._ws.send_close(CloseCode.NORMAL_CLOSURE, "")
            self._flush()
        if self._writer is not None and not self._writer.is_closing():
            if self._writer.can_write_eof():
                self._writer.write_eof()
            self._writer.close()

    # ------------------------------------------------------------------ what voxgate sends

    async def _read(self, reader: asyncio.StreamReader) -> None:
        for frame in self._early:
            self._on_frame(frame)
        self._flush()
        try:
            while not self.done.is_set() and (data := await reader.read(READ_SIZE)):
                self._ws.receive_data(data)
                for frame in self._ws.events_received():
                    self._on_frame(frame)
                self._flush()
        except ConnectionError:
            pass
        self._end("closed")
        self.close()

    def _on_frame(self, frame: Frame) -> None:
        if self.done.is_set():
            return
        size = len(frame.data)
        if size + 2 + (2 if size >= 126 else 0) + (6 if size >= 65536 else 0) > MAX_FRAME_BYTES:
            log.warning("Cannot fit huge websocket frame of %d bytes", size + 10)
            self.cause = NETWORK_OUT_OF_ORDER
            self._end("frame_too_big")
            self._writer.transport.abort()
        elif frame.opcode is Opcode.TEXT:
            self._on_text(frame.data.decode("utf-8", "replace"))
        elif frame.opcode is Opcode.BINARY:
            self._on_binary(frame.data)
        elif frame.opcode is Opcode.CLOSE:
            self._end("app_closed")

    def _on_binary(self, data: bytes) -> None:
        if self._direction == "in":
            return
        if self._queued_frames >= QUEUE_MAX_FRAMES:
            self.messages_dropped += 1
            return
        buf = self._partial
        buf += data
        whole = len(buf) - len(buf) % FRAME_BYTES
        for start in range(0, whole, FRAME_BYTES):
            self._queue.append(bytes(buf[start:start + FRAME_BYTES]))
        self._queued_frames += whole // FRAME_BYTES
        del buf[:whole]
        if not self._buffering:
            self.bytes_discarded += len(buf)
            buf.clear()
        if self._queued_frames >= XOFF_FRAMES and not self._xoff:
            self._xoff = True
            self._send_event(MediaXoff())

    def _on_text(self, text: str) -> None:
        self.commands.append(text)
        if len(text.encode()) > MAX_COMMAND_BYTES:
            return  # ignored with a WARNING in Asterisk's log
        try:
            command = parse_command(text, self.control)
        except WebSocketMediaError as exc:
            self._send_event(CommandError(self.channel.uniqueid, str(exc)))
            return
        argument = command.argument or ""
        match command.name:
            case "HANGUP":
                self._end("hangup")
            case "FLUSH_MEDIA":
                self._queue.clear()
                self._queued_frames = 0
                self._partial.clear()
                self._buffering = False
            case "MARK_MEDIA":
                self._queue.append(MarkProcessed(argument))
            case "PAUSE_MEDIA":
                self._paused = True
            case "CONTINUE_MEDIA":
                self._paused = False
            case "START_MEDIA_BUFFERING":
                self._buffering = True
            case "STOP_MEDIA_BUFFERING":
                self._stop_buffering(argument)
            case "REPORT_QUEUE_DRAINED":
                self._report_drained = True
            case "GET_STATUS":
                self._send_event(QueueStatus(self.channel.uniqueid, self._queued_frames, XON_FRAMES, XOFF_FRAMES,
                                             self._xoff, self._buffering, self._paused))
            case "SET_MEDIA_DIRECTION" if self.control is ControlFormat.JSON:
                self._set_direction(argument)
            case _:
                log.warning("chan_websocket: unknown command %r ignored", command.name)

    def _stop_buffering(self, correlation_id: str) -> None:
        """The partial frame goes out short, and the notice queues behind the audio."""
        if self._partial:
            self._queue.append(bytes(self._partial))
            self._queued_frames += 1
            self._partial.clear()
        self._buffering = False
        self._queue.append(MediaBufferingCompleted(correlation_id))

    def _set_direction(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            self._send_event(CommandError(self.channel.uniqueid,
                                          f"'{direction}' is not a valid direction for SET_MEDIA_DIRECTION.\n"))
            return
        self._direction = direction

    # ------------------------------------------------------------------ plumbing

    def _send_event(self, event: Event) -> None:
        text = render_event(event, self.control, self.channel.uniqueid)
        self.events_sent.append(text)
        if self._ws is not None and self._ws.state is State.OPEN:
            self._ws.send_text(text.encode())
            self._flush()

    def _send_binary(self, data: bytes) -> None:
        if self._ws is not None and self._ws.state is State.OPEN:
            self._ws.send_binary(data)
            self._flush()

    def _flush(self) -> None:
        for data in self._ws.data_to_send():
            if data and self._writer is not None and not self._writer.is_closing():
                self._writer.write(data)

    def _end(self, reason: str) -> None:
        if not self.done.is_set():
            self.end_reason = reason
            self.done.set()
