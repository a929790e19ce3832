"""The fake Asterisk's dialplan: voxgate's contract extension, and a holding extension elsewhere.

Every extension of voxgate's context runs what dialplan/asterisk/extensions.conf says:

    1 Answer()
    2 Set(VOXGATE_ID=${UUID()})
    3 Set(VOXGATE_FLOW=<flow>)
    4 UserEvent(VoxgateCall,VoxgateId: ${VOXGATE_ID},Flow: ${VOXGATE_FLOW},Media: audiosocket|websocket)
    5 AudioSocket(${VOXGATE_ID},host:port)                                   media "audiosocket"
      Dial(AudioSocket/host:port/${VOXGATE_ID}/c(slin16))                    media "audiosocket-dial"
      Dial(WebSocket/voxgate/c(slin16)[f(json)]v(voxgate_id=${VOXGATE_ID}))  media "websocket"
    6 Hangup()

Any other context holds the call in Wait(3600) (silence) until the caller hangs up, which is
where an AMI Redirect away from voxgate ends. Each application publishes Newexten first; Dial
creates the media channel with the events call 1 of the recording shows (Newchannel .. DialEnd,
BridgeCreate/BridgeEnter, and at the end BridgeLeave/BridgeDestroy/Hangup).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from controller.simulator.asterisk.audiosocket_client import AudioSocketLeg
from controller.simulator.asterisk.channel import (
    NORMAL_CLEARING, STATE_UP, CallerChannel, Fields, MediaChannel, MediaLeg, Pbx,
)
from controller.simulator.asterisk.websocket_client import CONNECTION_ID, WebSocketLeg, WebSocketTarget

HOLD_SECONDS = 3600
CHANUNAVAIL = 44  # AST_CAUSE_REQUESTED_CHAN_UNAVAIL: the media leg could not connect
_pointers = itertools.count(0x7F9FB80054A0, 0x2F0)  # chan_websocket names its channels by address


class Switch(Pbx, Protocol):
    """What the dialplan needs from the fake Asterisk."""

    context: str
    audiosocket: tuple[str, int] | None
    websocket: WebSocketTarget | None

    def new_uniqueid(self) -> str: ...

    def register(self, channel: MediaChannel) -> None: ...


@dataclass(frozen=True, slots=True)
class _Step:
    application: str
    data: Callable[[], str]
    run: Callable[[str], Awaitable[None]]


class Dialplan:
    """Runs one caller channel through the dialplan, following Redirects, until it hangs up."""

    def __init__(self, switch: Switch, channel: CallerChannel) -> None:
        self.switch = switch
        self.channel = channel

    async def run(self, context: str, exten: str, priority: int = 1) -> None:
        channel = self.channel
        target: tuple[str, str, int] | None = (context, exten, priority)
        while target is not None and not channel.hung_up:
            channel.context, channel.exten, priority = target
            channel.redirected.clear()
            channel.redirect_to = None
            steps = self._voxgate_steps() if channel.context == self.switch.context else self._hold_steps()
            await self._run_steps(steps, priority)
            target = channel.redirect_to
        channel.finish()

    async def _run_steps(self, steps: list[_Step], first: int) -> None:
        channel = self.channel
        for priority, step in enumerate(steps, 1):
            if priority < first:
                continue
            if channel.hung_up or channel.redirected.is_set():
                return
            channel.priority = priority
            data = step.data()
            channel.newexten(step.application, data)
            await step.run(data)

    def _voxgate_steps(self) -> list[_Step]:
        plan, channel = self.channel.plan, self.channel
        kind = "websocket" if plan.media == "websocket" else "audiosocket"
        return [
            _Step("Answer", lambda: "", self._answer),
            _Step("Set", lambda: f"VOXGATE_ID={uuid.uuid4()}", self._set),
            _Step("Set", lambda: f"VOXGATE_FLOW={plan.flow}", self._set),
            _Step("UserEvent", lambda: (f"VoxgateCall,VoxgateId: {channel.voxgate_id},Flow: {plan.flow},"
                                        f"Media: {kind}"), self._user_event),
            self._media_step(),
            _Step("Hangup", lambda: "", self._hangup),
        ]

    def _hold_steps(self) -> list[_Step]:
        return [_Step("Wait", lambda: str(HOLD_SECONDS), self._wait), _Step("Hangup", lambda: "", self._hangup)]

    def _media_step(self) -> _Step:
        plan, switch = self.channel.plan, self.switch
        if plan.media == "audiosocket":
            return _Step("AudioSocket", lambda: f"{self.channel.voxgate_id},{_service(switch.audiosocket)}",
                         self._audiosocket_app)
        if plan.media == "audiosocket-dial":
            return _Step("Dial", lambda: f"AudioSocket/{_service(switch.audiosocket)}/{self.channel.voxgate_id}"
                                         f"/c(slin16)", self._dial)
        options = "c(slin16)f(json)" if plan.websocket_json else "c(slin16)"
        return _Step("Dial", lambda: f"WebSocket/{CONNECTION_ID}/{options}v(voxgate_id={self.channel.voxgate_id})",
                     self._dial)

    # ------------------------------------------------------------------ applications

    async def _answer(self, data: str) -> None:
        self.channel.answer()

    async def _set(self, data: str) -> None:
        name, _, value = data.partition("=")
        if name == "VOXGATE_ID":
            self.channel.voxgate_id = value
        self.channel.set_var(name, value)

    async def _user_event(self, data: str) -> None:
        name, *pairs = data.split(",")
        extra = [("UserEvent", name)] + [(k.strip(), v.strip()) for k, _, v in (p.partition(":") for p in pairs)]
        self.channel.publish("UserEvent", extra, privilege="user")

    async def _hangup(self, data: str) -> None:
        self.channel.request_hangup(NORMAL_CLEARING)

    async def _wait(self, data: str) -> None:
        await self._until_interrupted(self.channel.clock.sleep(float(data)))

    async def _until_interrupted(self, *waits: Awaitable[object]) -> None:
        """Run until one of `waits` is done, the caller hangs up or the channel is redirected."""
        tasks = [asyncio.ensure_future(w) for w in (*waits, *self.channel.interruptions())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    async def _audiosocket_app(self, data: str) -> None:
        """AudioSocket(): slin 8 kHz both ways, 2 s idle limit; the app returning 0 (server hangup
        frame or close) lets the dialplan go on, -1 (error, timeout, no server) hangs up."""
        channel, (host, port) = self.channel, self._audiosocket()
        leg = AudioSocketLeg(channel.clock, host, port, channel.voxgate_id or "", 8000, idle_timeout=2.0)
        if not await leg.connect():
            channel.application_failed()
            return
        channel.attach(leg)
        await self._until_interrupted(leg.done.wait())
        channel.detach()
        if leg.failed and not channel.redirected.is_set():
            channel.application_failed()

    async def _dial(self, data: str) -> None:
        """Dial() a media channel, bridge the caller with it until either side ends."""
        channel, switch = self.channel, self.switch
        technology, _, dial_string = data.partition("/")
        if technology == "AudioSocket":
            host, port = self._audiosocket()
            name = f"AudioSocket/{host}:{port}-{channel.voxgate_id}"
        else:
            name = f"WebSocket/{CONNECTION_ID}/0x{next(_pointers):x}"
        peer = MediaChannel(switch, name=name, uniqueid=switch.new_uniqueid(), linkedid=channel.linkedid,
                            context="default", exten="s")
        switch.register(peer)
        channel.dialed.append(peer)
        peer.publish("Newchannel")
        leg = self._media_leg(technology, peer, dial_string)
        for name_, value in self._peer_variables(technology, dial_string):
            peer.set_var(name_, value)
        peer.caller_id_number, peer.caller_id_name = channel.exten, channel.caller_id_name
        peer.connected_number, peer.connected_name = channel.caller_id_number, channel.caller_id_name
        peer.exten = channel.exten
        peer.newexten("AppDial", "(Outgoing Line)")
        peer.publish("NewCallerid", [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        peer.publish("NewConnectedLine")
        self._dial_event("DialBegin", peer, [("DialString", dial_string)])
        if not await leg.connect():
            self._dial_event("DialEnd", peer, [("DialStatus", "CHANUNAVAIL")])
            peer.cause = CHANUNAVAIL
            peer.publish_hangup()
            channel.set_var("DIALSTATUS", "CHANUNAVAIL")
            return
        await self._bridged(peer, leg, dial_string)

    async def _bridged(self, peer: MediaChannel, leg: MediaLeg, dial_string: str) -> None:
        channel = self.channel
        peer.answered_at = channel.clock.now()
        peer.set_state(STATE_UP)
        for name, value in (("DIALSTATUS", "ANSWER"), ("DIALEDPEERNAME", peer.name),
                            ("DIALEDPEERNUMBER", dial_string)):
            channel.set_var(name, value)
        peer.exten = ""
        self._dial_event("DialEnd", peer, [("DialStatus", "ANSWER")])
        bridge = str(uuid.uuid4())
        self._bridge_event("BridgeCreate", bridge, 0)
        peer.newexten("AppDial", "(Outgoing Line)")
        for number, party in enumerate((peer, channel), 1):
            party.bridge_id = bridge
            self._bridge_event("BridgeEnter", bridge, number, party)
        peer.set_var("BRIDGEPEER", channel.name)
        channel.set_var("BRIDGEPEER", peer.name)
        channel.bridged_with = peer
        channel.attach(leg)
        await self._until_interrupted(leg.done.wait(), peer.hangup_requested.wait())
        channel.bridged_with = None
        channel.detach()
        channel.set_var("BRIDGEPEER", "")
        peer.set_var("BRIDGEPEER", "")
        channel.bridge_id = ""
        self._bridge_event("BridgeLeave", bridge, 1, channel)
        talked = channel.clock.now() - (peer.answered_at or channel.clock.now())
        for name, value in (("ANSWEREDTIME", str(int(talked))), ("ANSWEREDTIME_MS", str(int(talked * 1000))),
                            ("DIALEDTIME", str(int(talked))), ("DIALEDTIME_MS", str(int(talked * 1000))),
                            ("DIALSTATUS", "ANSWER")):
            channel.set_var(name, value)
        peer.bridge_id = ""
        self._bridge_event("BridgeLeave", bridge, 0, peer)
        self._bridge_event("BridgeDestroy", bridge, 0)
        if peer.cause is None:
            peer.cause = leg.cause
        peer.publish_hangup()

    # ------------------------------------------------------------------ pieces

    def _audiosocket(self) -> tuple[str, int]:
        if self.switch.audiosocket is None:
            raise RuntimeError("this call needs the fake Asterisk's audiosocket target (host, port)")
        return self.switch.audiosocket

    def _media_leg(self, technology: str, peer: MediaChannel, dial_string: str) -> MediaLeg:
        clock = self.channel.clock
        if technology == "AudioSocket":
            host, port = self._audiosocket()
            return AudioSocketLeg(clock, host, port, self.channel.voxgate_id or "", 16000, idle_timeout=None)
        if self.switch.websocket is None:
            raise RuntimeError("this call needs the fake Asterisk's websocket target (uri, username, password)")
        return WebSocketLeg(clock, self.switch.websocket, peer, dial_string,
                            json_control=self.channel.plan.websocket_json)

    def _peer_variables(self, technology: str, dial_string: str) -> list[tuple[str, str]]:
        if technology == "AudioSocket":
            return [("AUDIOSOCKET_UUID", self.channel.voxgate_id or ""),
                    ("AUDIOSOCKET_SERVICE", _service(self._audiosocket())), ("DIALEDPEERNUMBER", dial_string)]
        return [("DIALEDPEERNUMBER", dial_string), ("MEDIA_WEBSOCKET_CONNECTION_ID", CONNECTION_ID),
                ("MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE", "640")]

    def _dial_event(self, event: str, peer: MediaChannel, extra: Fields) -> None:
        """DialBegin/DialEnd: the caller's block, then the dialled channel's as Dest*."""
        self.switch.publish([("Event", event), ("Privilege", "call,all"), *self.channel.fields(),
                             *peer.fields("Dest"), *extra])

    def _bridge_event(self, event: str, bridge: str, count: int, party: MediaChannel | CallerChannel | None = None
                      ) -> None:
        fields = [("Event", event), ("Privilege", "call,all"), ("BridgeUniqueid", bridge), ("BridgeType", "basic"),
                  ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"),
                  ("BridgeName", "<unknown>"), ("BridgeNumChannels", str(count)),
                  ("BridgeVideoSourceMode", "none")]
        self.switch.publish(fields + (party.fields() if party is not None else []))


def _service(target: tuple[str, int] | None) -> str:
    host, port = target or ("", 0)
    return f"{host}:{port}"
