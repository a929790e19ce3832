"""Embedded text-to-speech: hibari-tts (a small ONNX voice, "heart"), fully offline, 24 kHz.

The agent starts playing as soon as the first sentence is ready, so text is split into
sentences and each one is synthesised separately and yielded as soon as it is done; the
caller hears the first words after one sentence's synthesis, not the whole reply's. The
model runs in worker threads (one onnxruntime thread each by default): a call's synthesis
never stalls the event loop that carries every other call's audio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from controller.agent.engines import EngineError, SpeechChunk

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
# hibari pads every sentence with ~0.3 s of silence before and ~0.5 s after: on a phone line
# that is dead air before each reply and a long gap between sentences. Keep a natural breath.
KEEP_LEAD_S = 0.03
KEEP_TAIL_S = {",": 0.12, ";": 0.12, ":": 0.12}  # clause ends
KEEP_TAIL_SENTENCE_S = 0.25
SILENCE_LEVEL = 0.01


def to_l16(audio: np.ndarray) -> bytes:
    """float32 samples in -1..1 -> L16, clipping what overshoots."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class HibariTts:
    """TextToSpeech on the hibari "heart" voice that ships inside the package."""

    name = "hibari"
    sample_rate = SAMPLE_RATE

    def __init__(self, *, threads: int = 1, speed: float = 1.0) -> None:
        self._threads = threads
        self._speed = speed
        self._model: Any = None
        self._load_lock = asyncio.Lock()

    async def load(self) -> None:
        """Load the voice and its pronunciation rules once, in a worker thread."""
        async with self._load_lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self._load_model)

    def _load_model(self) -> Any:
        try:
            from hibari import Hibari
        except ImportError as exc:
            raise EngineError("hibari: hibari-tts is not installed") from exc
        log.info("loading the hibari voice (%d thread(s))", self._threads)
        try:
            model = Hibari(threads=self._threads)
            model("Ready.")  # loads the G2P lexicons and warms the ONNX session
        except Exception as exc:
            raise EngineError(f"hibari: cannot load the voice: {exc}") from exc
        if model.sample_rate != SAMPLE_RATE:
            raise EngineError(f"hibari: voice is {model.sample_rate} Hz, expected {SAMPLE_RATE}")
        return model

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            return
        await self.load()
        for sentence in self._model.split_sentences(text):
            pcm = await asyncio.to_thread(self._render, sentence)
            if pcm:
                yield SpeechChunk(pcm, SAMPLE_RATE)

    def _render(self, sentence: str) -> bytes:
        """One sentence (which hibari may split further when very long) as L16."""
        try:
            parts = list(self._model.stream(sentence, speed=self._speed))
        except Exception as exc:
            raise EngineError(f"hibari: synthesis failed for {sentence[:40]!r}: {exc}") from exc
        if not parts:
            return b""
        tail = KEEP_TAIL_S.get(sentence.rstrip()[-1:], KEEP_TAIL_SENTENCE_S)
        return to_l16(trim_silence(np.concatenate(parts), KEEP_LEAD_S, tail))


def trim_silence(audio: np.ndarray, lead_s: float, tail_s: float) -> np.ndarray:
    """Cut the padding around speech down to `lead_s` before and `tail_s` after it."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE_LEVEL)
    if loud.size == 0:
        return audio[:0]
    start = max(0, loud[0] - int(lead_s * SAMPLE_RATE))
    end = min(len(audio), loud[-1] + 1 + int(tail_s * SAMPLE_RATE))
    return audio[start:end]
