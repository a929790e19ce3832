"""A real HTTP server on 127.0.0.1 for play(url): WAV, errors, a body too big, a server too slow."""

from __future__ import annotations

import asyncio
import io
import wave

import pytest
from aiohttp import web

from controller import prompts
from controller.audio import Pcm, resample


def wav_bytes(pcm: Pcm, width: int = 2) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(pcm.channels)
        wav.setsampwidth(width)
        wav.setframerate(pcm.sample_rate)
        wav.writeframes(pcm.data)
    return buffer.getvalue()


PROMPT = "goodbye"  # a shipped prompt, 1.6 s


def prompt_at(rate: int) -> Pcm:
    return resample(Pcm(*prompts.load(PROMPT)), rate)


@pytest.fixture
async def audio_server():
    async def prompt(request: web.Request) -> web.Response:
        return web.Response(body=wav_bytes(prompt_at(16000)), content_type="audio/wav")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>not audio</html>", content_type="text/html")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        for _ in range(64):  # no Content-Length: the limit must act on what arrives
            await response.write(b"RIFF" + bytes(65532))
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response(body=wav_bytes(prompt_at(8000)))

    app = web.Application()
    app.add_routes([web.get("/prompt.wav", prompt), web.get("/page", page), web.get("/endless.wav", endless),
                    web.get("/slow.wav", slow)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
