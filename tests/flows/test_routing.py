"""The route table: parsing with every problem named, first match wins, the dialplan's choice first."""

from __future__ import annotations

import pytest

from controller.call import CallInfo
from controller.routing import Route, RouteError, choose_flow, describe_routes, match_route, parse_routes, unregistered

TABLE = [
    {"destination": "5000", "flow": "sales"},
    {"caller": r"\+44.*", "destination": r"6\d{3}", "flow": "uk_support"},
    {"destination": r"6\d{3}", "flow": "support"},
    {"caller": "+15551230007", "flow": "vip"},
    {"destination": "*97", "flow": "voicemail"},
]


def _call(destination: str = "1000", caller: str = "15551230001", flow: str = "") -> CallInfo:
    return CallInfo("u-1", "freeswitch", "inbound", caller_id_number=caller, destination=destination, flow=flow)


@pytest.mark.parametrize("destination,caller,expected", [
    ("5000", "15551230001", "sales"),
    ("50001", "15551230001", None),           # exact numbers match whole
    ("15000", "15551230001", None),
    ("6001", "+442071234567", "uk_support"),  # both conditions of a route must hold
    ("6001", "15551230001", "support"),       # ... else the next route is tried
    ("600", "+442071234567", None),           # regexes match the whole number
    ("1000", "+15551230007", "vip"),          # '+' in an exact number is a plus, not a quantifier
    ("1000", "15551230007", None),
    ("*97", "15551230001", "voicemail"),
    ("5000", "+15551230007", "sales"),        # first match wins
])
def test_matching(destination, caller, expected):
    routes = parse_routes(TABLE)
    route = match_route(routes, _call(destination, caller))
    assert (route.flow if route else None) == expected


def test_the_dialplan_then_the_routes_then_the_default():
    routes = parse_routes(TABLE)
    assert choose_flow(_call("5000", flow="greeting"), routes, "fallback") == "greeting"
    assert choose_flow(_call("5000"), routes, "fallback") == "sales"
    assert choose_flow(_call("4000"), routes, "fallback") == "fallback"
    assert choose_flow(_call("4000"), (), "fallback") == "fallback"


def test_json_text_and_routes_already_parsed():
    routes = parse_routes('[{"destination": "5000", "flow": "sales"}, {"caller": "\\\\+44.*", "flow": "uk"}]')
    assert routes == (Route("sales", "5000"), Route("uk", caller=r"\+44.*"))
    assert parse_routes(routes) == routes
    assert parse_routes("") == () and parse_routes([]) == ()


def test_every_problem_is_listed_with_its_route():
    with pytest.raises(RouteError) as error:
        parse_routes([
            {"destination": "5000", "flow": "sales"},
            {"destinaton": "5001", "flow": "sales"},
            {"destination": "5[", "flow": "sales"},
            {"destination": "5002"},
            {"flow": "catch_all"},
            {"destination": 5003, "flow": "sales"},
            "5004",
            {"caller": "(", "flow": " "},
        ])
    assert list(error.value.problems) == [
        "route 2: unknown key 'destinaton' (did you mean destination?) (a route has flow, destination, caller)",
        "route 3: destination '5[' is not a valid regular expression: unterminated character set at position 1",
        "route 4: needs a flow: the name of a registered flow",
        "route 5: the route to 'catch_all' needs a destination or a caller to match "
        "(calls that match no route take default_flow)",
        'route 6: destination must be a string (quote numbers: destination = "5003"), got 5003',
        "route 7: must be a table with flow and destination and/or caller, got '5004'",
        "route 8: needs a flow: the name of a registered flow",
    ]
    assert str(error.value).splitlines() == list(error.value.problems)


def test_not_a_list_or_not_json():
    with pytest.raises(RouteError, match="not valid JSON"):
        parse_routes("[{destination: 5000}]")
    with pytest.raises(RouteError, match="must be a list of routes .* got dict"):
        parse_routes({"destination": "5000", "flow": "sales"})


def test_routes_to_unregistered_flows_and_the_table_as_shown():
    routes = parse_routes(TABLE[:3])
    assert unregistered(routes, ["sales", "support", "greeting"]) == [
        r"route 2 (destination ~ 6\d{3}, caller ~ \+44.* -> uk_support): flow 'uk_support' is not registered "
        "(registered: greeting, sales, support)"]
    assert unregistered(routes, ["sales", "support", "uk_support"]) == []
    assert describe_routes(routes, "greeting") == [
        "route 1: destination 5000 -> sales",
        r"route 2: destination ~ 6\d{3}, caller ~ \+44.* -> uk_support",
        r"route 3: destination ~ 6\d{3} -> support",
        "otherwise: greeting (default_flow), unless the dialplan sets voxgate_flow"]
