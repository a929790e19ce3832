"""Graceful drain of a real `voxgate serve` process: SIGTERM, readiness, the listener, the deadline, the records."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.ops.serve_process import Instance, refusing

VOXGATE = Path(sys.executable).parent / "voxgate"
TOKEN = "drain-test-api-token-0123456789"
HOLD_FLOW = """
import asyncio

from controller.flows import flow


@flow
async def hold(call):
    await asyncio.sleep(float(call.info.variables["hold_s"]))
    return "held"
"""


@dataclass
class Serve(Instance):
    """One `voxgate serve` subprocess with its API: its log is read all the time (Instance)."""

    env: dict[str, str] = field(default_factory=dict)
    api_port: int = 0

    async def health(self, *args: str) -> tuple[int, str]:
        probe = await asyncio.create_subprocess_exec(
            str(VOXGATE), "health", *args, env={**self.env, "VOXGATE_API_PORT": str(self.api_port)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(probe.communicate(), 30)
        return probe.returncode, (out + err).decode()


async def _serve(tmp_path: Path, drain_s: float) -> Serve:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "drainflows.py").write_text(HOLD_FLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    env |= {"VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0", "VOXGATE_PRELOAD_ENGINES": "false",
            "VOXGATE_DATABASE_URL": f"sqlite:///{tmp_path}/drain.sqlite3", "VOXGATE_JOURNAL_DIR": str(tmp_path / "j"),
            "VOXGATE_TOKEN_SECRET": "drain-test-token-secret-0123", "VOXGATE_DEFAULT_FLOW": "hold",
            "VOXGATE_API": "true", "VOXGATE_API_PORT": "0", "VOXGATE_API_TOKEN": TOKEN,
            "VOXGATE_DRAIN_S": str(drain_s)}
    process = await asyncio.create_subprocess_exec(
        str(VOXGATE), "serve", "--flows", "drainflows", cwd=tmp_path / "src", env=env, stderr=asyncio.subprocess.PIPE)
    serve = Serve("drain", process, env=env)
    serve.start_reading()
    serve.api_port = int((await serve.wait_for(r"HTTP API on http://127\.0\.0\.1:(\d+)/")).group(1))
    serve.esl_port = int((await serve.wait_for(r"voxgate ready: outbound ESL on 127\.0\.0\.1:(\d+)")).group(1))
    return serve


async def _get(port: int, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.get(f"http://127.0.0.1:{port}/api/v1{path}") as response:
            return response.status, await response.json()


async def _until_live(serve: Serve, count: int) -> None:
    for _ in range(200):
        if len((await _get(serve.api_port, "/live-calls"))[1]["calls"]) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} live call(s)")


def _cdrs(tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(tmp_path / "drain.sqlite3") as db:
        return {uuid: (outcome, error) for uuid, outcome, error in
                db.execute("select call_uuid, outcome, error from calls")}


async def test_sigterm_refuses_new_calls_lets_the_call_in_progress_finish_and_exits(tmp_path):
    serve = await _serve(tmp_path, drain_s=60)
    async with FakeFreeSwitch("ClueCon", esl_port=None) as switch:
        try:
            code, said = await serve.health()
            assert code == 0 and said.startswith("live: 0 live call(s), up "), said
            assert (await serve.health("--ready"))[0] == 0
            status, body = await _get(serve.api_port, "/health/ready")
            assert (status, body["status"], body["live_calls"]) == (200, "ready", 0) and body["instance"]
            channel = await switch.place_call(variables={"hold_s": "10"}, outbound_socket=("127.0.0.1", serve.esl_port))
            await _until_live(serve, 1)
            sent = time.monotonic()
            serve.process.send_signal(signal.SIGTERM)
            await serve.wait_for("stopping: taking no new calls; 1 call\\(s\\) in progress get up to 60 s")
            status, body = await _get(serve.api_port, "/health/ready")
            assert (status, body["status"], body["live_calls"]) == (503, "draining", 1)
            assert (await _get(serve.api_port, "/health/live"))[0] == 200
            code, said = await serve.health("--ready")
            assert code == 1 and "answered 503" in said and TOKEN not in said
            await refusing(serve.esl_port)  # FreeSWITCH's socket app fails over to the next instance
            assert not channel.ended.is_set()  # the call in progress goes on
            await asyncio.wait_for(serve.process.wait(), 50)
        finally:
            if serve.process.returncode is None:
                serve.process.kill()
    took = time.monotonic() - sent
    assert serve.process.returncode == 0
    assert 3 < took < 45, took  # the call's remaining ~9 s (more on a loaded machine), not the 60 s deadline
    assert _cdrs(tmp_path) == {channel.uuid: ("held", None)}
    assert channel.hangup_cause == "NORMAL_CLEARING"


async def test_the_drain_deadline_ends_calls_still_going_and_records_why(tmp_path):
    serve = await _serve(tmp_path, drain_s=1)
    async with FakeFreeSwitch("ClueCon", esl_port=None) as switch:
        try:
            channels = [await switch.place_call(variables={"hold_s": "120"},
                                                outbound_socket=("127.0.0.1", serve.esl_port)) for _ in range(2)]
            await _until_live(serve, 2)
            sent = time.monotonic()
            serve.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(serve.process.wait(), 30)
        finally:
            if serve.process.returncode is None:
                serve.process.kill()
        took = time.monotonic() - sent
        for channel in channels:
            await asyncio.wait_for(channel.ended.wait(), 10)
    assert serve.process.returncode == 0
    assert took < 20, took  # 1 s of drain, then hang-ups and records; generous for a loaded machine
    why = "voxgate stopped before the call ended (drain_s passed)"
    assert _cdrs(tmp_path) == {channel.uuid: ("interrupted", why) for channel in channels}
    assert all(channel.hangup_cause == "NORMAL_CLEARING" for channel in channels)
