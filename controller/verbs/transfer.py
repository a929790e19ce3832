"""Attended transfer: the caller on hold while voxgate dials the destination and asks whoever answers.

    result = await call.transfer("+12025550199", attended=True)
    if not result.accepted:
        await call.say("Nobody is available right now.")

The logic is the same on every PBX: hold the caller, dial a consult leg through the dialer on the
caller's PBX, run `consult(leg)` (by default an announcement and a key: 1 accepts, 2 returns the call),
then either bridge the two at the PBX (the adapter's `bridge`, the only PBX-specific step) or hang the
leg up and take the caller off hold. Whatever happens, including the caller hanging up or the task
being cancelled, no consult leg is left up and the caller is not left on hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from controller.call import CallGone, CommandFailed, Transferred, TransferResult
from controller.originate import ANSWERED, BUSY, NO_ANSWER

if TYPE_CHECKING:
    from controller.adapter import AdapterCall
    from controller.dialer import LegResult

log = logging.getLogger(__name__)
T = TypeVar("T")

Consult = Callable[["AdapterCall"], Awaitable[bool]]
MAX_TIMEOUT_S = 600
ANNOUNCEMENT = "You have a call from {caller}. Press 1 to accept, or 2 to return it."


async def ask(leg: AdapterCall, caller: str) -> bool:
    """The default consult: the announcement, one key; True when the consulted party pressed 1."""
    answer = await leg.gather(ANNOUNCEMENT.format(caller=caller or "an unknown number"), max_digits=1,
                              choices={"1": ["accept", "yes"], "2": ["return", "no"]})
    return answer.choice == "1"


async def attended(call: AdapterCall, destination: str, *, consult: Consult | None, timeout_s: float,
                   reason: str) -> TransferResult:
    """See the module docstring; ValueError for a bad destination or timeout before anything happens."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 1 <= timeout_s <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be a number from 1 to {MAX_TIMEOUT_S}, got {timeout_s!r}")
    if call.dialer is None:
        raise CommandFailed("attended transfer needs the controller's dialer (outbound calls configured)")
    call.dialer.plan_leg(destination, call.info.pbx)  # ValueError/DialError before the caller hears anything
    await call.hold()
    leg: LegResult | None = None
    try:
        leg = await _while_caller_stays(call, call.dialer.dial_leg(destination, pbx=call.info.pbx,
                                                                   ring_timeout_s=max(1, round(timeout_s))))
        result = await _consult_and_bridge(call, leg, destination, consult, timeout_s)
        # every attempt is a transfers row, those not taken too: how often the desk declines is worth a report
        error = None if result.accepted else result.detail or result.outcome
        call._emit(Transferred(datetime.now(UTC), destination, kind="attended", reason=reason, error=error,
                               outcome="accepted" if result.accepted else result.outcome))
        return result
    finally:
        await _clean_up(call, leg)


async def _consult_and_bridge(call: AdapterCall, leg: LegResult | None, destination: str, consult: Consult | None,
                              timeout_s: float) -> TransferResult:
    """What became of the dialled leg (None: the caller hung up while it rang)."""
    if leg is None:
        return TransferResult(False, "failed", "the caller hung up while the destination rang")
    if leg.outcome != ANSWERED or leg.call is None:
        outcome = leg.outcome if leg.outcome in (BUSY, NO_ANSWER) else "failed"
        return TransferResult(False, outcome, leg.cause)
    accepted = await _consulted(call, leg.call, consult, timeout_s)
    if isinstance(accepted, TransferResult):
        return accepted
    if not accepted:
        return TransferResult(False, "declined", "the consulted party returned the call")
    return await _bridge(call, leg.call, destination)


async def _consulted(call: AdapterCall, leg: AdapterCall, consult: Consult | None,
                     timeout_s: float) -> bool | TransferResult:
    """The consult's answer, or the result when it could not be had."""
    ask_leg = consult(leg) if consult is not None else ask(leg, call.info.caller_id_number)
    try:
        async with asyncio.timeout(timeout_s):
            answer = await _while_caller_stays(call, ask_leg)
    except TimeoutError:
        return TransferResult(False, "no_answer", f"no decision within {timeout_s:g} s")
    except CallGone:
        return TransferResult(False, "declined", "the consulted party hung up")
    if answer is None:
        return TransferResult(False, "failed", "the caller hung up during the consult")
    return bool(answer)


async def _bridge(call: AdapterCall, leg: AdapterCall, destination: str) -> TransferResult:
    """Caller and leg joined at the PBX; both leave voxgate."""
    await call.unhold()
    try:
        await call.bridge(leg, destination)
    except (CommandFailed, CallGone) as exc:
        return TransferResult(False, "failed", f"bridge: {str(exc) or 'call gone'}")
    return TransferResult(True, "bridged", f"bridged with {leg.info.uuid}")


async def _while_caller_stays(call: AdapterCall, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None once the caller hangs up first (the work is cancelled)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(call.ended.wait())
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if not task.cancelled() else None


async def _clean_up(call: AdapterCall, leg: LegResult | None) -> None:
    """No leg left up unless bridged, the caller off hold; runs after a cancel too."""
    if leg is not None and leg.call is not None:
        if leg.call.transferred_to is None and not leg.call.ended.is_set():
            try:
                await leg.call.hangup()
            except (CallGone, CommandFailed) as exc:
                log.warning("call %s: consult leg %s not hung up: %s", call.info.uuid, leg.call.info.uuid, exc)
        leg.release()
    if call.transferred_to is None and not call.ended.is_set():
        try:
            await call.unhold()
        except (CallGone, CommandFailed):
            pass
