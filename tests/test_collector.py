"""Scheduled garbage collection: automatic collection off while running, cycles still freed, given back at stop."""

from __future__ import annotations

import asyncio
import gc
import weakref

from controller.collector import ScheduledCollector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


async def test_cycles_are_freed_on_the_loops_schedule_and_gc_is_given_back():
    assert gc.isenabled()
    collector = ScheduledCollector(young_every_s=0.01, middle_every=2, full_every_s=0.05)
    collector.start()
    try:
        assert not gc.isenabled()
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        for _ in range(100):
            if gone() is None:
                break
            await asyncio.sleep(0.01)
        assert gone() is None, "a reference cycle outlived the scheduled collections"
        await asyncio.sleep(0.1)
        assert collector.stats.young > 0 and collector.stats.full > 0
    finally:
        await collector.stop()
    assert gc.isenabled()
