"""The dashboard on voxgate's HTTP API server, with the simulated FreeSWITCH (the API tests' rig).

`board` is that rig plus an `agent` flow on fixed-latency engines (real Silero VAD, real speech from
the caller), so that a simulated call leaves real turns with real per-turn latencies. `history` writes
earlier days' calls with voxgate's own record writer, for the daily figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from controller.agent.conversation import AgentConfig, Engines
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.app import Controller
from controller.audio import read_wav
from controller.dashboard import COOKIE, Sessions
from controller.flows import FlowRegistry
from controller.http_api import ApiServer
from controller.records.cdr import CallRecord, TurnRecord
from controller.records.migrate import upgrade
from controller.simulator.caller import CallerScript, Hangup, Listen, Say, Wait, WaitFor
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.api.conftest import TOKEN, ApiRig, api_flows, seed, stop_api_rig
from tests.e2e.conftest import SIM_PASSWORD, make_settings

SPEECH = Path(__file__).parents[1] / "fixtures" / "speech" / "flite" / "8k"
GREETING = "Hello, this is Acme support."
HEARD = "I would like to check on my parcel"  # what the fixed STT "hears"
REPLY = "Your parcel left our warehouse this morning."
AGENT_CALLER = "15551239876"
FINISHED = CallerScript([WaitFor("answer"), Wait(0.2), Hangup()])
AGENT_CALL = CallerScript([WaitFor("answer"), Listen(0.4), Say(read_wav(SPEECH / "u01.wav")), Listen(0.5, timeout=10),
                           Hangup()])


@dataclass
class Board(ApiRig):
    """The API rig, seen from the dashboard's side."""

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/dashboard"

    async def sign_in(self) -> str:
        """Sign in through the form; the session cookie's value."""
        async with self.http.post(self.root + "/login", data={"token": TOKEN}, allow_redirects=False) as response:
            assert response.status == 303, await response.text()
            return response.cookies[COOKIE].value

    async def data(self, path: str, cookie: str | None) -> tuple[int, dict]:
        """GET /dashboard/data/<path> with only the given session cookie (the client's own jar is not used)."""
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            async with session.get(f"{self.root}/data/{path}", headers=headers) as response:
                return response.status, await response.json()


def dashboard_flows() -> FlowRegistry:
    """The API tests' flows (`hold` keeps a call up) plus `agent`: a voice agent with a greeting."""
    registry = api_flows()

    @registry.register("agent")
    async def agent(call) -> str:
        await call.answer()
        result = await call.agent(AgentConfig(system_prompt="dashboard test", greeting=GREETING))
        if result.reason != "caller_hangup":
            await call.hangup()
        return result.reason
    return registry


def fixed_engines() -> Engines:
    return Engines(stt=FixedStt(HEARD), llm=FixedLlm(REPLY),
                   tts=FixedTts(ms_per_char=25), vad=SileroVad())


async def start_board(tmp_path: Path, database_url: str) -> Board:
    upgrade(database_url)
    sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=tmp_path)
    await sim.start()
    settings = make_settings(database_url, VOXGATE_API="true", VOXGATE_API_PORT="0", VOXGATE_API_TOKEN=TOKEN)
    controller = Controller(settings, dashboard_flows(), engines=fixed_engines())
    await controller.start()
    server = ApiServer(controller, settings)
    await server.start()
    return Board(controller, sim, server, aiohttp.ClientSession(), database_url)


@pytest.fixture
async def board(tmp_path, sqlite_url):
    rig = await start_board(tmp_path, sqlite_url)
    yield rig
    await stop_api_rig(rig)


@pytest.fixture(params=["sqlite", "postgresql"])
async def board_on_each_database(request, tmp_path):
    """The rig on SQLite, then on the tests' private PostgreSQL: the figures' SQL runs on both."""
    rig = await start_board(tmp_path, request.getfixturevalue("sqlite_url" if request.param == "sqlite"
                                                              else "pg_database_url"))
    yield rig
    await stop_api_rig(rig)


def expired_cookie() -> str:
    sessions = Sessions.for_token(TOKEN)
    return sessions.issue(time.time() - sessions.ttl_s - 1)


# ---------------------------------------------------------------- earlier days, written as voxgate writes them

DAY_START = timedelta(hours=10)


def past_call(call_uuid: str, days_ago: int, minute: int, *, flow: str = "agent", outcome: str = "end_call",
              answered: bool = True, caller: str = "15551230100") -> CallRecord:
    started = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_ago) \
        + DAY_START + timedelta(minutes=minute)
    return CallRecord("freeswitch", call_uuid, "inbound", "Past Caller", caller, "5000", started,
                      started + timedelta(seconds=2) if answered else None, started + timedelta(seconds=62), 62,
                      60 if answered else 0, "NORMAL_CLEARING" if answered else "NO_ANSWER", flow, outcome, None, {})


def past_reply(call_uuid: str, seq: int, v2v_ms: float, *, days_ago: int, minute: int,
               interrupted: bool = False) -> TurnRecord:
    at = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days_ago) \
        + DAY_START + timedelta(minutes=minute, seconds=10 + seq)
    return TurnRecord("freeswitch", call_uuid, seq, "agent", "An earlier reply.", "An earlier reply.", at,
                      at + timedelta(seconds=1), interrupted=interrupted, stt_ms=v2v_ms * 0.3,
                      llm_first_token_ms=v2v_ms * 0.6, tts_first_audio_ms=v2v_ms * 0.9, voice_to_voice_ms=v2v_ms,
                      barge_in_ms=150.0 if interrupted else None)


# Two days ago: three calls over two flows (one transferred, one unanswered), replies pooled across flows;
# five days ago: one call. Figures the tests expect are worked out by hand next to the data.
HISTORY = [
    past_call("h1", 2, 0), past_call("h2", 2, 10, flow="sales", outcome="transferred"),
    past_call("h3", 2, 20, answered=False, outcome="caller_hangup"), past_call("h4", 5, 0),
    past_reply("h1", 1, 400.0, days_ago=2, minute=0), past_reply("h1", 3, 600.0, days_ago=2, minute=0),
    past_reply("h2", 1, 500.0, days_ago=2, minute=10, interrupted=True),
    past_reply("h4", 1, 700.0, days_ago=5, minute=0),
]


async def write_history(database_url: str) -> None:
    await seed(database_url, HISTORY)
