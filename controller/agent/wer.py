"""Word error rate, for recogniser tests and benchmarks.

Scored on normalised words so that only recognition mistakes count, not writing conventions:
case and punctuation are dropped, apostrophes join ("I'd" -> "id"), and numbers compare as
digit sequences, because a caller reading "four five seven two one" is transcribed "45721"
or "4 5 7 2 1" and both are right. Only single-digit number words are mapped: the reference
texts read numbers digit by digit, and a fuller number parser would hide real mistakes.
"""

from __future__ import annotations

import re

DIGIT_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; digit strings split into single digits."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"['’]", "", text.lower()))
    out: list[str] = []
    for word in words:
        word = DIGIT_WORDS.get(word, word)
        if word.isdigit():
            out.extend(word)
        else:
            out.append(word)
    return out


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions turning `ref` into `hyp` (Levenshtein on words)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return row[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(errors, reference words), to sum over a corpus before dividing."""
    ref_words = normalize(ref)
    return edit_distance(ref_words, normalize(hyp)), len(ref_words)


def wer(ref: str, hyp: str) -> float:
    """Word error rate of one hypothesis, 0.0 = perfect (can exceed 1.0 with insertions)."""
    errors, words = word_errors(ref, hyp)
    return errors / max(words, 1)
