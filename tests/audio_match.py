"""Finding known audio inside a recording: where a prompt was heard, and how faithfully."""

from __future__ import annotations

import numpy as np


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def locate(needle: bytes, haystack: bytes) -> tuple[float, float]:
    """(offset in seconds at 8 kHz, normalised correlation 0..1) of needle's best match."""
    a, b = _samples(needle), _samples(haystack)
    if len(a) == 0 or len(b) < len(a):
        return 0.0, 0.0
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)[: len(b) - len(a) + 1]
    energy = np.convolve(b * b, np.ones(len(a)), "valid")
    needle_energy = float(a @ a)
    # near-silent windows would divide FFT round-off by ~0; they cannot be a match anyway
    score = np.where(energy > 0.01 * needle_energy, corr / np.sqrt(np.maximum(energy, 1e-9) * needle_energy), 0.0)
    best = int(np.argmax(score))
    return best / 8000, float(score[best])
