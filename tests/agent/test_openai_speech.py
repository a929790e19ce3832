"""OpenAISpeechTts against a local server streaming raw PCM the way /v1/audio/speech does."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from controller.agent.engines import EngineError, SpeechChunk
from controller.agent.openai_speech import MIN_CHUNK_BYTES, OpenAISpeechTts
from tests.agent.fake_services import FakeOpenAI


@pytest.fixture
async def server():
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def tts(server):
    engine = OpenAISpeechTts(server.base_url, server.api_key, voice="coral", timeout_s=2.0)
    yield engine
    await engine.close()


async def collect(engine: OpenAISpeechTts, text: str = "Hello there.") -> list[SpeechChunk]:
    return [chunk async for chunk in engine.synthesize(text)]


async def failure(engine: OpenAISpeechTts) -> str:
    with pytest.raises(EngineError) as caught:
        await collect(engine)
    return str(caught.value)


async def test_streams_the_servers_pcm_in_whole_samples(tts, server):
    server.speech.pace_s = 0.01  # 1, 999, 3000, 7, then 4096s: each read on its own
    chunks = await collect(tts)
    assert b"".join(c.pcm for c in chunks) == server.speech_pcm()
    assert all(c.sample_rate == 24000 == tts.sample_rate for c in chunks)
    assert all(len(c.pcm) % 2 == 0 for c in chunks)
    assert len(chunks[0].pcm) == 1000  # the first whole samples go out at once
    assert all(len(c.pcm) >= MIN_CHUNK_BYTES for c in chunks[1:-1])  # then at least 20 ms each
    assert len(chunks) > 2


async def test_first_audio_comes_before_the_rest_is_made(tts, server):
    server.speech.gate = asyncio.Event()
    server.speech.chunk_sizes = (100, 1000)
    stream = tts.synthesize("Hello there.")
    first = await asyncio.wait_for(anext(stream), 2)  # the server is holding the rest back
    assert server.speech_pcm().startswith(first.pcm) and 0 < len(first.pcm) <= 1100
    server.speech.gate.set()
    rest = [chunk.pcm async for chunk in stream]
    assert first.pcm + b"".join(rest) == server.speech_pcm()


async def test_odd_chunk_boundaries_are_carried_over(tts, server):
    server.speech.chunk_sizes = (1, 1, 3, 5, 961, 1)
    chunks = await collect(tts)
    assert [len(c.pcm) % 2 for c in chunks] == [0] * len(chunks)
    assert b"".join(c.pcm for c in chunks) == server.speech_pcm()


async def test_request_json_and_headers(tts, server):
    await collect(tts, "Your table is booked.")
    [request] = server.requests
    assert request.path == "/v1/audio/speech"
    assert request.headers["Authorization"] == f"Bearer {server.api_key}"
    assert request.json == {"model": "gpt-4o-mini-tts", "input": "Your table is booked.",
                            "voice": "coral", "response_format": "pcm"}


async def test_blank_text_makes_no_request(tts, server):
    assert await collect(tts, "  ") == []
    assert server.requests == []


async def test_wrong_key(server):
    wrong = "sk-wrong-tts-key-abcdef"
    engine = OpenAISpeechTts(server.base_url, wrong, timeout_s=2.0)
    try:
        message = await failure(engine)
    finally:
        await engine.close()
    assert "HTTP 401" in message and "Incorrect API key" in message and wrong not in message


async def test_server_error(tts, server):
    server.speech.status, server.speech.error = 500, "The server had an error while processing your request."
    message = await failure(tts)
    assert "HTTP 500" in message and "processing your request" in message


async def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = OpenAISpeechTts(f"http://127.0.0.1:{port}/v1", "sk-x", timeout_s=2.0)
    try:
        assert "cannot connect" in await failure(engine)
    finally:
        await engine.close()


async def test_disconnect_mid_audio(tts, server):
    server.speech.ending = "disconnect"
    got = bytearray()
    with pytest.raises(EngineError, match="lost mid-reply"):
        async for chunk in tts.synthesize("Hello there."):
            got += chunk.pcm
    assert server.speech_pcm().startswith(bytes(got))


async def test_stall_times_out_quickly(server):
    server.speech.ending = "stall"
    engine = OpenAISpeechTts(server.base_url, server.api_key, timeout_s=0.3)
    started = time.monotonic()
    try:
        assert "stalled" in await failure(engine)
    finally:
        await engine.close()
    assert time.monotonic() - started < 1.5


async def test_odd_total_length_drops_the_last_byte_with_a_warning(tts, server, caplog, monkeypatch):
    pcm = server.speech_pcm() + b"\x01"
    monkeypatch.setattr(server, "speech_pcm", lambda: pcm)
    with caplog.at_level(logging.WARNING):
        chunks = await collect(tts)
    assert b"".join(c.pcm for c in chunks) == pcm[:-1]
    assert "odd last byte" in caplog.text
