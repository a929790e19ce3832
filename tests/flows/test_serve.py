"""`voxgate serve --flows ... --reload` as a developer runs it: the console script, from the project directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from controller.cli import _flow_modules
from tests.flows.conftest import rewrite

SALES = """
from controller.flows import flow


@flow
async def sales(call):
    return "{outcome}"
"""
SUPPORT = """
from controller.flows import flow


@flow("support", finish_after_hangup=15)
async def support_line(call):
    return None
"""
VOXGATE = Path(sys.executable).parent / "voxgate"


def _env(tmp_path: Path, routes: list[dict]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    return {**env, "VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0", "VOXGATE_PRELOAD_ENGINES": "false",
            "VOXGATE_DATABASE_URL": f"sqlite:///{tmp_path}/serve.sqlite3", "VOXGATE_JOURNAL_DIR": str(tmp_path / "j"),
            "VOXGATE_TOKEN_SECRET": "serve-test-token-secret-0123", "VOXGATE_ROUTES": json.dumps(routes)}


async def _line_with(stream: asyncio.StreamReader, text: str, seen: list[str], timeout: float = 60) -> None:
    async def read() -> None:
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"voxgate serve ended before logging {text!r}:\n{''.join(seen)}")
            seen.append(line)
            if text in line:
                return
    await asyncio.wait_for(read(), timeout)


def test_flows_may_repeat_and_be_comma_lists():
    assert _flow_modules(None) == []
    assert _flow_modules(["a.flows", "b.one, b.two", ""]) == ["a.flows", "b.one", "b.two"]


async def test_serve_lists_flows_and_routes_and_reloads_an_edit(tmp_path, write_package):
    name = write_package({"__init__.py": "", "sales.py": SALES.format(outcome="v1"), "support.py": SUPPORT})
    routes = [{"destination": "5000", "flow": "sales"}, {"caller": r"\+44.*", "flow": "support"}]
    process = await asyncio.create_subprocess_exec(
        str(VOXGATE), "serve", "--flows", f"{name}.sales", "--flows", f"{name}.support,{name}.sales", "--reload",
        cwd=tmp_path / "src", env=_env(tmp_path, routes), stderr=asyncio.subprocess.PIPE)
    seen: list[str] = []
    try:
        await _line_with(process.stderr, "voxgate ready", seen)
        rewrite(tmp_path / "src" / name / "sales.py", SALES.format(outcome="v2"))
        await _line_with(process.stderr, "flows reloaded: assistant, greeting, sales, support", seen, timeout=20)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
    log = "".join(seen)
    assert process.returncode == 0
    assert f"flow sales: {name}.sales.sales\n" in log
    assert f"flow support: {name}.support.support_line (finishes up to 15 s after the caller hangs up)" in log
    assert "flow greeting: controller.flows.greeting.greeting" in log
    assert "route 1: destination 5000 -> sales\n" in log and r"route 2: caller ~ \+44.* -> support" in log
    assert "otherwise: greeting (default_flow), unless the dialplan sets voxgate_flow" in log
    assert f"{name}/sales.py changed; re-importing" in log


async def test_serve_refuses_routes_to_flows_that_do_not_exist(tmp_path, write_package):
    name = write_package({"__init__.py": "", "sales.py": SALES.format(outcome="v1")})
    process = await asyncio.create_subprocess_exec(
        str(VOXGATE), "serve", "--flows", name, cwd=tmp_path / "src",
        env=_env(tmp_path, [{"destination": "5000", "flow": "sale"}]), stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert ("the route table names flows that are not registered:\nroute 1 (destination 5000 -> sale): flow 'sale' "
            "is not registered (registered: assistant, greeting, sales)") in err.decode()


async def test_serve_stops_on_a_broken_flow_module(tmp_path, write_package):
    name = write_package({"__init__.py": "", "sales.py": SALES.format(outcome="v1").replace("async def", "def")})
    process = await asyncio.create_subprocess_exec(
        str(VOXGATE), "serve", "--flows", name, cwd=tmp_path / "src", env=_env(tmp_path, []),
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert f"voxgate: flow 'sales' ({name}.sales.sales at " in err.decode() and "must be an `async def`" in err.decode()
