"""`voxgate serve --reload`: while developing, edited flow modules take effect for the next call.

It polls the flow modules' source files (modification time and size, about once a second; no
watcher dependency), re-imports the modules from scratch when one changed, and hands the new
registry to the controller. Calls in progress keep the flow they started with. A module that
fails to import is logged with its traceback, and the flows loaded before stay in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

from controller.flows import FlowRegistry, load_flows

log = logging.getLogger(__name__)

POLL_S = 1.0

Snapshot = dict[str, tuple[int, int] | None]  # source path -> (mtime_ns, size), None when missing


class FlowReloader:
    """Loads the flow modules, then reloads them on change; see the module docstring."""

    def __init__(self, modules: Sequence[str], *, interval_s: float = POLL_S) -> None:
        self.modules = tuple(modules)
        self.interval_s = interval_s
        self._sources: list[Path] = []
        self._seen: Snapshot = {}
        self._task: asyncio.Task[None] | None = None

    def load(self) -> FlowRegistry:
        """The first import; raises what the modules raise (start-up should stop on a broken flow)."""
        registry, self._sources = self._import()
        self._seen = _snapshot(self._sources)
        return registry

    def start(self, apply: Callable[[FlowRegistry], None]) -> None:
        """Poll in the background; `apply` gets each new registry and may refuse it with ValueError."""
        self._task = asyncio.create_task(self._watch(apply), name="flow reloader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def check(self, apply: Callable[[FlowRegistry], None]) -> bool:
        """One poll: True when a changed module was re-imported and its flows applied."""
        now = await asyncio.to_thread(_snapshot, self._sources)
        if now == self._seen:
            return False
        changed = sorted(path for path in now.keys() | self._seen.keys() if now.get(path) != self._seen.get(path))
        self._seen = now
        log.info("flows: %s changed; re-importing %s", ", ".join(changed), ", ".join(self.modules))
        try:
            registry, sources = await asyncio.to_thread(self._reimport)
            apply(registry)
        except Exception:
            log.exception("flows: reloading %s failed; new calls keep the flows loaded before",
                          ", ".join(self.modules))
            return False
        self._sources = sources
        log.info("flows reloaded: %s", ", ".join(registry.names))
        return True

    async def _watch(self, apply: Callable[[FlowRegistry], None]) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check(apply)
            except Exception:  # a development aid must not stop watching over one bad poll
                log.exception("flows: checking %s for changes failed", ", ".join(self.modules))

    def _import(self) -> tuple[FlowRegistry, list[Path]]:
        with _no_bytecode():
            registry = load_flows(*self.modules)
        return registry, [path for name in self.modules for path in _source_roots(sys.modules[name])]

    def _reimport(self) -> tuple[FlowRegistry, list[Path]]:
        """A fresh import of every flow module; on failure the modules imported before are put back."""
        saved = _forget(self.modules)
        importlib.invalidate_caches()  # a file added since the last import must be found
        try:
            return self._import()
        except BaseException:
            _forget(self.modules)
            sys.modules.update(saved)
            raise


def _source_roots(module: ModuleType) -> list[Path]:
    """What to watch: a package's directories (new files count too), else the module's file."""
    if hasattr(module, "__path__"):
        return [Path(directory) for directory in module.__path__]
    return [Path(module.__file__)] if getattr(module, "__file__", None) else []


def _snapshot(roots: Sequence[Path]) -> Snapshot:
    found: Snapshot = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            try:
                stat = path.stat()
            except OSError:
                found[str(path)] = None
                continue
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


def _forget(names: Sequence[str]) -> dict[str, ModuleType]:
    """Take the modules (and their submodules) out of sys.modules so the next import reads the files again."""
    gone = {}
    for key in list(sys.modules):
        if any(key == name or key.startswith(f"{name}.") for name in names):
            gone[key] = sys.modules.pop(key)
    return gone


@contextlib.contextmanager
def _no_bytecode() -> Iterator[None]:
    """Write no .pyc: one written within the same second as an edit of equal size passes Python's
    mtime check, and the next re-import would bring back the old code."""
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = before
