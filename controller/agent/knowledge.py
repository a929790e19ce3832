"""A small knowledge base the agent is grounded in: facts found by word overlap, no model needed.

The agent adds the best facts to what the language model reads, so even a tiny model answers
from the flow's own facts; the embedded grounded model answers with them directly.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("""
a an the and or but is are was were be to of for in on at by with from it its this that i you we they me my
your our can could would will do does did what when where how please i'd like want need just about tell
""".split())


def keywords(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


@dataclass(frozen=True, slots=True)
class Fact:
    topic: str
    answer: str
    keywords: tuple[str, ...] = ()


class Knowledge:
    """Facts ranked by weighted overlap of keywords with a question (rarer words weigh more)."""

    def __init__(self, facts: list[Fact]) -> None:
        self.facts = facts
        self._terms = [set(keywords(f"{f.topic} {' '.join(f.keywords)}")) for f in facts]
        counts: dict[str, int] = {}
        for terms in self._terms:
            for term in terms:
                counts[term] = counts.get(term, 0) + 1
        self._weight = {t: math.log(1 + len(facts) / c) for t, c in counts.items()}

    @classmethod
    def from_toml(cls, path: str | Path) -> Knowledge:
        """[[fact]] tables with topic, answer and optional keywords."""
        data = tomllib.loads(Path(path).read_text())
        return cls([Fact(f["topic"], f["answer"], tuple(f.get("keywords", ()))) for f in data.get("fact", [])])

    def search(self, question: str, limit: int = 2, min_score: float = 0.5) -> list[tuple[float, Fact]]:
        asked = set(keywords(question))
        scored = [(sum(self._weight[t] for t in asked & terms), fact)
                  for terms, fact in zip(self._terms, self.facts)]
        ranked = sorted((s for s in scored if s[0] >= min_score), key=lambda s: -s[0])
        return ranked[:limit]
