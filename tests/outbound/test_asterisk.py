"""Dialling out over Asterisk: AMI Originate into the outbound context, the dialplan's announcement and
AudioSocket media as for an incoming call, OriginateResponse reasons read as outcomes."""

from __future__ import annotations

import asyncio

import pytest

from controller.dialer import OutboundCall
from controller.flows import load_flows
from controller.simulator.callee import Answer, Busy, Fail, NoAnswer
from tests.e2e.asterisk_rig import start_asterisk_rig, stop_asterisk_rig
from tests.outbound.conftest import FLOWS, NUMBER, TRUNKS, OutboundRig, confirming


@pytest.fixture
async def rig(tmp_path, sqlite_url):
    asterisk = await start_asterisk_rig(
        tmp_path, sqlite_url, flows=load_flows(FLOWS), VOXGATE_ASTERISK_TRUNKS=",".join(TRUNKS),
        VOXGATE_ASTERISK_OUTBOUND_CONTEXT="voxgate",  # the fake runs voxgate's contract steps in this context
        VOXGATE_CALLER_ID_NUMBER="+12025550100", VOXGATE_DIAL_RETRIES="0")
    yield OutboundRig(asterisk.controller, asterisk.pbx, sqlite_url)
    await stop_asterisk_rig(asterisk)


async def test_answered_call_runs_its_flow_as_an_outbound_call(rig):
    rig.pbx.callees.script(Answer(confirming()), trunk="carrier_a")
    result = await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder", caller_id_name="Clinic",
                                                           variables={"patient": "Ada"}, request_id="ast-1"))
    assert result.answered, result.attempts
    await asyncio.wait_for(result.finished(), 30)

    callee = next(c for c in rig.pbx.calls if c.uniqueid == result.call_uuid)
    assert callee.name.startswith(f"PJSIP/{NUMBER}@carrier_a")
    assert (callee.caller_id_number, callee.caller_id_name) == ("+12025550100", "Clinic")
    assert callee.dtmf_received == ["1"]
    cdr = await rig.cdr(result.call_uuid)
    assert cdr["pbx"] == "asterisk" and cdr["direction"] == "outbound" and cdr["outcome"] == "confirmed"
    assert cdr["destination"] == NUMBER and cdr["caller_id_number"] == "+12025550100"
    assert cdr["variables"]["voxgate_request_id"] == "ast-1" and cdr["variables"]["patient"] == "Ada"
    assert cdr["variables"]["confirmed"] == "yes"
    rows = await rig.attempts("ast-1")
    assert [(r["attempt"], r["trunk"], r["outcome"], r["cause"], r["call_uuid"]) for r in rows] == [
        (1, "carrier_a", "answered", "Reason 4 (answered)", result.call_uuid)]


async def test_a_busy_trunk_moves_on_to_the_next(rig):
    rig.pbx.callees.script(Busy(ring_s=0.2), trunk="carrier_a")
    rig.pbx.callees.script(Answer(confirming()), trunk="carrier_b")
    result = await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder"))
    await asyncio.wait_for(result.finished(), 30)
    assert [(a.trunk, a.outcome, a.cause) for a in result.attempts] == [
        ("carrier_a", "busy", "Reason 5 (busy)"), ("carrier_b", "answered", "Reason 4 (answered)")]
    rows = await rig.attempts(result.request_id)
    assert [(r["trunk"], r["outcome"], r["call_uuid"]) for r in rows] == [
        ("carrier_a", "busy", None), ("carrier_b", "answered", result.call_uuid)]
    cdr = await rig.cdr(result.call_uuid)
    assert cdr["direction"] == "outbound" and cdr["variables"]["voxgate_trunk"] == "carrier_b"


async def test_no_answer_within_the_ring_timeout(rig):
    rig.pbx.callees.script(NoAnswer())
    result = await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder", trunks=("carrier_a",), retries=1,
                                                           backoff_s=0.05, ring_timeout_s=1))
    assert [(a.outcome, a.cause) for a in result.attempts] == [("no_answer", "Reason 3 (no_answer)")] * 2
    assert result.outcome == "no_answer" and not rig.controller.calls
    assert all(0.9 <= (a.ended_at - a.started_at).total_seconds() < 3 for a in result.attempts)


async def test_the_simulated_asterisk_reports_how_an_originate_failed(rig):
    """OriginateResponse Failure with the Reason of the last control frame, no channel left (Uniqueid <unknown>)."""
    ami = rig.controller.asterisk.ami
    for callee, reason, result in ((Busy(), 5, "busy"), (Fail("CALL_REJECTED"), 1, "hangup"),
                                   (Fail("NORMAL_CIRCUIT_CONGESTION"), 8, "congestion"),
                                   (Fail("NORMAL_TEMPORARY_FAILURE"), 0, "failed")):
        rig.pbx.callees.script(callee, trunk="carrier_a")
        outcome = await ami.originate(f"PJSIP/{NUMBER}@carrier_a", context="voxgate", exten=NUMBER,
                                      channel_id="x-1", timeout=5)
        assert (outcome.answered, outcome.reason, outcome.result, outcome.uniqueid, outcome.channel) == (
            False, reason, result, None, f"PJSIP/{NUMBER}@carrier_a")
    assert not rig.controller.calls and [d.trunk for d in rig.pbx.callees.dialled] == ["carrier_a"] * 4
