"""The engine plug-in contracts: speech-to-text, language model, text-to-speech, voice activity.

Each engine kind is a small Protocol; the conversation (conversation.py) only talks to these.
Embedded offline engines and hosted-service clients live in one module each beside this one.
All audio is mono 16-bit little-endian PCM (L16) at the sample rate named alongside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class EngineError(Exception):
    """An engine failed (refused, disconnected, malformed reply); the message says which and why."""


# ---------------------------------------------------------------- speech to text


@dataclass(frozen=True, slots=True)
class Transcript:
    """What the recogniser heard in the current utterance.

    `final` is True once the engine has committed the text (the utterance is over).
    `audio_start`/`audio_end` are seconds into the stream's audio; `confidence` is 0..1 when known.
    """

    text: str
    final: bool
    confidence: float | None = None
    audio_start: float = 0.0
    audio_end: float = 0.0


class SttStream(Protocol):
    """One call's recognition stream: feed audio continuously, ask for text at utterance ends."""

    async def feed(self, pcm: bytes) -> None:
        """Caller audio at the rate the stream was opened with; never blocks the event loop."""
        ...

    async def result(self, final: bool) -> Transcript:
        """The text of the current utterance.

        final=False: the best text so far, the utterance goes on (used to decide end of turn).
        final=True: commit it; audio fed afterwards starts the next utterance.
        """
        ...

    def clear(self) -> None:
        """Drop the current utterance (a false start: noise, a cough)."""
        ...

    async def close(self) -> None: ...


class SpeechToText(Protocol):
    name: str

    async def open(self, sample_rate: int, on_partial: Callable[[Transcript], None] | None = None) -> SttStream:
        """A stream for one call. `on_partial` receives interim results if the engine makes them."""
        ...


# ---------------------------------------------------------------- language model


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: name, what it does, JSON-Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. role: system | user | assistant | tool.

    An assistant message may carry tool_calls; a tool message answers the call `tool_call_id`.
    """

    role: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class LlmDelta:
    """A piece of the model's streamed reply: some text, or one complete tool call."""

    text: str = ""
    tool_call: ToolCall | None = None


class LanguageModel(Protocol):
    name: str
    calls_tools: bool  # False for small local models: a flow's intents then decide before they speak

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LlmDelta]:
        """Stream the assistant's reply. Raises EngineError when the model fails."""
        ...


# ---------------------------------------------------------------- text to speech


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """Synthesised audio for (part of) one text."""

    pcm: bytes
    sample_rate: int


class TextToSpeech(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Audio for one sentence (or a few), streamed as it is produced. Raises EngineError."""
        ...


# ---------------------------------------------------------------- voice activity


class VadStream(Protocol):
    """One call's voice-activity detector; stateful across frames."""

    window_ms: float

    def push(self, pcm: bytes) -> list[float]:
        """Feed caller audio; returns the speech probability of each whole window it completed."""
        ...

    def close(self) -> None: ...


class VoiceActivityDetector(Protocol):
    name: str

    async def open(self, sample_rate: int) -> VadStream:
        """A detector for one call; model set-up happens off the event loop."""
        ...


ToolFunction = Callable[..., Awaitable[Any] | Any]
