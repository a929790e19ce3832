"""gather(): ask, then take the caller's answer by keys and/or speech, with retries; a typed result.

One attempt: the notice of the last failure (no_input_prompt / invalid_prompt), then the
prompt, both cut short by a key or by speech; then the first input decides the path. Keys are
read up to max_digits, the terminator or the inter-digit timeout. Speech is listened to from
the VAD's onset to its end and then transcribed. The answer must match a choice (when choices
are given) and pass `validate`; otherwise the attempt is invalid. What the caller does never
raises: after the last retry the result says no_input or invalid. Their hanging up raises CallGone.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.agent.engines import EngineError
from controller.agent.turns import TurnSettings, words_of
from controller.audio import Pcm
from controller.call import PromptResult
from controller.verbs.keys import read_digits
from controller.verbs.line import Line, engines, first_of, gone
from controller.verbs.listen import Ears, transcribe
from controller.verbs.play import looks_like_audio, play
from controller.verbs.say import say

log = logging.getLogger(__name__)

DTMF_KEYS = frozenset("0123456789*#ABCD")
MAX_DIGITS = 32  # when neither max_digits nor choices bound the entry: the terminator or a pause ends it
SPEECH_TURN = TurnSettings(long_pause_ms=800.0)  # this much silence ends a spoken answer

Prompt = str | Path | Pcm


@dataclass(frozen=True, slots=True)
class GatherResult:
    """The caller's answer. kind: dtmf | speech | no_input | invalid.

    `digits` are the keys (without the terminator), `text` the transcript, `choice` the key of the
    matched choice; an invalid result keeps what was entered. `attempts` counts the tries made.
    """

    kind: str
    digits: str = ""
    text: str = ""
    choice: str | None = None
    attempts: int = 1
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class GatherSpec:
    """gather()'s parameters, checked once (ValueError) before anything is played."""

    prompt: Prompt | None = None
    max_digits: int | None = None
    terminator: str = "#"
    timeout: float = 5.0
    inter_digit_timeout: float = 3.0
    overall_timeout: float | None = None
    speech: bool = False
    choices: Mapping[str, Sequence[str] | str] | None = None
    validate: Callable[[str], Any] | None = None
    retries: int = 2
    no_input_prompt: Prompt | None = None
    invalid_prompt: Prompt | None = None
    max_speech_s: float = 15.0

    def __post_init__(self) -> None:
        if self.max_digits is not None and self.max_digits < 1:
            raise ValueError(f"max_digits must be at least 1, not {self.max_digits}")
        if any(key not in DTMF_KEYS for key in self.terminator):
            raise ValueError(f"the terminator must be DTMF keys, not {self.terminator!r}")
        for name in ("timeout", "inter_digit_timeout", "max_speech_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds")
        if self.overall_timeout is not None and not self.overall_timeout > 0:
            raise ValueError("overall_timeout must be more than 0 seconds")
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, not {self.retries}")
        if self.choices is not None and not self.choices:
            raise ValueError("choices is empty: give at least one, or None")
        if self.validate is not None and not callable(self.validate):
            raise ValueError("validate must be callable")

    @property
    def digit_limit(self) -> int:
        if self.max_digits is not None:
            return self.max_digits
        keyed = [key for key in self.choices or () if key and all(c in DTMF_KEYS for c in key)]
        return max(map(len, keyed)) if keyed else MAX_DIGITS


async def gather(line: Line, spec: GatherSpec) -> GatherResult:
    if spec.speech:
        engines(line, "gather(speech=True)")
    notice: Prompt | None = None
    result = GatherResult("no_input")
    for attempt in range(1, spec.retries + 2):
        result = await _attempt(line, spec, attempt, notice)
        if result.kind in ("dtmf", "speech"):
            return result
        notice = spec.no_input_prompt if result.kind == "no_input" else spec.invalid_prompt
    return result


