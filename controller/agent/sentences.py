"""Cut a streamed LLM reply into sentences, so speech starts before the model has finished.

The first sentence of a reply may also be cut at a clause (a comma after enough words): the
caller hears the agent sooner, and the clause still sounds natural on its own.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "no", "approx", "jr", "sr"})
_END = re.compile(r"([.!?…]+)[\"')\]]*(\s+)")
_CLAUSE = re.compile(r"([,;:—])(\s+)")


class SentenceSplitter:
    """Feed text deltas; get back whole sentences as soon as each one is complete."""

    def __init__(self, first_clause_words: int = 6) -> None:
        self._buffer = ""
        self._first_clause_words = first_clause_words
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        out: list[str] = []
        while True:
            sentence = self._cut()
            if sentence is None:
                return out
            if sentence:
                out.append(sentence)
                self._emitted += 1

    def flush(self) -> list[str]:
        """The rest of the reply, once the model has stopped."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _cut(self) -> str | None:
        for match in _END.finditer(self._buffer):
            head = self._buffer[:match.end(1)]
            if _is_abbreviation(head):
                continue
            return self._take(match.end())
        if self._emitted == 0:
            for match in _CLAUSE.finditer(self._buffer):
                if len(self._buffer[:match.start()].split()) >= self._first_clause_words:
                    return self._take(match.end())
        return None

    def _take(self, end: int) -> str:
        sentence, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
        return sentence


def _is_abbreviation(head: str) -> bool:
    if not head.endswith("."):
        return False
    word = head[:-1].rsplit(None, 1)[-1].lower() if head[:-1].split() else ""
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())

