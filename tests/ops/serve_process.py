"""A `voxgate serve` subprocess as the ops tests drive it: its log read all the time, the ports it reported."""

from __future__ import annotations

import asyncio
import re
import signal
from dataclasses import dataclass, field

from controller.simulator.distributor import SocketTarget


@dataclass
class Instance:
    """One `voxgate serve` subprocess: its id, the ports it reported and every line it logged."""

    name: str
    process: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)
    esl_port: int = 0
    ws_port: int = 0
    _reader: asyncio.Task | None = None
    _grew: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def target(self) -> SocketTarget:
        return SocketTarget("127.0.0.1", self.esl_port)

    def start_reading(self) -> None:
        """Read stderr all the time, so a chatty instance never blocks on a full pipe."""
        async def read() -> None:
            while line := await self.process.stderr.readline():
                self.log.append(line.decode())
                self._grew.set()
            self._grew.set()
        self._reader = asyncio.create_task(read())

    async def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        async def scan() -> re.Match[str]:
            seen = 0
            while True:
                for line in self.log[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.log)
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"{self.name} ended before logging {pattern!r}:\n{''.join(self.log)}")
                self._grew.clear()
                await self._grew.wait()
        return await asyncio.wait_for(scan(), timeout)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 30)
        finally:
            if self.process.returncode is None:
                self.process.kill()
            if self._reader is not None:
                await asyncio.wait_for(self._reader, 5)


async def refusing(port: int, timeout: float = 10) -> None:
    """Until nothing listens on `port` (a closed listener refuses the connect)."""
    async def poll() -> None:
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                return
            writer.close()
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)
