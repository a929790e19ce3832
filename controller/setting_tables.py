"""Settings that are lists of tables (routes, webhook endpoints): TOML `[[voxgate.name]]` or a JSON array.

Both report every problem at once, one per line, each naming its entry, as the rest of the
settings do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class TableListError(ValueError):
    """The list is unusable; one problem per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


def parse_table_list(value: Any, *, item: type[T], name: str, example: str, parse: Callable[[Any], T],
                     error: type[TableListError] = TableListError) -> tuple[T, ...]:
    """Items from a list of tables, JSON text or items already made; `parse` raises ValueError per bad entry."""
    if isinstance(value, str):
        if not value.strip():
            return ()
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise error([f"not valid JSON (an array of objects like {example}): {exc}"]) from None
    if not isinstance(value, list | tuple):
        got = type(value).__name__
        raise error([f"must be a list of {name}s ([[voxgate.{name}s]] tables or a JSON array), got {got}"])
    items, problems = [], []
    for number, entry in enumerate(value, start=1):
        try:
            items.append(entry if isinstance(entry, item) else parse(entry))
        except ValueError as exc:
            problems += [f"{name} {number}: {why}" for why in str(exc).splitlines()]
    if problems:
        raise error(problems)
    return tuple(items)
