"""FakeFreeSwitch: a simulated FreeSWITCH 1.10.12 to run voxgate against without a PBX.

It serves inbound Event Socket (voxgate connects and authenticates), places scripted calls that
either park for voxgate to pick up or run the 'socket' application into voxgate's outbound ESL
server, runs uuid_audio_fork media bugs, and records what each caller heard. `voxgate simulate`
(main below) places one call from a scenario file.

What a real FreeSWITCH does that this one does not: the A leg of the loopback pair, CODEC,
CHANNEL_ORIGINATE/OUTGOING/UUID, CALL_UPDATE, COMMAND, HEARTBEAT and RE_SCHEDULE events, nested
execution of non-event-lock applications, 'event xml', 'log', 'sendevent', a dialplan beyond
the call's own 'set' + 'socket'/'park' (originate runs its &app() or parks), SIP: a sofia gateway's
far party is a scripted Callee (simulator/callee.py) whose leg appears only once it answers.
A call's dialplan may list several 'socket' actions, one per voxgate instance: as in FreeSWITCH a
refused connect returns at once and the next one runs (simulator/distributor.py picks the order).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import sys
import tempfile
import uuid as uuid_mod
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.simulator import api
from controller.simulator.callee import Callees
from controller.simulator.caller_leg import report
from controller.simulator.caller import ScenarioError, Step, load_scenario, run_script
from controller.simulator.channel import SimChannel
from controller.simulator.distributor import POLICIES, Distributor, SocketTarget
from controller.simulator.esl_server import EslServer
from controller.simulator.events import EventSource, SimClock
from controller.simulator.outbound import OutboundSession, open_outbound

log = logging.getLogger(__name__)

GENERATIONS = ("jambonz", "classic")


@dataclass(slots=True)
class SessionStats:
    """The session counters 'status' reports."""

    total: int = 0
    peak: int = 0
    peak_per_second: int = 0
    _per_second: dict[int, int] = field(default_factory=dict)

    def created(self, now: float, live: int) -> None:
        self.total += 1
        self.peak = max(self.peak, live)
        second = int(now)
        self._per_second = {second: self._per_second.get(second, 0) + 1}
        self.peak_per_second = max(self.peak_per_second, self._per_second[second])


class FakeFreeSwitch:
    """The simulated switch. Use `async with FakeFreeSwitch(...)` or start()/stop().

    esl_port=None serves no inbound ESL; 0 picks a free port (see .esl_port once started).
    speed > 1 runs the switch's clock faster than real time. tmp_dir is where mod_audio_fork writes
    playAudio files (a private temporary directory when not given). gateways are the sofia gateways
    originate can dial (none: sofia is not loaded); `callees` scripts who answers there (by default
    the far party answers at once and stays on the line until hung up).
    """

    def __init__(self, password: str, host: str = "127.0.0.1", esl_port: int | None = 0,
                 tmp_dir: Path | None = None, generation: str = "jambonz", speed: float = 1.0,
                 hostname: str = "sim", gateways: Sequence[str] = ()) -> None:
        if generation not in GENERATIONS:
            raise ValueError(f"generation must be one of {', '.join(GENERATIONS)}, not {generation!r}")
        self.generation = generation
        self.hostname = hostname
        self.clock = SimClock(speed)
        self.events = EventSource(self.clock, hostname)
        self.channels: dict[str, SimChannel] = {}
        self.stats = SessionStats()
        self.started_at = self.clock.now()
        self._own_tmp = tempfile.TemporaryDirectory(prefix="voxgate-sim-") if tmp_dir is None else None
        self.tmp_dir = Path(self._own_tmp.name) if self._own_tmp else Path(tmp_dir)
        self._server = EslServer(self, password, host, esl_port) if esl_port is not None else None
        self._outbound: set[OutboundSession] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session_ids = itertools.count(1)
        self.gateways = frozenset(gateways)
        self.callees = Callees()
        self.ringing: dict[str, asyncio.Event] = {}  # originates not answered yet, by origination_uuid
        self.bridged: dict[str, str] = {}  # uuid_bridge: each channel's uuid -> the other's
        # which voxgate each call's socket application reached (FreeSWITCH itself keeps only socket_host)
        self.socket_targets: dict[str, tuple[str, int]] = {}

    @property
    def esl_port(self) -> int | None:
        return self._server.port if self._server else None

    async def start(self) -> None:
        if self._server:
            await self._server.start()
            log.info("inbound ESL listening on %s:%d", self._server.host, self._server.port)

    async def stop(self) -> None:
        """Hang up every call (SYSTEM_SHUTDOWN), then drop every connection."""
        for ringing in self.ringing.values():
            ringing.set()
        live = list(self.channels.values())
        for channel in live:
            channel.hangup("SYSTEM_SHUTDOWN")
        await self._ended(live, timeout=1.0)
        for session in list(self._outbound):
            session.close()
        if self._server:
            await self._server.stop()
        await self._ended(live, timeout=2.0)
        for channel in live:
            channel.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._own_tmp:
            self._own_tmp.cleanup()

    async def __aenter__(self) -> FakeFreeSwitch:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def place_call(self, script: Sequence[Step] = (), *, destination: str = "1000",
                         caller_id_number: str = "15551230001", caller_id_name: str = "Sim Caller",
                         variables: dict[str, str] | None = None,
                         outbound_socket: tuple[str, int] | None = None,
                         socket_args: str = "async full",
                         failover: Sequence[tuple[str, int]] = ()) -> SimChannel:
        """A call from a scripted caller to `destination`.

        Its dialplan sets `variables`, then runs 'socket' to voxgate's outbound ESL server or, without
        outbound_socket, parks unanswered for voxgate's inbound mode (CHANNEL_PARK). `failover` are
        further instances, one 'socket' action each, tried in order while connects are refused.
        """
        uid = str(uuid_mod.uuid4())
        name = f"loopback/{destination}-b"
        session_id = next(self._session_ids)
        channel = SimChannel(
            self, uuid=uid, name=name, direction="inbound", destination=destination,
            caller_id_number=caller_id_number, caller_id_name=caller_id_name, session_id=session_id,
            variables={"direction": "inbound", "uuid": uid, "session_id": str(session_id), "channel_name": name,
                       "read_codec": "L16", "read_rate": "8000", "write_codec": "L16", "write_rate": "8000",
                       "other_loopback_leg_uuid": str(uuid_mod.uuid4()), "loopback_leg": "B", "call_uuid": uid})
        self._register(channel)
        dialplan: list[tuple[str, str | None]] = [("set", f"{k}={v}") for k, v in (variables or {}).items()]
        if outbound_socket:
            for host, port in (outbound_socket, *failover):
                dialplan.append(("socket", f"{host}:{port} {socket_args}"))
        else:
            dialplan.append(("park", None))
        channel.start(dialplan)
        if script:
            channel.run_caller(run_script(channel, script))
        return channel

    def originate(self, *, destination: str, variables: dict[str, str], app: str, app_arg: str | None,
                  caller_id_number: str, caller_id_name: str, sample_rate: int = 8000,
                  gateway: str | None = None) -> SimChannel:
        """An originated leg, answered: 'loopback/<dest>', or with `gateway` the far party of
        'sofia/gateway/<gateway>/<dest>' once it picked up; then it runs `app` (e.g. socket to voxgate)."""
        uid = variables.get("origination_uuid") or str(uuid_mod.uuid4())
        name = f"sofia/external/{destination}" if gateway else f"loopback/{destination}-a"
        session_id = next(self._session_ids)
        rate = str(sample_rate)
        endpoint = ({"originate_endpoint": "sofia", "sip_gateway_name": gateway} if gateway else
                    {"originate_endpoint": "loopback", "other_loopback_leg_uuid": str(uuid_mod.uuid4()),
                     "loopback_leg": "A"})
        channel = SimChannel(
            self, uuid=uid, name=name, direction="outbound", destination=destination,
            caller_id_number=caller_id_number, caller_id_name=caller_id_name, session_id=session_id,
            sample_rate=sample_rate,
            variables={"direction": "outbound", "is_outbound": "true", "session_id": str(session_id),
                       "read_codec": "L16", "read_rate": rate, "write_codec": "L16", "write_rate": rate,
                       "channel_name": name, "uuid": uid, **variables, **endpoint, "call_uuid": uid})
        self._register(channel)
        channel.start([(app, app_arg)], answered=True)
        return channel

    async def api(self, command: str, arg: str) -> str | None:
        """Run an API command as 'api' would; None for an unknown command."""
        return await api.execute(self, command, arg)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run work that outlives the connection that asked for it (bgapi jobs)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect_outbound(self, channel: SimChannel, host: str, port: int,
                               args: list[str]) -> OutboundSession | None:
        session = await open_outbound(self, channel, host, port, args)
        if session is not None:
            log.info("call %s: socket application connected to %s:%d", channel.uuid, host, port)
            self.socket_targets[channel.uuid] = (host, port)
            self._outbound.add(session)
            self.spawn(self._serve_outbound(session))
        return session

    async def _serve_outbound(self, session: OutboundSession) -> None:
        try:
            await session.serve()
        finally:
            self._outbound.discard(session)

    def bridge(self, a: SimChannel, b: SimChannel) -> None:
        """uuid_bridge: CHANNEL_BRIDGE on both legs; the bridge ends, hanging up the other, when one hangs up.

        Simplified: the channels do not hear each other, and one leaving its socket app (voxgate's exit)
        ends its dialplan, and so the bridge, as a channel with nothing left to run would.
        """
        self.bridged[a.uuid], self.bridged[b.uuid] = b.uuid, a.uuid
        for channel, other in ((a, b), (b, a)):
            channel.fire("CHANNEL_BRIDGE", post=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid),
                                                 ("Other-Leg-Unique-ID", other.uuid)])
            self.spawn(self._end_bridge(channel, other))

    @staticmethod
    async def _end_bridge(channel: SimChannel, other: SimChannel) -> None:
        await channel.ended.wait()
        other.hangup(channel.hangup_cause or "NORMAL_CLEARING")

    def channel_destroyed(self, channel: SimChannel) -> None:
        self.channels.pop(channel.uuid, None)

    def _register(self, channel: SimChannel) -> None:
        self.channels[channel.uuid] = channel
        self.stats.created(self.clock.now(), len(self.channels))

    @staticmethod
    async def _ended(channels: list[SimChannel], timeout: float) -> None:
        waits = [asyncio.ensure_future(c.ended.wait()) for c in channels if not c.ended.is_set()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for task in pending:
                task.cancel()


async def run_scenario(path: str | Path, *, outbound_socket: tuple[str, int] | Distributor | None,
                       password: str = "ClueCon", esl_port: int | None = None, speed: float = 1.0,
                       generation: str = "jambonz", heard: str | Path | None = None,
                       tmp_dir: Path | None = None) -> SimChannel:
    """Place the scenario's call, wait until it is over, optionally save what the caller heard.

    A Distributor as outbound_socket lists every instance, its pick for the scenario's caller first.
    """
    scenario = load_scenario(path)
    failover: list[tuple[str, int]] = []
    if isinstance(outbound_socket, Distributor):
        first, *rest = [(t.host, t.port) for t in outbound_socket.order(scenario.caller_id_number)]
        outbound_socket, failover = first, rest
    async with FakeFreeSwitch(password, esl_port=esl_port, speed=speed, generation=generation,
                              tmp_dir=tmp_dir) as switch:
        channel = await switch.place_call(
            scenario.steps, destination=scenario.destination, caller_id_number=scenario.caller_id_number,
            caller_id_name=scenario.caller_id_name, variables=scenario.variables,
            outbound_socket=outbound_socket, failover=failover)
        await channel.ended.wait()
    if heard:
        channel.save_heard(heard)
    return channel


def _socket_target(text: str) -> SocketTarget:
    try:
        return SocketTarget.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """voxgate simulate: one scripted call into voxgate through a simulated FreeSWITCH."""
    parser = argparse.ArgumentParser(
        prog="voxgate simulate",
        description="Place one scripted call into voxgate through a simulated FreeSWITCH 1.10.")
    parser.add_argument("--scenario", required=True, type=Path, help="scenario file (.toml or .json)")
    parser.add_argument("--connect", metavar="HOST:PORT", action="append", type=_socket_target,
                        help="voxgate's outbound ESL server; the call runs the socket application to it. "
                             "Repeat for several instances: a refused connect fails over to the next")
    parser.add_argument("--distribute", choices=POLICIES, default="round-robin",
                        help="which instance the call tries first: round-robin (in a fresh switch, the first "
                             "--connect; like mod_distributor) or hash (of the caller id)")
    parser.add_argument("--esl-port", type=int, metavar="PORT",
                        help="also serve inbound ESL on this port (0: any free port)")
    parser.add_argument("--password", help="inbound ESL password (default: $VOXGATE_SIM_PASSWORD or ClueCon)")
    parser.add_argument("--heard", type=Path, metavar="OUT.wav", help="save what the caller heard")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time per real second")
    parser.add_argument("--generation", choices=GENERATIONS, default="jambonz",
                        help="mod_audio_fork flavour: jambonz (default) or classic drachtio")
    args = parser.parse_args(argv)
    if args.connect is None and args.esl_port is None:
        parser.error("give --connect (outbound ESL), --esl-port (inbound ESL), or both")
    outbound = Distributor(args.connect, args.distribute) if args.connect else None
    if args.speed <= 0:
        parser.error("--speed must be positive")
    password = args.password or os.environ.get("VOXGATE_SIM_PASSWORD") or "ClueCon"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        channel = asyncio.run(run_scenario(args.scenario, outbound_socket=outbound, password=password,
                                           esl_port=args.esl_port, speed=args.speed,
                                           generation=args.generation, heard=args.heard))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return report(f"call {channel.uuid}: {channel.hangup_cause}, heard {channel.heard_pcm().duration:.2f} s, "
                  f"{len(channel.events)} events", args.heard, channel.script_error)
