"""PCM plumbing: 16-bit little-endian linear audio (L16), WAV files, stateful resampling."""

from __future__ import annotations

import math
import warnings
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    instance lives as long as the stream it converts. audioop.ratecv has no anti-alias
    filter: going down (24 kHz TTS to an 8 kHz call) a low-pass runs first, or sibilants
    fold back into the band and "shipped" is heard as "stepped".
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._state = None
        self._fir = _lowpass(src_rate, dst_rate) if dst_rate < src_rate else None
        self._history = np.zeros(0 if self._fir is None else len(self._fir) - 1, np.float32)

    def convert(self, data: bytes) -> bytes:
        if self.src_rate == self.dst_rate or not data:
            return data
        if self._fir is not None:
            data = self._filter(data)
        out, self._state = audioop.ratecv(data, SAMPLE_WIDTH, 1, self.src_rate, self.dst_rate, self._state)
        return out

    def _filter(self, data: bytes) -> bytes:
        assert self._fir is not None
        signal = np.concatenate([self._history, np.frombuffer(data, "<i2").astype(np.float32)])
        filtered = np.convolve(signal, self._fir, mode="valid")
        self._history = signal[len(signal) - len(self._history):]
        return np.clip(np.rint(filtered), -32768, 32767).astype("<i2").tobytes()


def _lowpass(src_rate: int, dst_rate: int, taps: int = 63) -> np.ndarray:
    """A Hamming-windowed sinc passing 90 % of the target band."""
    cutoff = 0.9 * dst_rate / 2 / src_rate
    n = np.arange(taps) - (taps - 1) / 2
    fir = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    return (fir / fir.sum()).astype(np.float32)


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
    n = sample_rate * ms // 1000
    t = np.arange(n) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def ulaw_encode(pcm: bytes) -> bytes:
    """G.711 mu-law from L16 (one byte per sample), as telephone trunks and RTP PCMU carry it."""
    return audioop.lin2ulaw(pcm, SAMPLE_WIDTH)


def ulaw_decode(data: bytes) -> bytes:
    """L16 from G.711 mu-law."""
    return audioop.ulaw2lin(data, SAMPLE_WIDTH)


FLOOR_RISE_S = 3.0
"""Time constant of the noise-floor estimate's rise: steady noise stops counting as speech within seconds."""


class LevelNormalizer:
    """Slow automatic gain for recogniser input: quiet callers raised toward a target level.

    Caller levels on phone lines vary by 30 dB; recognisers do best near a steady level. Gain
    comes from a speech-level estimate (fast attack, slow release) updated only on blocks that
    look like speech: above an absolute gate and clearly above a tracked noise floor. After
    `hold_s` without speech the gain returns to unity, so the noise floor between turns is never
    amplified. Gain is decided per 10 ms block from past audio only and ramped sample by sample
    across the next block: the output depends on the samples alone, not on how they were
    chunked, and has no added latency.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        target_dbfs: float = -20.0,
        max_gain_db: float = 20.0,
        gate_dbfs: float = -50.0,
        floor_margin_db: float = 10.0,
        attack_s: float = 0.1,
        release_s: float = 1.5,
        hold_s: float = 0.3,
        block_ms: int = 10,
    ) -> None:
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        self.gate_dbfs = gate_dbfs
        self.floor_margin_db = floor_margin_db
        self._block = sample_rate * block_ms // 1000
        block_s = block_ms / 1000
        self._attack = 1.0 - math.exp(-block_s / attack_s)
        self._release = 1.0 - math.exp(-block_s / release_s)
        self._floor_rise = 1.0 - math.exp(-block_s / FLOOR_RISE_S)
        self._hold_blocks = round(hold_s / block_s)
        self._level_db: float | None = None
        self._floor_db = gate_dbfs - floor_margin_db
        self._quiet_blocks = self._hold_blocks
        self._gain = 1.0  # gain reached at the start of the current block
        self._next_gain = 1.0  # gain the current block ramps to
        self._pos = 0  # samples into the current block
        self._sumsq = 0.0

    @property
    def gain_db(self) -> float:
        """The gain the current block is heading for."""
        return 20.0 * math.log10(self._next_gain)

    def process(self, pcm: bytes) -> bytes:
        """Normalise one chunk of L16; returns the same number of samples."""
        x = np.frombuffer(pcm, "<i2").astype(np.float32)
        out = np.empty_like(x)
        i = 0
        while i < len(x):
            n = min(self._block - self._pos, len(x) - i)
            seg = x[i : i + n]
            ramp = np.arange(self._pos + 1, self._pos + n + 1, dtype=np.float32) / self._block
            out[i : i + n] = seg * (self._gain + (self._next_gain - self._gain) * ramp)
            self._sumsq += float(np.dot(seg, seg))
            self._pos += n
            i += n
            if self._pos == self._block:
                self._end_block()
        return np.rint(np.clip(out, -32768.0, 32767.0)).astype("<i2").tobytes()

    def _end_block(self) -> None:
        block_dbfs = 10.0 * math.log10(self._sumsq / self._block / 32768.0**2 + 1e-12)
        self._pos, self._sumsq = 0, 0.0
        self._gain = self._next_gain
        self._next_gain = 10.0 ** (self._gain_db_after(block_dbfs) / 20.0)

    def _gain_db_after(self, block_dbfs: float) -> float:
        speech = self._is_speech(block_dbfs)
        self._track_floor(block_dbfs)
        if speech:
            self._quiet_blocks = 0
            self._track_level(block_dbfs)
        else:
            self._quiet_blocks += 1
        if self._level_db is None or self._quiet_blocks > self._hold_blocks:
            return 0.0
        return max(-self.max_gain_db, min(self.max_gain_db, self.target_dbfs - self._level_db))

    def _is_speech(self, block_dbfs: float) -> bool:
        return block_dbfs > max(self.gate_dbfs, self._floor_db + self.floor_margin_db)

    def _track_floor(self, block_dbfs: float) -> None:
        if block_dbfs < self._floor_db:
            self._floor_db = block_dbfs
        else:
            self._floor_db += (block_dbfs - self._floor_db) * self._floor_rise

    def _track_level(self, block_dbfs: float) -> None:
        if self._level_db is None:
            self._level_db = block_dbfs
            return
        coef = self._attack if block_dbfs > self._level_db else self._release
        self._level_db += (block_dbfs - self._level_db) * coef
