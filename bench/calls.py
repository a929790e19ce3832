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
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from controller.audio import tone  # noqa: E402

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
    reply = tone(440, 2000, 8000)

    @flows.register("bench")
    async def bench(call) -> str:
        await call.answer()

        async def consume() -> None:
            async for frame in call.media.frames():
                latencies.append(time.monotonic() - frame.received)

        consumer = asyncio.create_task(consume())
        seq = 0
        while not call.ended.is_set():
            await call.play_audio(reply, 8000)
            if slow_db:  # what an agent call stores: a turn per reply, through the controller's record path
                now = datetime.now(UTC)
                call.on_turn(TurnRecord("freeswitch", call.info.uuid, seq, "agent", "A reply.", "A reply.", now, now,
                                        voice_to_voice_ms=500.0))
                seq += 1
            await asyncio.sleep(0.5)
        await consumer
        return "completed"

    controller = Controller(settings, flows)
    await controller.start()
    print(json.dumps({"port": controller.outbound.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # parent: calls are up
    latencies.clear()
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # parent: measurement over
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    calls = list(controller.calls.values())
    pacing = [c.media.pacing for c in calls]
    frames_in = sum(c.media.frames_in for c in calls)
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    print(json.dumps({
        "calls": len(calls), "cpu_s": cpu, "wall_s": wall, "frames": len(latencies), "frames_in": frames_in,
        "dropped": sum(c.media.frames_dropped for c in calls),
        "inbound_p50_ms": float(np.percentile(lat, 50)), "inbound_p99_ms": float(np.percentile(lat, 99)),
        "inbound_max_ms": float(lat.max()),
        "out_frames": sum(p.frames for p in pacing), "late_frames": sum(p.late_frames for p in pacing),
        "max_late_ms": max((p.max_late_ms for p in pacing), default=0.0),
        "mean_late_ms": sum(p.total_late_ms for p in pacing) / max(1, sum(p.frames for p in pacing)),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "records_pending": controller.writer.pending, "records_refused": controller.stats.records_refused,
    }), flush=True)
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
    stats["cpu_ms_per_call_s"] = stats["cpu_s"] * 1000 / max(1, stats["calls"]) / stats["wall_s"]
    stats["core_capacity_calls"] = 1000 / stats["cpu_ms_per_call_s"] if stats["cpu_ms_per_call_s"] else 0
    return stats


def report(label: str, s: dict) -> None:
    print(f"{label}: {s['calls']} calls for {s['wall_s']:.1f} s")
    print(f"  voxgate CPU          {s['cpu_s']:.2f} s  = {s['cpu_ms_per_call_s']:.2f} CPU-ms per call-second"
          f"  (~{s['core_capacity_calls']:.0f} calls per core)")
    print(f"  inbound frames       {s['frames']} delivered, {s['dropped']} dropped; arrival->flow "
          f"p50 {s['inbound_p50_ms']:.3f} ms, p99 {s['inbound_p99_ms']:.3f} ms, max {s['inbound_max_ms']:.2f} ms")
    print(f"  outbound frames      {s['out_frames']} sent, {s['late_frames']} late (>20 ms); "
          f"lateness mean {s['mean_late_ms']:.3f} ms, max {s['max_late_ms']:.2f} ms")
    print(f"  voxgate max RSS      {s['rss_mb']:.0f} MB; simulator CPU {s['sim_cpu_s']:.1f} s")


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
    report("baseline", base)
    report("load", full)
    print(f"ratio load/baseline: CPU per call-second x{full['cpu_ms_per_call_s'] / base['cpu_ms_per_call_s']:.2f}, "
          f"inbound p99 x{full['inbound_p99_ms'] / max(base['inbound_p99_ms'], 1e-6):.2f}")
    print("targets: 200 calls on one core (<= 5 CPU-ms per call-second), inbound p99 < 5 ms, no late frame")


def compare_slow_db(calls: int, seconds: float) -> None:
    quiet = asyncio.run(run(calls, seconds))
    slow = asyncio.run(run(calls, seconds, slow_db=True))
    report("no record traffic", quiet)
    report("slow PostgreSQL (+250 ms per insert), a turn per call every 0.5 s", slow)
    print(f"  records still pending at the end {slow['records_pending']} (journalled), refused "
          f"{slow['records_refused']}")
    gap = slow["inbound_p99_ms"] - quiet["inbound_p99_ms"]
    print(f"inbound p99: {quiet['inbound_p99_ms']:.3f} ms without, {slow['inbound_p99_ms']:.3f} ms with the slow "
          f"database: {gap:+.3f} ms (x{slow['inbound_p99_ms'] / max(quiet['inbound_p99_ms'], 1e-6):.2f}); "
          f"target within 1 ms: {'ok' if gap <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
