"""Hooks on keys and hangup (sync or async; a failing one never breaks the call) and call.state in the CDR."""

from __future__ import annotations

import asyncio
import logging

import pytest

from controller.simulator.caller import Dtmf, Hangup, Wait, WaitFor
from tests.verbs.rig import run_call


async def test_hooks_see_keys_and_the_hangup_and_a_failing_one_is_only_logged(tmp_path, sqlite_url, caplog):
    seen: list[tuple[str, str]] = []
    done = asyncio.Event()

    def broken(digit: str) -> None:
        raise RuntimeError("a bug in the flow's hook")

    async def slow(digit: str) -> None:
        await asyncio.sleep(0.05)
        seen.append(("async", digit))

    async def gone(cause: str) -> None:
        seen.append(("hangup-async", cause))
        done.set()

    async def flow(call, kept):
        call.on_dtmf(broken)
        call.on_dtmf(lambda digit: seen.append(("sync", digit)))
        call.on_dtmf(slow)
        remove = call.on_dtmf(lambda digit: seen.append(("removed", digit)))
        remove()
        call.on_hangup(lambda cause: seen.append(("hangup", cause)))
        call.on_hangup(gone)
        await call.answer()
        kept["result"] = await call.gather(max_digits=2, timeout=5)
        await asyncio.sleep(10)

    caplog.set_level(logging.ERROR, logger="controller.verbs.hooks")
    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.3), Dtmf("42"), Wait(0.5),
                                                      Hangup("USER_BUSY")])
    await asyncio.wait_for(done.wait(), 2)
    assert out.kept["result"].digits == "42"  # the failing hook took nothing from the call
    assert [s for s in seen if s[0] == "sync"] == [("sync", "4"), ("sync", "2")]
    assert [s for s in seen if s[0] == "async"] == [("async", "4"), ("async", "2")]
    assert ("hangup", "USER_BUSY") in seen and ("hangup-async", "USER_BUSY") in seen
    assert not any(kind == "removed" for kind, _ in seen)
    failures = [r for r in caplog.records if "dtmf hook" in r.getMessage()]
    assert len(failures) == 2 and "broken" in failures[0].getMessage()
    assert out.cdr["outcome"] == "abandoned" and out.cdr["hangup_cause"] == "USER_BUSY"


async def test_a_hangup_hook_added_after_the_hangup_runs_at_once(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        await call.ended.wait()
        call.on_hangup(lambda cause: kept.setdefault("cause", cause))

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.3), Hangup()], finish_after_hangup=5)
    assert out.kept["cause"] == "NORMAL_CLEARING"


@pytest.mark.parametrize("pbx", ["freeswitch", "asterisk"])
async def test_state_is_stored_in_the_calls_row(tmp_path, sqlite_url, pbx):
    async def flow(call, kept):
        await call.answer()
        call.state["customer"] = {"id": 42, "tier": "gold", "tags": ["vip", "new"]}
        call.state["menu"] = await call.gather(max_digits=1, timeout=3)
        call.state["menu"] = call.state["menu"].choice or call.state["menu"].digits
        call.state["score"] = 0.75
        await call.hangup()

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.3), Dtmf("3"), Wait(2.0)], pbx=pbx)
    assert out.cdr["state"] == {"customer": {"id": 42, "tier": "gold", "tags": ["vip", "new"]}, "menu": "3",
                                "score": 0.75}
    assert out.cdr["error"] is None and out.cdr["outcome"] == "completed" and out.cdr["pbx"] == pbx


async def test_state_json_cannot_hold_is_left_out_and_named_and_the_cdr_is_kept(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        call.state.update(ok=1, tags={"a", "b"}, ratio=float("nan"), nested={"when": object(), "fine": [1, 2]})
        call.state["self"] = call.state

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.0)])
    assert out.cdr["state"] == {"ok": 1, "nested": {"fine": [1, 2]}}
    error = out.cdr["error"]
    assert error.startswith("call.state not stored in full:")
    for part in ("state['tags']: set", "state['ratio']: nan", "state['nested']['when']: object",
                 "state['self']: refers to itself"):
        assert part in error, error
    assert out.cdr["outcome"] == "completed"
