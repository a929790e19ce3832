"""Raw Event Socket peers for the simulator tests: real TCP, frames decoded with controller.esl."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from controller.audio import Pcm, tone, write_wav
from controller.esl import protocol as esl


class EslPeer:
    """One side of an ESL connection as voxgate would hold it: send commands, read frames in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.frames: asyncio.Queue[esl.EslFrame | None] = asyncio.Queue()
        self.raw = bytearray()
        self.events: list[esl.EslEvent] = []
        self._parser = esl.EslParser()
        self._task = asyncio.create_task(self._read(reader))

    @classmethod
    async def connect(cls, port: int) -> EslPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                self.raw += data
                self._parser.feed(data)
                for frame in self._parser.frames():
                    event = esl.parse_event(frame)
                    if event is not None and frame.content_type.startswith("text/event"):
                        self.events.append(event)
                    await self.frames.put(frame)
        except ConnectionError:
            pass
        self.writer.close()
        await self.frames.put(None)

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def next(self, timeout: float = 3.0) -> esl.EslFrame | None:
        """The next frame; None once the switch closed the connection."""
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def until(self, match: Callable[[esl.EslFrame], bool], timeout: float = 5.0) -> esl.EslFrame:
        """Frames are consumed up to and including the first that matches."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                if frame is None:
                    raise ConnectionError("connection closed before the expected frame")
                if match(frame):
                    return frame

    async def reply(self, command: str, timeout: float = 3.0) -> esl.EslFrame:
        """Send a command and return its command/reply or api/response (events before it are skipped)."""
        self.send(command)
        return await self.until(lambda f: f.content_type in ("command/reply", "api/response"), timeout)

    async def event(self, kind: str, timeout: float = 5.0) -> esl.EslEvent:
        frame = await self.until(lambda f: _kind(f) == kind, timeout)
        return esl.parse_event(frame)

    async def closed(self, timeout: float = 5.0) -> list[esl.EslFrame]:
        """Every frame up to the end of the connection."""
        rest = []
        async with asyncio.timeout(timeout):
            while (frame := await self.frames.get()) is not None:
                rest.append(frame)
        return rest

    def event_names(self) -> list[str]:
        return [e.kind for e in self.events]

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()


def _kind(frame: esl.EslFrame) -> str | None:
    event = esl.parse_event(frame) if frame.content_type.startswith("text/event") else None
    return event.kind if event else None


class VoxgateOutbound:
    """A stand-in for voxgate's outbound ESL server: yields one EslPeer per connecting channel."""

    def __init__(self) -> None:
        self.peers: asyncio.Queue[EslPeer] = asyncio.Queue()
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> VoxgateOutbound:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = ("127.0.0.1", self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.peers.put(EslPeer(reader, writer))

    async def accept(self, timeout: float = 3.0) -> EslPeer:
        return await asyncio.wait_for(self.peers.get(), timeout)


def sendmsg(app: str, arg: str | None = None, uuid: str | None = None, **headers: str) -> str:
    lines = [f"sendmsg {uuid}" if uuid else "sendmsg", "call-command: execute", f"execute-app-name: {app}"]
    if arg is not None:
        lines.append(f"execute-app-arg: {arg}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return "\n".join(lines) + "\n\n"


def tone_wav(path: Path, ms: int, rate: int = 8000, freq: float = 440.0) -> Path:
    write_wav(path, Pcm(tone(freq, ms, rate), rate))
    return path
