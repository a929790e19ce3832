"""DeepgramStt against a local server speaking Deepgram's live-streaming WebSocket protocol."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import numpy as np
import pytest

from controller.agent.deepgram import DeepgramStt
from controller.agent.engines import EngineError, Transcript
from controller.config import Secret
from tests.agent.fake_services import FakeDeepgram, until

RATE = 16000
FRAME_S = 0.02


@pytest.fixture
async def server():
    async with FakeDeepgram() as fake:
        yield fake


def engine(server: FakeDeepgram, **options) -> DeepgramStt:
    options.setdefault("finalize_timeout_s", 1.0)
    return DeepgramStt(Secret(server.api_key), url=server.url, **options)


async def speak(stream, seconds: float) -> None:
    """Feed `seconds` of audio in 20 ms frames, as a call's media would arrive."""
    frame = (np.sin(np.arange(int(RATE * FRAME_S)) / 3) * 3000).astype("<i2").tobytes()
    for _ in range(round(seconds / FRAME_S)):
        await stream.feed(frame)


async def heard(stream, text: str) -> None:
    async def check() -> bool:
        return (await stream.result(final=False)).text == text
    async with asyncio.timeout(3):
        while not await check():
            await asyncio.sleep(0.005)


# ---------------------------------------------------------------- recognition


async def test_handshake_sends_options_in_the_query_and_the_key_in_a_header(server):
    stream = await engine(server, model="nova-2-phonecall", language="en-US").open(8000)
    await stream.close()
    [session] = server.sessions
    assert session.query == {"encoding": "linear16", "sample_rate": "8000", "channels": "1",
                             "model": "nova-2-phonecall", "language": "en-US", "interim_results": "true",
                             "punctuate": "true", "smart_format": "true", "endpointing": "false",
                             "vad_events": "false"}
    assert session.headers["Authorization"] == f"Token {server.api_key}"


async def test_partials_grow_as_audio_arrives_without_asking_the_server(server):
    partials: list[Transcript] = []
    stream = await engine(server).open(RATE, partials.append)
    try:
        await speak(stream, 0.65)  # 0.2 s a word: three words
        await until(lambda: len(partials) == 3)
        assert [p.text for p in partials] == ["hello", "hello there", "hello there how"]
        assert not any(p.final for p in partials)
        now = await stream.result(final=False)
        assert (now.text, now.final, now.audio_start, now.audio_end) == ("hello there how", False, 0.0, 0.6)
        assert server.sessions[0].controls == []
    finally:
        await stream.close()


async def test_final_result_finalizes_then_starts_a_new_utterance(server):
    stream = await engine(server).open(RATE)
    try:
        await speak(stream, 0.85)
        first = await stream.result(final=True)
        assert (first.text, first.final, first.audio_start, first.audio_end) == (
            "hello there how are", True, 0.0, 0.8)
        assert first.confidence == pytest.approx((0.99 + 0.97 + 0.95 + 0.93) / 4)
        assert server.sessions[0].controls == ["Finalize"]
        assert (await stream.result(final=False)).text == ""
        await speak(stream, 0.4)
        second = await stream.result(final=True)
        assert (second.text, second.audio_start, second.audio_end) == ("you today", 0.8, 1.2)
    finally:
        await stream.close()


async def test_is_final_segments_accumulate_into_the_utterance(server):
    server.script.final_every = 2
    stream = await engine(server).open(RATE)
    try:
        await speak(stream, 1.05)
        await heard(stream, "hello there how are you")
        final = await stream.result(final=True)
        assert final.text == "hello there how are you"
        segments = [m["channel"]["alternatives"][0] for m in server.sessions[0].sent if m.get("is_final")]
        assert [s["transcript"] for s in segments] == ["hello there", "how are", "you"]
        assert final.confidence == pytest.approx(sum(s["confidence"] for s in segments) / 3)
    finally:
        await stream.close()


async def test_clear_drops_the_utterance_and_late_words_for_its_audio(server):
    stream = await engine(server).open(RATE)
    try:
        await speak(stream, 0.45)
        await heard(stream, "hello there")
        stream.clear()
        assert (await stream.result(final=False)).text == ""
        await speak(stream, 0.4)  # the server's next interim still starts with "hello there"
        await heard(stream, "how are")
        assert (await stream.result(final=True)).text == "how are"
    finally:
        await stream.close()


async def test_final_without_new_audio_does_not_wait_for_the_server(server):
    stream = await engine(server, finalize_timeout_s=5.0).open(RATE)
    try:
        started = time.monotonic()
        assert await stream.result(final=True) == Transcript("", True)
        assert time.monotonic() - started < 0.5
        assert server.sessions[0].controls == []
    finally:
        await stream.close()


