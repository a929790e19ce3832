"""Engines with fixed, known latencies and outputs: for measuring voxgate itself, not the engines.

The benchmark subtracts their latencies from voice-to-voice to get the controller's own
overhead; tests use them to script failures (an engine that raises or stalls).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from controller.agent.engines import EngineError, LlmDelta, Message, SpeechChunk, ToolSpec, Transcript
from controller.audio import tone


class FixedStt:
    """Answers `text` for any utterance of at least `min_audio_s`, after `latency_s`.

    The first `failures` results raise EngineError (a recogniser that drops out).
    """

    name = "fixed-stt"

    def __init__(self, text: str | Callable[[int], str], latency_s: float = 0.15, min_audio_s: float = 0.2,
                 failures: int = 0) -> None:
        self.text = text
        self.latency_s = latency_s
        self.min_audio_s = min_audio_s
        self.failures = failures

    async def open(self, sample_rate: int, on_partial: Callable[[Transcript], None] | None = None) -> _FixedSttStream:
        return _FixedSttStream(self, sample_rate)


class _FixedSttStream:
    def __init__(self, engine: FixedStt, sample_rate: int) -> None:
        self.engine = engine
        self.rate = sample_rate
        self.bytes = 0
        self.utterances = 0
        self._cached: tuple[int, Transcript] | None = None

    async def feed(self, pcm: bytes) -> None:
        self.bytes += len(pcm)

    async def result(self, final: bool) -> Transcript:
        if self._cached is None or self._cached[0] != self.bytes:
            await asyncio.sleep(self.engine.latency_s)
            if self.engine.failures > 0:
                self.engine.failures -= 1
                raise EngineError("fixed-stt: scripted failure")
            seconds = self.bytes / (2 * self.rate)
            text = self.engine.text if isinstance(self.engine.text, str) else self.engine.text(self.utterances)
            self._cached = (self.bytes, Transcript(text if seconds >= self.engine.min_audio_s else "", False,
                                                   0.9, 0.0, seconds))
        transcript = self._cached[1]
        if final:
            self.utterances += 1
            self.clear()
            return Transcript(transcript.text, True, transcript.confidence, 0.0, transcript.audio_end)
        return transcript

    def clear(self) -> None:
        self.bytes = 0
        self._cached = None

    async def close(self) -> None:
        return None


class FixedLlm:
    """Streams `reply` word by word; the first word after `first_token_s`.

    `fail` raises EngineError instead; `stall` never answers (the agent's timeout must act).
    """

    name = "fixed-llm"
    calls_tools = False

    def __init__(self, reply: str, first_token_s: float = 0.3, token_gap_s: float = 0.01, *,
                 fail: bool = False, stall: bool = False) -> None:
        self.reply, self.first_token_s, self.token_gap_s = reply, first_token_s, token_gap_s
        self.fail, self.stall = fail, stall
        self.requests: list[list[Message]] = []

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LlmDelta]:
        self.requests.append(list(messages))
        await asyncio.sleep(self.first_token_s)
        if self.fail:
            raise EngineError("fixed-llm: scripted failure")
        if self.stall:
            await asyncio.Event().wait()
        for index, word in enumerate(self.reply.split(" ")):
            if index:
                await asyncio.sleep(self.token_gap_s)
            yield LlmDelta(text=word if index == 0 else " " + word)


class FixedTts:
    """A tone of `ms_per_char` per character, its first chunk after `first_audio_s`."""

    name = "fixed-tts"

    def __init__(self, first_audio_s: float = 0.15, sample_rate: int = 8000, ms_per_char: int = 60,
                 chunk_ms: int = 200) -> None:
        self.first_audio_s, self.sample_rate = first_audio_s, sample_rate
        self.ms_per_char, self.chunk_ms = ms_per_char, chunk_ms

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            return
        await asyncio.sleep(self.first_audio_s)
        audio = tone(330, len(text) * self.ms_per_char, self.sample_rate, 6000)
        step = self.sample_rate * self.chunk_ms // 1000 * 2
        for offset in range(0, len(audio), step):
            yield SpeechChunk(audio[offset:offset + step], self.sample_rate)
