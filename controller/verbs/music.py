"""The built-in hold music: a gentle synthesised loop (C, Am, F, G with soft pads, bass and a slow
arpeggio), made at first use per sample rate and cached. No audio file is shipped or fetched."""

from __future__ import annotations

from functools import cache

import numpy as np

from controller.audio import Pcm

CHORD_S = 4.0
STEP_S = 0.5  # the arpeggio's pace
# (bass, pad notes) as MIDI numbers: C major, A minor, F major, G major
PROGRESSION = ((36, (60, 64, 67)), (33, (57, 60, 64)), (29, (57, 60, 65)), (31, (55, 59, 62)))
ARPEGGIO = (0, 1, 2, 1)  # indexes into each chord's pad, an octave up
PEAK = 0.3  # of full scale: background level, well under a voice prompt
ATTACK_S, RELEASE_S = 0.8, 1.2


def _hz(midi: int) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _pad(hz: float, seconds: float, rate: int) -> np.ndarray:
    """A soft sustained note: fundamental and a quiet octave, raised-cosine attack and release."""
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * hz * t) + 0.2 * np.sin(4 * np.pi * hz * t)
    envelope = np.ones_like(t)
    attack, release = int(ATTACK_S * rate), int(RELEASE_S * rate)
    envelope[:attack] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, attack))
    envelope[-release:] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, release))
    return tone * envelope


def _pluck(hz: float, seconds: float, rate: int, decay_s: float = 0.35) -> np.ndarray:
    """A plucked note: quick attack, exponential decay."""
    t = np.arange(int(seconds * rate)) / rate
    tone = np.sin(2 * np.pi * hz * t) + 0.3 * np.sin(4 * np.pi * hz * t)
    return tone * np.exp(-t / decay_s) * np.minimum(1.0, t / 0.005)


@cache
def hold_music(sample_rate: int) -> Pcm:
    """One seamless loop (16 s) at `sample_rate`: what rings past the end is folded onto the start."""
    loop = int(CHORD_S * len(PROGRESSION) * sample_rate)
    tail = int(RELEASE_S * sample_rate) + sample_rate
    out = np.zeros(loop + tail)

    def add(start_s: float, note: np.ndarray, gain: float) -> None:
        start = int(start_s * sample_rate)
        out[start:start + len(note)] += gain * note[: len(out) - start]

    for index, (bass, pad) in enumerate(PROGRESSION):
        begin = index * CHORD_S
        for midi in pad:
            add(begin, _pad(_hz(midi), CHORD_S + RELEASE_S, sample_rate), 0.22)
        for beat in (0.0, CHORD_S / 2):
            add(begin + beat, _pluck(_hz(bass + 12), 1.8, sample_rate, decay_s=0.6), 0.5)
        for step in range(int(CHORD_S / STEP_S)):
            note = pad[ARPEGGIO[step % len(ARPEGGIO)]] + 12
            add(begin + step * STEP_S, _pluck(_hz(note), 1.0, sample_rate), 0.18)
    music = out[:loop]
    music[:tail] += out[loop:]
    music *= PEAK / np.max(np.abs(music))
    return Pcm((music * 32767).astype("<i2").tobytes(), sample_rate)
