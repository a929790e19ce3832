"""The route table: which flow takes a call whose dialplan did not name one, by dialled number or caller id.

A call's flow is, in order: the dialplan's `voxgate_flow`; the first route matching the call; the
default flow. Routes read only CallInfo, so they work the same for every PBX. In the TOML settings:

    [[voxgate.routes]]
    destination = "5000"           # a dialled number, compared exactly
    flow = "sales"
    [[voxgate.routes]]
    caller = '\\+44.*'             # a regular expression on the caller id number
    destination = '6\\d{3}'        # ... and on the dialled number: both must match
    flow = "uk_support"

or as JSON in VOXGATE_ROUTES. A value made only of digits, letters, `+`, `*` and `#` is an exact number;
anything else is a regular expression that must match the whole value (`\\+44.*` for a prefix).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.call import CallInfo
from controller.setting_tables import TableListError, parse_table_list

KEYS = ("flow", "destination", "caller")
_EXACT = re.compile(r"[0-9A-Za-z+*#]+")


class RouteError(TableListError):
    """The route table is unusable; one problem per line, each naming its route."""


def _pattern(what: str, value: str | None) -> re.Pattern[str] | None:
    if value is None:
        return None
    if _EXACT.fullmatch(value):
        return re.compile(re.escape(value))
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"{what} {value!r} is not a valid regular expression: {exc}") from None


@dataclass(frozen=True, slots=True)
class Route:
    """Calls matching destination and caller (each when given) take `flow`."""

    flow: str
    destination: str | None = None
    caller: str | None = None
    _destination: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _caller: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.destination is None and self.caller is None:
            raise ValueError(f"the route to {self.flow!r} needs a destination or a caller to match "
                             "(calls that match no route take default_flow)")
        object.__setattr__(self, "_destination", _pattern("destination", self.destination))
        object.__setattr__(self, "_caller", _pattern("caller", self.caller))

    def matches(self, info: CallInfo) -> bool:
        return ((self._destination is None or self._destination.fullmatch(info.destination) is not None)
                and (self._caller is None or self._caller.fullmatch(info.caller_id_number) is not None))

    def describe(self) -> str:
        """'destination 5000, caller ~ \\+44.* -> sales': `~` marks a regular expression."""
        parts = [f"{what} {'' if _EXACT.fullmatch(value) else '~ '}{value}"
                 for what, value in (("destination", self.destination), ("caller", self.caller))
                 if value is not None]
        return f"{', '.join(parts)} -> {self.flow}"


def parse_routes(value: Any) -> tuple[Route, ...]:
    """Routes from TOML (a list of tables), JSON text (an array of objects) or Routes already made.

    Raises RouteError listing every problem: unknown keys, a missing flow, a bad regular expression.
    """
    return parse_table_list(value, item=Route, name="route", example='[{"destination": "5000", "flow": "sales"}]',
                            parse=_route, error=RouteError)


def _route(entry: Any) -> Route:
    if not isinstance(entry, dict):
        raise ValueError(f"must be a table with flow and destination and/or caller, got {entry!r}")  # noqa: TRY004
    problems = [f"unknown key {key!r}{_did_you_mean(key)} (a route has {', '.join(KEYS)})"
                for key in entry if key not in KEYS]
    flow = entry.get("flow")
    if not isinstance(flow, str) or not flow.strip():
        problems.append("needs a flow: the name of a registered flow")
    for key in ("destination", "caller"):
        if key in entry and not isinstance(entry[key], str):
            problems.append(f"{key} must be a string (quote numbers: {key} = \"{entry[key]}\"), "
                            f"got {entry[key]!r}")
    if not problems:
        try:
            return Route(flow.strip(), entry.get("destination"), entry.get("caller"))
        except ValueError as exc:
            problems.append(str(exc))
    raise ValueError("\n".join(problems))


def _did_you_mean(key: object) -> str:
    close = difflib.get_close_matches(str(key), KEYS, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def match_route(routes: Sequence[Route], info: CallInfo) -> Route | None:
    """The first route the call matches."""
    return next((route for route in routes if route.matches(info)), None)


def choose_flow(info: CallInfo, routes: Sequence[Route], default_flow: str) -> str:
    """The dialplan's choice, else the first matching route's, else the default."""
    if info.flow:
        return info.flow
    route = match_route(routes, info)
    return route.flow if route is not None else default_flow


def unregistered(routes: Sequence[Route], flows: Collection[str]) -> list[str]:
    """One problem per route naming a flow that is not in `flows`."""
    known = ", ".join(sorted(flows)) or "none"
    return [f"route {number} ({route.describe()}): flow {route.flow!r} is not registered (registered: {known})"
            for number, route in enumerate(routes, start=1) if route.flow not in flows]


def describe_routes(routes: Sequence[Route], default_flow: str) -> list[str]:
    """The route table as start-up log lines, ending with the default."""
    lines = [f"route {number}: {route.describe()}" for number, route in enumerate(routes, start=1)]
    return [*lines, f"otherwise: {default_flow} (default_flow), unless the dialplan sets voxgate_flow"]
