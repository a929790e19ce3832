"""The call's speech-to-text stream, kept alive: an engine failure loses one utterance, not the call."""

from __future__ import annotations

import asyncio
import logging

from controller.agent.engines import EngineError, SpeechToText, SttStream, Transcript

log = logging.getLogger(__name__)

REOPEN_DELAY_S = 0.5


class Recognizer:
    """Wraps one SttStream; after a failure it reopens a fresh stream in the background.

    `failure` holds the reason of the last lost utterance until the conversation takes it
    (to tell the caller, who would otherwise wait for an answer that never comes).
    """

    def __init__(self, engine: SpeechToText, sample_rate: int, call_uuid: str) -> None:
        self.engine = engine
        self.sample_rate = sample_rate
        self.call_uuid = call_uuid
        self.failure: str | None = None
        self._stream: SttStream | None = None
        self._reopening: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._stream = await self.engine.open(self.sample_rate)

    async def feed(self, pcm: bytes) -> None:
        if self._stream is None:
            return
        try:
            await self._stream.feed(pcm)
        except EngineError as exc:
            self._lost(exc)

    async def result(self, final: bool) -> Transcript:
        if self._stream is not None:
            try:
                return await self._stream.result(final)
            except EngineError as exc:
                self._lost(exc)
        return Transcript("", final)

    def clear(self) -> None:
        if self._stream is not None:
            self._stream.clear()

    def take_failure(self) -> str | None:
        failure, self.failure = self.failure, None
        return failure

    async def close(self) -> None:
        if self._reopening is not None:
            self._reopening.cancel()
        if self._stream is not None:
            await _close_quietly(self._stream)

    def _lost(self, exc: EngineError) -> None:
        log.error("call %s: speech recognition failed (%s); reopening", self.call_uuid, exc)
        self.failure = str(exc)
        stream, self._stream = self._stream, None
        if self._reopening is None or self._reopening.done():
            self._reopening = asyncio.create_task(self._reopen(stream))

    async def _reopen(self, broken: SttStream | None) -> None:
        if broken is not None:
            await _close_quietly(broken)
        while self._stream is None:
            await asyncio.sleep(REOPEN_DELAY_S)
            try:
                self._stream = await self.engine.open(self.sample_rate)
            except EngineError as exc:
                log.error("call %s: cannot reopen speech recognition: %s", self.call_uuid, exc)


async def _close_quietly(stream: SttStream) -> None:
    try:
        await stream.close()
    except EngineError:
        pass
