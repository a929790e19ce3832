"""The greenswitch-based ESL client against a TCP server replaying real FreeSWITCH bytes."""

from __future__ import annotations

import asyncio
import json

import pytest

from controller.esl import protocol as esl
from controller.esl.client import EslError, InboundClient, OutboundServer
from controller.esl.hub import GeventHub
from tests.fixture_data import esl_sessions


def _segments(session: dict) -> tuple[list[bytes], list[bytes]]:
    """The recorded commands, and what FreeSWITCH sent before the first and after each one."""
    commands, segments = [], [[]]
    for entry in session["entries"]:
        if entry["dir"] == ">>>":
            commands.append(entry["bytes_or_text"].encode())
            segments.append([])
        elif entry["dir"] == "<<<" and entry["kind"] != "EOF":
            segments[-1].append(entry["bytes_or_text"].encode())
    return commands, [b"".join(s) for s in segments]


class ReplayServer:
    """Answers the n-th command with whatever FreeSWITCH sent after the n-th recorded command."""

    def __init__(self, session: dict, close_after: int | None = None) -> None:
        self.commands, self.segments = _segments(session)
        self.received: list[bytes] = []
        self.close_after = close_after
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(self.segments[0])
        n = 0
        try:
            while True:
                command = await reader.readuntil(b"\n\n")
                self.received.append(command)
                n += 1
                if self.close_after is not None and n > self.close_after:
                    break
                if n < len(self.segments):
                    writer.write(self.segments[n])
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
def hub():
    hub = GeventHub()
    hub.start()
    yield hub
    hub.stop()


async def _serve(replay: ReplayServer):
    server = await asyncio.start_server(replay.handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _connected_client(hub, session_index: int):
    """A client authenticated against a replay of one recorded inbound session, and what it receives."""
    replay = ReplayServer(esl_sessions("esl_inbound_session.json")[session_index])
    server, port = await _serve(replay)
    events: list = []
    client = InboundClient(hub, "127.0.0.1", port, "ClueCon", on_event=events.append)
    await client.start()
    await asyncio.wait_for(client.connected.wait(), 5)
    return replay, server, client, events


async def test_inbound_client_reads_a_whole_recorded_session(hub):
    replay, server, client, events = await _connected_client(hub, 1)
    assert replay.received[0] == b"auth ClueCon\n\n"
    assert replay.received[1].startswith(b"event plain ")
    assert replay.received[1].rstrip().split(b" ")[-len([e for e in client._events if "::" in e]) - 1] == b"CUSTOM"

    replies = []
    for command in replay.commands[2:]:
        if command.startswith(b"exit"):
            break
        replies.append(await client.link.command(command))
    await asyncio.sleep(0.2)
    assert replies[0].text.startswith("FreeSWITCH Version 1.10.12")
    assert replies[2].text == "-ERR No such channel!\n"
    assert any(r.reply_text == "-ERR command not found" for r in replies)

    play = [e for e in events if e.subclass == "mod_audio_fork::play_audio"]
    assert play and json.loads(play[0].body)["file"].endswith(".tmp.r8")
    assert play[0].headers["variable_current_application"] == "playback"  # body not glued on
    names = {e.name for e in events}
    assert {"CHANNEL_HANGUP_COMPLETE", "DTMF", "PLAYBACK_START", "BACKGROUND_JOB"} <= names
    by_call = {e.unique_id for e in events if e.name == "CHANNEL_HANGUP_COMPLETE"}
    assert "3f28fbf9-28a9-4df4-8bf9-9c3a4c50279e" in by_call
    await client.stop()
    server.close()


async def test_inbound_client_reads_json_events(hub):
    replay, server, client, events = await _connected_client(hub, 2)
    for command in replay.commands[2:-1]:
        await client.link.command(command)
    await asyncio.sleep(0.2)
    assert events and all(e.fmt == "json" for e in events)
    assert any(e.subclass == "mod_audio_fork::transcription" and e.json_body() for e in events)
    await client.stop()
    server.close()


async def test_wrong_password_is_reported_and_retried(hub, caplog):
    session = esl_sessions("esl_inbound_session.json")[0]
    replay = ReplayServer(session)
    server, port = await _serve(replay)
    client = InboundClient(hub, "127.0.0.1", port, "WrongPassword", on_event=lambda e: None,
                           backoff=(0.05, 0.1))
    await client.start()
    await asyncio.sleep(0.4)
    assert not client.connected.is_set()
    assert replay.connections >= 2
    assert "ESL authentication refused: -ERR invalid" in caplog.text
    assert "WrongPassword" not in caplog.text
    with pytest.raises(EslError):
        await client.api("status")
    await client.stop()
    server.close()


async def test_reconnects_after_the_connection_is_cut(hub):
    session = esl_sessions("esl_inbound_session.json")[1]
    replay = ReplayServer(session, close_after=3)
    server, port = await _serve(replay)
    reconnected = asyncio.Event()
    connects = []

    async def on_connected():
        connects.append(1)
        if len(connects) == 2:
            reconnected.set()

    client = InboundClient(hub, "127.0.0.1", port, "ClueCon", on_event=lambda e: None,
                           on_connected=on_connected, backoff=(0.05, 0.1))
    await client.start()
    await asyncio.wait_for(client.connected.wait(), 5)
    await client.api("version")
    with pytest.raises(EslError):
        await client.api("status", timeout=2)  # the server hangs up instead of answering
    await asyncio.wait_for(reconnected.wait(), 5)
    assert client.reconnects == 1
    await client.stop()
    server.close()


async def test_outbound_server_takes_the_connect_reply(hub):
    session = esl_sessions("esl_outbound_session.json")[0]
    commands, segments = _segments(session)
    got: asyncio.Queue = asyncio.Queue()

    async def on_session(link, data):
        events = []
        link.on_event = events.append
        await got.put((link, data, events))

    server = OutboundServer(hub, "127.0.0.1", 0, on_session)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await reader.readuntil(b"\n\n") == b"connect\n\n"
    writer.write(segments[1])
    link, data, events = await asyncio.wait_for(got.get(), 5)
    assert data["Unique-ID"] == "28023d39-040e-4616-9a6a-e5a441533fca"
    assert data["variable_my_custom_var"] == "hello_from_dialplan"

    async def fake_freeswitch():
        for segment in segments[2:]:
            await reader.readuntil(b"\n\n")
            writer.write(segment)
            await writer.drain()

    fs = asyncio.create_task(fake_freeswitch())
    assert (await link.command(esl.encode_command("myevents"))).reply_text == "+OK Events Enabled"
    await link.command(esl.subscribe(["PLAYBACK_START", "PLAYBACK_STOP"]))
    await link.command(esl.encode_command("linger"))
    assert (await link.command(esl.encode_command("getvar my_custom_var"))).reply_text == "hello_from_dialplan"
    for command in commands[5:-1]:
        await link.command(command)
    await asyncio.sleep(0.2)
    assert [e.name for e in events if e.name.startswith("PLAYBACK")] == ["PLAYBACK_START", "PLAYBACK_STOP"]
    assert events[-1].name == "CHANNEL_HANGUP_COMPLETE"
    writer.close()
    fs.cancel()
    await asyncio.wait_for(link.closed.wait(), 5)
    await server.stop()
