"""The PBX-neutral call model: what flows and the agent see. Nothing here names a PBX.

A telephony adapter (FreeSWITCH today) turns one PBX's events and commands into a `Call`
with verbs and an event stream, plus a `MediaPort` for the call's audio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from controller.agent.conversation import AgentConfig, AgentResult


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
    """voxgate asked the PBX to transfer the call; `error` is set when the PBX refused."""

    destination: str
    kind: str = "blind"
    reason: str = ""
    error: str | None = None


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

    async def transfer(self, destination: str, reason: str = "") -> None: ...

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None: ...

    def events(self) -> AsyncIterator[CallEvent]:
        """Every event of this call, in order, from the moment of the call."""
        ...
