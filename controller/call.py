"""The PBX-neutral call model: what flows and the agent see. Nothing here names a PBX.

A telephony adapter (FreeSWITCH today) turns one PBX's events and commands into a `Call`
with verbs and an event stream, plus a `MediaPort` for the call's audio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from controller.agent.conversation import AgentConfig, AgentResult
    from controller.audio import Pcm
    from controller.verbs.gather import GatherResult
    from controller.verbs.record import RecordResult

SESSION_SEQ_SPAN = 1_000_000  # record numbers one voxgate session of a call may use


class CallGone(Exception):
    """The call hung up (or its control connection was lost) while a verb was running."""


class CommandFailed(Exception):
    """The PBX refused a command; the message is the PBX's own reply."""


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Base of everything a call reports; `at` is wall-clock UTC."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Answered(CallEvent):
    pass


@dataclass(frozen=True, slots=True)
class Dtmf(CallEvent):
    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class DtmfSent(CallEvent):
    """Digits voxgate sent to the far end (send_dtmf), after the PBX accepted them."""

    digits: str


@dataclass(frozen=True, slots=True)
class Transferred(CallEvent):
    """voxgate asked the PBX to transfer the call; `error` is set when the PBX refused.

    Attended transfers set `outcome` (accepted, declined, busy, no_answer, failed); for blind ones it is
    left empty and follows from `error` (failed or accepted).
    """

    destination: str
    kind: str = "blind"
    reason: str = ""
    error: str | None = None
    outcome: str = ""


@dataclass(frozen=True, slots=True)
class TransferResult:
    """How an attended transfer ended: accepted means the caller and the consulted party are bridged."""

    accepted: bool
    outcome: str  # bridged | declined | busy | no_answer | failed
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PlaybackStarted(CallEvent):
    playback_id: str


@dataclass(frozen=True, slots=True)
class PlaybackFinished(CallEvent):
    playback_id: str
    interrupted: bool
    played_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MediaConnected(CallEvent):
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class MediaLost(CallEvent):
    reason: str


@dataclass(frozen=True, slots=True)
class HungUp(CallEvent):
    cause: str


# ---------------------------------------------------------------- media


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One inbound frame of caller audio (mono L16). `received` is time.monotonic() at arrival."""

    pcm: bytes
    sample_rate: int
    seq: int
    received: float


@dataclass(frozen=True, slots=True)
class PlayResult:
    """How a playback ended: what the caller actually heard, in milliseconds.

    `first_frame_at` is the monotonic time the first audio left for the PBX (None if none did).
    """

    played_ms: int
    total_ms: int
    interrupted: bool
    first_frame_at: float | None = None


@dataclass(frozen=True, slots=True)
class PromptResult:
    """How a say() or play() ended: what the caller heard of it, and what cut it short.

    `interrupted_by` is "dtmf" (a key, which stays queued for the next gather), "speech" (the
    caller started talking), "stopped" (something else stopped the audio: stop_playback, a PBX
    that could not play the file), or None when it played to the end.
    """

    heard_ms: int
    total_ms: int
    interrupted_by: str | None = None

    @property
    def interrupted(self) -> bool:
        return self.interrupted_by is not None


class MediaTap(Protocol):
    """Sees a call's audio both ways as it passes (call recording). Must not block: it runs on the media path."""

    def caller(self, pcm: bytes, sample_rate: int) -> None:
        """Caller audio as it arrived from the PBX."""
        ...

    def agent(self, pcm: bytes, sample_rate: int) -> None:
        """Audio voxgate sent towards the caller, when it left for the PBX."""
        ...


class MediaPort(Protocol):
    """A call's audio both ways: caller frames in, paced agent audio out; `tap`, when set, sees both."""

    sample_rate: int
    tap: MediaTap | None

    def frames(self) -> AsyncIterator[AudioFrame]:
        """Caller audio as it arrives; ends when the media stream closes."""
        ...

    async def play(self, pcm: bytes, sample_rate: int) -> PlayResult:
        """Send audio to the caller, paced in real time; returns when played out or flushed."""
        ...

    async def play_stream(self, chunks: AsyncIterator[bytes], sample_rate: int,
                          on_first_frame: Callable[[float], None] | None = None) -> PlayResult:
        """Play audio while it is still being produced; `on_first_frame` gets the first frame's send time."""
        ...

    async def flush(self) -> None:
        """Stop what is playing now and drop what is queued (barge-in)."""
        ...

    @property
    def connected(self) -> bool: ...


