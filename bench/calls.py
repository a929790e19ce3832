"""Concurrent simulated calls against one voxgate process, with null engines.

The voxgate process (a child, so its CPU is its own) runs a flow that consumes every caller
frame and keeps playing audio back; the parent runs the FreeSWITCH simulator with N callers.
Prints CPU per call, inbound frame handling latency (arrival -> delivery to the flow) and
outbound pacing, for a baseline of a few calls and for N calls, and the ratio between them.

With --slow-db, N calls run twice instead: once writing no records during the measurement,
once with every call storing a turn every half second into a PostgreSQL whose every insert
sleeps 250 ms (a slow or overloaded database). The media plane must not notice: inbound p99
within 1 ms of the run without database traffic.

    python bench/calls.py [--calls 200] [--seconds 20] [--baseline 10] [--slow-db]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import Window, per_call, ratio, register_bench_flow, report  # noqa: E402

SPEECH = Path(__file__).resolve().parents[1] / "controller" / "prompts" / "greeting.wav"


# ---------------------------------------------------------------- the voxgate side (child process)


SLOW_INSERT = """
CREATE FUNCTION bench_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.25); RETURN NULL; END $$;
CREATE TRIGGER bench_slow_turns BEFORE INSERT ON turns FOR EACH STATEMENT EXECUTE FUNCTION bench_slow();
CREATE TRIGGER bench_slow_events BEFORE INSERT ON call_events FOR EACH STATEMENT EXECUTE FUNCTION bench_slow();
"""


def slow_postgres():
    """A private PostgreSQL at the latest schema whose every insert statement takes 250 ms more."""
    import psycopg

    from controller.records.localpg import PostgresCluster, find_postgres_bindir
    from controller.records.migrate import upgrade

    bindir = find_postgres_bindir()
    if bindir is None:
        raise SystemExit("--slow-db needs PostgreSQL's server binaries: apt-get install postgresql")
    cluster = PostgresCluster.create(bindir)
    upgrade(cluster.url)
    with psycopg.connect(cluster.url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(SLOW_INSERT)
    return cluster


async def serve(seconds: float, slow_db: bool) -> None:
    import logging
    from datetime import UTC, datetime

    from controller.app import Controller
    from controller.config import load_settings
    from controller.flows import builtin_flows
    from controller.records.cdr import TurnRecord
    from controller.records.migrate import upgrade

    logging.basicConfig(level=logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="voxgate-bench-")
    cluster = slow_postgres() if slow_db else None
    url = cluster.url if cluster else f"sqlite:///{tmp}/bench.sqlite3"
    if cluster is None:
        upgrade(url)
    settings = load_settings({"VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0",
                              "VOXGATE_DATABASE_URL": url, "VOXGATE_JOURNAL_DIR": f"{tmp}/journal",
                              "VOXGATE_TOKEN_SECRET": "bench-secret-0123456789",
                              "VOXGATE_LOG_LEVEL": "WARNING"})
    latencies: list[float] = []
    flows = builtin_flows()

    def store_turn(call, n: int) -> None:  # what an agent call stores: a turn per reply, the controller's path
        now = datetime.now(UTC)
        call.on_turn(TurnRecord("freeswitch", call.info.uuid, n, "agent", "A reply.", "A reply.", now, now,
                                voice_to_voice_ms=500.0))

    register_bench_flow(flows, latencies, store_turn if slow_db else None)
    controller = Controller(settings, flows)
    await controller.start()
    print(json.dumps({"port": controller.outbound.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # parent: calls are up
    window = Window(list(controller.calls.values()), latencies)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # parent: measurement over
    stats = window.stats(list(controller.calls.values()))
    stats.update(records_pending=controller.writer.pending, records_refused=controller.stats.records_refused)
    print(json.dumps(stats), flush=True)
    await controller.stop(drain_s=10)
    if cluster is not None:
        cluster.destroy()


# ---------------------------------------------------------------- the simulator side (parent)


async def run(calls: int, seconds: float, slow_db: bool = False) -> dict:
    from controller.simulator.caller import CallerScript, Say, WaitFor
    from controller.simulator.fake_freeswitch import FakeFreeSwitch

    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", *(["--slow-db"] if slow_db else []),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    port = json.loads(await child.stdout.readline())["port"]
    with tempfile.TemporaryDirectory() as tmp:
        sim = FakeFreeSwitch(password="bench-only", tmp_dir=Path(tmp))
        await sim.start()
        script = CallerScript([WaitFor("answer", timeout=30), *[Say(str(SPEECH)) for _ in range(40)]])
        channels = []
        for _ in range(calls):  # a realistic arrival ramp, not one burst
            channels.append(await sim.place_call(script, variables={"voxgate_flow": "bench"},
                                                 outbound_socket=("127.0.0.1", port)))
            await asyncio.sleep(0.01)
        await asyncio.sleep(2.0)  # let every call answer and its fork connect
        sim_cpu0 = time.process_time()
        child.stdin.write(b"go\n")
        await asyncio.sleep(seconds)
        child.stdin.write(b"stop\n")
        stats = json.loads(await child.stdout.readline())
        stats["sim_cpu_s"] = time.process_time() - sim_cpu0
        for channel in channels:
            channel.hangup("NORMAL_CLEARING")
        await asyncio.sleep(0.5)
        await sim.stop()
    child.stdin.close()
    await child.wait()
    return per_call(stats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--slow-db", action="store_true", help="compare no record traffic with a slow PostgreSQL")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.seconds, args.slow_db))
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    if args.slow_db:
        compare_slow_db(args.calls, args.seconds)
        return
    base = asyncio.run(run(args.baseline, args.seconds))
    full = asyncio.run(run(args.calls, args.seconds))
    report("baseline", base, "simulator")
    report("load", full, "simulator")
    print(ratio(base, full))
    print("targets: 200 calls on one core (<= 5 CPU-ms per call-second), inbound p99 < 5 ms, no late frame")


def compare_slow_db(calls: int, seconds: float) -> None:
    quiet = asyncio.run(run(calls, seconds))
    slow = asyncio.run(run(calls, seconds, slow_db=True))
    report("no record traffic", quiet, "simulator")
    report("slow PostgreSQL (+250 ms per insert), a turn per call every 0.5 s", slow, "simulator")
    print(f"  records still pending at the end {slow['records_pending']} (journalled), refused "
          f"{slow['records_refused']}")
    gap = slow["inbound_p99_ms"] - quiet["inbound_p99_ms"]
    print(f"inbound p99: {quiet['inbound_p99_ms']:.3f} ms without, {slow['inbound_p99_ms']:.3f} ms with the slow "
          f"database: {gap:+.3f} ms (x{slow['inbound_p99_ms'] / max(quiet['inbound_p99_ms'], 1e-6):.2f}); "
          f"target within 1 ms: {'ok' if gap <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
