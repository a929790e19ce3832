"""Routing end to end: calls without voxgate_flow reach the flow the route table names, on both PBXs."""

from __future__ import annotations

import json

import pytest

from controller.app import Controller
from controller.flows import FlowError, FlowRegistry, builtin_flows
from controller.simulator.caller import CallerScript, WaitFor
from tests.e2e.asterisk_rig import start_asterisk_rig, stop_asterisk_rig
from tests.e2e.conftest import make_settings, stop_rig
from tests.flows.rig import cdr, place, start_flow_rig

ROUTES = json.dumps([
    {"destination": "5000", "flow": "sales"},
    {"caller": r"\+44.*", "flow": "uk_support"},
])


def _answering(*names: str) -> FlowRegistry:
    """Flows that answer and end with their own name as the outcome."""
    registry = FlowRegistry()
    for name in names:
        async def answer(call, name=name):
            await call.answer()
            return f"{name}_done"
        registry.register(name)(answer)
    return registry


async def test_the_dialplan_then_the_route_table_then_the_default(tmp_path, sqlite_url):
    flows = _answering("sales", "uk_support", "fallback")
    rig = await start_flow_rig(tmp_path, sqlite_url, flows, VOXGATE_ROUTES=ROUTES, VOXGATE_DEFAULT_FLOW="fallback")
    try:
        calls = [
            await place(rig, destination="5000"),
            await place(rig, destination="1000", caller_id_number="+442071234567"),
            await place(rig, destination="5000", caller_id_number="+442071234567"),  # first match wins
            await place(rig, destination="1000"),
            await place(rig, destination="5000", flow="uk_support"),  # the dialplan's choice comes first
        ]
        records = [await cdr(rig, channel) for channel in calls]
    finally:
        await stop_rig(rig)
    assert [(r["destination"], r["flow"], r["outcome"]) for r in records] == [
        ("5000", "sales", "sales_done"),
        ("1000", "uk_support", "uk_support_done"),
        ("5000", "sales", "sales_done"),
        ("1000", "fallback", "fallback_done"),
        ("5000", "uk_support", "uk_support_done"),
    ]


@pytest.mark.parametrize("media", ["audiosocket", "websocket"])
async def test_routes_on_asterisk(tmp_path, sqlite_url, media):
    flows = _answering("sales", "uk_support", "fallback")
    rig = await start_asterisk_rig(tmp_path, sqlite_url, flows=flows, VOXGATE_ROUTES=ROUTES,
                                   VOXGATE_DEFAULT_FLOW="fallback")
    script = CallerScript([WaitFor("hangup", timeout=20)])
    try:
        routed = await rig.call(script, media=media, flow="", destination="5000")
        default = await rig.call(script, media=media, flow="", destination="1000")
        records = [await rig.finished(routed), await rig.finished(default)]
    finally:
        await stop_asterisk_rig(rig)
    assert [(r["flow"], r["outcome"]) for r in records] == [("sales", "sales_done"), ("fallback", "fallback_done")]


def test_routes_to_unregistered_flows_stop_start_up_and_refuse_a_swap(sqlite_url):
    settings = make_settings(sqlite_url, VOXGATE_ROUTES=ROUTES)
    with pytest.raises(FlowError) as error:
        Controller(settings, builtin_flows())
    assert str(error.value).splitlines() == [
        "route 1 (destination 5000 -> sales): flow 'sales' is not registered (registered: assistant, greeting)",
        r"route 2 (caller ~ \+44.* -> uk_support): flow 'uk_support' is not registered "
        "(registered: assistant, greeting)",
    ]
    flows = _answering("sales", "uk_support")
    controller = Controller(settings, flows)
    with pytest.raises(FlowError, match="flow 'uk_support' is not registered"):
        controller.use_flows(_answering("sales"))
    assert controller.flows is flows
