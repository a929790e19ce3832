"""play(): a WAV file or URL played by voxgate (any rate, resampled), or a file only the PBX can read."""

from __future__ import annotations

import asyncio
import io
import re
import wave
from pathlib import Path

import numpy as np

from controller.audio import Pcm, to_mono
from controller.call import CommandFailed, PlayResult, PromptResult
from controller.verbs.fetch import fetch, is_url, shown
from controller.verbs.line import Line
from controller.verbs.listen import Ears
from controller.verbs.playout import prompt

Source = str | Path | Pcm
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+._-]*://\S+$")  # FreeSWITCH has silence_stream://, tone_stream://


async def play(line: Line, source: Source, *, interruptible: bool = True, ears: Ears | None = None) -> PromptResult:
    """Play `source`: PCM, a local WAV, an http(s) WAV, or else a path handed to the PBX (play_file)."""
    pcm = await load_audio(source)
    if pcm is None:
        path = str(source)

        async def start() -> PlayResult:
            return await _pbx_file(line, path)

        return await prompt(line, start, line.stop_playback, interruptible=interruptible, ears=ears)

    async def stream() -> PlayResult:
        return await line.media.play(pcm.data, pcm.sample_rate)

    return await prompt(line, stream, line.media.flush, interruptible=interruptible, ears=ears)


def looks_like_audio(value: str) -> bool:
    """A prompt string that names audio (a URL, or a .wav path) rather than text to speak."""
    return bool(_SCHEME.match(value)) or (not any(c.isspace() for c in value) and value.lower().endswith(".wav"))


async def load_audio(source: Source) -> Pcm | None:
    """Mono PCM from what voxgate can read itself; None for a path it cannot (the PBX may)."""
    if isinstance(source, Pcm):
        if source.channels == 1:
            return source
        if source.channels == 2:
            return Pcm(to_mono(source.data, 2), source.sample_rate)
        raise ValueError(f"play takes mono or stereo PCM, not {source.channels} channels")
    text = str(source)
    if is_url(text):
        body, content_type = await fetch(text)
        if body[:4] != b"RIFF" or body[8:12] != b"WAVE":
            raise CommandFailed(f"fetching {shown(text)}: not a WAV file (Content-Type {content_type or 'none'})")
        try:
            return decode_wav(body)
        except ValueError as exc:
            raise CommandFailed(f"fetching {shown(text)}: {exc}") from None
    return await asyncio.to_thread(_read_local, Path(text))


def _read_local(path: Path) -> Pcm | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None  # not voxgate's to read: a file on the PBX
    try:
        return decode_wav(data)
    except ValueError:
        return None  # a format the PBX may know (raw, mp3...)


def decode_wav(data: bytes) -> Pcm:
    """A PCM WAV of any rate, 8/16/24/32-bit and any channel count, as 16-bit mono."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV file ({exc})") from None
    samples = _to_int16(frames, width)
    if channels > 1:
        usable = len(samples) - len(samples) % channels
        samples = samples[:usable].reshape(-1, channels).mean(axis=1)
    return Pcm(samples.astype("<i2").tobytes(), rate)


def _to_int16(frames: bytes, width: int) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned
        return ((np.frombuffer(frames, np.uint8).astype(np.int16) - 128) << 8).astype("<i2")
    if width == 2:
        return np.frombuffer(frames, "<i2")
    if width == 3:
        raw = np.frombuffer(frames[: len(frames) // 3 * 3], np.uint8).reshape(-1, 3)
        return (raw[:, 2].astype(np.int8).astype(np.int16) << 8 | raw[:, 1]).astype("<i2")
    if width == 4:
        return (np.frombuffer(frames, "<i4") >> 16).astype("<i2")
    raise ValueError(f"{8 * width}-bit WAV is not supported")


async def _pbx_file(line: Line, path: str) -> PlayResult:
    """The PBX's own playback; an adapter that reads the file itself may find it unusable."""
    try:
        return await line.play_file(path)
    except (wave.Error, EOFError, ValueError, OSError) as exc:
        raise CommandFailed(f"play: cannot play {path}: {exc}") from None
