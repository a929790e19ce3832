"""Scale-out: two real `voxgate serve` processes share one PostgreSQL; the simulated FreeSWITCH spreads calls.

Each caller plays its own tone; the flow (run by whichever instance took the call) measures the
loudest frequency of the audio its fork brought and notes its instance in call.state, so the shared
calls table shows which instance ran each call and whether that call's own audio reached it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from controller.audio import Pcm, tone
from controller.audiofork.protocol import SUBPROTOCOL
from controller.simulator.caller import Say, WaitFor
from controller.simulator.distributor import Distributor, SocketTarget
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.ops.serve_process import Instance, refusing

VOXGATE = Path(sys.executable).parent / "voxgate"
SECRET = "scale-out-shared-token-secret-0123"  # shared on purpose: the instance claim keeps them apart
FLOW = '''
import os

import numpy as np

from controller.flows import flow


@flow
async def fingerprint(call):
    """Note which instance heard this caller, and the loudest frequency of what it heard."""
    await call.answer()
    heard = await call.record(max_s=float(call.info.variables["listen_s"]), silence_s=None, beep=False,
                              terminators="")
    samples = np.frombuffer(heard.pcm, "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    call.state["instance"] = os.environ["VOXGATE_INSTANCE_ID"]
    call.state["tone_hz"] = round(float(np.argmax(spectrum)) * heard.sample_rate / len(samples))
    call.state["heard_s"] = round(heard.duration, 2)
    return "fingerprinted"
'''


def _env(tmp_path: Path, database_url: str, name: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXGATE_")}
    return env | {"VOXGATE_DATABASE_URL": database_url, "VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0",
                  "VOXGATE_PRELOAD_ENGINES": "false", "VOXGATE_TOKEN_SECRET": SECRET,
                  "VOXGATE_DEFAULT_FLOW": "fingerprint", "VOXGATE_INSTANCE_ID": name or "migrations",
                  "VOXGATE_JOURNAL_DIR": str(tmp_path / f"journal-{name}")}  # each instance journals to its own disk


async def _start_two(tmp_path: Path, database_url: str) -> tuple[Instance, Instance]:
    """Migrate the shared database once, then start vg-a and vg-b side by side."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "scaleflows.py").write_text(FLOW)
    migrate = await asyncio.create_subprocess_exec(str(VOXGATE), "db", "upgrade", env=_env(tmp_path, database_url),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    said, _ = await asyncio.wait_for(migrate.communicate(), 60)
    assert migrate.returncode == 0, said.decode()
    instances = []
    for name in ("vg-a", "vg-b"):
        process = await asyncio.create_subprocess_exec(
            str(VOXGATE), "serve", "--flows", "scaleflows", cwd=src, env=_env(tmp_path, database_url, name),
            stderr=asyncio.subprocess.PIPE)
        instance = Instance(name, process)
        instance.start_reading()
        instances.append(instance)
    for instance in instances:
        ready = await instance.wait_for(r"voxgate ready: outbound ESL on 127\.0\.0\.1:(\d+), audio fork on "
                                        r"127\.0\.0\.1:(\d+)")
        instance.esl_port, instance.ws_port = int(ready.group(1)), int(ready.group(2))
    return instances[0], instances[1]


def _call(switch: FakeFreeSwitch, order: list[SocketTarget], caller: str, hz: int, listen_s: float):
    """A caller who, once answered, plays a tone of its own; its dialplan lists every instance in `order`."""
    first, *rest = [(t.host, t.port) for t in order]
    script = [WaitFor("answer"), Say(Pcm(tone(hz, int((listen_s + 2) * 1000), 8000), 8000))]
    return switch.place_call(script, caller_id_number=caller, variables={"listen_s": str(listen_s)},
                             outbound_socket=first, failover=rest)


def _cdrs(database_url: str) -> list[dict]:
    """Every CDR in the shared database (blocking: run it in a thread)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(text(
                "select call_uuid, flow, outcome, error, state, instance from calls order by call_uuid"))]
    finally:
        engine.dispose()


async def _wait_ended(channels, timeout: float = 30) -> None:
    await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in channels)), timeout)


async def _forking(channel, timeout: float = 15) -> str:
    """The fork URL voxgate gave the call, once its audio fork is connected."""
    async def poll() -> str:
        while (bug := channel.bugs.get("audio_fork")) is None or bug.state != "connected":
            await asyncio.sleep(0.02)
        return bug.args.url
    return await asyncio.wait_for(poll(), timeout)


async def test_two_instances_split_the_calls_and_record_them_together(tmp_path, pg_database_url):
    a, b = await _start_two(tmp_path, pg_database_url)
    instance_of = {a.target: a.name, b.target: b.name}
    try:
        async with FakeFreeSwitch("ClueCon", esl_port=None) as switch:
            spread = Distributor([a.target, b.target], "round-robin")
            calls = {}
            for n in range(10):
                hz = 350 + 120 * n
                order = spread.order(f"1555010{n:04d}")
                channel = await _call(switch, order, f"1555010{n:04d}", hz, listen_s=1.0)
                calls[channel.uuid] = (channel, order[0], hz)
            await _wait_ended([channel for channel, _, _ in calls.values()])
            taken = dict(switch.socket_targets)
    finally:
        codes = [await a.stop(), await b.stop()]
    assert codes == [0, 0], "".join(a.log + b.log)

    # round-robin: every other call to each instance, each taken by the instance its dialplan tried first
    assert {uuid: taken[uuid] for uuid in calls} == {uuid: (t.host, t.port) for uuid, (_, t, _) in calls.items()}
    assert sorted(instance_of[first] for _, first, _ in calls.values()) == ["vg-a"] * 5 + ["vg-b"] * 5
    cdrs = await asyncio.to_thread(_cdrs, pg_database_url)
    assert sorted(row["call_uuid"] for row in cdrs) == sorted(calls)  # exactly one CDR per call, in the one database
    for row in cdrs:
        channel, first, hz = calls[row["call_uuid"]]
        assert (row["flow"], row["outcome"], row["error"]) == ("fingerprint", "fingerprinted", None), row
        assert row["state"]["instance"] == instance_of[first], row  # ran on the instance its socket reached
        assert row["instance"] == instance_of[first], row  # and its CDR says so
        assert abs(row["state"]["tone_hz"] - hz) <= 5, (row, hz)  # and heard its own caller, no one else
        assert row["state"]["heard_s"] >= 0.9, row
        assert channel.hangup_cause == "NORMAL_CLEARING"
    for instance in (a, b):
        assert "refused" not in "".join(instance.log)  # no audio fork went to the wrong instance


async def test_a_draining_instance_finishes_its_call_while_new_calls_fail_over(tmp_path, pg_database_url):
    a, b = await _start_two(tmp_path, pg_database_url)
    try:
        async with FakeFreeSwitch("ClueCon", esl_port=None) as switch:
            held = await _call(switch, [b.target, a.target], "15550200001", 300, listen_s=5.0)
            url = urlsplit(await _forking(held))
            assert url.port == b.ws_port  # the fork goes to the instance that controls the call

            # the same URL sent to the other instance (same secret) is refused, and says why
            misrouted = urlunsplit(url._replace(netloc=f"127.0.0.1:{a.ws_port}"))
            with pytest.raises(InvalidStatus) as refused:
                async with connect(misrouted, subprotocols=[SUBPROTOCOL]):
                    pass
            assert (refused.value.response.status_code, refused.value.response.body) == (403, b"token wrong-instance\n")
            await a.wait_for(rf"refused: token wrong-instance \(call {held.uuid}: .*minted by 'vg-b', this is 'vg-a'")

            b.process.send_signal(signal.SIGTERM)  # drain: b closes its ESL listener, its call goes on
            await refusing(b.esl_port)
            spread = Distributor([a.target, b.target], "round-robin")
            orders = [spread.order(f"1555020{n:04d}") for n in range(2, 8)]
            assert [order[0] for order in orders].count(b.target) == 3  # half of them try b first
            calls = {}
            for n, order in enumerate(orders, start=2):
                channel = await _call(switch, order, f"1555020{n:04d}", 400 + 150 * n, listen_s=0.8)
                calls[channel.uuid] = (channel, 400 + 150 * n)
            await _wait_ended([held, *(channel for channel, _ in calls.values())])
            assert held.hangup_cause == "NORMAL_CLEARING"
            taken = dict(switch.socket_targets)
        assert await asyncio.wait_for(b.process.wait(), 30) == 0
    finally:
        codes = [await a.stop(), await b.stop()]
    assert codes == [0, 0], "".join(a.log + b.log)

    assert taken == {held.uuid: (b.target.host, b.target.port),
                     **{uuid: (a.target.host, a.target.port) for uuid in calls}}
    cdrs = {row["call_uuid"]: row for row in await asyncio.to_thread(_cdrs, pg_database_url)}
    assert sorted(cdrs) == sorted([held.uuid, *calls])
    assert cdrs[held.uuid]["state"]["instance"] == "vg-b" and cdrs[held.uuid]["outcome"] == "fingerprinted"
    assert abs(cdrs[held.uuid]["state"]["tone_hz"] - 300) <= 5 and cdrs[held.uuid]["state"]["heard_s"] >= 4.5
    for uuid, (channel, hz) in calls.items():
        row = cdrs[uuid]
        assert (row["outcome"], row["state"]["instance"]) == ("fingerprinted", "vg-a"), row
        assert abs(row["state"]["tone_hz"] - hz) <= 5 and channel.hangup_cause == "NORMAL_CLEARING", row


def _events(database_url: str, call_uuid: str) -> list[tuple[int, str]]:
    """(seq, type) of one call's stored events, in order (blocking: run it in a thread)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as db:
            return [tuple(row) for row in db.execute(text(
                "select seq, type from call_events where call_uuid = :uuid order by seq"), {"uuid": call_uuid})]
    finally:
        engine.dispose()


async def test_a_call_survives_its_instance_dying_mid_call(tmp_path, pg_database_url):
    a, b = await _start_two(tmp_path, pg_database_url)
    try:
        async with FakeFreeSwitch("ClueCon", esl_port=None) as switch:
            channel = await _call(switch, [a.target, b.target], "15550300001", 440, listen_s=4.0)
            assert urlsplit(await _forking(channel)).port == a.ws_port
            await asyncio.sleep(0.5)  # vg-a's flow is listening
            a.process.kill()  # no drain, no goodbye: the socket and the fork's WebSocket just drop

            # FreeSWITCH's next socket action hands the live caller to vg-b, which takes the call over
            await b.wait_for(rf"call {channel.uuid}: taken over as session 1")
            await b.wait_for(rf"call {channel.uuid}: stopped the audio fork an earlier session left")
            assert urlsplit(await _forking(channel)).port == b.ws_port
            await _wait_ended([channel])
            assert channel.hangup_cause == "NORMAL_CLEARING"
            assert switch.socket_targets[channel.uuid] == (b.target.host, b.target.port)
            assert channel.variables["voxgate_session"] == "1"
    finally:
        codes = [await a.stop(), await b.stop()]
    assert codes == [-signal.SIGKILL, 0], "".join(a.log + b.log)

    [row] = await asyncio.to_thread(_cdrs, pg_database_url)  # one CDR: the session that ended the call
    assert (row["call_uuid"], row["outcome"], row["error"], row["instance"]) == (
        channel.uuid, "fingerprinted", None, "vg-b"), row
    assert row["state"]["instance"] == "vg-b" and abs(row["state"]["tone_hz"] - 440) <= 5, row
    assert row["state"]["heard_s"] >= 3.5, row  # the flow started over and heard the caller again
    events = await asyncio.to_thread(_events, pg_database_url, channel.uuid)
    second = [kind for seq, kind in events if seq >= 1_000_000]
    assert second and second[-1] == "CHANNEL_HANGUP_COMPLETE", events  # vg-b's events, none dropped as duplicates
    assert all(seq < 1_000_000 for seq, _ in events[:len(events) - len(second)])  # vg-a's, if it stored any
    assert "refused" not in "".join(b.log)
