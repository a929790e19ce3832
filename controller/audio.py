"""PCM plumbing: 16-bit little-endian linear audio (L16), WAV files, stateful resampling."""

from __future__ import annotations

import warnings
import wave
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # 3.11/3.12 warn that the stdlib module goes away; 3.13+ gets it from audioop-lts.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME_MS = 20
SAMPLE_WIDTH = 2


def frame_bytes(sample_rate: int, channels: int = 1, ms: int = FRAME_MS) -> int:
    """Bytes in one frame of L16 audio."""
    return sample_rate * ms // 1000 * SAMPLE_WIDTH * channels


@dataclass(frozen=True, slots=True)
class Pcm:
    """A block of L16 audio with its format."""

    data: bytes
    sample_rate: int
    channels: int = 1

    @property
    def duration(self) -> float:
        return len(self.data) / (self.sample_rate * SAMPLE_WIDTH * self.channels)


def read_wav(path: str | Path) -> Pcm:
    """A 16-bit PCM WAV file; anything else is a clear error."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != SAMPLE_WIDTH or wav.getcomptype() != "NONE":
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        return Pcm(wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels())


def write_wav(path: str | Path, pcm: Pcm) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(pcm.channels)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(pcm.sample_rate)
        wav.writeframes(pcm.data)


class Resampler:
    """Mono L16 rate conversion that keeps its filter state across chunks.

    Restarting the converter on every 20 ms chunk clicks at each boundary, so one
    instance lives as long as the stream it converts.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._state = None

    def convert(self, data: bytes) -> bytes:
        if self.src_rate == self.dst_rate or not data:
            return data
        out, self._state = audioop.ratecv(data, SAMPLE_WIDTH, 1, self.src_rate, self.dst_rate, self._state)
        return out


def resample(pcm: Pcm, rate: int) -> Pcm:
    """A whole mono block at another rate."""
    if pcm.channels != 1:
        raise ValueError("resample() takes mono audio")
    return Pcm(Resampler(pcm.sample_rate, rate).convert(pcm.data), rate, 1)


def to_mono(data: bytes, channels: int, pick: int = 0) -> bytes:
    """One channel of interleaved stereo L16 (0 = left = caller in mod_audio_fork's stereo)."""
    if channels == 1:
        return data
    return audioop.tomono(data, SAMPLE_WIDTH, 1.0 - pick, float(pick))


def rms(data: bytes) -> float:
    return float(audioop.rms(data, SAMPLE_WIDTH)) if data else 0.0


def mix(a: bytes, b: bytes) -> bytes:
    """Sum two equal-length L16 blocks with clipping, as a PBX mixes a media bug's write stream."""
    return audioop.add(a, b, SAMPLE_WIDTH)


def silence(sample_rate: int, ms: int = FRAME_MS, channels: int = 1) -> bytes:
    return bytes(frame_bytes(sample_rate, channels, ms))


def tone(freq: float, ms: int, sample_rate: int, amplitude: int = 8000) -> bytes:
    """A sine tone (for tests and benchmarks that need known audio)."""
    import numpy as np

    n = sample_rate * ms // 1000
    t = np.arange(n) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()
