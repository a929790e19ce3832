"""The TCP server Asterisk's AudioSocket connects to, one connection per call.

The dialplan names the call: `AudioSocket(${VOXGATE_ID},host:port)` or
`Dial(AudioSocket/host:port/${VOXGATE_ID}/c(slin16))` puts VOXGATE_ID in the first frame. A
connection whose id no announced call claims is closed; so is a second one for the same call.
Each connection is read on its own task, and whatever goes wrong on it ends only that one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from controller.asterisk.audiosocket import (
    HEADER_BYTES, Audio, AudioSocketError, AudioSocketParser, Digit, Event, Hangup, PeerError,
)
from controller.asterisk.audiosocket_port import AudioSocketMediaPort

log = logging.getLogger(__name__)

Resolve = Callable[[str], Awaitable[AudioSocketMediaPort | None]]
"""The controller's lookup: VOXGATE_ID -> the call's port, or None for a call it does not expect."""

FIRST_FRAME_TIMEOUT_S = 2.0  # Asterisk sends the UUID within ~20 ms of connecting, even when loaded
PAYLOAD_TIMEOUT_S = 1.0  # a frame's payload follows its header at once (Asterisk itself waits 5 ms)
# The AMI announcement may trail the media connection; the AudioSocket() app hangs up after 2 s
# without a frame either way, and nothing is sent before the call is found.
RESOLVE_TIMEOUT_S = 1.5


class _Refused(Exception):
    """A connection voxgate will not carry; the message says why."""


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections and hands each to its call's AudioSocketMediaPort."""

    def __init__(self, resolve: Resolve, *, first_frame_timeout_s: float = FIRST_FRAME_TIMEOUT_S,
                 payload_timeout_s: float = PAYLOAD_TIMEOUT_S, resolve_timeout_s: float = RESOLVE_TIMEOUT_S) -> None:
        self._resolve = resolve
        self._first_frame_timeout_s = first_frame_timeout_s
        self._payload_timeout_s = payload_timeout_s
        self._resolve_timeout_s = resolve_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0
        self.refused = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse new connections; the calls already connected go on."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Stop listening and end every connection (each call's port is detached)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        parser = AudioSocketParser()
        port: AudioSocketMediaPort | None = None
        reason = "voxgate stopped"
        try:
            port = await self._claim(reader, writer, parser)
            reason = await self._pump(reader, parser, port)
            log.info("AudioSocket call %s: %s", port.call_id, reason)
        except _Refused as exc:
            self.refused += 1
            log.warning("AudioSocket connection from %s refused: %s", peer, exc)
        except AudioSocketError as exc:
            reason = str(exc)
            if port is None:
                self.refused += 1
            log.warning("AudioSocket call %s from %s: %s; closing the connection",
                        parser.call_id or "(no UUID yet)", peer, reason)
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
            log.info("AudioSocket call %s: %s", parser.call_id, reason)
        finally:
            if port is not None:
                port.detach(reason)
            writer.close()
            self._connections.discard(task)

    async def _claim(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     parser: AudioSocketParser) -> AudioSocketMediaPort:
        """Read the UUID frame and find the call it names."""
        try:
            async with asyncio.timeout(self._first_frame_timeout_s):
                events = await self._read_frame(reader, parser)
        except TimeoutError:
            raise _Refused(f"no UUID frame within {self._first_frame_timeout_s:g} s") from None
        call_id = parser.call_id
        assert events and call_id is not None  # the parser raises for anything but a UUID first
        try:
            async with asyncio.timeout(self._resolve_timeout_s):
                port = await self._resolve(call_id)
        except TimeoutError:
            port = None
        if port is None:
            raise _Refused(f"no call announced with VOXGATE_ID {call_id}")
        if not port.attach(writer, parser):
            raise _Refused(f"call {call_id} already has (or had) its media connection")
        return port

    async def _pump(self, reader: asyncio.StreamReader, parser: AudioSocketParser,
                    port: AudioSocketMediaPort) -> str:
        """Frames to the port until the connection ends; returns why it ended."""
        while True:
            events = await self._read_frame(reader, parser)
            if events is None:
                return "Asterisk closed the connection (the call hung up)"
            for event in events:
                match event:
                    case Audio() | Digit():
                        port.receive(event)
                    case Hangup():
                        return "Asterisk sent a hangup frame"
                    case PeerError(code):
                        return f"Asterisk sent an error frame (code {code})"

    async def _read_frame(self, reader: asyncio.StreamReader, parser: AudioSocketParser) -> list[Event] | None:
        """One frame's events; None at a close between frames. Idle waits are unbounded (a silent
        channel-driver call sends nothing), but a payload must follow its header promptly."""
        try:
            header = await reader.readexactly(HEADER_BYTES)
        except asyncio.IncompleteReadError as exc:
            return _closed(parser, exc.partial)
        length = header[1] << 8 | header[2]
        try:
            async with asyncio.timeout(self._payload_timeout_s):
                payload = await reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            return _closed(parser, header + exc.partial)
        except TimeoutError:
            raise AudioSocketError(f"a 0x{header[0]:02x} frame announced {length} payload bytes that did not "
                                   f"arrive within {self._payload_timeout_s:g} s") from None
        return parser.feed(header + payload)


def _closed(parser: AudioSocketParser, tail: bytes) -> None:
    """The peer closed: the parser's eof() raises when that cut a frame or came before the UUID."""
    parser.feed(tail)
    parser.eof()
