"""Outbound calls: one request dialled over a PBX's trunks in order, retried with backoff, every try recorded.

    result = await controller.dialer.dial(OutboundCall("+15551230001", flow="reminder"))
    if result.answered:
        await result.finished()   # the flow ran on the answered call like on any other

The number is checked and written in E.164 before anything is dialled. One pass tries each trunk in
turn; busy, no answer and failures move on to the next trunk, and after the last one the next pass
starts after an exponential backoff. An invalid number ends the request at once. Each try becomes a
CallAttemptRecord (call_attempts) under the request's id; the answered call carries the same id
in its variables (voxgate_request_id), so its CDR says which request placed it.

The PBX connects an answered call to voxgate the way it connects any call: FreeSWITCH runs
`socket` into the outbound ESL server (the originate goes over the inbound event socket, which must
be configured); Asterisk runs the outbound context of dialplan/asterisk/extensions.conf, which
announces the call and connects its media as for an incoming one. The dialer gives the call its
uuid up front and watches for it (controller.live_calls), so it knows the call the moment it lands.
Nothing here holds a call's task: a flow may dial a second leg while its own call goes on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from controller.asterisk.manager import AmiClient, AmiError
from controller.call import CallGone, CommandFailed
from controller.esl.client import EslError, InboundClient
from controller.flows import Flow
from controller.originate import (
    ANSWERED, BUSY, FAILED, NO_ANSWER, REJECTED, asterisk_caller_id, asterisk_result, check_variable_value,
    check_variables, dial_string, freeswitch_originate, freeswitch_result,
)
from controller.phone_numbers import to_e164
from controller.records.cdr import CallAttemptRecord

if TYPE_CHECKING:
    from controller.adapter import AdapterCall
    from controller.app import Controller

log = logging.getLogger(__name__)

LEG_FLOW = "voxgate.leg"  # what an answered leg of a call in progress runs: nothing, its dialler has it

PBXS = ("freeswitch", "asterisk")
RETRIED = frozenset({BUSY, NO_ANSWER, REJECTED, FAILED})  # a try on another trunk or later may still work
CONNECT_WAIT_S = 5.0  # for the PBX's control connection before a try
ARRIVAL_WAIT_S = 10.0  # from the answer until the PBX has connected the call to voxgate
RESULT_MARGIN_S = 15.0  # beyond the ring timeout, for the PBX's answer to the originate
_TRUNK = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_CALLER_NUMBER = re.compile(r"\+?[0-9*#]{1,32}")


class DialError(RuntimeError):
    """Outbound calls cannot be placed (no PBX configured for them, or draining); nothing was dialled."""


@dataclass(frozen=True, slots=True)
class OutboundCall:
    """One call to place. None and empty values take the settings' defaults (caller id, trunks, policy)."""

    number: str
    flow: str
    caller_id_number: str | None = None
    caller_id_name: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)  # channel variables the flow reads
    trunks: tuple[str, ...] = ()
    pbx: str = ""  # "freeswitch" or "asterisk"; "" = FreeSWITCH when its event socket is set up, else Asterisk
    retries: int | None = None  # passes over the trunk list after the first
    backoff_s: float | None = None  # before the second pass; multiplied by dial_backoff_factor for each next
    ring_timeout_s: int | None = None
    request_id: str = ""  # ties the tries and the answered call together; "" = a new one


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try on one trunk and how it ended; `cause` is the PBX's own words."""

    attempt: int
    trunk: str
    outcome: str
    cause: str
    started_at: datetime
    ended_at: datetime
    call_uuid: str | None = None


@dataclass(frozen=True, slots=True)
class DialResult:
    """How a request ended: its tries, and the answered call while voxgate runs its flow."""

    request_id: str
    pbx: str
    number: str
    flow: str
    outcome: str  # answered, or how the last try ended: busy | no_answer | rejected | failed | invalid_number
    attempts: tuple[Attempt, ...]
    call: AdapterCall | None = None
    departure: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def answered(self) -> bool:
        return self.outcome == ANSWERED

    @property
    def call_uuid(self) -> str | None:
        return self.call.info.uuid if self.call is not None else None

    async def finished(self) -> None:
        """Until voxgate is done with the answered call: flow over, records handed to the writer."""
        if self.departure is not None:
            await asyncio.shield(self.departure)