# ---------------------------------------------------------------- the call


@dataclass(slots=True)
class CallInfo:
    """Who and what: filled from the PBX's channel data when the call reaches voxgate."""

    uuid: str
    pbx: str
    direction: str
    caller_id_name: str = ""
    caller_id_number: str = ""
    destination: str = ""
    flow: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    answered_at: datetime | None = None
    # voxgate sessions this call had before this one: above 0 when an instance died mid-call and
    # the dialplan handed the live call to another instance (FreeSWITCH's next `socket` action)
    session: int = 0

    @property
    def seq_base(self) -> int:
        """Where this session numbers the call's events, turns and digits: clear of the sessions
        before it, whose records are already stored under the same call uuid."""
        return self.session * SESSION_SEQ_SPAN


class Call(Protocol):
    """What a flow can do with a call. Verbs raise CallGone once the caller has hung up."""

    info: CallInfo
    media: MediaPort

    @property
    def ended(self) -> asyncio.Event: ...

    async def answer(self) -> None: ...

    async def play_file(self, path: str) -> PlayResult:
        """Play a file that lives on the PBX (FreeSWITCH's playback application)."""
        ...

    async def play_audio(self, pcm: bytes, sample_rate: int) -> PlayResult:
        """Play audio produced by voxgate (prompts, TTS) through the media port."""
        ...

    async def stop_playback(self) -> None: ...

    async def agent(self, config: AgentConfig) -> AgentResult:
        """Hand the call to the AI agent (controller.agent) until the conversation ends."""
        ...

    async def collect_dtmf(self, max_digits: int, timeout: float, inter_digit_timeout: float = 3.0,
                           terminators: str = "#") -> str:
        """Digits pressed (without the terminator); '' when nothing came before the timeout."""
        ...

    async def send_dtmf(self, digits: str) -> None: ...

    async def transfer(self, destination: str, reason: str = "", *, attended: bool = False,
                       consult: Callable[[Call], Awaitable[bool]] | None = None,
                       timeout_s: float = 30.0) -> TransferResult | None:
        """Blind (None once the PBX took the call away) or attended: the caller on hold while `destination`
        is dialled and consulted (controller.verbs.transfer), then bridged with it or taken back."""
        ...

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None: ...

    def events(self) -> AsyncIterator[CallEvent]:
        """Every event of this call, in order, from the moment of the call."""
        ...

    # ------------------------------------------------------------ flow verbs (controller.verbs)

    state: dict[str, Any]
    """The flow's own notes about the call, stored with its record (JSON values only)."""

    async def say(self, text: str, *, interruptible: bool = True) -> PromptResult:
        """Speak `text` with the call's TTS. Interruptible: a key (kept for the next gather) or the
        caller starting to talk stops it at once."""
        ...

    async def play(self, source: str | Path | Pcm, *, interruptible: bool = True) -> PromptResult:
        """Play a WAV file or http(s) URL through voxgate (any rate), or a file only the PBX can read."""
        ...

    async def gather(self, prompt: str | Path | Pcm | None = None, *, max_digits: int | None = None,
                     terminator: str = "#", timeout: float = 5.0, inter_digit_timeout: float = 3.0,
                     overall_timeout: float | None = None, speech: bool = False,
                     choices: dict[str, list[str]] | None = None, validate: Callable[[str], Any] | None = None,
                     retries: int = 2, no_input_prompt: str | Path | Pcm | None = None,
                     invalid_prompt: str | Path | Pcm | None = None, max_speech_s: float = 15.0) -> GatherResult:
        """Ask (prompt) and take the caller's answer by keys and/or speech, with retries. Never raises for
        what the caller does (no input, invalid input); raises CallGone when they hang up."""
        ...

    async def hold(self, music: str | Path | Pcm | None = None) -> None:
        """Loop music (a gentle built-in tune by default) to the caller in the background until unhold()."""
        ...

    async def unhold(self) -> None: ...

    async def record(self, *, max_s: float = 60.0, silence_s: float | None = 5.0, terminators: str = "#",
                     beep: bool = True, path: str | Path | None = None, transcribe: bool = False) -> RecordResult:
        """Record the caller until silence, a terminator key, max_s or hangup (which returns, not raises)."""
        ...

    def on_dtmf(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call `callback(digit)` (sync or async) for every key; returns a function that removes it."""
        ...

    def on_hangup(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call `callback(cause)` (sync or async) when the call ends; returns a function that removes it."""
        ...
