"""voxgate with its HTTP API on an ephemeral port, the simulated FreeSWITCH, and a real HTTP client.

`api_rig` is FreeSWITCH calling in; `dial_rig` also lets voxgate dial out through the simulator's
sofia gateway carrier_a (inbound event socket, trunks configured), whose callee answers by default.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.app import Controller
from controller.flows import FlowRegistry, builtin_flows
from controller.http_api import ApiServer
from controller.openapi import API_PREFIX
from controller.records.cdr import (
    CallRecord, DtmfRecord, EventRecord, RecordingRecord, ToolCallRecord, TransferRecord, TurnRecord,
)
from controller.records.migrate import upgrade
from controller.records.store import RecordWriter, list_calls
from controller.simulator.caller import CallerScript, WaitFor
from controller.simulator.channel import SimChannel
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.e2e.conftest import SIM_PASSWORD, make_settings

TOKEN = "api-test-token-4f9c2b7d1e8a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNTIL_HANGUP = CallerScript([WaitFor("hangup", timeout=30)])


def api_flows() -> FlowRegistry:
    """The built-in flows, plus `hold`: answers and keeps the call up until someone hangs up."""
    registry = builtin_flows()

    @registry.register("hold")
    async def hold(call) -> str:
        await call.answer()
        await call.ended.wait()
        return "held"
    return registry


@dataclass
class ApiRig:
    controller: Controller
    sim: FakeFreeSwitch
    server: ApiServer
    http: aiohttp.ClientSession
    database_url: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{API_PREFIX}"

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      **kw: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        """(status, JSON body, response) of one request, with the token unless `headers` says otherwise."""
        async with self.http.request(method, self.base + path, headers=AUTH if headers is None else headers,
                                     **kw) as response:
            return response.status, await response.json(content_type=None), response

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        status, body, _ = await self.request("GET", path, **kw)
        return status, body

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        status, body, _ = await self.request("POST", path, **kw)
        return status, body

    async def place(self, script=UNTIL_HANGUP, *, flow: str = "hold", **kw: Any) -> SimChannel:
        return await self.sim.place_call(script, variables={"voxgate_flow": flow},
                                         outbound_socket=("127.0.0.1", self.controller.outbound.port), **kw)

    async def live(self, call_uuid: str, timeout: float = 10, *, answered: bool = True) -> None:
        """Until voxgate has the call (answered by its flow, unless the PBX connected it answered) and runs its flow."""
        for _ in range(int(timeout / 0.05)):
            call = self.controller.calls.get(call_uuid)
            if call is not None and (call.info.answered_at is not None or not answered):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"call {call_uuid} never became live")

    async def stored(self, call_uuid: str, timeout: float = 20) -> dict:
        """The call's CDR once voxgate let go of it and the writer stored it."""
        for _ in range(int(timeout / 0.05)):
            if call_uuid not in self.controller.calls:
                await self.controller.writer.flush()
                rows = [r for r in list_calls(self.database_url) if r["call_uuid"] == call_uuid]
                if rows:
                    return rows[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no CDR written for call {call_uuid}")


async def start_api_rig(tmp_path: Path, database_url: str, *, sim: FakeFreeSwitch | None = None,
                        **env: str) -> ApiRig:
    upgrade(database_url)
    if sim is None:
        sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=tmp_path)
        await sim.start()
    settings = make_settings(database_url, VOXGATE_API="true", VOXGATE_API_PORT="0", VOXGATE_API_TOKEN=TOKEN,
                             **env)
    controller = Controller(settings, api_flows())
    await controller.start()
    server = ApiServer(controller, settings)
    await server.start()
    return ApiRig(controller, sim, server, aiohttp.ClientSession(), database_url)


async def stop_api_rig(rig: ApiRig) -> None:
    await rig.http.close()
    await rig.server.stop()
    await rig.sim.stop()
    await rig.controller.stop()


