"""FakeAsterisk: a simulated Asterisk 22.10.1 to run voxgate against without a PBX.

It serves AMI (voxgate logs in, sees the call's events, controls the channel), places scripted
calls that run voxgate's contract dialplan (dialplan.py) into voxgate's AudioSocket server or
WebSocket media server, and records what each caller heard. The same caller scripts as
FakeFreeSwitch's drive it. `main` is `voxgate simulate asterisk`.

What a real Asterisk does that this one does not: SIP (the caller's channel is a PJSIP channel in
name only), Local channel pairs, DeviceStateChange/Newexten detail beyond voxgate's extension,
Command/CoreStatus/Status/ListCommands and the other actions voxgate does not send, chan_websocket's
passthrough and n (no auto-answer) options, the ~5 ms wait for the rest of a split AudioSocket
frame, a second Cdr when a call leaves a bridge and goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from controller.simulator.asterisk.actions import ACTIONS, caller_id, dialled, originate_reason, originate_variables
from controller.simulator.asterisk.ami_server import Action, AmiServer
from controller.simulator.asterisk.channel import AmiChannel, CallerChannel, Fields, MediaPlan
from controller.simulator.asterisk.dialplan import Dialplan
from controller.simulator.asterisk.websocket_client import WebSocketTarget
from controller.simulator.callee import Answer, Callees, Fail, ring
from controller.simulator.caller_leg import report
from controller.simulator.caller import ScenarioError, Step, load_scenario, run_script
from controller.simulator.events import SimClock

log = logging.getLogger(__name__)

MEDIA_FORMS = ("audiosocket", "audiosocket-dial", "websocket")
DEFAULT_FLOW = "greeting"
# Technologies an Originate can reach here; any other fails at once (Reason 0), as Foo/bar did.
DIALABLE = frozenset({"PJSIP", "SIP", "IAX2", "DAHDI", "Local"})
ANSWERED = "4"  # OriginateResponse Reason: the last control frame was the answer
ORIGINATE_TIMEOUT_S = 30.0  # manager.c's default when an Originate gives no Timeout


class FakeAsterisk:
    """The simulated Asterisk. Use `async with FakeAsterisk(...)` or start()/stop().

    audiosocket is voxgate's AudioSocket server (host, port); websocket its chan_websocket media
    server (a WebSocketTarget or (uri, username, password)). ami_port 0 picks a free port. speed > 1
    runs the clock faster than real time. With tmp_dir, each caller's heard audio is saved there
    at hangup as <uniqueid>-heard.wav (what MixMonitor r() recorded in the captures).
    callee_script is what the far party of an AMI Originate does once it answers; `callees` scripts
    other far parties by trunk and number (busy, no answer, failing, answering later).
    """

    def __init__(self, username: str = "voxgate", secret: str = "voxgate", *, host: str = "127.0.0.1",
                 ami_port: int = 0, audiosocket: tuple[str, int] | None = None,
                 websocket: WebSocketTarget | tuple[str, str, str] | None = None, speed: float = 1.0,
                 tmp_dir: Path | None = None, context: str = "voxgate", callee_script: Sequence[Step] = (),
                 originate_media: str = "audiosocket") -> None:
        if originate_media not in MEDIA_FORMS:
            raise ValueError(f"originate_media must be one of {', '.join(MEDIA_FORMS)}")
        self.clock = SimClock(speed)
        self.context = context
        self.audiosocket = audiosocket
        self.websocket = WebSocketTarget(*websocket) if isinstance(websocket, tuple) else websocket
        self.tmp_dir = tmp_dir
        self.callee_script = tuple(callee_script)
        self.callees = Callees()
        self.originate_media = originate_media
        self.channels: dict[str, AmiChannel] = {}  # live channels by name
        self.calls: list[CallerChannel] = []  # every caller (and originated) channel, in order
        self.globals: dict[str, str] = {}
        self._ami = AmiServer(self, username, secret, ACTIONS, host, ami_port)
        self._uniqueids = itertools.count(1)
        self._pjsip = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def ami_port(self) -> int:
        return self._ami.port

    async def start(self) -> None:
        await self._ami.start()
        log.info("AMI listening on %s:%d", self._ami.host, self._ami.port)

    async def stop(self) -> None:
        """Hang up every call, then close every manager connection."""
        live = [c for c in self.calls if not c.ended.is_set()]
        for call in live:
            call.hangup("SYSTEM_SHUTDOWN")
        waits = [asyncio.ensure_future(c.ended.wait()) for c in live]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=2.0)
            for task in pending:
                task.cancel()
        for call in live:
            call.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self._ami.stop()

    async def __aenter__(self) -> FakeAsterisk:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for_manager(self, timeout: float = 10.0) -> None:
        """Until an AMI session has logged in (so it sees a call's events from the first)."""
        await asyncio.wait_for(self._ami.logged_in.wait(), timeout)

    async def drop_manager(self) -> None:
        """The manager interface goes away (a network cut, `manager reload`): every AMI session
        closes and none is accepted until restore_manager(); calls and their media go on."""
        self._ami.logged_in.clear()
        await self._ami.stop()

    async def restore_manager(self) -> None:
        """Listen again on the same AMI port; wait_for_manager() then waits for the next login."""
        await self._ami.start()

    async def crash(self) -> None:
        """Asterisk dies: every media connection and AMI session drops at once, with no Hangup or Cdr."""
        for call in self.calls:
            if not call.ended.is_set():
                call.detach()
                call.cancel()
        self.channels.clear()
        await self._ami.stop()

    async def place_call(self, script: Sequence[Step] = (), *, media: str = "audiosocket",
                         flow: str = DEFAULT_FLOW, caller_id_number: str = "15551230001",
                         caller_id_name: str = "Sim Caller", destination: str = "1000",
                         variables: dict[str, str] | None = None, websocket_json: bool = False,
                         send_silence: bool = True) -> CallerChannel:
        """An incoming call from a scripted caller to `destination` in voxgate's context.

        `variables` are set on the channel before its dialplan runs (voxgate reads them with
        Getvar); send_silence=False makes the caller's phone send no frames while it is quiet.
        """
        if media not in MEDIA_FORMS:
            raise ValueError(f"media must be one of {', '.join(MEDIA_FORMS)}, not {media!r}")
        if (self.websocket if media == "websocket" else self.audiosocket) is None:
            raise ValueError(f"a {media} call needs the fake Asterisk's {media.split('-')[0]} target")
        uniqueid = self.new_uniqueid()
        channel = CallerChannel(self, name=f"PJSIP/sim-{next(self._pjsip):08x}", uniqueid=uniqueid,
                                context=self.context, exten=destination, caller_id_number=caller_id_number,
                                caller_id_name=caller_id_name, plan=MediaPlan(media, flow, websocket_json),
                                send_silence=send_silence)
        self._start(channel, variables or {}, script, (self.context, destination, 1))
        return channel

    async def originate(self, action: Action, *, report: bool) -> bool:
        """Place an Originate's call: ring the far party its trunk and number pick (`callees`; by default
        one that answers at once and runs callee_script), then answer, or fail with the Reason code of
        how it ended (busy 5, no answer within Timeout 3, rejected 1, congestion 8, else 0).

        With report, the outcome goes out as an OriginateResponse carrying the action's ActionID. A
        ringing leg is not a channel here (no Newchannel, no Hangup action can reach it).
        """
        spec = action.get("Channel")
        target = ([("Context", action.get("Context")), ("Exten", action.get("Exten"))] if action.get("Exten")
                  else [("Application", action.get("Application")), ("Data", action.get("Data"))])
        number, name = caller_id(action.get("CallerID"))
        callee = await self._ring(action) if spec.partition("/")[0] in DIALABLE else Fail("CHAN_NOT_IMPLEMENTED")
        if not isinstance(callee, Answer):
            if report:
                self._originate_response(action, "Failure", spec, target, originate_reason(callee.cause),
                                         "<unknown>", number, name)
            return False
        variables = originate_variables(action)
        channel = CallerChannel(
            self, name=f"{spec}-{next(self._pjsip):08x}" + (";1" if spec.startswith("Local/") else ""),
            uniqueid=action.get("ChannelId") or self.new_uniqueid(), context="default", exten="s",
            caller_id_number="", caller_id_name="", state=0,
            plan=MediaPlan(self.originate_media, variables.get("VOXGATE_FLOW", DEFAULT_FLOW)))
        channel.account_code = action.get("Account")
        channel.publish("Newchannel")
        self._register_call(channel)
        for key, value in variables.items():
            channel.set_var(key, value)
        if number or name:
            channel.caller_id_number, channel.caller_id_name = number, name
            channel.connected_number, channel.connected_name = number, name
            channel.publish("NewCallerid", [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        channel.set_state(5)
        channel.answer()
        if report:
            self._originate_response(action, "Success", channel.name, target, ANSWERED, channel.uniqueid,
                                     number, name)
        context = action.get("Context") if action.get("Exten") else ""
        self._run(channel, callee.script, (context or "default", action.get("Exten") or "s",
                                           int(action.get("Priority") or 1)))
        return True

    async def _ring(self, action: Action) -> Answer | Fail:
        """The far party of the Originate's Channel: an Answer, or a Fail with the cause that ended the call."""
        trunk, number = dialled(action.get("Channel"))
        callee = self.callees.pick(trunk, number) or Answer(self.callee_script)
        self.callees.note(trunk, number, callee)
        timeout = action.get("Timeout")
        cause = await ring(callee, self.clock, int(timeout) / 1000 if timeout.isdigit() else ORIGINATE_TIMEOUT_S,
                           asyncio.Event())
        if cause is not None:
            return Fail(cause)
        assert isinstance(callee, Answer)
        return callee

    # ------------------------------------------------------------------ what channels and the AMI use

    def publish(self, fields: Fields) -> None:
        self._ami.publish(fields)

    def new_uniqueid(self) -> str:
        """Asterisk's "<epoch>.<counter>"."""
        return f"{int(self.clock.now())}.{next(self._uniqueids)}"

    def register(self, channel: AmiChannel) -> None:
        self.channels[channel.name] = channel

    def channel_gone(self, channel: AmiChannel) -> None:
        self.channels.pop(channel.name, None)
        if isinstance(channel, CallerChannel) and self.tmp_dir is not None:
            channel.save_heard(Path(self.tmp_dir) / f"{channel.uniqueid}-heard.wav")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run work that outlives the action that asked for it (an async Originate)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ plumbing

    def _start(self, channel: CallerChannel, variables: dict[str, str], script: Sequence[Step],
               target: tuple[str, str, int]) -> None:
        self._register_call(channel)
        channel.publish("Newchannel")
        for key, value in variables.items():
            channel.set_var(key, value)
        self._run(channel, script, target)

    def _register_call(self, channel: CallerChannel) -> None:
        self.register(channel)
        self.calls.append(channel)

    def _run(self, channel: CallerChannel, script: Sequence[Step], target: tuple[str, str, int]) -> None:
        channel.start(Dialplan(self, channel).run(*target))
        if script:
            channel.run_caller(run_script(channel, script))

    def _originate_response(self, action: Action, result: str, channel: str, target: Fields, reason: str,
                            uniqueid: str, number: str, name: str) -> None:
        own_id = [("ActionID", action.action_id)] if action.action_id else []
        self.publish([("Event", "OriginateResponse"), ("Privilege", "call,all"), *own_id, ("Response", result),
                      ("Channel", channel), *target, ("Reason", reason), ("Uniqueid", uniqueid),
                      ("CallerIDNum", number or "<unknown>"), ("CallerIDName", name or "<unknown>")])


async def run_scenario(path: str | Path, *, media: str, audiosocket: tuple[str, int] | None,
                       websocket: WebSocketTarget | None, username: str, secret: str, ami_port: int = 5038,
                       flow: str | None = None, speed: float = 1.0, heard: str | Path | None = None,
                       wait_for_manager: float = 30.0) -> CallerChannel:
    """Wait for voxgate's AMI login, place the scenario's call, wait until it is over."""
    scenario = load_scenario(path)
    variables = dict(scenario.variables)
    flow = flow or variables.get("VOXGATE_FLOW") or variables.get("voxgate_flow") or DEFAULT_FLOW
    async with FakeAsterisk(username, secret, ami_port=ami_port, audiosocket=audiosocket, websocket=websocket,
                            speed=speed) as pbx:
        print(f"AMI on 127.0.0.1:{pbx.ami_port}; waiting for voxgate to log in", file=sys.stderr)
        await pbx.wait_for_manager(wait_for_manager)
        channel = await pbx.place_call(
            scenario.steps, media=media, flow=flow, destination=scenario.destination,
            caller_id_number=scenario.caller_id_number, caller_id_name=scenario.caller_id_name,
            variables=variables)
        await channel.ended.wait()
    if heard:
        channel.save_heard(heard)
    return channel


def _host_port(parser: argparse.ArgumentParser, text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """voxgate simulate asterisk: one scripted call into voxgate through a simulated Asterisk 22."""
    parser = argparse.ArgumentParser(
        prog="voxgate simulate asterisk",
        description="Place one scripted call into voxgate through a simulated Asterisk 22 (AMI + AudioSocket "
                    "or chan_websocket).")
    parser.add_argument("--scenario", required=True, type=Path, help="scenario file (.toml or .json)")
    parser.add_argument("--media", choices=MEDIA_FORMS, default="audiosocket", help="how the call reaches voxgate")
    parser.add_argument("--audiosocket", metavar="HOST:PORT", help="voxgate's AudioSocket server")
    parser.add_argument("--websocket", metavar="URI", help="voxgate's media WebSocket, e.g. ws://127.0.0.1:8090/media")
    parser.add_argument("--ws-username", default="", help="HTTP Basic user for the media WebSocket")
    parser.add_argument("--ws-password", default=os.environ.get("VOXGATE_SIM_WS_PASSWORD", ""),
                        help="HTTP Basic password (default: $VOXGATE_SIM_WS_PASSWORD)")
    parser.add_argument("--ami-port", type=int, default=5038, help="serve AMI on this port (0: any free port)")
    parser.add_argument("--username", default="voxgate", help="AMI username voxgate logs in with")
    parser.add_argument("--secret", help="AMI secret (default: $VOXGATE_SIM_AMI_SECRET or voxgate)")
    parser.add_argument("--flow", help="VOXGATE_FLOW (default: the scenario's voxgate_flow, else greeting)")
    parser.add_argument("--heard", type=Path, metavar="OUT.wav", help="save what the caller heard")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time per real second")
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be positive")
    audiosocket = _host_port(parser, args.audiosocket) if args.audiosocket else None
    websocket = WebSocketTarget(args.websocket, args.ws_username, args.ws_password) if args.websocket else None
    if (websocket if args.media == "websocket" else audiosocket) is None:
        parser.error(f"--media {args.media} needs --{'websocket' if args.media == 'websocket' else 'audiosocket'}")
    secret = args.secret or os.environ.get("VOXGATE_SIM_AMI_SECRET") or "voxgate"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        channel = asyncio.run(run_scenario(args.scenario, media=args.media, audiosocket=audiosocket,
                                           websocket=websocket, username=args.username, secret=secret,
                                           ami_port=args.ami_port, flow=args.flow, speed=args.speed,
                                           heard=args.heard))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print("error: voxgate did not log in to AMI", file=sys.stderr)
        return 1
    return report(f"call {channel.uniqueid} ({channel.voxgate_id}): cause {channel.cause}, "
                  f"heard {channel.heard_pcm().duration:.2f} s, {len(channel.events)} events",
                  args.heard, channel.script_error)
