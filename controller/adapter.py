"""What every PBX adapter's call shares: the event stream, keys typed ahead, the agent, the flow verbs
(say, play, gather, hold, record, hooks, state: controller.verbs) and the fallback CDR.

An adapter (FreeSWITCH, Asterisk) subclasses `AdapterCall` and adds the verbs that talk to its
PBX; the controller drives any of them the same way.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.agent.conversation import AgentConfig, AgentResult, Conversation, Engines
from controller.audio import Pcm
from controller.call import (
    CallEvent,
    CallGone,
    CallInfo,
    CommandFailed,
    Dtmf,
    HungUp,
    MediaPort,
    PlayResult,
    PromptResult,
    TransferResult,
)
from controller.records.cdr import CallRecord, TurnRecord
from controller.verbs import gather as gather_verb
from controller.verbs import hold as hold_verb
from controller.verbs import play as play_verb
from controller.verbs import record as record_verb
from controller.verbs import say as say_verb
from controller.verbs import transfer as transfer_verb
from controller.verbs.gather import GatherResult, GatherSpec
from controller.verbs.hooks import Hooks
from controller.verbs.keys import Keypad, read_digits
from controller.verbs.record import RecordResult, RecordSpec
from controller.verbs.state import storable

if TYPE_CHECKING:
    from controller.dialer import Dialer

MEDIA_WAIT_S = 3.0


class AdapterCall(ABC):
    """Base of one PBX's Call; see the module docstring. Subclasses set `media` and call `_emit`/`_on_hangup`."""

    media: MediaPort
    CDR_SOURCE = "the PBX's CDR"  # named in the fallback CDR's error when it never arrived

    def __init__(self, info: CallInfo) -> None:
        self.info = info
        self._ended = asyncio.Event()
        self.completed = asyncio.Event()  # the PBX's own CDR arrived (or never will)
        self.hangup_cause = ""
        self.transferred_to: str | None = None
        self.keypad = Keypad()
        self.state: dict[str, Any] = {}  # the flow's own notes, stored with the call record
        self._subscribers: list[asyncio.Queue[CallEvent]] = []
        self._history: list[CallEvent] = []
        self._hooks = Hooks(info.uuid)
        self._hold: hold_verb.HoldMusic | None = None
        self.agent_engines: Engines | None = None  # set by the controller
        self.on_turn: Callable[[TurnRecord], None] | None = None
        self.on_call_event: Callable[[CallEvent], None] | None = None  # the controller's records
        self.dialer: Dialer | None = None  # set by the controller: attended transfers dial through it

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
        self.keypad.press(digit)
        self._emit(Dtmf(datetime.now(UTC), digit, duration_ms))
        self._hooks.fire("dtmf", digit)

    def _mark_ended(self, cause: str) -> bool:
        """The first hangup report wins; returns False for later ones."""
        if self._ended.is_set():
            return False
        self.hangup_cause = cause
        self._ended.set()
        return True

    def _hung_up(self, cause: str) -> None:
        self._emit(HungUp(datetime.now(UTC), cause))
        self._hooks.fire("hangup", cause)

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
        async with self._over_hold():
            return await self.media.play(pcm, sample_rate)

    async def agent(self, config: AgentConfig) -> AgentResult:
        """An AI conversation on this call until it ends, transfers or the caller hangs up."""
        self._check_alive()
        if self.agent_engines is None:
            raise CommandFailed("no agent engines are configured")
        await self._media_ready()
        async with self._over_hold():
            return await Conversation(self, config, self.agent_engines, self.on_turn).run()

    def clear_dtmf(self) -> None:
        """Forget keys typed ahead so far."""
        self.keypad.clear()

    async def collect_dtmf(self, max_digits: int, timeout: float, inter_digit_timeout: float = 3.0,
                           terminators: str = "#") -> str:
        self._check_alive()
        return await read_digits(self, max_digits=max_digits, first_timeout=timeout,
                                 inter_digit_timeout=inter_digit_timeout, terminators=terminators)

    # ------------------------------------------------------------ flow verbs (controller.verbs)

    async def say(self, text: str, *, interruptible: bool = True) -> PromptResult:
        """Speak `text` with the call's TTS; a key or the caller talking stops it when interruptible."""
        await self._verb_ready()
        async with self._over_hold():
            return await say_verb.say(self, text, interruptible=interruptible)

    async def play(self, source: str | Path | Pcm, *, interruptible: bool = True) -> PromptResult:
        """A WAV file or http(s) URL played by voxgate, or a path only the PBX can read (play_file)."""
        await self._verb_ready()
        async with self._over_hold():
            return await play_verb.play(self, source, interruptible=interruptible)

    async def gather(self, prompt: str | Path | Pcm | None = None, *, max_digits: int | None = None,
                     terminator: str = "#", timeout: float = 5.0, inter_digit_timeout: float = 3.0,
                     overall_timeout: float | None = None, speech: bool = False,
                     choices: dict[str, list[str]] | None = None, validate: Callable[[str], Any] | None = None,
                     retries: int = 2, no_input_prompt: str | Path | Pcm | None = None,
                     invalid_prompt: str | Path | Pcm | None = None, max_speech_s: float = 15.0) -> GatherResult:
        """Ask, then take keys and/or speech (see controller.verbs.gather); CallGone when the caller hangs up."""
        spec = GatherSpec(prompt, max_digits, terminator, timeout, inter_digit_timeout, overall_timeout, speech,
                          choices, validate, retries, no_input_prompt, invalid_prompt, max_speech_s)
        await self._verb_ready()
        async with self._over_hold():
            return await gather_verb.gather(self, spec)

    async def transfer(self, destination: str, reason: str = "", *, attended: bool = False,
                       consult: Callable[[AdapterCall], Awaitable[bool]] | None = None,
                       timeout_s: float = 30.0) -> TransferResult | None:
        """Blind: the PBX takes the call to `destination` (None). Attended: see controller.verbs.transfer."""
        if not attended:
            await self.blind_transfer(destination, reason)
            return None
        return await transfer_verb.attended(self, destination, consult=consult, timeout_s=timeout_s, reason=reason)

    @abstractmethod
    async def blind_transfer(self, destination: str, reason: str = "") -> None:
        """The PBX's own transfer of the call; the adapter's."""

    @abstractmethod
    async def bridge(self, other: AdapterCall, destination: str) -> None:
        """Join this call and `other` (same PBX) at the PBX; both leave voxgate (transferred_to is set)."""

    async def hold(self, music: str | Path | Pcm | None = None) -> None:
        """Music on hold, played by voxgate in the background until unhold() or the hangup."""
        await self._verb_ready()
        music_pcm = await hold_verb.hold_audio(music, self.media.sample_rate)
        await self.unhold()
        self._hold = hold_verb.HoldMusic(self, music_pcm)
        self._hold.start()

    async def unhold(self) -> None:
        held, self._hold = self._hold, None
        if held is not None:
            await held.stop()

    async def record(self, *, max_s: float = 60.0, silence_s: float | None = 5.0, terminators: str = "#",
                     beep: bool = True, path: str | Path | None = None, transcribe: bool = False) -> RecordResult:
        """The caller's audio until silence, a terminator, max_s or the hangup (which returns, not raises)."""
        spec = RecordSpec(max_s, silence_s, terminators, beep, Path(path) if path is not None else None, transcribe)
        await self._verb_ready()
        async with self._over_hold():
            return await record_verb.record(self, spec)

    def on_dtmf(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """`callback(digit)` for every key (the key still reaches gather); returns its remover."""
        return self._hooks.add("dtmf", callback)

    def on_hangup(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """`callback(cause)` once the call has ended (at once if it already has); returns its remover."""
        remove = self._hooks.add("hangup", callback)
        if self._ended.is_set():  # too late for the event itself
            self._hooks.run("hangup", callback, self.hangup_cause)
        return remove

    async def _verb_ready(self) -> None:
        self._check_alive()
        await self._media_ready()

    @asynccontextmanager
    async def _over_hold(self) -> AsyncIterator[None]:
        """Audio a verb makes replaces the hold music while it lasts; the music resumes after it."""
        held = self._hold
        if held is None:
            yield
            return
        await held.pause()
        try:
            yield
        finally:
            held.resume()

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
        return self._with_state(CallRecord(
            pbx=info.pbx, call_uuid=info.uuid, direction=info.direction, caller_id_name=info.caller_id_name,
            caller_id_number=info.caller_id_number, destination=info.destination, started_at=started,
            answered_at=answered, ended_at=now, duration_s=int((now - started).total_seconds()),
            billsec=int((now - answered).total_seconds()) if answered else 0,
            hangup_cause=self.hangup_cause or ("TRANSFERRED" if self.transferred_to else "UNKNOWN"),
            flow=info.flow, outcome=outcome, variables=dict(info.variables), error=error or missing))

    def _with_state(self, record: CallRecord) -> CallRecord:
        """The record with the flow's call.state; what JSON cannot hold is left out and named in `error`."""
        state, problem = storable(self.state)
        error = "; ".join(e for e in (record.error, problem) if e) or None
        return replace(record, state=state, error=error)
