"""Python functions a flow hands to its agent: a JSON Schema from the signature, timed calls.

A tool may return a call action (EndCall, TransferCall) to end the conversation; anything else
is its result, given back to the model (and to the records) as JSON. A parameter named `call`
receives the call the agent is on (its caller id, its `state`); the model never sees it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any, get_type_hints

from controller.agent.engines import ToolCall, ToolFunction, ToolSpec

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True, slots=True)
class EndCall:
    """Returned by a tool: say this, then hang up."""

    say: str = ""


@dataclass(frozen=True, slots=True)
class TransferCall:
    """Returned by a tool: say this, then transfer the caller to `destination`."""

    destination: str
    say: str = ""


CallAction = EndCall | TransferCall


CALL_PARAMETER = "call"


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    fn: ToolFunction
    timeout_s: float = 5.0
    takes_call: bool = False  # fn has a `call` parameter

    def on(self, call: Any) -> Tool:
        """This tool for one call: its `call` parameter, if it has one, is that call."""
        if not self.takes_call:
            return self
        return replace(self, fn=functools.partial(self.fn, **{CALL_PARAMETER: call}), takes_call=False)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """One executed tool call, as stored with the turn."""

    call: ToolCall
    result: Any
    error: str | None
    duration_ms: float

    @property
    def action(self) -> CallAction | None:
        return self.result if isinstance(self.result, EndCall | TransferCall) else None

    def content(self) -> str:
        """What the model reads back."""
        if self.error is not None:
            return json.dumps({"error": self.error})
        if isinstance(self.result, EndCall | TransferCall):
            return json.dumps({"ok": True, "say": self.result.say})
        return self.result if isinstance(self.result, str) else json.dumps(self.result, default=str)

    def detail(self) -> dict[str, Any]:
        result = self.content() if self.error is None else None
        return {"name": self.call.name, "arguments": self.call.arguments, "result": result,
                "error": self.error, "duration_ms": round(self.duration_ms, 1)}


def tool(fn: ToolFunction | None = None, *, name: str | None = None, description: str | None = None,
         timeout_s: float = 5.0) -> Tool | Callable[[ToolFunction], Tool]:
    """Decorator: `@tool` or `@tool(timeout_s=2)` on a (sync or async) function with typed arguments."""
    def wrap(f: ToolFunction) -> Tool:
        return Tool(ToolSpec(name or f.__name__, description or inspect.getdoc(f) or f.__name__, _schema(f)),
                    f, timeout_s, CALL_PARAMETER in inspect.signature(f).parameters)
    return wrap(fn) if fn is not None else wrap


def _schema(fn: ToolFunction) -> dict[str, Any]:
    # the `call` annotation is not evaluated: flows often import Call only under TYPE_CHECKING
    shown = {k: v for k, v in getattr(fn, "__annotations__", {}).items() if k != CALL_PARAMETER}
    hints = get_type_hints(SimpleNamespace(__annotations__=shown), globalns=getattr(fn, "__globals__", None))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.name == CALL_PARAMETER:
            continue  # given by voxgate (Tool.on), not by the model
        kind = _JSON_TYPES.get(hints.get(param.name, str))
        if kind is None:
            raise TypeError(f"tool {fn.__name__}: argument {param.name} must be str, int, float or bool")
        properties[param.name] = {"type": kind}
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    return {"type": "object", "properties": properties, "required": required}


async def run_tool(tools: dict[str, Tool], call: ToolCall) -> ToolOutcome:
    """Run one call; unknown tools, bad arguments, errors and timeouts become the outcome's error."""
    started = time.monotonic()
    found = tools.get(call.name)
    if found is None:
        return ToolOutcome(call, None, f"no tool named {call.name!r}", 0.0)
    if CALL_PARAMETER in call.arguments:  # a keyword given here would replace the bound call
        return ToolOutcome(call, None, f"argument {CALL_PARAMETER!r} is voxgate's to give, not the model's", 0.0)
    try:
        result = found.fn(**call.arguments)
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, found.timeout_s)
        error = None
    except asyncio.TimeoutError:
        result, error = None, f"timed out after {found.timeout_s:g} s"
    except Exception as exc:  # a flow's tool failing must not end the call
        result, error = None, f"{type(exc).__name__}: {exc}"
    return ToolOutcome(call, result, error, (time.monotonic() - started) * 1000)
