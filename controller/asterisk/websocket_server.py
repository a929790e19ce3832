"""The WebSocket server Asterisk's chan_websocket connects to, one connection per call.

`Dial(WebSocket/voxgate/c(slin16)v(voxgate_id=${VOXGATE_ID}))` with websocket_client.conf
pointing here makes Asterisk open `ws://host:port/media?voxgate_id=<uuid>` (subprotocol
"media") with the username and password of that file as HTTP Basic credentials. Everything is
checked before the upgrade: a bad or missing password gets 401, a call nobody announced 404, a
call that already has its media connection 409 -- so Asterisk's Dial fails instead of a call
that hears nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import http
import logging
import weakref
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from controller.asterisk.websocket_media import SUBPROTOCOL
from controller.asterisk.websocket_port import WebSocketMediaPort

log = logging.getLogger(__name__)

Resolve = Callable[[str], Awaitable[WebSocketMediaPort | None]]
"""The controller's lookup: VOXGATE_ID -> the call's port, or None for a call it does not expect."""

PATH = "/media"
ID_PARAM = "voxgate_id"
RESOLVE_TIMEOUT_S = 2.0  # the AMI announcement may trail the media connection by a little
MAX_MESSAGE = 65536  # Asterisk sends one 20 ms frame per message (1920 bytes at slin48)


class WebSocketMediaServer:
    """Accepts chan_websocket connections and hands each to its call's WebSocketMediaPort."""

    def __init__(self, resolve: Resolve, *, username: str, password: str, path: str = PATH,
                 resolve_timeout_s: float = RESOLVE_TIMEOUT_S, max_message: int = MAX_MESSAGE) -> None:
        if not username or not password:
            raise ValueError("chan_websocket needs a username and password (websocket_client.conf)")
        self._credentials = (username.encode(), password.encode())
        self._resolve = resolve
        self._path = path
        self._resolve_timeout_s = resolve_timeout_s
        self._max_message = max_message
        self._ports: weakref.WeakKeyDictionary[ServerConnection, WebSocketMediaPort] = weakref.WeakKeyDictionary()
        self._server: Server | None = None
        self.port = 0
        self.refused = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # No pings: Asterisk does not send any, and a call must not hang on a pong it may never answer.
        self._server = await serve(
            self._handle, host, port, subprotocols=[SUBPROTOCOL], process_request=self._check,
            max_size=self._max_message, compression=None, server_header=None, ping_interval=None, max_queue=64)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuse new connections; the calls already connected go on."""
        if self._server is not None:
            self._server.server.close()  # the listener only: Server.close() would end the calls too

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        """Everything that can refuse a call, before the upgrade."""
        if not self._authorized(request.headers.get("Authorization")):
            response = self._refuse(connection, http.HTTPStatus.UNAUTHORIZED, "missing or wrong credentials")
            response.headers["WWW-Authenticate"] = 'Basic realm="voxgate"'
            return response
        url = urlsplit(request.path)
        if url.path != self._path:
            return self._refuse(connection, http.HTTPStatus.NOT_FOUND, f"unknown path {url.path!r}")
        voxgate_id = (parse_qs(url.query).get(ID_PARAM) or [""])[0]
        if not voxgate_id:
            return self._refuse(connection, http.HTTPStatus.NOT_FOUND, f"no {ID_PARAM} in the URL (dial option v())")
        port = await self._find(voxgate_id)
        if port is None:
            return self._refuse(connection, http.HTTPStatus.NOT_FOUND, f"no call announced with VOXGATE_ID {voxgate_id}")
        if port.in_use:
            return self._refuse(connection, http.HTTPStatus.CONFLICT,
                                f"call {voxgate_id} already has (or had) its media connection")
        self._ports[connection] = port
        return None

    def _authorized(self, header: str | None) -> bool:
        """HTTP Basic, compared in constant time; the password never reaches a log."""
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            username, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        expected_user, expected_password = self._credentials
        user_ok = hmac.compare_digest(username, expected_user)
        password_ok = hmac.compare_digest(password, expected_password)
        return bool(sep) and user_ok and password_ok

    async def _find(self, voxgate_id: str) -> WebSocketMediaPort | None:
        try:
            async with asyncio.timeout(self._resolve_timeout_s):
                return await self._resolve(voxgate_id)
        except TimeoutError:
            return None

    def _refuse(self, connection: ServerConnection, status: http.HTTPStatus, why: str) -> Response:
        self.refused += 1
        log.warning("chan_websocket connection from %s refused (%d): %s", connection.remote_address, status, why)
        return connection.respond(status, f"{why}\n")

    async def _handle(self, ws: ServerConnection) -> None:
        port = self._ports.pop(ws)
        await port.attach(ws)
