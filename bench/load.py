"""What the concurrent-call benchmarks share: the flow each call runs, the measurement window, the report.

The voxgate side of bench/calls.py (FreeSWITCH) and bench/asterisk.py runs `bench` on every call:
it consumes each caller frame (timing arrival -> flow) and keeps playing audio back.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable

import numpy as np

from controller.audio import tone
from controller.flows import FlowRegistry


def register_bench_flow(flows: FlowRegistry, latencies: list[float],
                        after_reply: Callable[[object, int], None] | None = None) -> None:
    """The `bench` flow; `after_reply(call, n)` runs after each reply (the slow-database run stores a turn)."""
    reply = tone(440, 2000, 8000)

    @flows.register("bench")
    async def bench(call) -> str:
        await call.answer()

        async def consume() -> None:
            async for frame in call.media.frames():
                latencies.append(time.monotonic() - frame.received)

        consumer = asyncio.create_task(consume())
        replies = 0
        while not call.ended.is_set():
            await call.play_audio(reply, 8000)
            if after_reply is not None:
                after_reply(call, replies)
            replies += 1
            await asyncio.sleep(0.5)
        await consumer
        return "completed"


class Window:
    """Counts over the measurement only: what each call's port had sent and dropped at the start is subtracted."""

    def __init__(self, calls: list, latencies: list[float]) -> None:
        latencies.clear()
        self._latencies = latencies
        self._start = {id(c): (c.media.pacing.frames, c.media.pacing.late_frames, c.media.pacing.total_late_ms,
                               c.media.frames_dropped) for c in calls}
        self._cpu0, self._t0 = time.process_time(), time.monotonic()

    def stats(self, calls: list) -> dict:
        cpu, wall = time.process_time() - self._cpu0, time.monotonic() - self._t0

        def delta(call, index: int, now: float) -> float:
            return now - self._start.get(id(call), (0, 0, 0.0, 0))[index]

        out_frames = sum(delta(c, 0, c.media.pacing.frames) for c in calls)
        lat = np.array(self._latencies) * 1000 if self._latencies else np.zeros(1)
        return {
            "calls": len(calls), "cpu_s": cpu, "wall_s": wall, "frames": len(self._latencies),
            "dropped": int(sum(delta(c, 3, c.media.frames_dropped) for c in calls)),
            "inbound_p50_ms": float(np.percentile(lat, 50)), "inbound_p99_ms": float(np.percentile(lat, 99)),
            "inbound_max_ms": float(lat.max()),
            "out_frames": int(out_frames),
            "late_frames": int(sum(delta(c, 1, c.media.pacing.late_frames) for c in calls)),
            "max_late_ms": max((c.media.pacing.max_late_ms for c in calls), default=0.0),
            "mean_late_ms": sum(delta(c, 2, c.media.pacing.total_late_ms) for c in calls) / max(1, out_frames),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def per_call(stats: dict) -> dict:
    stats["cpu_ms_per_call_s"] = stats["cpu_s"] * 1000 / max(1, stats["calls"]) / stats["wall_s"]
    stats["core_capacity_calls"] = 1000 / stats["cpu_ms_per_call_s"] if stats["cpu_ms_per_call_s"] else 0
    return stats


def report(label: str, s: dict, simulator: str) -> None:
    print(f"{label}: {s['calls']} calls for {s['wall_s']:.1f} s"
          + (f" ({s['ended_early']} ended before the measurement finished)" if s.get("ended_early") else ""))
    print(f"  voxgate CPU          {s['cpu_s']:.2f} s  = {s['cpu_ms_per_call_s']:.2f} CPU-ms per call-second"
          f"  (~{s['core_capacity_calls']:.0f} calls per core)")
    print(f"  inbound frames       {s['frames']} delivered, {s['dropped']} dropped; arrival->flow "
          f"p50 {s['inbound_p50_ms']:.3f} ms, p99 {s['inbound_p99_ms']:.3f} ms, max {s['inbound_max_ms']:.2f} ms")
    print(f"  outbound frames      {s['out_frames']} sent, {s['late_frames']} late (>20 ms); "
          f"lateness mean {s['mean_late_ms']:.3f} ms, max {s['max_late_ms']:.2f} ms (whole call)")
    print(f"  voxgate max RSS      {s['rss_mb']:.0f} MB; {simulator} CPU {s['sim_cpu_s']:.1f} s")


def ratio(base: dict, full: dict) -> str:
    return (f"ratio load/baseline: CPU per call-second "
            f"x{full['cpu_ms_per_call_s'] / max(base['cpu_ms_per_call_s'], 1e-6):.2f}, "
            f"inbound p99 x{full['inbound_p99_ms'] / max(base['inbound_p99_ms'], 1e-6):.2f}")
