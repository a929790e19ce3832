"""--reload: edited flow files (real files in tmp_path) take effect for new calls; broken edits change nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from controller.app import Controller
from controller.flow_reload import FlowReloader
from controller.flows import FlowRegistry
from tests.e2e.conftest import make_settings, stop_rig
from tests.flows.conftest import rewrite
from tests.flows.rig import cdr, place, start_flow_rig

DEV = """
import asyncio

from controller.flows import flow


@flow
async def dev(call):
    await call.answer()
    await asyncio.sleep(0.6)
    return "{version}"
"""


async def _until(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_an_edit_reaches_new_calls_while_calls_in_progress_keep_their_flow(
        tmp_path, sqlite_url, write_package, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE: .pyc files count
    name = write_package({"__init__.py": "", "dev.py": DEV.format(version="v1")})
    reloader = FlowReloader([name], interval_s=0.1)
    rig = await start_flow_rig(tmp_path, sqlite_url, reloader.load())
    reloader.start(rig.controller.use_flows)
    try:
        old = rig.controller.flows
        during = await place(rig, flow="dev")
        await _until(lambda: during.answered)
        rewrite(tmp_path / "src" / name / "dev.py", DEV.format(version="v2"))  # same size, same second
        await _until(lambda: rig.controller.flows is not old)
        after = await place(rig, flow="dev")
        records = [await cdr(rig, during), await cdr(rig, after)]
    finally:
        await reloader.stop()
        await stop_rig(rig)
    assert [r["outcome"] for r in records] == ["v1", "v2"]
    assert rig.controller.flows.names == ["assistant", "dev", "greeting"]


async def test_a_broken_edit_keeps_the_flows_loaded_before(tmp_path, write_package, caplog):
    name = write_package({"__init__.py": "", "dev.py": DEV.format(version="v1")})
    dev = tmp_path / "src" / name / "dev.py"
    reloader = FlowReloader([name])
    applied: list[FlowRegistry] = [reloader.load()]
    assert not await reloader.check(applied.append)  # nothing changed

    rewrite(dev, DEV.format(version="v2") + "\ndef broken(:\n")
    with caplog.at_level(logging.ERROR, logger="controller.flow_reload"):
        assert not await reloader.check(applied.append)
    [failure] = [r for r in caplog.records if r.name == "controller.flow_reload"]
    assert f"reloading {name} failed" in failure.getMessage() and failure.exc_info[0] is SyntaxError
    assert len(applied) == 1
    assert sys.modules[f"{name}.dev"].dev is applied[0].get("dev").fn  # the old modules are back in place

    rewrite(dev, DEV.format(version="v3"))
    assert await reloader.check(applied.append)
    assert len(applied) == 2 and applied[1].get("dev").fn is not applied[0].get("dev").fn
    assert applied[1].get("dev").fn.__code__.co_consts.count("v3") == 1

    (tmp_path / "src" / name / "extra.py").write_text(DEV.replace("def dev", "def extra"))  # a new file counts
    assert await reloader.check(applied.append)
    assert applied[2].names == ["assistant", "dev", "extra", "greeting"]
    dev.unlink()  # a file removed from the package takes its flows with it
    assert await reloader.check(applied.append)
    assert applied[3].names == ["assistant", "extra", "greeting"]


async def test_a_reload_that_drops_a_routed_flow_is_refused(tmp_path, sqlite_url, write_package, caplog):
    name = write_package({"__init__.py": "", "dev.py": DEV.format(version="v1")})
    reloader = FlowReloader([name])
    settings = make_settings(sqlite_url, VOXGATE_ROUTES=json.dumps([{"destination": "7000", "flow": "dev"}]))
    controller = Controller(settings, reloader.load())
    before = controller.flows
    rewrite(tmp_path / "src" / name / "dev.py", DEV.replace("def dev", "def renamed").format(version="v2"))
    with caplog.at_level(logging.ERROR, logger="controller.flow_reload"):
        assert not await reloader.check(controller.use_flows)
    assert controller.flows is before
    assert "flow 'dev' is not registered" in caplog.text