async def start_dial_rig(tmp_path: Path, database_url: str, **env: str) -> ApiRig:
    """Outbound calls over the inbound event socket, through the simulator's gateway carrier_a."""
    sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=tmp_path, gateways=["carrier_a"])
    await sim.start()
    rig = await start_api_rig(tmp_path, database_url, sim=sim, VOXGATE_ESL_INBOUND="true",
                              VOXGATE_ESL_PORT=str(sim.esl_port), VOXGATE_ESL_PASSWORD=SIM_PASSWORD,
                              VOXGATE_FREESWITCH_TRUNKS="carrier_a", VOXGATE_DIAL_BACKOFF_S="0", **env)
    await asyncio.wait_for(rig.controller.inbound.connected.wait(), 5)
    return rig


@pytest.fixture
async def api_rig(tmp_path, sqlite_url):
    rig = await start_api_rig(tmp_path, sqlite_url)
    yield rig
    await stop_api_rig(rig)


@pytest.fixture
async def dial_rig(tmp_path, sqlite_url):
    rig = await start_dial_rig(tmp_path, sqlite_url)
    yield rig
    await stop_api_rig(rig)


# ---------------------------------------------------------------- seeded records

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def cdr(call_uuid: str, minutes: float, *, flow: str = "greeting", outcome: str = "completed",
        pbx: str = "freeswitch", direction: str = "inbound", caller: str = "15551230001") -> CallRecord:
    started = T0 + timedelta(minutes=minutes)
    return CallRecord(pbx, call_uuid, direction, "Caller", caller, "5000", started, started + timedelta(seconds=1),
                      started + timedelta(seconds=61), 61, 60, "NORMAL_CLEARING", flow, outcome, None,
                      {"voxgate_flow": flow}, {"note": "kept"} if flow == "assistant" else None)


SEEDED = [  # oldest first; "c5" and "c6" start at the same instant (the page order breaks the tie by row)
    cdr("c1", 0), cdr("c2", 10, flow="assistant", outcome="transferred"),
    cdr("c3", 20, pbx="asterisk", caller="+441632960001"), cdr("c4", 30, direction="outbound", outcome="error"),
    cdr("c5", 40, flow="assistant"), cdr("c6", 40, flow="assistant", caller="15551230002"), cdr("c7", 50),
]


def detail_records(call_uuid: str = "c2") -> list:
    """Everything a conversation leaves besides its CDR, for call c2 (started at T0 + 10 min)."""
    at = T0 + timedelta(minutes=10, seconds=5)
    return [
        TurnRecord("freeswitch", call_uuid, 1, "agent", "Thanks. What is the card?", "Thanks.", at,
                   at + timedelta(seconds=2), interrupted=True, voice_to_voice_ms=612.5, llm_first_token_ms=210.0,
                   tts_first_audio_ms=390.0, stt_ms=180.0, barge_in_ms=140.0, engines={"llm": "grounded"}),
        TurnRecord("freeswitch", call_uuid, 0, "caller", "my card is [card]", None, at - timedelta(seconds=3), at,
                   confidence=0.93, detail={"redactions": {"card": 1}}),
        EventRecord("freeswitch", call_uuid, 1, at, "CHANNEL_ANSWER", {"Answer-State": "answered"}),
        EventRecord("freeswitch", call_uuid, 0, at - timedelta(seconds=4), "CHANNEL_CREATE", {}),
        DtmfRecord("freeswitch", call_uuid, 0, at, "x", "in", 120),
        ToolCallRecord("freeswitch", call_uuid, 1, 0, at, "lookup_order", {"order": "[phone]"}, "shipped", None, 12.5),
        TransferRecord("freeswitch", call_uuid, 0, at + timedelta(seconds=30), "1000", reason="agent"),
        RecordingRecord("freeswitch", call_uuid, 0, "/var/secret/path.vxr", at, 61.0, 2, 8000, 123456, "ab" * 32,
                        "k1"),
        TurnRecord("asterisk", call_uuid, 0, "caller", "another PBX's call of the same uuid", None, at, at),
    ]


async def seed(database_url: str, records: list) -> None:
    """Write records with voxgate's own writer, as the controller would."""
    upgrade(database_url)
    writer = RecordWriter(database_url)
    writer.start()
    for record in records:
        writer.submit(record)
    await writer.flush()
    await writer.close()
