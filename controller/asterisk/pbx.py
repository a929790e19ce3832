"""voxgate's Asterisk side: one AMI session, the two media servers, and the calls they make together.

A call is announced over AMI by the dialplan (`UserEvent(VoxgateCall, VoxgateId: ..., Flow: ...,
Media: audiosocket|websocket)`) and its media connects separately, presenting the same VoxgateId.
Either may come first: a media connection waits briefly for its announcement, and one that
nobody announced is refused. AudioSocket itself has no authentication, so this pairing with the
authenticated AMI session is what keeps a stranger's connection from becoming a call.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import tzinfo
from typing import TYPE_CHECKING

from controller.asterisk.ami import AmiEvent
from controller.asterisk.audiosocket_port import AudioSocketMediaPort
from controller.asterisk.audiosocket_server import AudioSocketServer
from controller.asterisk.call import USER_EVENT, AsteriskCall, call_info_from_event
from controller.asterisk.manager import AmiClient, AmiError
from controller.asterisk.websocket_port import WebSocketMediaPort
from controller.asterisk.websocket_server import WebSocketMediaServer
from controller.config import Settings

if TYPE_CHECKING:
    from controller.app import Controller

log = logging.getLogger(__name__)

ANNOUNCE_WAIT_S = 1.5
# Fields every channel event repeats: the audit keeps what the event itself says.
_REPEATED = frozenset(f.lower() for f in (
    "Privilege", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority",
    "Uniqueid", "Linkedid", "SystemName",
))

MediaPort = AudioSocketMediaPort | WebSocketMediaPort


def audit_payload(event: AmiEvent) -> dict[str, str]:
    return {key: value for key, value in event.fields if key.lower() not in _REPEATED}


class AsteriskPbx:
    """Created by the Controller when Asterisk is configured; see the module docstring."""

    def __init__(self, controller: Controller, settings: Settings, cdr_tz: tzinfo) -> None:
        self._controller = controller
        self._settings = settings
        self._cdr_tz = cdr_tz
        secret = settings.ami_secret.reveal() if settings.ami_secret else ""
        self.ami = AmiClient(settings.ami_host, settings.ami_port, settings.ami_username, secret,
                             on_event=self._on_event, on_connected=self._resync)
        self.audiosocket = AudioSocketServer(self._resolve_audiosocket)
        password = settings.media_ws_password.reveal() if settings.media_ws_password else ""
        self.websocket = WebSocketMediaServer(self._resolve_websocket, username=settings.media_ws_username,
                                              password=password)
        self._calls: dict[str, AsteriskCall] = {}     # by the caller channel's Uniqueid
        self._ports: dict[str, MediaPort] = {}        # by VoxgateId, until the call ends
        self._announced: dict[str, asyncio.Event] = {}
        self._early: dict[str, list[AmiEvent]] = {}   # events of calls not adopted yet (variables loading)
        self._variables = tuple(name for name in settings.asterisk_variables.split(",") if name)
        self._draining = False

    async def start(self) -> None:
        host = self._settings.bind_host
        await self.audiosocket.start(host, self._settings.audiosocket_port)
        await self.websocket.start(host, self._settings.media_ws_port)
        await self.ami.start()
        log.info("Asterisk: AMI %s:%s, AudioSocket on %s:%s, chan_websocket on %s:%s", self._settings.ami_host,
                 self._settings.ami_port, host, self.audiosocket.port, host, self.websocket.port)

    async def stop_listening(self) -> None:
        """Draining: new calls' media connections are refused (the dialplan goes on without voxgate)."""
        self._draining = True
        await self.audiosocket.stop_listening()
        await self.websocket.stop_listening()

    async def stop(self) -> None:
        await self.ami.stop()
        await self.websocket.stop()
        await self.audiosocket.stop()

    # ------------------------------------------------------------ AMI events

    def _on_event(self, event: AmiEvent) -> None:
        if event.name == "UserEvent" and event.get("UserEvent") == USER_EVENT:
            self._announce(event)
            return
        call = self._calls.get(event.get("Uniqueid") or "")
        if call is None:
            return
        early = self._early.get(call.info.uuid)
        if early is not None:
            early.append(event)
        else:
            self._controller.audit(call.info.uuid, event.name, audit_payload(event))
        call.handle_event(event)

    def _announce(self, event: AmiEvent) -> None:
        info = call_info_from_event(event)
        voxgate_id, media_kind = info.variables["voxgate_id"], info.variables["voxgate_media"]
        if self._draining:
            log.info("Asterisk: draining, not taking call %s", info.uuid)
            return
        if not info.uuid or not voxgate_id or info.uuid in self._calls or voxgate_id in self._ports:
            log.error("Asterisk: ignored a VoxgateCall event without a new Uniqueid and VoxgateId (%s, %s)",
                      info.uuid, voxgate_id)
            return
        port: MediaPort = (WebSocketMediaPort(voxgate_id) if media_kind == "websocket"
                           else AudioSocketMediaPort(voxgate_id))
        call = AsteriskCall(info, self.ami, port, transfer_context=self._settings.asterisk_transfer_context,
                            cdr_tz=self._cdr_tz)
        self._calls[info.uuid] = call
        self._ports[voxgate_id] = port
        self._early[info.uuid] = []
        self._announced.setdefault(voxgate_id, asyncio.Event()).set()
        self._controller.spawn(self._run(call, voxgate_id))

    async def _run(self, call: AsteriskCall, voxgate_id: str) -> None:
        try:
            # The flow, routing and recording choices read the dialplan's variables: fetch them first,
            # and keep the events that arrive meanwhile for the audit trail.
            await call.load_variables(self._variables)
            self._controller.adopt(call)
            for event in self._early.pop(call.info.uuid, []):
                self._controller.audit(call.info.uuid, event.name, audit_payload(event))
            await self._controller.run_call(call)
        finally:
            self._early.pop(call.info.uuid, None)
            self._calls.pop(call.info.uuid, None)
            self._ports.pop(voxgate_id, None)
            self._announced.pop(voxgate_id, None)

    async def _resolve_audiosocket(self, voxgate_id: str) -> AudioSocketMediaPort | None:
        port = await self._resolve(voxgate_id)
        return port if isinstance(port, AudioSocketMediaPort) else None  # announced for the other path

    async def _resolve_websocket(self, voxgate_id: str) -> WebSocketMediaPort | None:
        port = await self._resolve(voxgate_id)
        return port if isinstance(port, WebSocketMediaPort) else None

    async def _resolve(self, voxgate_id: str) -> MediaPort | None:
        """The port of the call with this id, waiting a moment for its announcement to arrive over AMI."""
        if voxgate_id not in self._ports:
            announced = self._announced.setdefault(voxgate_id, asyncio.Event())
            try:
                await asyncio.wait_for(announced.wait(), ANNOUNCE_WAIT_S)
            except TimeoutError:
                self._announced.pop(voxgate_id, None)
                return None
        return self._ports.get(voxgate_id)

    async def _resync(self) -> None:
        """After (re)connecting: calls whose channel vanished while AMI was away are over."""
        if not self._calls:
            return
        try:
            alive = {event.get("Uniqueid") for event in await self.ami.core_show_channels()}
        except AmiError as exc:
            log.error("Asterisk resync failed: %s", exc)
            return
        for uniqueid, call in list(self._calls.items()):
            if uniqueid not in alive:
                call.control_lost("channel gone after AMI reconnect")
        log.info("AMI resync: %d live channel(s), %d call(s) kept", len(alive),
                 sum(1 for u in self._calls if u in alive))
