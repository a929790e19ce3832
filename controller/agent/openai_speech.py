"""Text-to-speech client for OpenAI's speech endpoint, streamed as raw PCM.

Follows the OpenAI API reference, "Audio > Create speech" (POST /v1/audio/speech) and the
text-to-speech guide: with `response_format: "pcm"` the body is headerless 24 kHz, 16-bit
signed little-endian mono samples, sent with chunked transfer encoding as they are made, so
playback can start on the first bytes. Errors are `{"error": {"message": ...}}` like the chat API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

import aiohttp

from controller.agent.engines import SpeechChunk
from controller.agent.openai_chat import OpenAIHttp
from controller.config import Secret

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
MIN_CHUNK_BYTES = SAMPLE_RATE * 2 * 20 // 1000  # 20 ms: fewer, larger chunks once playback has started


class OpenAISpeechTts:
    """A TextToSpeech on /audio/speech; yields audio as the server streams it."""

    name = "openai-speech"
    sample_rate = SAMPLE_RATE

    def __init__(self, base_url: str, api_key: str | Secret | None = None, *,
                 model: str = "gpt-4o-mini-tts", voice: str = "alloy", timeout_s: float = 30.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self._http = OpenAIHttp(self.name, base_url, api_key, timeout_s, session)
        self._model = model
        self._voice = voice

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Whole 16-bit samples only: an odd byte waits for its partner in the next read."""
        if not text.strip():
            return
        payload = {"model": self._model, "input": text, "voice": self._voice, "response_format": "pcm"}
        pending = bytearray()
        started = False
        body = self._http.post_stream("/audio/speech", payload)
        async with aclosing(body):
            async for data in body:
                pending += data
                if started and len(pending) < MIN_CHUNK_BYTES:
                    continue
                whole = len(pending) & ~1
                if whole:
                    started = True
                    yield SpeechChunk(bytes(pending[:whole]), SAMPLE_RATE)
                    del pending[:whole]
        if len(pending) >= 2:
            yield SpeechChunk(bytes(pending[:len(pending) & ~1]), SAMPLE_RATE)
        if len(pending) % 2:
            log.warning("%s: the audio ended mid-sample; dropped the odd last byte", self.name)

    async def close(self) -> None:
        await self._http.close()
