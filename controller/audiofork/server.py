"""The WebSocket server mod_audio_fork connects to, one connection per forked call.

mod_audio_fork cannot send headers, so each call's URL carries a signed, expiring token
(/fork/<call-uuid>?token=...). Anything without a valid token for a call voxgate is
expecting is refused before the upgrade. Each instance of a scale-out only accepts tokens it
minted itself (the token names its instance), so a fork sent to the wrong one is refused with
reason wrong-instance before any media is read.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from controller import tokens
from controller.audiofork.media import ForkMediaPort
from controller.audiofork.protocol import SUBPROTOCOL

log = logging.getLogger(__name__)

PATH_PREFIX = "/fork/"


def fork_url(base: str, call_uuid: str, token: str) -> str:
    """The URL handed to uuid_audio_fork for one call."""
    return f"{base.rstrip('/')}{PATH_PREFIX}{call_uuid}?token={token}"


class AudioForkServer:
    """Accepts mod_audio_fork connections and hands each to its call's ForkMediaPort.

    `instance` is this process's instance id: tokens minted by another instance are refused.
    """

    def __init__(self, secret: str, lookup: Callable[[str], ForkMediaPort | None], *,
                 max_message: int = 65536, instance: str = "") -> None:
        self._secret = secret
        self._instance = instance
        self._lookup = lookup
        self._max_message = max_message
        self._server: Server | None = None
        self.refused = 0
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await serve(
            self._handle, host, port, subprotocols=[SUBPROTOCOL], process_request=self._check,
            max_size=self._max_message, compression=None, server_header=None,
            ping_interval=20, ping_timeout=20, max_queue=64)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _refuse(self, connection: ServerConnection, status: http.HTTPStatus, why: str, detail: str = "") -> Response:
        """Refuse the upgrade; `detail` goes to the log only (never the token itself)."""
        self.refused += 1
        log.warning("audio fork connection from %s refused: %s%s", connection.remote_address, why,
                    f" ({detail})" if detail else "")
        return connection.respond(status, f"{why}\n")

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if not url.path.startswith(PATH_PREFIX):
            return self._refuse(connection, http.HTTPStatus.NOT_FOUND, "unknown path")
        call_uuid = url.path[len(PATH_PREFIX):]
        token = (parse_qs(url.query).get("token") or [""])[0]
        if not token:
            return self._refuse(connection, http.HTTPStatus.UNAUTHORIZED, "missing token")
        try:
            tokens.verify(self._secret, token, call_uuid, instance=self._instance)
        except tokens.TokenError as exc:
            detail = f"call {call_uuid}: {exc}" if exc.reason == "wrong-instance" else ""
            return self._refuse(connection, http.HTTPStatus.FORBIDDEN, f"token {exc.reason}", detail)
        if self._lookup(call_uuid) is None:
            return self._refuse(connection, http.HTTPStatus.NOT_FOUND, "no such call")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        call_uuid = urlsplit(ws.request.path).path[len(PATH_PREFIX):]
        port = self._lookup(call_uuid)
        if port is None:  # the call ended between the handshake and now
            await ws.close(1008, "no such call")
            return
        await port.attach(ws)
