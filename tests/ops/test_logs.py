"""Every log line names its call, in the tasks the call spawns too; JSON lines parse."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from controller.logs import configure, current_call


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_json_lines_carry_the_call_uuid_into_child_tasks(restore_logging):
    out = io.StringIO()
    configure("INFO", "json", stream=out)
    log = logging.getLogger("voxgate.test")

    async def call(uuid: str) -> None:
        current_call.set(uuid)
        log.info("flow started")
        await asyncio.create_task(asyncio.sleep(0))  # a task the call spawns
        await asyncio.gather(asyncio.create_task(_engine(log)))

    await asyncio.gather(call("call-a"), call("call-b"))
    log.info("between calls", extra={"port": 8084})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_call = {(line["call_uuid"], line["message"]) for line in lines}
    assert {("call-a", "flow started"), ("call-a", "engine ran"), ("call-b", "engine ran")} <= by_call
    assert lines[-2]["call_uuid"] == "-" and lines[-2]["port"] == 8084
    assert lines[-1]["level"] == "ERROR" and "ValueError: boom" in lines[-1]["exception"]


async def _engine(log: logging.Logger) -> None:
    log.info("engine ran")


def test_text_lines_name_the_call(restore_logging):
    out = io.StringIO()
    configure("DEBUG", "text", stream=out)
    token = current_call.set("call-c")
    try:
        logging.getLogger("voxgate.test").debug("hello")
    finally:
        current_call.reset(token)
    assert "[call-c] hello" in out.getvalue()
