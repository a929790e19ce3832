"""Turn-taking: when the caller starts talking, pauses, resumes and is done. Sans-I/O.

The tracker is fed one voice-activity probability per VAD window with the window's end time
and answers with events; the conversation decides what a pause means from the transcript
(`looks_complete`): a short pause ends a complete sentence, a trailing one waits longer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Words a sentence rarely ends on: a caller who stops after one is usually still thinking.
_TRAILING = frozenset("""
a an the and or but so because if then to of for with from at in on by about my your our their his her its
is are was were am be i i'm it's that's there's um uh er erm like number um, uh, which who where when
""".split())
# ...unless the particle completes a phrasal verb: "I cannot log in." is a whole sentence.
_PHRASAL = frozenset({"log in", "sign in", "check in", "log on", "hold on", "go on", "come in", "logged in",
                      "signed in", "turn on", "switch on", "carry on", "move on", "get in", "plug in",
                      "stand by", "drop by", "come by", "pass by", "opt in", "fill in", "put in"})
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Voice-activity thresholds and pause lengths; every flow may set its own."""

    onset: float = 0.5           # probability at which speech may be starting
    offset: float = 0.35         # probability below which a window counts as silence
    min_speech_ms: float = 96.0  # voiced time before the caller counts as talking (clicks, coughs)
    pause_ms: float = 224.0      # silence that ends a turn whose transcript looks complete
    long_pause_ms: float = 900.0  # silence that ends any turn


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    onset_at: float  # when the first voiced window began


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    speech_end_at: float  # end of the last voiced window


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    at: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    speech_end_at: float
    voiced_s: float  # speech in the utterance, without its pauses


VoiceEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded


class VoiceTracker:
    """Hysteresis on VAD probabilities: quiet -> candidate -> speaking (-> paused) -> quiet."""

    def __init__(self, settings: TurnSettings, window_s: float) -> None:
        self.settings = settings
        self.window_s = window_s
        self._candidate_at: float | None = None
        self.speaking = False
        self.paused = False
        self.onset_at = 0.0
        self.last_voiced_at = 0.0
        self.voiced_s = 0.0

    def push(self, probability: float, at: float) -> VoiceEvent | None:
        s = self.settings
        if not self.speaking:
            return self._quiet(probability, at)
        if probability >= (s.onset if self.paused else s.offset):
            self.last_voiced_at = at
            self.voiced_s += self.window_s
            if self.paused:
                self.paused = False
                return SpeechResumed(at)
            return None
        silence_ms = (at - self.last_voiced_at) * 1000
        if silence_ms >= s.long_pause_ms:
            self.speaking = self.paused = False
            return SpeechEnded(self.last_voiced_at, self.voiced_s)
        if not self.paused and silence_ms >= s.pause_ms:
            self.paused = True
            return SpeechPaused(self.last_voiced_at)
        return None

    def _quiet(self, probability: float, at: float) -> SpeechStarted | None:
        s = self.settings
        threshold = s.offset if self._candidate_at is not None else s.onset
        if probability < threshold:
            self._candidate_at = None
            return None
        if self._candidate_at is None:
            self._candidate_at = at - self.window_s
        if (at - self._candidate_at) * 1000 < s.min_speech_ms:
            return None
        self.speaking, self.paused = True, False
        self.onset_at, self.last_voiced_at = self._candidate_at, at
        self.voiced_s = at - self._candidate_at
        self._candidate_at = None
        return SpeechStarted(self.onset_at)

    def end(self) -> None:
        """The turn was taken (committed by the conversation): back to quiet."""
        self.speaking = self.paused = False
        self._candidate_at = None


def looks_complete(text: str) -> bool:
    """A transcript that can stand as a whole turn: not empty, not cut off mid-phrase."""
    stripped = text.strip()
    if not stripped or stripped.endswith((",", "-", "—", "...", "…")):
        return False
    words = _WORD.findall(stripped.lower())
    if not words:
        return False
    return words[-1] not in _TRAILING or " ".join(words[-2:]) in _PHRASAL


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())
