"""Telephony tones must never look like speech to the VAD, whatever the window alignment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.agent.silero import SileroVad
from controller.audio import read_wav

SPEECH = Path(__file__).parents[1] / "fixtures" / "speech"


@pytest.fixture(scope="module")
def vad():
    return SileroVad()


def _max_probability(vad: SileroVad, pcm: bytes, offset: int) -> float:
    async def run() -> float:
        stream = await vad.open(8000)
        try:
            data = bytes(offset * 2) + pcm
            return max(p for i in range(0, len(data), 320) for p in stream.push(data[i:i + 320]) or [0.0])
        finally:
            stream.close()
    return asyncio.run(run())


@pytest.mark.parametrize("name", ["dtmf", "ring"])
def test_telephony_tones_never_look_like_speech_at_any_alignment(vad, name):
    pcm = read_wav(SPEECH / "noise" / f"{name}_8000.wav").data[:8000 * 2 * 4]
    worst = max(_max_probability(vad, pcm, offset) for offset in range(0, 256, 16))
    assert worst < 0.5, f"{name} scored {worst:.2f}"


def test_speech_does(vad):
    for name in ("u01", "u03", "u05"):
        pcm = read_wav(SPEECH / "flite" / "8k" / f"{name}.wav").data
        assert _max_probability(vad, pcm, 0) > 0.9
