"""The flow's per-call state as the call record can keep it: JSON values only, and a note of the rest."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64


def storable(state: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(a JSON-safe copy of `state` or None when empty, what had to be left out or None).

    Values JSON cannot hold (sets, objects, NaN, cycles...) are dropped one by one, so the rest
    of the state, and the call's record, are still stored.
    """
    if not isinstance(state, dict):
        return None, f"call.state not stored: it must be a dict, not {type(state).__name__}"
    dropped: list[str] = []
    kept = _clean(state, "state", dropped, set(), 0)
    note = f"call.state not stored in full: {'; '.join(dropped)}" if dropped else None
    return (kept or None), note


def _clean(value: Any, where: str, dropped: list[str], path: set[int], depth: int) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return _drop(where, f"{value} is not a JSON number", dropped)
    if not isinstance(value, dict | list | tuple):
        return _drop(where, f"{type(value).__name__} is not a JSON value", dropped)
    if id(value) in path:
        return _drop(where, "refers to itself", dropped)
    if depth >= MAX_DEPTH:
        return _drop(where, f"nested deeper than {MAX_DEPTH}", dropped)
    path.add(id(value))
    try:
        if isinstance(value, dict):
            return _clean_dict(value, where, dropped, path, depth)
        items = (_clean(item, f"{where}[{i}]", dropped, path, depth + 1) for i, item in enumerate(value))
        return [item for item in items if item is not _DROPPED]
    finally:
        path.discard(id(value))


def _clean_dict(value: dict, where: str, dropped: list[str], path: set[int], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, str):
            name = key
        elif key is None or isinstance(key, bool | int | float):
            name = json.dumps(key)  # what JSON itself makes of such a key
        else:
            _drop(f"{where}[{key!r}]", f"a {type(key).__name__} key is not a JSON key", dropped)
            continue
        cleaned = _clean(item, f"{where}[{name!r}]", dropped, path, depth + 1)
        if cleaned is not _DROPPED:
            out[name] = cleaned
    return out


_DROPPED = object()


def _drop(where: str, why: str, dropped: list[str]) -> object:
    dropped.append(f"{where}: {why}")
    return _DROPPED
