"""docs/flows.md stays honest: its first flow is loaded and called, its testing example is run."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from controller.simulator.caller import Dtmf, Wait, WaitFor
from tests.examples.test_ivr_menu import keys_only
from tests.examples.conftest import place

DOC = Path(__file__).parents[2] / "docs" / "flows.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


async def test_the_first_flow_of_the_tutorial_runs(tmp_path, sqlite_url, monkeypatch):
    (tmp_path / "myflows.py").write_text(python_blocks()[0], encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "myflows", raising=False)
    placed = await place(tmp_path, sqlite_url, "myflows", "hello",
                         [WaitFor("answer"), Wait(0.5), Dtmf("1"), WaitFor("hangup", timeout=20)], keys_only())
    assert placed.cdr["outcome"] == "news" and placed.cdr["state"] == {"wanted_news": True}


async def test_the_tutorial_testing_example_passes(tmp_path, sqlite_url):
    code = next(block for block in python_blocks() if "async def test_" in block)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
    await namespace["test_one_key_to_sales"](tmp_path, sqlite_url)
