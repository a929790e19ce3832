"""Concurrent simulated calls against one voxgate process, with null engines.

The voxgate process (a child, so its CPU is its own) runs a flow that consumes every caller
frame and keeps playing audio back; the parent runs the FreeSWITCH simulator with N callers.
Prints CPU per call, inbound frame handling latency (arrival -> delivery to the flow) and
outbound pacing, for a baseline of a few calls and for N calls, and the ratio between them.

    python bench/calls.py [--calls 200] [--seconds 20] [--baseline 10]
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


async def serve(seconds: float) -> None:
    import logging

    from controller.app import Controller
    from controller.config import load_settings
    from controller.flows import builtin_flows
    from controller.records.migrate import upgrade

    logging.basicConfig(level=logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="voxgate-bench-")
    url = f"sqlite:///{tmp}/bench.sqlite3"
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
        while not call.ended.is_set():
            await call.play_audio(reply, 8000)
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
    }), flush=True)
    await controller.stop(drain_s=10)


# ---------------------------------------------------------------- the simulator side (parent)


async def run(calls: int, seconds: float) -> dict:
    from controller.simulator.caller import CallerScript, Say, Wait, WaitFor
    from controller.simulator.fake_freeswitch import FakeFreeSwitch

    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
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
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.seconds))
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    base = asyncio.run(run(args.baseline, args.seconds))
    full = asyncio.run(run(args.calls, args.seconds))
    report("baseline", base)
    report("load", full)
    print(f"ratio load/baseline: CPU per call-second x{full['cpu_ms_per_call_s'] / base['cpu_ms_per_call_s']:.2f}, "
          f"inbound p99 x{full['inbound_p99_ms'] / max(base['inbound_p99_ms'], 1e-6):.2f}")
    print("targets: 200 calls on one core (<= 5 CPU-ms per call-second), inbound p99 < 5 ms, no late frame")


if __name__ == "__main__":
    main()
