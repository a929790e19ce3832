"""Call flows: plain `async def flow(call)` functions, marked with @flow and picked per call by name.

    from controller.flows import flow

    @flow("sales")
    async def sales(call): ...

    @flow("voicemail", finish_after_hangup=30)   # may keep running 30 s after the caller hangs up
    async def voicemail(call): ...

The decorator only marks the function; `load_flows("mypkg.flows")` imports the modules and collects
what is marked into a fresh FlowRegistry. No global registry exists, so re-importing a module
(`voxgate serve --reload`) gives a new, complete registry instead of duplicates.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import overload

from controller.call import Call

FlowFn = Callable[[Call], Awaitable[str | None]]

MAX_FINISH_AFTER_HANGUP_S = 3600.0
_MARK = "__voxgate_flows__"  # attribute holding the Flow specs of a marked function
LEGACY_HOOK = "register"  # modules written before @flow: `def register(registry)`


class FlowError(ValueError):
    """A flow cannot be registered: not an `async def`, a bad name or setting, a name used twice."""


@dataclass(frozen=True, slots=True)
class Flow:
    """One registered flow: its name, its function, and how long it may outlive the caller's hangup."""

    name: str
    fn: FlowFn
    finish_after_hangup: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name.split() != [self.name]:
            raise FlowError(f"flow {self.name!r} ({self.origin}): a flow name is a non-empty word without spaces")
        if not inspect.iscoroutinefunction(self.fn):
            raise FlowError(f"flow {self.name!r} ({self.origin}) must be an `async def` taking the call")
        grace = self.finish_after_hangup
        number = isinstance(grace, int | float) and not isinstance(grace, bool) and math.isfinite(grace)
        if not number or not 0 <= grace <= MAX_FINISH_AFTER_HANGUP_S:
            raise FlowError(f"flow {self.name!r} ({self.origin}): finish_after_hangup must be a number of "
                            f"seconds from 0 to {MAX_FINISH_AFTER_HANGUP_S:.0f}, got {grace!r}")

    @property
    def origin(self) -> str:
        """Where the function is defined, for error messages: module.name at file:line."""
        fn = inspect.unwrap(self.fn)
        code = getattr(fn, "__code__", None)
        where = f" at {code.co_filename}:{code.co_firstlineno}" if code is not None else ""
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}{where}"

    def describe(self) -> str:
        """One line for the start-up log."""
        fn = self.fn
        text = f"{self.name}: {getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        if self.finish_after_hangup:
            text += f" (finishes up to {self.finish_after_hangup:g} s after the caller hangs up)"
        return text


@overload
def flow(name: FlowFn, /) -> FlowFn: ...


@overload
def flow(name: str | None = None, /, *, finish_after_hangup: float = 0.0) -> Callable[[FlowFn], FlowFn]: ...


def flow(name=None, /, *, finish_after_hangup=0.0):
    """Mark an `async def` as a flow: `@flow`, `@flow("name")`, `@flow("name", finish_after_hangup=30)`.

    The name defaults to the function's name. Errors (not async, bad name) are raised here, at import.
    """
    if callable(name):
        return _mark(name, name.__name__, finish_after_hangup)
    return lambda fn: _mark(fn, fn.__name__ if name is None else name, finish_after_hangup)


def _mark(fn: FlowFn, name: str, finish_after_hangup: float) -> FlowFn:
    spec = Flow(name, fn, finish_after_hangup)
    setattr(fn, _MARK, (*getattr(fn, _MARK, ()), spec))
    return fn


def marked_flows(obj: object) -> tuple[Flow, ...]:
    """The flows @flow put on obj (none for anything else)."""
    namespace = getattr(obj, "__dict__", None)
    specs = namespace.get(_MARK, ()) if isinstance(namespace, Mapping) else ()
    return tuple(spec for spec in specs if isinstance(spec, Flow))


class FlowRegistry:
    """Name -> Flow. A call names its flow with the dialplan variable `voxgate_flow` or a route."""

    def __init__(self) -> None:
        self._flows: dict[str, Flow] = {}

    def add(self, new: Flow) -> None:
        old = self._flows.get(new.name)
        if old is not None and old != new:
            raise FlowError(f"flow {new.name!r} is registered twice: by {old.origin} and by {new.origin}")
        self._flows[new.name] = new

    def register(self, name: str, *, finish_after_hangup: float = 0.0) -> Callable[[FlowFn], FlowFn]:
        """Add a function directly, without @flow and load_flows (tests, benchmarks)."""
        def add(fn: FlowFn) -> FlowFn:
            self.add(Flow(name, fn, finish_after_hangup))
            return fn
        return add

    def get(self, name: str) -> Flow | None:
        return self._flows.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._flows

    def __iter__(self) -> Iterator[Flow]:
        return iter(sorted(self._flows.values(), key=lambda f: f.name))

    def __len__(self) -> int:
        return len(self._flows)

    @property
    def names(self) -> list[str]:
        return sorted(self._flows)


def builtin_flows() -> FlowRegistry:
    """A registry holding the flows that ship with voxgate."""
    from controller.flows import assistant, greeting

    registry = FlowRegistry()
    registry.register("greeting")(greeting.greeting)
    registry.register("assistant")(assistant.assistant)
    return registry


def load_flows(*module_names: str) -> FlowRegistry:
    """The built-in flows plus every @flow in these modules (and, for a package, in all its submodules).

    Imports what is not imported yet; a module that fails to import raises its own error.
    A module with a `register(registry)` function (the hook before @flow) has it called too.
    """
    registry = builtin_flows()
    for name in module_names:
        modules = flow_modules(name)
        for module in modules:
            for value in list(vars(module).values()):
                for spec in marked_flows(value):
                    registry.add(spec)
        hook = vars(modules[0]).get(LEGACY_HOOK)
        if inspect.isfunction(hook) and hook.__module__ == name and not marked_flows(hook):  # not an import
            hook(registry)
    return registry


def flow_modules(name: str) -> list[ModuleType]:
    """The module, then (for a package) each of its submodules, imported."""
    module = importlib.import_module(name)
    found = [module]
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{name}.", onerror=_reraise):
            found.append(importlib.import_module(info.name))
    return found


def _reraise(_: str) -> None:
    """walk_packages would hide a subpackage's ImportError; a broken flow module must be seen."""
    raise  # noqa: PLE0704 - called by pkgutil inside its except block
