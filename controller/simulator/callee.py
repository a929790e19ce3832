"""The far party of a call a simulated PBX places (originate): who answers, who is busy, who never picks up.

Both fakes use it the same way: the dialled trunk (FreeSWITCH gateway, Asterisk endpoint) and number
pick a Callee, the PBX rings for as long as it says, then answers and runs its CallerScript, or ends
the attempt with a cause the PBX reports in its own words (FreeSWITCH `-ERR <CAUSE>`, Asterisk's
OriginateResponse Reason).

    switch.callees.script(Busy(), trunk="carrier_a")
    switch.callees.script([NoAnswer(), Answer(CallerScript([WaitFor("answer"), Dtmf("1")]))],
                          number="+12025550123")   # one per call, the last one repeats
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from controller.causes import CAUSES
from controller.simulator.caller import Step
from controller.simulator.events import SimClock


@dataclass(frozen=True, slots=True)
class Answer:
    """Picks up after ring_s and plays its part of the call (the script)."""

    script: Sequence[Step] = ()
    ring_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Busy:
    ring_s: float = 0.0


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """Rings until the originate's own timeout runs out."""


@dataclass(frozen=True, slots=True)
class Fail:
    """The call fails with a cause (as FreeSWITCH names it) after ring_s: a trunk down, a number unknown..."""

    cause: str = "NORMAL_TEMPORARY_FAILURE"
    ring_s: float = 0.0

    def __post_init__(self) -> None:
        if self.cause not in CAUSES and self.cause != "INVALID_GATEWAY":
            raise ValueError(f"unknown cause {self.cause!r}")


Callee = Answer | Busy | NoAnswer | Fail


@dataclass(frozen=True, slots=True)
class Dialled:
    """One originate the PBX saw: where to, and what the far party did."""

    trunk: str
    number: str
    callee: Callee


@dataclass(slots=True)
class Callees:
    """Callees by (trunk, number), then by trunk, by number, for any call; None when nothing matches."""

    _scripted: dict[tuple[str | None, str | None], list[Callee]] = field(default_factory=dict)
    dialled: list[Dialled] = field(default_factory=list)

    def script(self, callee: Callee | Sequence[Callee], *, trunk: str | None = None,
               number: str | None = None) -> None:
        """What calls to this trunk and/or number (neither: any call) meet; a sequence is used one per
        call, its last repeating."""
        callees = [callee] if isinstance(callee, Answer | Busy | NoAnswer | Fail) else list(callee)
        if not callees:
            raise ValueError("script at least one callee")
        self._scripted[(trunk, number)] = callees

    def pick(self, trunk: str, number: str) -> Callee | None:
        for key in ((trunk, number), (trunk, None), (None, number), (None, None)):
            callees = self._scripted.get(key)
            if callees:
                return callees.pop(0) if len(callees) > 1 else callees[0]
        return None

    def note(self, trunk: str, number: str, callee: Callee) -> None:
        self.dialled.append(Dialled(trunk, number, callee))


async def ring(callee: Callee, clock: SimClock, timeout_s: float, cancelled: asyncio.Event) -> str | None:
    """Ring as the callee does; None when it answers, else the cause that ended the call.

    The originate's timeout wins over a longer ring (NO_ANSWER), and cancelling it (ORIGINATOR_CANCEL)
    over both, as in the PBX.
    """
    ring_s = math.inf if isinstance(callee, NoAnswer) else callee.ring_s
    outcome: str | None = "NO_ANSWER" if ring_s >= timeout_s else _ended_by(callee)
    sleep = asyncio.ensure_future(clock.sleep(min(ring_s, timeout_s)))
    cancel = asyncio.ensure_future(cancelled.wait())
    try:
        await asyncio.wait({sleep, cancel}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleep.cancel()
        cancel.cancel()
    return "ORIGINATOR_CANCEL" if cancelled.is_set() else outcome


def _ended_by(callee: Callee) -> str | None:
    if isinstance(callee, Busy):
        return "USER_BUSY"
    if isinstance(callee, Fail):
        return callee.cause
    return None