@dataclass(frozen=True, slots=True)
class LegResult:
    """A second leg dialled for a call in progress: how it ended, or the answered call, its media starting.

    The leg stays under voxgate, with no flow of its own, until `release()` (after bridging or hanging it
    up) or its hangup; its CDR names the flow voxgate.leg.
    """

    outcome: str
    cause: str
    call: AdapterCall | None = None
    done: asyncio.Event | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.done is not None:
            self.done.set()


@dataclass(frozen=True, slots=True)
class _Handoff:
    arrived: asyncio.Future[AdapterCall]
    done: asyncio.Event


@dataclass(frozen=True, slots=True)
class _Plan:
    """A request checked and completed from the settings."""

    request_id: str
    pbx: str
    number: str
    flow: str
    caller_id_number: str
    caller_id_name: str
    variables: dict[str, str]
    trunks: tuple[str, ...]
    retries: int
    backoff_s: float
    backoff_factor: float
    backoff_max_s: float
    ring_timeout_s: int

    def schedule(self) -> Iterator[tuple[int, str, float]]:
        """(attempt number, trunk, seconds to wait first): each pass tries every trunk, a backoff between passes."""
        attempt = 0
        for round_ in range(self.retries + 1):
            for position, trunk in enumerate(self.trunks):
                attempt += 1
                wait = 0.0
                if round_ and not position:
                    wait = min(self.backoff_s * self.backoff_factor ** (round_ - 1), self.backoff_max_s)
                yield attempt, trunk, wait

    def call_variables(self, attempt: int, trunk: str) -> dict[str, str]:
        """What the answered call's CallInfo.variables hold about its request, on either PBX."""
        return {**self.variables, "voxgate_flow": self.flow, "voxgate_request_id": self.request_id,
                "voxgate_attempt": str(attempt), "voxgate_trunk": trunk, "voxgate_number": self.number}

    def freeswitch_variables(self, call_uuid: str, attempt: int, trunk: str) -> dict[str, str]:
        """The originate's {...}: its own controls, then what the call carries to voxgate."""
        variables = {"origination_uuid": call_uuid}
        if self.caller_id_number:
            variables["origination_caller_id_number"] = self.caller_id_number
        if self.caller_id_name:
            variables["origination_caller_id_name"] = self.caller_id_name
        # send_silence_when_idle as the dialplan sets it for incoming calls: streamed agent audio is mixed
        # into what the channel writes, and a parked channel writes nothing without it
        return variables | {"originate_timeout": str(self.ring_timeout_s), "ignore_early_media": "true",
                            "send_silence_when_idle": "-1", **self.call_variables(attempt, trunk)}

    def asterisk_variables(self, attempt: int, trunk: str) -> dict[str, str]:
        """The Originate's Variable headers: VOXGATE_FLOW, VOXGATE_REQUEST_ID... and the request's own."""
        ours = {key.upper(): value for key, value in self.call_variables(attempt, trunk).items()
                if key.startswith("voxgate_")}
        return ours | self.variables


@dataclass(frozen=True, slots=True)
class _Try:
    outcome: str
    cause: str
    call: AdapterCall | None = None
    final: bool = False  # stop here whatever the outcome (the callee may have picked up)


def _bounded(name: str, value: float, low: float, high: float, *, whole: bool = False) -> None:
    kinds = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise ValueError(f"{name} must be a {'whole ' if whole else ''}number from {low:g} to {high:g}, "
                         f"got {value!r}")


# ---------------------------------------------------------------- the dialer


