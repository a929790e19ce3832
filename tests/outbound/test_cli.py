"""`voxgate call` end to end: its own process dials through a simulated FreeSWITCH started here."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from controller.records.store import list_attempts, list_calls
from controller.simulator.callee import Answer, Busy
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.e2e.conftest import SIM_PASSWORD
from tests.outbound.conftest import FLOWS, NUMBER, TRUNKS, confirming

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def switch(tmp_path):
    switch = FakeFreeSwitch(SIM_PASSWORD, tmp_dir=tmp_path, gateways=TRUNKS)
    await switch.start()
    yield switch
    await switch.stop()


async def voxgate_call(switch: FakeFreeSwitch, database_url: str, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    env.update(VOXGATE_ESL_INBOUND="true", VOXGATE_ESL_PORT=str(switch.esl_port), VOXGATE_ESL_PASSWORD=SIM_PASSWORD,
               VOXGATE_FREESWITCH_TRUNKS=",".join(TRUNKS), VOXGATE_DATABASE_URL=database_url,
               VOXGATE_JOURNAL_DIR=str(tmp_path / "journal"), VOXGATE_ESL_OUTBOUND_PORT="0", VOXGATE_WS_PORT="0",
               VOXGATE_PRELOAD_ENGINES="false", VOXGATE_TOKEN_SECRET="cli-test-token-secret-0123456789")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli", "call", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        raise
    return process.returncode, out.decode(), err.decode()


async def test_voxgate_call_dials_runs_the_flow_and_reports_every_try(switch, sqlite_url, tmp_path):
    switch.callees.script(Busy(), trunk="carrier_a")
    switch.callees.script(Answer(confirming()), trunk="carrier_b")
    code, out, err = await voxgate_call(switch, sqlite_url, tmp_path, NUMBER, "--flow", "reminder", "--flows", FLOWS,
                                        "--var", "patient=Ada Lovelace", "--caller-id", "+12025550100",
                                        "--retries", "0")
    assert code == 0, (out, err)
    lines = out.splitlines()
    request_id = lines[0].split()[1].rstrip(":")
    assert lines[0] == f"request {request_id}: {NUMBER} over freeswitch, flow reminder"
    assert lines[1].split() == ["try", "1", "carrier_a", "busy", "USER_BUSY", *lines[1].split()[5:7]]
    assert lines[2].split()[:5] == ["try", "2", "carrier_b", "answered", "SUCCESS"]
    call_uuid = lines[2].split()[-1]
    assert lines[-2] == f"call {call_uuid} ended: NORMAL_CLEARING" and lines[-1] == "outcome: answered"
    assert [(r["trunk"], r["outcome"]) for r in list_attempts(sqlite_url, request_id)] == [
        ("carrier_a", "busy"), ("carrier_b", "answered")]
    cdr = next(r for r in list_calls(sqlite_url) if r["call_uuid"] == call_uuid)
    assert cdr["direction"] == "outbound" and cdr["outcome"] == "confirmed"
    assert cdr["variables"]["patient"] == "Ada Lovelace" and cdr["caller_id_number"] == "+12025550100"


async def test_voxgate_call_exits_non_zero_when_nobody_answers(switch, sqlite_url, tmp_path):
    switch.callees.script(Busy())
    code, out, err = await voxgate_call(switch, sqlite_url, tmp_path, NUMBER, "--flow", "greeting",
                                        "--trunk", "carrier_b", "--retries", "1", "--backoff", "0.1")
    assert code == 1, (out, err)
    assert [line.split()[:4] for line in out.splitlines()[1:3]] == [["try", "1", "carrier_b", "busy"],
                                                                   ["try", "2", "carrier_b", "busy"]]
    assert out.splitlines()[-1] == "outcome: busy"


async def test_voxgate_call_refuses_a_bad_number_before_dialling(switch, sqlite_url, tmp_path):
    code, out, err = await voxgate_call(switch, sqlite_url, tmp_path, "555-0123", "--flow", "greeting")
    assert code == 2 and "not in international form" in err and out == ""
    code, _, err = await voxgate_call(switch, sqlite_url, tmp_path, NUMBER, "--flow", "greeting", "--var", "x")
    assert code == 2 and "expected NAME=VALUE" in err
    assert switch.callees.dialled == []
