"""Call flows: plain `async def flow(call)` functions, registered by name and picked per call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.call import Call

FlowFn = Callable[[Call], Awaitable[str | None]]


class FlowRegistry:
    """Name -> flow. A call names its flow with the dialplan variable `voxgate_flow`."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowFn] = {}

    def register(self, name: str) -> Callable[[FlowFn], FlowFn]:
        def add(fn: FlowFn) -> FlowFn:
            if name in self._flows:
                raise ValueError(f"flow {name!r} is registered twice")
            self._flows[name] = fn
            return fn
        return add

    def get(self, name: str) -> FlowFn | None:
        return self._flows.get(name)

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