class Dialer:
    """Places outbound calls for the controller; see the module docstring."""

    def __init__(self, controller: Controller, submit: Callable[[CallAttemptRecord], None]) -> None:
        self._controller = controller
        self._settings = controller.settings
        self._submit = submit
        self._handoffs: dict[str, _Handoff] = {}  # by request id: legs dialled for a call in progress

    async def dial(self, request: OutboundCall) -> DialResult:
        """Dial until answered, a final outcome, or the tries run out.

        ValueError (bad number, flow, trunk, variable...) and DialError (no PBX for outbound calls)
        come before anything is dialled. Cancelling hangs up a try still ringing.
        """
        plan = self.plan(request)
        attempts, answered = await self._tries(plan)
        departure = self._controller.calls.departure(answered.info.uuid) if answered is not None else None
        return DialResult(plan.request_id, plan.pbx, plan.number, plan.flow, attempts[-1].outcome,
                          tuple(attempts), answered, departure)

    async def dial_leg(self, number: str, *, pbx: str, ring_timeout_s: int) -> LegResult:
        """One pass over the PBX's trunks for a second leg of a call in progress (an attended transfer's
        consult). The answered call is handed back here instead of running a flow. ValueError and
        DialError as for dial(); cancelling hangs up the leg, ringing or answered."""
        plan = self.plan_leg(number, pbx, ring_timeout_s)
        self._controller.flows.add(Flow(LEG_FLOW, self._leg_flow))  # the registry may have been reloaded
        handoff = self._handoffs[plan.request_id] = _Handoff(asyncio.get_running_loop().create_future(),
                                                             asyncio.Event())
        answered = None
        try:
            attempts, answered = await self._tries(plan)
            if answered is None:
                return LegResult(attempts[-1].outcome, attempts[-1].cause)
            call = await asyncio.wait_for(asyncio.shield(handoff.arrived), ARRIVAL_WAIT_S)
        except BaseException as exc:
            handoff.done.set()
            if answered is not None:
                await _hang_up_leg(answered)
            if isinstance(exc, TimeoutError):
                return LegResult(FAILED, "answered, but its flow never started")
            raise
        finally:
            self._handoffs.pop(plan.request_id, None)
        return LegResult(ANSWERED, attempts[-1].cause, call, handoff.done)

    def plan_leg(self, number: str, pbx: str, ring_timeout_s: int = 30) -> _Plan:
        """A leg's request checked as dial_leg will dial it: ValueError or DialError say what is wrong."""
        if pbx not in PBXS:
            raise ValueError(f"pbx must be one of {', '.join(PBXS)}, not {pbx!r}")
        return self.plan(OutboundCall(number, LEG_FLOW, pbx=pbx, retries=0, ring_timeout_s=ring_timeout_s))

    async def _leg_flow(self, call: AdapterCall) -> str:
        """A leg's flow: hand the call to whoever dialled it, then wait until they are done with it."""
        handoff = self._handoffs.get(call.info.variables.get("voxgate_request_id", ""))
        if handoff is None or handoff.arrived.done():
            return "abandoned"  # its dialler gave up on it; the controller hangs it up
        handoff.arrived.set_result(call)
        ended = asyncio.ensure_future(call.ended.wait())
        done = asyncio.ensure_future(handoff.done.wait())
        try:
            await asyncio.wait({ended, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            done.cancel()
        return "released"

    async def _tries(self, plan: _Plan) -> tuple[list[Attempt], AdapterCall | None]:
        """Every try of the plan until one is answered or final, each recorded."""
        originate = self._originator(plan.pbx)
        attempts: list[Attempt] = []
        answered = None
        for number, trunk, wait in plan.schedule():
            if wait:
                await asyncio.sleep(wait)
            started = datetime.now(UTC)
            result = await originate(plan, number, trunk)
            attempt = Attempt(number, trunk, result.outcome, result.cause, started, datetime.now(UTC),
                              result.call.info.uuid if result.call is not None else None)
            attempts.append(attempt)
            self._record(plan, attempt)
            log.info("outbound %s: try %d via %s %s: %s (%s)", plan.request_id, number, plan.pbx, trunk,
                     result.outcome, result.cause)
            if result.final or result.outcome not in RETRIED:
                answered = result.call
                break
        return attempts, answered

    def plan(self, request: OutboundCall) -> _Plan:
        """The request checked and completed from the settings; ValueError says what is wrong, DialError
        that its PBX is not set up for outbound calls."""
        if self._controller.state == "draining":  # the answered call could not come back to this instance
            raise DialError("this instance is draining: it places no new calls; use another instance")
        settings = self._settings
        number = to_e164(request.number, settings.default_region, check=settings.number_check)
        if request.flow != LEG_FLOW and request.flow not in self._controller.flows:
            raise ValueError(f"unknown flow {request.flow!r}; known: {', '.join(self._controller.flows.names)}")
        if request.pbx and request.pbx not in PBXS:
            raise ValueError(f"pbx must be one of {', '.join(PBXS)}, not {request.pbx!r}")
        pbx = request.pbx or self._default_pbx()
        self._originator(pbx)  # DialError now when that PBX is not set up for outbound calls
        caller_number, caller_name = self._caller_id(request)
        retries, backoff, ring = self._policy(request)
        request_id = request.request_id or uuidlib.uuid4().hex
        if not _REQUEST_ID.fullmatch(request_id):
            raise ValueError(f"request id {request_id!r}: 1-64 characters of A-Z a-z 0-9 _ . : -")
        return _Plan(request_id, pbx, number, request.flow, caller_number, caller_name,
                     check_variables(request.variables), self._trunks(pbx, request.trunks), retries, backoff,
                     settings.dial_backoff_factor, settings.dial_backoff_max_s, ring)

    def _trunks(self, pbx: str, given: tuple[str, ...]) -> tuple[str, ...]:
        trunks = tuple(given) or self._settings.trunks(pbx)
        if not trunks:
            raise ValueError(f"no trunks to dial through on {pbx}: set VOXGATE_{pbx.upper()}_TRUNKS or give some")
        for trunk in trunks:
            if not isinstance(trunk, str) or not _TRUNK.fullmatch(trunk):
                raise ValueError(f"trunk {trunk!r}: 1-64 characters of A-Z a-z 0-9 _ . -")
        return trunks

    def _caller_id(self, request: OutboundCall) -> tuple[str, str]:
        settings = self._settings
        number = settings.caller_id_number if request.caller_id_number is None else request.caller_id_number
        if number and not _CALLER_NUMBER.fullmatch(number):
            raise ValueError(f"caller id number {number!r}: digits with an optional leading +")
        name = settings.caller_id_name if request.caller_id_name is None else request.caller_id_name
        return number, check_variable_value("caller id name", name)

    def _policy(self, request: OutboundCall) -> tuple[int, float, int]:
        settings = self._settings
        retries = settings.dial_retries if request.retries is None else request.retries
        backoff = settings.dial_backoff_s if request.backoff_s is None else request.backoff_s
        ring = settings.dial_ring_timeout_s if request.ring_timeout_s is None else request.ring_timeout_s
        _bounded("backoff_s", backoff, 0, 86400)
        _bounded("retries", retries, 0, 20, whole=True)
        _bounded("ring_timeout_s", ring, 1, 600, whole=True)  # FreeSWITCH reads whole seconds
        return retries, float(backoff), ring

    def _default_pbx(self) -> str:
        if self._settings.esl_inbound:
            return "freeswitch"
        if self._settings.asterisk:
            return "asterisk"
        raise DialError("outbound calls need FreeSWITCH's event socket (VOXGATE_ESL_INBOUND=true with "
                        "VOXGATE_ESL_HOST/_PORT/_PASSWORD) or Asterisk (VOXGATE_ASTERISK=true)")

    def _originator(self, pbx: str) -> Callable[[_Plan, int, str], Awaitable[_Try]]:
        if pbx == "freeswitch":
            if not self._settings.esl_inbound:
                raise DialError("outbound calls on FreeSWITCH are placed over its event socket: set "
                                "VOXGATE_ESL_INBOUND=true with VOXGATE_ESL_HOST/_PORT/_PASSWORD")
            return self._freeswitch
        if not self._settings.asterisk:
            raise DialError("Asterisk is not configured (VOXGATE_ASTERISK=true, VOXGATE_AMI_SECRET, ...)")
        return self._asterisk

    def _record(self, plan: _Plan, attempt: Attempt) -> None:
        self._submit(CallAttemptRecord(
            plan.request_id, attempt.attempt, plan.pbx, plan.number, attempt.trunk, plan.flow, attempt.started_at,
            attempt.ended_at, attempt.outcome, attempt.cause, attempt.call_uuid))

    # ------------------------------------------------------------ one try on each PBX

    async def _freeswitch(self, plan: _Plan, attempt: int, trunk: str) -> _Try:
        inbound = self._controller.inbound
        if inbound is None or not await _connected(inbound.connected):
            return _Try(FAILED, "FreeSWITCH's event socket is not connected")
        settings = self._settings
        call_uuid = str(uuidlib.uuid4())
        command = freeswitch_originate(
            plan.freeswitch_variables(call_uuid, attempt, trunk),
            dial_string(settings.freeswitch_dial_string, plan.number, trunk),
            f"{settings.esl_outbound_host or settings.bind_host}:{self._controller.outbound.port}")

        async def originate() -> tuple[str, str]:
            return freeswitch_result(await inbound.bgapi(command, timeout=plan.ring_timeout_s + RESULT_MARGIN_S))

        async def hang_up() -> None:
            await _kill_freeswitch_leg(inbound, call_uuid)

        return await self._place(call_uuid, plan, attempt, trunk, originate, hang_up, (EslError, TimeoutError))

    async def _asterisk(self, plan: _Plan, attempt: int, trunk: str) -> _Try:
        pbx = self._controller.asterisk
        if pbx is None or not pbx.ami.connected:
            return _Try(FAILED, "AMI is not connected")
        settings = self._settings
        channel_id = str(uuidlib.uuid4())  # the channel's Uniqueid, so its announcement is recognised

        async def originate() -> tuple[str, str]:
            return asterisk_result(await pbx.ami.originate(
                dial_string(settings.asterisk_dial_string, plan.number, trunk),
                context=settings.asterisk_outbound_context, exten=plan.number, priority=1,
                caller_id=asterisk_caller_id(plan.caller_id_number, plan.caller_id_name),
                ring_timeout=plan.ring_timeout_s, channel_id=channel_id,
                variables=plan.asterisk_variables(attempt, trunk), timeout=plan.ring_timeout_s + RESULT_MARGIN_S))

        async def hang_up() -> None:
            await _hang_up_asterisk_leg(pbx.ami, channel_id)

        return await self._place(channel_id, plan, attempt, trunk, originate, hang_up, (AmiError,))

    async def _place(self, call_uuid: str, plan: _Plan, attempt: int, trunk: str,
                     originate: Callable[[], Awaitable[tuple[str, str]]], hang_up: Callable[[], Awaitable[None]],
                     errors: tuple[type[BaseException], ...]) -> _Try:
        """Originate with the call expected; a leg left ringing by an error or a cancel is hung up."""
        arrived = self._expect(call_uuid, plan, attempt, trunk)
        try:
            outcome, cause = await originate()
        except BaseException as exc:
            self._controller.calls.forget(call_uuid)
            await hang_up()
            if isinstance(exc, errors):
                return _Try(FAILED, f"no originate result: {str(exc) or type(exc).__name__}")
            raise
        if outcome != ANSWERED:
            self._controller.calls.forget(call_uuid)
            return _Try(outcome, cause)
        return await self._arrival(arrived, call_uuid, cause, hang_up)

    # ------------------------------------------------------------ the answered call

    def _expect(self, call_uuid: str, plan: _Plan, attempt: int, trunk: str) -> asyncio.Future[AdapterCall]:
        """Watch for the call; when the controller adopts it, mark it outbound before its flow starts."""
        arrived: asyncio.Future[AdapterCall] = asyncio.get_running_loop().create_future()

        def adopt(call: AdapterCall) -> None:
            call.info.direction = "outbound"
            if plan.flow == LEG_FLOW:
                call.info.flow = LEG_FLOW  # the controller chose the flow from its routes: this one has none
            call.info.variables.update(plan.call_variables(attempt, trunk))
            if not arrived.done():
                arrived.set_result(call)

        self._controller.calls.expect(call_uuid, adopt)
        return arrived

    async def _arrival(self, arrived: asyncio.Future[AdapterCall], call_uuid: str, cause: str,
                       hang_up: Callable[[], Awaitable[None]]) -> _Try:
        """The PBX answered: wait for it to hand the call to voxgate, or hang up a call nobody would talk to."""
        try:
            call = await asyncio.wait_for(arrived, ARRIVAL_WAIT_S)
        except BaseException as exc:
            self._controller.calls.forget(call_uuid)
            await hang_up()
            if isinstance(exc, TimeoutError):
                return _Try(FAILED, f"answered, but the PBX did not connect the call to voxgate within "
                                    f"{ARRIVAL_WAIT_S:g} s", final=True)
            raise
        return _Try(ANSWERED, cause, call)


async def _hang_up_leg(call: AdapterCall) -> None:
    try:
        await call.hangup()
    except (CallGone, CommandFailed) as exc:
        log.debug("leg %s not hung up: %s", call.info.uuid, exc)


async def _connected(event: asyncio.Event) -> bool:
    try:
        await asyncio.wait_for(event.wait(), CONNECT_WAIT_S)
    except TimeoutError:
        return False
    return True


async def _kill_freeswitch_leg(inbound: InboundClient, call_uuid: str) -> None:
    """Cancel a leg still ringing (or answered with nobody to take it); gone already is fine."""
    try:
        await inbound.api(f"uuid_kill {call_uuid} ORIGINATOR_CANCEL")
    except EslError as exc:
        log.warning("could not hang up outbound leg %s: %s", call_uuid, exc)


async def _hang_up_asterisk_leg(ami: AmiClient, channel_id: str) -> None:
    """Asterisk finds a channel by its Uniqueid too; one that never rang or is gone already is fine."""
    try:
        await ami.hangup(channel_id)
    except AmiError as exc:
        log.debug("outbound leg %s not hung up: %s", channel_id, exc)