async def _attempt(line: Line, spec: GatherSpec, attempt: int, notice: Prompt | None) -> GatherResult:
    async with AsyncExitStack() as stack:
        ears = None
        if spec.speech:
            ears = await stack.enter_async_context(Ears(line, keep="utterance", turn=SPEECH_TURN))
        for said in (notice, spec.prompt):
            if said is not None:
                await ask(line, said, ears)
        deadline = time.monotonic() + spec.overall_timeout if spec.overall_timeout else None
        waits = {"key": line.keypad.pressed()}
        if ears is not None:
            waits.update(speech=ears.started.wait(), closed=ears.closed.wait())
        first = await first_of(line, waits, _left(spec.timeout, deadline))
        if first is None:
            return GatherResult("no_input", attempts=attempt)
        if first == "closed":
            raise gone(line)
        if first == "key":
            digits = await read_digits(line, max_digits=spec.digit_limit, first_timeout=spec.inter_digit_timeout,
                                       inter_digit_timeout=spec.inter_digit_timeout, terminators=spec.terminator,
                                       deadline=deadline)
            return await _judge(spec, attempt, "dtmf", digits=digits)
        assert ears is not None
        text, confidence = await _speech(line, ears, spec, deadline)
        return await _judge(spec, attempt, "speech", text=text, confidence=confidence)


async def ask(line: Line, said: Prompt, ears: Ears | None) -> PromptResult:
    """A prompt, interruptible: audio when it names audio, else text to speak."""
    if isinstance(said, Path | Pcm) or looks_like_audio(said):
        return await play(line, said, ears=ears)
    return await say(line, said, ears=ears)


async def _speech(line: Line, ears: Ears, spec: GatherSpec, deadline: float | None) -> tuple[str, float | None]:
    """What the caller said, from onset to the end of the utterance (or max_speech_s), transcribed."""
    waits = {"end": ears.finished.wait(), "closed": ears.closed.wait()}
    if await first_of(line, waits, _left(spec.max_speech_s, deadline)) == "closed":
        raise gone(line)
    stt = engines(line, "gather(speech=True)").stt
    try:
        heard = await transcribe(stt, bytes(ears.audio), ears.rate)
    except EngineError as exc:
        log.error("call %s: gather could not transcribe the answer: %s", line.info.uuid, exc)
        return "", None
    return heard.text.strip(), heard.confidence


async def _judge(spec: GatherSpec, attempt: int, kind: str, *, digits: str = "", text: str = "",
                 confidence: float | None = None) -> GatherResult:
    value = digits if kind == "dtmf" else text
    if not value:
        return GatherResult("no_input", attempts=attempt)
    choice = None
    if spec.choices is not None:
        choice = (digits if digits in spec.choices else None) if kind == "dtmf" else match_choice(text, spec.choices)
        if choice is None:
            return GatherResult("invalid", digits, text, None, attempt, confidence)
    if spec.validate is not None:
        verdict = spec.validate(value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if not verdict:
            return GatherResult("invalid", digits, text, choice, attempt, confidence)
    return GatherResult(kind, digits, text, choice, attempt, confidence)


def match_choice(text: str, choices: Mapping[str, Sequence[str] | str]) -> str | None:
    """The choice whose words the caller said (most phrases matched wins); None when none or a tie."""
    said = words_of(text)
    scores: dict[str, int] = {}
    for key, phrases in choices.items():
        options = [phrases] if isinstance(phrases, str) else list(phrases)
        scores[key] = sum(_contains(said, words_of(option)) for option in (*options, key))
    best = max(scores.values())
    winners = [key for key, score in scores.items() if score == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


def _contains(words: list[str], phrase: list[str]) -> bool:
    size = len(phrase)
    return size > 0 and any(words[i:i + size] == phrase for i in range(len(words) - size + 1))


def _left(seconds: float, deadline: float | None) -> float:
    if deadline is None:
        return seconds
    return max(0.0, min(seconds, deadline - time.monotonic()))