async def test_unanswered_finalize_returns_what_was_heard_after_the_timeout(server, caplog):
    server.script.answer_finalize = False
    stream = await engine(server, finalize_timeout_s=0.3).open(RATE)
    try:
        await speak(stream, 0.45)
        await heard(stream, "hello there")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            final = await stream.result(final=True)
        assert 0.25 < time.monotonic() - started < 1.5
        assert (final.text, final.final) == ("hello there", True)
        assert "no reply to Finalize" in caplog.text
    finally:
        await stream.close()


async def test_unknown_and_malformed_messages_are_ignored(server, caplog):
    server.script.chatter = True
    stream = await engine(server).open(RATE)
    try:
        await speak(stream, 0.45)
        await heard(stream, "hello there")
        assert (await stream.result(final=True)).text == "hello there"
    finally:
        await stream.close()
    assert "malformed" in caplog.text


async def test_a_failing_partial_callback_does_not_stop_recognition(server):
    def broken(transcript: Transcript) -> None:
        raise RuntimeError("listener bug")
    stream = await engine(server).open(RATE, broken)
    try:
        await speak(stream, 0.45)
        assert (await stream.result(final=True)).text == "hello there"
    finally:
        await stream.close()


# ---------------------------------------------------------------- keepalive and close


async def test_keepalive_while_no_audio_is_sent(server):
    stream = await engine(server, keepalive_s=0.1).open(RATE)
    try:
        await until(lambda: server.sessions[0].controls.count("KeepAlive") >= 3)
    finally:
        await stream.close()


async def test_no_keepalive_while_audio_flows(server):
    stream = await engine(server, keepalive_s=0.2).open(RATE)
    try:
        for _ in range(12):
            await speak(stream, FRAME_S)
            await asyncio.sleep(0.03)
        assert "KeepAlive" not in server.sessions[0].controls
    finally:
        await stream.close()


async def test_close_sends_closestream_and_waits_for_the_server(server):
    stream = await engine(server).open(RATE)
    await speak(stream, 0.25)
    await stream.close()
    [session] = server.sessions
    assert session.controls[-1] == "CloseStream"
    assert session.sent[-1]["type"] == "Metadata" and session.closed
    await stream.close()  # twice is fine
    with pytest.raises(EngineError, match="closed"):
        await stream.feed(b"\0\0")


# ---------------------------------------------------------------- failures


async def test_wrong_key_is_refused_at_the_handshake(server):
    wrong = "dg-wrong-key-1234567890"
    with pytest.raises(EngineError) as caught:
        await DeepgramStt(wrong, url=server.url).open(RATE)
    message = str(caught.value)
    assert "HTTP 401" in message and "Invalid credentials" in message and wrong not in message
    assert server.refused == [401]


async def test_unsupported_query_is_refused_with_400():
    async with FakeDeepgram(encodings=frozenset({"mulaw"})) as server:
        with pytest.raises(EngineError, match=r"HTTP 400: Unsupported encoding: linear16"):
            await engine(server).open(RATE)


async def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EngineError, match="cannot connect") as caught:
        await DeepgramStt("dg-secret", url=f"ws://127.0.0.1:{port}/v1/listen").open(RATE)
    assert "dg-secret" not in str(caught.value)


@pytest.mark.parametrize("code, reason", [
    (1011, "NET-0001: no audio was received within the timeout window"),
    (1008, "DATA-0000: The payload cannot be decoded as audio."),
])
async def test_server_closing_mid_stream_fails_the_next_call(server, code, reason):
    server.script.close_after_s, server.script.close_code, server.script.close_reason = 0.2, code, reason
    stream = await engine(server).open(RATE)
    try:
        with pytest.raises(EngineError) as caught:
            async with asyncio.timeout(3):
                while True:
                    await speak(stream, FRAME_S)
                    await asyncio.sleep(0.005)
        assert f"{code} {reason}" in str(caught.value)
        with pytest.raises(EngineError, match=str(code)):
            await stream.result(final=False)
    finally:
        await stream.close()


async def test_socket_closing_during_finalize_raises_instead_of_hanging(server):
    server.script.close_on_finalize = True
    server.script.error_before_close = "Internal server error while finalizing"
    stream = await engine(server, finalize_timeout_s=5.0).open(RATE)
    try:
        await speak(stream, 0.25)
        started = time.monotonic()
        with pytest.raises(EngineError, match="Internal server error while finalizing"):
            await stream.result(final=True)
        assert time.monotonic() - started < 1.0
    finally:
        await stream.close()


async def test_the_key_is_never_logged_even_at_debug(server, caplog):
    caplog.set_level(logging.DEBUG)
    stream = await engine(server).open(RATE)
    await speak(stream, 0.25)
    await stream.result(final=True)
    await stream.close()
    assert "Authorization" in str(server.sessions[0].headers)
    assert server.api_key not in caplog.text
