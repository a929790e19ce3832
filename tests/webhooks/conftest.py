"""A real aiohttp receiver on localhost, the docs' verification helper, and sample payloads."""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.call import CallInfo
from controller.records import migrate
from controller.records.cdr import CallRecord

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec-test-0123456789abcdef"
URL_TOKEN = "tok-in-query-5f3a9c"  # must never reach a log line or a row


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # loop time


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, headers, body), then with `default`.

    While `hold` is clear, requests wait before being answered: a slow endpoint.
    """

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    replies: deque[tuple[int, dict[str, str], str]] = field(default_factory=deque)
    default: tuple[int, dict[str, str], str] = (204, {}, "")
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: int = 0  # requests that reached the handler, answered or not

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        body = await request.read()
        await self.hold.wait()
        self.requests.append(Received(dict(request.headers), body, asyncio.get_running_loop().time()))
        status, headers, text = self.replies.popleft() if self.replies else self.default
        return web.Response(status=status, headers=headers, text=text)


@pytest.fixture
async def make_receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    runners: list[web.AppRunner] = []
    receivers: list[Receiver] = []

    async def start(*, held: bool = False) -> Receiver:
        receiver = Receiver()
        if not held:
            receiver.hold.set()
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        receiver.url = f"http://127.0.0.1:{port}/hook?token={URL_TOKEN}"
        runners.append(runner)
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.hold.set()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(scope="session")
def docs_verify() -> Callable[[str, str, bytes], bool]:
    """verify_voxgate_signature exactly as docs/webhooks.md gives it to receivers."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    source = next(block for block in blocks if "def verify_voxgate_signature" in block)
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOCS), "exec"), namespace)  # noqa: S102 (the point: run what the docs publish)
    return namespace["verify_voxgate_signature"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty records database at the latest schema, once per supported database."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_database_url")
    migrate.upgrade(url)
    return url


def call_info(uuid: str = "6f1c2d9e-3b0a-4c57-9a8e-2f4d1b7c9e01") -> CallInfo:
    return CallInfo(uuid, "freeswitch", "inbound", "Ada Lovelace", "+442071234567", "5000", "assistant",
                    {"voxgate_flow": "assistant"}, datetime(2026, 11, 25, 9, 30, tzinfo=UTC))


def cdr(**changes: Any) -> CallRecord:
    start = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    values = dict(pbx="freeswitch", call_uuid="c-1", direction="inbound", caller_id_name="Ada",
                  caller_id_number="+442071234567", destination="5000", started_at=start,
                  answered_at=start + timedelta(seconds=2), ended_at=start + timedelta(seconds=95, microseconds=5),
                  duration_s=95, billsec=93, hangup_cause="NORMAL_CLEARING", flow="assistant", outcome="completed",
                  error=None, variables={"voxgate_flow": "assistant"}, state={"order": "A-1042"})
    return CallRecord(**{**values, **changes})


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until predicate() holds; fail the test after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
