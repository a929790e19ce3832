"""A gevent hub on its own thread, bridged to asyncio.

greenswitch is gevent-based. Its sockets and greenlets may only be touched from the thread
that owns their hub, so every ESL connection lives on this one thread and asyncio talks to
it only through `submit()` (work in) and `loop.call_soon_threadsafe` (results and events out).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

log = logging.getLogger(__name__)


class GeventHub:
    """Runs greenlets on a dedicated thread; nothing else in the process uses gevent."""

    def __init__(self, name: str = "voxgate-esl") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._hub = None
        self._wakeup = None
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stopping: gevent.event.Event | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        if self._thread:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the gevent hub thread did not start")

    def _run(self) -> None:
        self._hub = gevent.get_hub()
        self._stopping = gevent.event.Event()
        # An async watcher is the thread-safe doorbell, and it keeps the loop alive while idle.
        self._wakeup = self._hub.loop.async_()
        self._wakeup.start(self._drain)
        self._ready.set()
        self._stopping.wait()
        self._wakeup.stop()

    def _drain(self) -> None:
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return
            gevent.spawn(job)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Run fn(*args) in a new greenlet on the hub thread; the future carries its result."""
        if self._hub is None:
            raise RuntimeError("GeventHub.start() was not called")
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiting coroutine, not swallowed
                future.set_exception(exc)

        self._inbox.put(run)
        self._wakeup.send()
        return future

    async def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Await fn(*args) run on the hub thread."""
        return await asyncio.wait_for(asyncio.wrap_future(self.submit(fn, *args)), timeout)

    def stop(self) -> None:
        if self._hub is not None and self._stopping is not None:
            self._inbox.put(self._stopping.set)
            self._wakeup.send()
        if self._thread:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.warning("gevent hub thread did not stop within 5 s")
        self._thread = None
        self._hub = None
