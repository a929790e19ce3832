"""What every PBX adapter's call shares: the event stream, digits typed ahead, the agent, the fallback CDR.

An adapter (FreeSWITCH, Asterisk) subclasses `AdapterCall` and adds the verbs that talk to its
PBX; the controller drives any of them the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from controller.agent.conversation import AgentConfig, AgentResult, Conversation, Engines
from controller.call import CallEvent, CallGone, CallInfo, CommandFailed, Dtmf, HungUp, MediaPort, PlayResult
from controller.records.cdr import CallRecord, TurnRecord

MEDIA_WAIT_S = 3.0


class AdapterCall:
    """Base of one PBX's Call; see the module docstring. Subclasses set `media` and call `_emit`/`_on_hangup`."""

    media: MediaPort
    CDR_SOURCE = "the PBX's CDR"  # named in the fallback CDR's error when it never arrived

    def __init__(self, info: CallInfo) -> None:
        self.info = info
        self._ended = asyncio.Event()
        self.completed = asyncio.Event()  # the PBX's own CDR arrived (or never will)
        self.hangup_cause = ""
        self.transferred_to: str | None = None
        self._digits: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers: list[asyncio.Queue[CallEvent]] = []
        self._history: list[CallEvent] = []
        self.agent_engines: Engines | None = None  # set by the controller
        self.on_turn: Callable[[TurnRecord], None] | None = None
        self.on_call_event: Callable[[CallEvent], None] | None = None  # the controller's records

    @property
    def ended(self) -> asyncio.Event:
        return self._ended

    # ------------------------------------------------------------ events

    def _emit(self, event: CallEvent) -> None:
        if self.on_call_event is not None:
            self.on_call_event(event)
        self._history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _digit(self, digit: str, duration_ms: int = 0) -> None:
        self._digits.put_nowait(digit)
        self._emit(Dtmf(datetime.now(UTC), digit, duration_ms))

    def _mark_ended(self, cause: str) -> bool:
        """The first hangup report wins; returns False for later ones."""
        if self._ended.is_set():
            return False
        self.hangup_cause = cause
        self._ended.set()
        return True

    def _hung_up(self, cause: str) -> None:
        self._emit(HungUp(datetime.now(UTC), cause))

    async def events(self) -> AsyncIterator[CallEvent]:
        queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        for past in self._history:
            queue.put_nowait(past)
        self._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, HungUp):
                    return
        finally:
            self._subscribers.remove(queue)

    # ------------------------------------------------------------ verbs every PBX does the same way

    def _check_alive(self) -> None:
        if self._ended.is_set():
            raise CallGone(self.hangup_cause or "call ended")

    async def _media_ready(self) -> None:
        if not self.media.connected and not await self.media.wait_connected(MEDIA_WAIT_S):
            raise CommandFailed("the call's media stream is not connected")

    async def play_audio(self, pcm: bytes, sample_rate: int) -> PlayResult:
        self._check_alive()
        await self._media_ready()
        return await self.media.play(pcm, sample_rate)

    async def agent(self, config: AgentConfig) -> AgentResult:
        """An AI conversation on this call until it ends, transfers or the caller hangs up."""
        self._check_alive()
        if self.agent_engines is None:
            raise CommandFailed("no agent engines are configured")
        await self._media_ready()
        return await Conversation(self, config, self.agent_engines, self.on_turn).run()

    def clear_dtmf(self) -> None:
        """Forget digits typed ahead so far."""
        while not self._digits.empty():
            self._digits.get_nowait()

    async def collect_dtmf(self, max_digits: int, timeout: float, inter_digit_timeout: float = 3.0,
                           terminators: str = "#") -> str:
        digits = ""
        wait = timeout
        while len(digits) < max_digits:
            self._check_alive()
            digit = await self._next_digit(wait)
            if digit is None:
                break
            if digit in terminators:
                break
            digits += digit
            wait = inter_digit_timeout
        return digits

    async def _next_digit(self, timeout: float) -> str | None:
        getter = asyncio.ensure_future(self._digits.get())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            done, _ = await asyncio.wait({getter, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if ended in done:
            raise CallGone(self.hangup_cause)
        return None

    # ------------------------------------------------------------ the controller's side

    async def start_media(self, metadata: dict) -> None:
        """Ask the PBX to connect the call's audio, where voxgate must ask (the dialplan may have done it)."""

    async def release(self) -> None:
        """Let go of the PBX's control connection for this call, if it has one of its own."""

    def call_record(self, outcome: str, error: str | None) -> CallRecord:
        """The CDR: adapters use their PBX's own; this is voxgate's view for when it never came."""
        info, now = self.info, datetime.now(UTC)
        started = info.started_at or now
        answered = info.answered_at
        missing = None if self.transferred_to else f"{self.CDR_SOURCE} not received"
        return CallRecord(
            pbx=info.pbx, call_uuid=info.uuid, direction=info.direction, caller_id_name=info.caller_id_name,
            caller_id_number=info.caller_id_number, destination=info.destination, started_at=started,
            answered_at=answered, ended_at=now, duration_s=int((now - started).total_seconds()),
            billsec=int((now - answered).total_seconds()) if answered else 0,
            hangup_cause=self.hangup_cause or ("TRANSFERRED" if self.transferred_to else "UNKNOWN"),
            flow=info.flow, outcome=outcome, variables=dict(info.variables), error=error or missing)
