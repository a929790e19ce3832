"""Event hooks a flow hangs on its call (a key pressed, the hangup): sync or async callbacks.

A hook runs beside the call, never inside it: an exception is logged and the call goes on;
an async hook runs as its own task, so a slow one holds nothing up.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("dtmf", "hangup")


class Hooks:
    """The hooks of one call, by kind."""

    def __init__(self, call_uuid: str) -> None:
        self.call_uuid = call_uuid
        self._hooks: dict[str, list[Callable[..., Any]]] = {kind: [] for kind in KINDS}
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self, kind: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Register `callback` for `kind`; returns a function that removes it again."""
        if not callable(callback):
            raise TypeError(f"a {kind} hook must be callable, not {type(callback).__name__}")
        hooks = self._hooks[kind]
        hooks.append(callback)

        def remove() -> None:
            if callback in hooks:
                hooks.remove(callback)

        return remove

    def fire(self, kind: str, *args: Any) -> None:
        for callback in list(self._hooks[kind]):
            self.run(kind, callback, *args)

    def run(self, kind: str, callback: Callable[..., Any], *args: Any) -> None:
        """One hook, now; an async one as a task of its own."""
        try:
            result = callback(*args)
        except Exception:
            log.exception("call %s: %s hook %s failed", self.call_uuid, kind, _name(callback))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(lambda done: self._done(kind, callback, done))

    def _done(self, kind: str, callback: Callable[..., Any], task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s: %s hook %s failed", self.call_uuid, kind, _name(callback),
                      exc_info=task.exception())


def _name(callback: Callable[..., Any]) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)
