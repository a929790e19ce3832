"""Redaction before storage: card numbers, national IDs, e-mail addresses and phone numbers.

Callers say numbers as words ("four five five six ..."), and recognisers write them either way,
so digits are found in both forms: a run of digit words and digit groups is read as one number.
A run of 13-19 digits that passes the Luhn check is a payment card; 7-15 other digits are a
phone number; longer ones are redacted as digits; shorter runs (order numbers, amounts) are left alone. Each redaction is counted
by kind, so a manager can see what was removed without seeing it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from controller.records.cdr import TurnRecord

_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_TOKEN = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")
_JOINERS = frozenset("-. ()/")
_PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "national_id": re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b"),
}


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


@dataclass(frozen=True)
class Redactor:
    """Replaces what it finds with "[kind]"; `extra` adds named patterns from configuration."""

    extra: dict[str, re.Pattern[str]] = field(default_factory=dict)

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        counts: Counter[str] = Counter()
        for kind, pattern in (*_PATTERNS.items(), *self.extra.items()):
            text, found = pattern.subn(f"[{kind}]", text)
            counts[kind] += found
        text = self._numbers(text, counts)
        return text, +counts

    def turn(self, record: TurnRecord) -> TurnRecord:
        """The turn as it may be stored: texts and tool-call details redacted, counts in detail."""
        counts: Counter[str] = Counter()
        text, found = self.redact(record.text)
        counts += found
        heard = None
        if record.heard_text is not None:
            heard, found = self.redact(record.heard_text)
            counts += found
        detail = self._value(record.detail, counts)
        if counts:
            detail = {**detail, "redactions": dict(counts)}
        return replace(record, text=text, heard_text=heard, detail=detail)

    def _value(self, value: Any, counts: Counter[str]) -> Any:
        if isinstance(value, str):
            text, found = self.redact(value)
            counts += found
            return text
        if isinstance(value, dict):
            return {k: self._value(v, counts) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v, counts) for v in value]
        return value

    def _numbers(self, text: str, counts: Counter[str]) -> str:
        """Digit runs, spoken or written, read as one number each; cards and phones replaced."""
        tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        out, cursor, index = [], 0, 0
        while index < len(tokens):
            run_end, digits = _digit_run(tokens, index)
            kind = _number_kind(digits)
            if kind is None:
                index = max(run_end, index + 1)
                continue
            out.append(text[cursor:tokens[index][0]] + f"[{kind}]")
            cursor = tokens[run_end - 1][1]
            counts[kind] += 1
            index = run_end
        return "".join(out) + text[cursor:]


def _digit_run(tokens: list[tuple[int, int, str]], start: int) -> tuple[int, str]:
    """From `start`: the end index of a run of digit tokens (allowing joiners between them)."""
    digits, end, index = "", start, start
    while index < len(tokens):
        word = tokens[index][2]
        value = word if word.isdigit() else _DIGIT_WORDS.get(word.lower())
        if value is not None:
            digits += value
            index += 1
            end = index
        elif word in _JOINERS and digits:
            index += 1
        else:
            break
    return end, digits


def _number_kind(digits: str) -> str | None:
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return "card"
    if 7 <= len(digits) <= 15:
        return "phone"
    if len(digits) > 15:
        return "digits"  # a card the recogniser got one digit wrong, an account number: still private
    return None


def compile_patterns(patterns: dict[str, str]) -> dict[str, re.Pattern[str]]:
    """Configured patterns, compiled; ValueError names the one that does not compile."""
    compiled = {}
    for name, source in patterns.items():
        try:
            compiled[name] = re.compile(source)
        except re.error as exc:
            raise ValueError(f"redaction pattern {name!r} does not compile: {exc}") from None
    return compiled
