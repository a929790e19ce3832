"""Outbound Event Socket: the simulated channel runs the 'socket' application, connects to voxgate's
outbound ESL server and is controlled over that connection.

As in mod_event_socket: nothing is sent until voxgate says 'connect', which is answered with the
whole CHANNEL_DATA; 'myevents' limits events to this channel; after the hangup the connection
says goodbye, or with 'linger' sends the linger notice and stays (forever, or N seconds) while
holding the session, so CHANNEL_DESTROY only fires once it is closed.

'async' and 'full' shape the Socket-Mode and Control headers and what commands are allowed; the
channel always behaves as in async mode (queued applications run while it is parked).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from controller.esl import protocol as esl
from controller.simulator.esl_server import FIRST_COMMAND_TIMEOUT, MAX_COMMAND_LINE, EslSession

if TYPE_CHECKING:
    from controller.simulator.channel import SimChannel
    from controller.simulator.fake_freeswitch import FakeFreeSwitch

log = logging.getLogger(__name__)


class OutboundSession(EslSession):
    """The channel's connection to voxgate; the SocketLink the channel's socket app waits on."""

    def __init__(self, switch: FakeFreeSwitch, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 channel: SimChannel, args: list[str]) -> None:
        super().__init__(switch, reader, writer, channel)
        words = {arg.lower() for arg in args}
        self.async_mode = "async" in words
        self.full = "full" in words
        self.connected = asyncio.Event()

    async def begin(self) -> None:
        """FreeSWITCH gives voxgate 25 s for its first command, then drops the connection."""
        try:
            command = await self._read_command(timeout=self.switch.clock.real(FIRST_COMMAND_TIMEOUT))
        except TimeoutError:
            log.warning("outbound socket for %s: no command within %g s", self.channel.uuid, FIRST_COMMAND_TIMEOUT)
            self._send(self._disconnect_notice())
            self._send(None)
            return
        if command is None:
            self._send(None)
        else:
            await self._dispatch(*command)

    async def _connect(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        data = self.channel.channel_data()
        if self.async_mode and self.full:
            self._send(esl.connect_reply(data))
        else:
            self._send(esl.encode_frame([(k, esl.url_encode(v)) for k, v in data] + [
                ("Content-Type", "command/reply"), ("Reply-Text", "%2BOK%0A"),
                ("Socket-Mode", "async" if self.async_mode else "static"),
                ("Control", "full" if self.full else "single-channel")]))
        self.connected.set()


async def open_outbound(switch: FakeFreeSwitch, channel: SimChannel, host: str, port: int,
                        args: list[str]) -> OutboundSession | None:
    """Connect the channel to voxgate; None when nobody listens (the socket app's 'Socket Error!')."""
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_COMMAND_LINE)
    except OSError as exc:
        log.warning("outbound socket for %s to %s:%s failed: %s", channel.uuid, host, port, exc)
        return None
    return OutboundSession(switch, reader, writer, channel, args)
