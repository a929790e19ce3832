"""Listening while a verb runs: voice onsets and ends from the VAD, the caller's audio, and transcribing it."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Self

from controller.agent.engines import SpeechToText, Transcript, VadStream
from controller.agent.turns import SpeechEnded, SpeechStarted, TurnSettings, VoiceTracker
from controller.call import AudioFrame
from controller.verbs.line import Line

if TYPE_CHECKING:
    from types import TracebackType

PREROLL_FRAMES = 15  # 300 ms before the VAD fired, so the first syllable reaches the recogniser
KEEP = ("none", "utterance", "all")
STT_PIECE_S = 25.0  # Whisper reads at most 30 s at once: longer audio is transcribed in pieces
DEFAULT_TURN = TurnSettings()


class Ears:
    """The caller's audio while one verb runs (an async context manager).

    Frames that arrived before the verb began (queued while nobody listened) are skipped, so
    speech from seconds ago never reads as speech now. keep="utterance" keeps the first utterance
    from just before its onset to its end; keep="all" keeps everything. Without a VAD (vad=False,
    or no engines) only the audio is kept. One Ears at a time per call: they share the frames.
    """

    def __init__(self, line: Line, *, vad: bool = True, keep: str = "none", turn: TurnSettings = DEFAULT_TURN) -> None:
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)}, not {keep!r}")
        self.line = line
        self.keep = keep
        self.turn = turn
        self.rate = line.media.sample_rate
        self.audio = bytearray()
        self.started = asyncio.Event()   # the caller began to talk
        self.finished = asyncio.Event()  # ...and stopped: with keep="utterance", `audio` is that utterance
        self.closed = asyncio.Event()    # no more frames will come: the media stream ended
        self.first_at: float | None = None  # arrival of the first frame kept
        self.last_voice_at: float | None = None  # arrival of the last frame that carried voice
        self._want_vad = vad and line.agent_engines is not None
        self._vad: VadStream | None = None
        self._tracker: VoiceTracker | None = None
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._capturing = False
        self._since = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def has_vad(self) -> bool:
        return self._want_vad

    async def __aenter__(self) -> Self:
        self._since = time.monotonic()
        if self._want_vad:
            assert self.line.agent_engines is not None
            self._vad = await self.line.agent_engines.vad.open(self.rate)
            self._tracker = VoiceTracker(self.turn, self._vad.window_ms / 1000)
        self._task = asyncio.create_task(self._run(), name=f"ears-{self.line.info.uuid}")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._vad is not None:
            self._vad.close()
            self._vad = None

    async def speech_started(self) -> None:
        await self.started.wait()

    async def _run(self) -> None:
        async for frame in self.line.media.frames():
            if frame.received >= self._since and frame.sample_rate == self.rate:
                self._hear(frame)
        self.closed.set()

    def _hear(self, frame: AudioFrame) -> None:
        if self.first_at is None:
            self.first_at = frame.received
        if self.keep == "all":
            self.audio += frame.pcm
        elif self.keep == "utterance":
            if self._capturing:
                self.audio += frame.pcm
            elif not self.started.is_set():
                self._preroll.append(frame.pcm)
        if self._vad is None or self._tracker is None:
            return
        for probability in self._vad.push(frame.pcm):
            if probability >= self.turn.offset:
                self.last_voice_at = frame.received
            event = self._tracker.push(probability, frame.received)
            if isinstance(event, SpeechStarted) and not self.started.is_set():
                if self.keep == "utterance":
                    self.audio = bytearray(b"".join(self._preroll))
                    self._capturing = True
                self.started.set()
            elif isinstance(event, SpeechEnded) and self.started.is_set() and not self.finished.is_set():
                self._capturing = False
                self.finished.set()


async def transcribe(stt: SpeechToText, pcm: bytes, rate: int) -> Transcript:
    """The text of recorded speech, fed in pieces short enough for any recogniser."""
    piece = int(STT_PIECE_S * rate) * 2
    stream = await stt.open(rate)
    texts: list[str] = []
    confidences: list[float] = []
    try:
        for offset in range(0, len(pcm), piece):
            await stream.feed(pcm[offset:offset + piece])
            heard = await stream.result(final=True)
            if heard.text.strip():
                texts.append(heard.text.strip())
                if heard.confidence is not None:
                    confidences.append(heard.confidence)
    finally:
        await stream.close()
    confidence = min(confidences) if confidences else None
    return Transcript(" ".join(texts), True, confidence, 0.0, len(pcm) / (2 * rate))
