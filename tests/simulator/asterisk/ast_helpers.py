"""Stand-ins for voxgate's side in the fake Asterisk tests: a raw AMI client, an AudioSocket server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from controller.asterisk import ami
from controller.asterisk.audiosocket import AudioSocketParser


class AmiClient:
    """A manager connection as voxgate holds it: raw bytes kept, messages parsed with controller.asterisk.ami."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.raw = bytearray()
        self.messages: list[ami.AmiMessage] = []
        self.closed = asyncio.Event()
        self._parser = ami.AmiParser()
        self._new = asyncio.Event()
        self._ids = itertools.count(1)
        self._task = asyncio.create_task(self._read(reader))

    @classmethod
    async def connect(cls, port: int) -> AmiClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    @classmethod
    async def logged_in(cls, port: int, events: str | None = "on") -> AmiClient:
        client = await cls.connect(port)
        reply = await client.ask("Login", {"Username": "voxgate", "Secret": "s3cret", "Events": events})
        assert reply.response == "Success", reply
        return client

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                self.raw += data
                self._parser.feed(data)
                self.messages += self._parser.messages()
                self._new.set()
        except ConnectionError:
            pass
        self.closed.set()
        self._new.set()

    def send(self, name: str, fields: dict | None = None, action_id: str | None = None) -> str:
        action_id = action_id or f"{name.lower()}-{next(self._ids)}"
        self.writer.write(ami.action(name, action_id, fields))
        return action_id

    async def until(self, match: Callable[[ami.AmiMessage], bool], timeout: float = 5.0,
                    start: int = 0) -> ami.AmiMessage:
        """The first message (from index `start`) that matches, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                found = next((m for m in self.messages[start:] if match(m)), None)
                if found is not None:
                    return found
                if self.closed.is_set():
                    raise ConnectionError("AMI connection closed")
                self._new.clear()
                await self._new.wait()

    async def ask(self, name: str, fields: dict | None = None, timeout: float = 5.0) -> ami.AmiResponse:
        action_id = self.send(name, fields)
        return await self.until(lambda m: isinstance(m, ami.AmiResponse) and m.action_id == action_id, timeout)

    async def event(self, name: str, timeout: float = 5.0, **fields: str) -> ami.AmiEvent:
        return await self.until(lambda m: isinstance(m, ami.AmiEvent) and m.name == name
                                and all(m.get(k) == v for k, v in fields.items()), timeout)

    def events(self, channel: str | None = None) -> list[ami.AmiEvent]:
        return [m for m in self.messages if isinstance(m, ami.AmiEvent)
                and (channel is None or m.get("Channel") == channel)]

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()


class AudioSocketPeer:
    """One connection accepted by the stand-in server: what Asterisk sent, parsed, with arrival times."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.parser = AudioSocketParser()
        self.events: list[tuple[float, object]] = []
        self.eof = asyncio.Event()
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                now = loop.time()
                self.events += [(now, e) for e in self.parser.feed(data)]
                self._new.set()
        except ConnectionError:
            pass
        self.eof.set()
        self._new.set()

    def of(self, kind: type) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._new.clear()
                await self._new.wait()

    def send(self, data: bytes) -> None:
        self.writer.write(data)


class AudioSocketServer:
    """voxgate's AudioSocket server, reduced to accepting and recording."""

    def __init__(self) -> None:
        self.peers: asyncio.Queue[AudioSocketPeer] = asyncio.Queue()
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> AudioSocketServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = ("127.0.0.1", self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.peers.put(AudioSocketPeer(reader, writer))

    async def accept(self, timeout: float = 5.0) -> AudioSocketPeer:
        return await asyncio.wait_for(self.peers.get(), timeout)
