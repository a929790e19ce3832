"""Recorded prompts shipped with voxgate (8 kHz mono L16 WAV; see README.md in this folder)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from controller.audio import read_wav

FOLDER = Path(__file__).parent
RATE = 8000
GAP_MS = 120
_DIGIT_NAMES = {"*": "star", "#": "pound"}


@cache
def _pcm(name: str) -> bytes:
    path = FOLDER / f"{name}.wav"
    if not path.is_file():
        raise KeyError(f"no prompt named {name!r} in {FOLDER}")
    pcm = read_wav(path)
    if pcm.sample_rate != RATE or pcm.channels != 1:
        raise ValueError(f"prompt {name!r} must be {RATE} Hz mono")
    return pcm.data


def load(name: str) -> tuple[bytes, int]:
    """(pcm, sample_rate) of one prompt, ready for Call.play_audio(*...)."""
    return _pcm(name), RATE


def digit_name(digit: str) -> str:
    return _DIGIT_NAMES.get(digit, f"digit_{digit}")


def sequence(names: list[str]) -> tuple[bytes, int]:
    """Several prompts joined with short pauses, played as one piece."""
    gap = bytes(RATE * GAP_MS // 1000 * 2)
    return gap.join(_pcm(n) for n in names), RATE
