"""greenswitch connections whose reading goes through voxgate's own ESL codec.

greenswitch URL-decodes and line-splits whole messages, which glues an event's body (for
example mod_audio_fork::play_audio's JSON) onto its last header, and it cannot read
`event json` at all. These subclasses keep greenswitch's connect/auth/send machinery and
replace only the reader. Everything here runs on the GeventHub thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import socket

import gevent
import gevent.event
import gevent.lock
from greenswitch import esl as gs

from controller.esl.protocol import EslFrame, EslParser, EslProtocolError, connect_reply_headers

log = logging.getLogger(__name__)

FrameSink = Callable[[EslFrame], None]
READ_SIZE = 65536


class _CodecReader:
    """Mixin: read raw bytes, frame them with EslParser, route replies and everything else."""

    on_frame: FrameSink | None = None
    closed_reason: str = ""
    _send_lock: gevent.lock.Semaphore | None = None

    def start_event_handlers(self) -> None:
        self._receive_events_greenlet = gevent.spawn(self.receive_events)

    def receive_events(self) -> None:
        parser = EslParser()
        while self._run:
            try:
                data = self.sock.recv(READ_SIZE)
            except OSError as exc:
                self._lost(f"socket error: {exc}")
                return
            if not data:
                self._lost("closed by FreeSWITCH")
                return
            try:
                parser.feed(data)
            except EslProtocolError as exc:
                log.error("ESL protocol error, dropping the connection: %s", exc)
                self._lost(f"protocol error: {exc}")
                return
            for frame in parser.frames():
                self._route(frame)

    def _route(self, frame: EslFrame) -> None:
        ctype = frame.content_type
        if ctype == "auth/request":
            self._auth_request_event.set()
        elif ctype in ("command/reply", "api/response"):
            if self._commands_sent:
                self._commands_sent.pop(0).set(frame)
            else:
                log.warning("ESL reply with no command waiting: %r", frame.reply_text or frame.text[:80])
        elif ctype == "text/rude-rejection":
            self.connected = False
            self._auth_request_event.set()
            self._deliver(frame)
        else:
            if ctype == "text/disconnect-notice":
                if frame.headers.get("Content-Disposition") == "linger":
                    self._lingering = True
                else:
                    self.connected = False
            self._deliver(frame)

    def _deliver(self, frame: EslFrame) -> None:
        if self.on_frame is not None:
            try:
                self.on_frame(frame)
            except Exception:
                log.exception("ESL frame handler failed")

    def _lost(self, reason: str) -> None:
        self.closed_reason = reason
        self._run = False
        self.connected = False
        for pending in self._commands_sent:
            pending.set_exception(gs.NotConnectedError(reason))
        self._commands_sent.clear()
        self._shut()
        self._deliver(EslFrame({"Content-Type": "voxgate/connection-lost", "Reason": reason}))

    def send(self, data: bytes | str, timeout: float | None = 30.0) -> EslFrame:
        """Send one encoded command and wait for its reply (replies come back in order)."""
        if not self.connected:
            raise gs.NotConnectedError(self.closed_reason or "not connected")
        raw = data if isinstance(data, bytes) else (data + "\n\n").encode("utf-8")
        if self._send_lock is None:
            self._send_lock = gevent.lock.Semaphore()
        reply = gevent.event.AsyncResult()
        with self._send_lock:  # a blocked sendall must not let another command interleave
            self._commands_sent.append(reply)
            self.sock.sendall(raw)
        return reply.get(timeout=timeout)

    def wait_closed(self) -> None:
        if self._receive_events_greenlet is not None:
            self._receive_events_greenlet.join()

    def close(self) -> None:
        self._run = False
        self._shut()

    def _shut(self) -> None:
        """shutdown() wakes a greenlet blocked in recv; close() alone does not while it reads."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class InboundConnection(_CodecReader, gs.InboundESL):
    """Inbound ESL: voxgate connects to FreeSWITCH's event socket and authenticates."""

    def connect(self) -> None:
        """greenswitch's connect, but the greeting wait is bounded (a silent peer is not FreeSWITCH)."""
        self.sock = gs.socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.settimeout(None)
        self.connected = True
        self.start_event_handlers()
        if not self._auth_request_event.wait(timeout=self.timeout) or not self.connected:
            self.close()
            raise gs.NotConnectedError(self.closed_reason or "no auth/request greeting from the ESL server")
        self.authenticate()

    def authenticate(self) -> None:
        reply = self.send(f"auth {self.password}")
        if reply.reply_text != "+OK accepted":
            raise PermissionError(f"ESL authentication refused: {reply.reply_text or 'no reply'}")


class OutboundConnection(_CodecReader, gs.OutboundSession):
    """Outbound ESL: FreeSWITCH's `socket` application connected to voxgate for one channel."""

    def __init__(self, client_address, sock) -> None:
        super().__init__(client_address, sock)
        self.sock_file.close()  # greenswitch's file object would keep the socket open after close()

    def connect(self, timeout: float = 5.0) -> dict[str, str]:
        reply = self.send("connect", timeout=timeout)
        self.session_data = connect_reply_headers(reply)
        self._outbound_connected = True
        return self.session_data

