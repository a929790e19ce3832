"""record(): the caller's audio from the media port until silence, a terminator key, max_s or hangup.

A hangup ends a recording like any other end (that is how voicemail ends): what was recorded
is returned, never lost to an exception. The controller cancels a flow when its caller hangs up,
so a flow that works on after the hangup (store the message) is registered with
`finish_after_hangup`. The WAV written to `path` is readable by its owner only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import wave
from dataclasses import dataclass, field, replace
from pathlib import Path

from controller.agent.engines import EngineError
from controller.audio import SAMPLE_WIDTH, tone
from controller.call import CallGone, CommandFailed, PlayResult
from controller.verbs.line import Line, engines
from controller.verbs.listen import Ears, transcribe
from controller.verbs.playout import prompt

log = logging.getLogger(__name__)

BEEP_HZ, BEEP_MS = 1000, 250
TICK_S = 0.1  # how often silence and max_s are looked at
KEEP_AFTER_VOICE_S = 0.3  # ended by silence: the silence is cut, a breath after the last words is kept


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What was recorded: mono L16 at `sample_rate`. ended_by: silence | dtmf | max_s | hangup.

    `path` is where the WAV was written (when asked); `text` the transcript (transcribe=True;
    None when the recogniser failed).
    """

    pcm: bytes = field(repr=False)
    sample_rate: int
    duration: float
    ended_by: str
    path: str | None = None
    text: str | None = None


class RecordingNotSaved(CommandFailed):
    """The WAV could not be written; the recording itself is in `recording`."""

    def __init__(self, message: str, recording: RecordResult) -> None:
        super().__init__(message)
        self.recording = recording


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """record()'s parameters, checked (ValueError) before anything is played or recorded."""

    max_s: float = 60.0
    silence_s: float | None = 5.0
    terminators: str = "#"
    beep: bool = True
    path: Path | None = None
    transcribe: bool = False

    def __post_init__(self) -> None:
        if not self.max_s > 0:
            raise ValueError("max_s must be more than 0 seconds")
        if self.silence_s is not None and not self.silence_s > 0:
            raise ValueError("silence_s must be more than 0 seconds, or None")
        if self.path is not None and not self.path.parent.is_dir():
            raise ValueError(f"cannot write the recording to {self.path}: no such folder {self.path.parent}")


async def record(line: Line, spec: RecordSpec) -> RecordResult:
    if spec.silence_s is not None or spec.transcribe:
        engines(line, "record(silence_s=...)" if spec.silence_s is not None else "record(transcribe=True)")
    rate = line.media.sample_rate
    ended_by = "hangup"
    pcm = b""
    try:
        if spec.beep:
            await _beep(line, rate)
        line.keypad.clear()  # keys pressed before the beep are not meant to end the recording
        async with Ears(line, vad=spec.silence_s is not None, keep="all") as ears:
            started = time.monotonic()
            ended_by = await _until_done(line, ears, spec, started)
            pcm = _trimmed(ears, ended_by)
    except CallGone:
        pass  # during the beep: nothing recorded yet
    result = RecordResult(pcm, rate, len(pcm) / (SAMPLE_WIDTH * rate), ended_by)
    if spec.transcribe:
        result = await _transcribed(line, result)
    if spec.path is not None:
        result = await _saved(result, spec.path)
    return result


async def _beep(line: Line, rate: int) -> None:
    beep = tone(BEEP_HZ, BEEP_MS, rate, 6000)

    async def start() -> PlayResult:
        return await line.media.play(beep, rate)

    await prompt(line, start, line.media.flush, interruptible=False)


async def _until_done(line: Line, ears: Ears, spec: RecordSpec, started: float) -> str:
    """Why the recording ended; keys other than the terminators are taken and ignored."""
    while True:
        key = line.keypad.take()
        if key is not None:
            if key in spec.terminators:
                return "dtmf"
            continue
        if ears.closed.is_set() or line.ended.is_set():
            return "hangup"
        now = time.monotonic()
        if now - started >= spec.max_s:
            return "max_s"
        if spec.silence_s is not None and now - max(started, ears.last_voice_at or 0.0) >= spec.silence_s:
            return "silence"
        waits = [asyncio.ensure_future(w) for w in (line.keypad.pressed(), ears.closed.wait(), line.ended.wait())]
        try:
            await asyncio.wait(waits, timeout=min(TICK_S, spec.max_s - (now - started)),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


def _trimmed(ears: Ears, ended_by: str) -> bytes:
    """The audio; a recording that ended on silence loses the silence after the last words."""
    audio = bytes(ears.audio)
    if ended_by != "silence" or ears.last_voice_at is None or ears.first_at is None:
        return audio
    keep = int((ears.last_voice_at - ears.first_at + KEEP_AFTER_VOICE_S) * ears.rate) * SAMPLE_WIDTH
    return audio[:max(keep, 0)]


async def _transcribed(line: Line, result: RecordResult) -> RecordResult:
    stt = engines(line, "record(transcribe=True)").stt
    try:
        heard = await transcribe(stt, result.pcm, result.sample_rate)
    except EngineError as exc:
        log.error("call %s: the recording could not be transcribed: %s", line.info.uuid, exc)
        return result
    return replace(result, text=heard.text)


async def _saved(result: RecordResult, path: Path) -> RecordResult:
    try:
        await asyncio.to_thread(write_private_wav, path, result.pcm, result.sample_rate)
    except OSError as exc:
        raise RecordingNotSaved(f"cannot write the recording to {path}: {exc.strerror or exc}", result) from exc
    return replace(result, path=str(path))


def write_private_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    """A mono WAV only its owner may read (0600, also when the file was there before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as file, wave.open(file, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
