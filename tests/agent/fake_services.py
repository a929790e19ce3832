"""Local stand-ins for the hosted engines, speaking their documented wire protocols on 127.0.0.1.

FakeOpenAI: an OpenAI-compatible HTTP server (aiohttp) with
  POST /v1/chat/completions, stream=true: text/event-stream of chat.completion.chunk objects
    (role first, content pieces, tool_calls fragments by index, finish_reason, a usage chunk
    with empty choices, then `data: [DONE]`), as in the API reference and streaming guide;
  POST /v1/audio/speech, response_format=pcm: raw 24 kHz L16 mono, chunked transfer encoding.
  Errors are `{"error": {"message", "type", "param", "code"}}`; a wrong key gets a 401 that
  echoes the key it was sent (so tests prove clients scrub it).
FakeDeepgram: a Deepgram live-streaming WebSocket server (websockets) checking the
  `Authorization: Token` header and the query at the handshake (401/400 with dg-error),
  revealing a scripted transcript as audio arrives (interim Results, is_final segments),
  answering Finalize with from_finalize Results and CloseStream with Metadata then a close.

Each test sets the script before calling the client; every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


# ================================================================ OpenAI-compatible HTTP


@dataclass
class Behaviour:
    """How a reply goes wrong, if it does.

    ending: "done" (complete), "disconnect" (socket closed mid-body), "stall" (goes silent
    mid-body), "eof" (body ends cleanly but early: no finish_reason, no [DONE]).
    """

    status: int = 200
    error: str = ""
    ending: str = "done"
    stall_before_headers: bool = False
    gate: asyncio.Event | None = None  # when set, the reply waits for it after its first piece
    pace_s: float = 0.0  # pause between writes so the client reads them one by one


@dataclass
class ScriptedCall:
    id: str
    name: str
    arguments: str  # the JSON text as a model would write it; invalid on purpose in some tests
    pieces: int = 3  # how many fragments the arguments are split into


@dataclass
class ChatScript(Behaviour):
    text: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    tool_calls: list[ScriptedCall] = field(default_factory=list)
    omit_done: bool = False  # end after finish_reason without `data: [DONE]`, as some servers do
    malformed_line: bool = False
    error_event: str = ""  # send `data: {"error": ...}` after the first piece, as proxies do


@dataclass
class SpeechScript(Behaviour):
    seconds: float = 0.25
    chunk_sizes: tuple[int, ...] = (1, 999, 3000, 7)  # odd on purpose; the rest goes in 4096s


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    json: dict[str, Any]


def tone(seconds: float, rate: int = 24000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * math.pi * hz * t) * 8000).astype("<i2").tobytes()


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, math.ceil(len(text) / max(count, 1)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class FakeOpenAI:
    """An OpenAI-compatible server; `base_url` ends in /v1 like the real one."""

    def __init__(self, api_key: str | None = "sk-test-0123456789abcdef") -> None:
        self.api_key = api_key
        self.chat = ChatScript()
        self.speech = SpeechScript()
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    def speech_pcm(self) -> bytes:
        return tone(self.speech.seconds)

    # ------------------------------------------------------------ shared

    async def _accept(self, request: web.Request, behaviour: Behaviour) -> dict[str, Any] | web.Response:
        """Record the request; the error response if it is refused or scripted to fail."""
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        refusal = self._check_key(request.headers.get("Authorization"))
        if refusal is not None:
            return refusal
        if behaviour.status != 200:
            kind, code = {429: ("requests", "rate_limit_exceeded")}.get(
                behaviour.status, ("server_error", None))
            return _error(behaviour.status, behaviour.error or "The server had an error.", kind, code)
        if behaviour.stall_before_headers:
            await self._release.wait()  # the client gave up long ago; the fake is shutting down
            return _error(503, "Stalled on purpose.", "server_error", None)
        return body

    def _check_key(self, authorization: str | None) -> web.Response | None:
        if self.api_key is None or authorization == f"Bearer {self.api_key}":
            return None
        if not authorization:
            message = ("You didn't provide an API key. You need to provide your API key in an "
                       "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        else:
            message = (f"Incorrect API key provided: {authorization.removeprefix('Bearer ')}. "
                       "You can find your API key at https://platform.openai.com/account/api-keys.")
        return _error(401, message, "invalid_request_error", "invalid_api_key")

    async def _send(self, request: web.Request, response: web.StreamResponse, parts: list[bytes],
                    behaviour: Behaviour, cut: int) -> web.StreamResponse:
        """Write the parts; a failing ending stops after `cut` of them."""
        await response.prepare(request)
        stop = cut if behaviour.ending in ("disconnect", "stall") else len(parts)
        for index, part in enumerate(parts[:stop]):
            await response.write(part)
            await asyncio.sleep(behaviour.pace_s)
            if index == cut - 1 and behaviour.gate is not None:
                await behaviour.gate.wait()
        if behaviour.ending == "disconnect":
            assert request.transport is not None
            request.transport.close()
        elif behaviour.ending == "stall":
            await self._release.wait()
        else:
            await response.write_eof()
        return response

    # ------------------------------------------------------------ chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        accepted = await self._accept(request, self.chat)
        if isinstance(accepted, web.Response):
            return accepted
        assert accepted.get("stream") is True, "the fake only speaks the streaming API"
        events, cut = self._chat_events(accepted["model"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache"})
        return await self._send(request, response, events, self.chat, cut)

    def _chat_events(self, model: str) -> tuple[list[bytes], int]:
        """The SSE body, and how many events make 'the first piece' of it."""
        script = self.chat
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            choices = [] if delta is None else [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                    "model": model, "system_fingerprint": "fp_fake", "choices": choices, **extra}
            return f"data: {json.dumps(body)}\n\n".encode()

        events = [chunk({"role": "assistant", "content": "" if script.text else None, "refusal": None})]
        events += [chunk({"content": piece}) for piece in script.text]
        for index, call in enumerate(script.tool_calls):
            events.append(chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                                 "function": {"name": call.name, "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                       for piece in _pieces(call.arguments, call.pieces)]
        cut = 2
        if script.malformed_line:
            events.insert(cut, b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content": "x"\n\n')
        if script.error_event:
            error = {"error": {"message": script.error_event, "type": "server_error", "code": None}}
            events.insert(cut, f"data: {json.dumps(error)}\n\n".encode())
        if script.ending == "eof":
            return events, cut
        events.append(chunk({}, "tool_calls" if script.tool_calls else "stop"))
        usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
        events.append(chunk(None, usage=usage))
        if not script.omit_done:
            events.append(b"data: [DONE]\n\n")
        return events, cut

    # ------------------------------------------------------------ speech

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        accepted = await self._accept(request, self.speech)
        if isinstance(accepted, web.Response):
            return accepted
        if not accepted.get("input") or not accepted.get("voice") or accepted.get("response_format") != "pcm":
            return _error(400, "This fake only makes pcm from an input and a voice.", "invalid_request_error", None)
        pcm = self.speech_pcm()
        chunks, offset = [], 0
        for size in self.speech.chunk_sizes:
            chunks.append(pcm[offset:offset + size])
            offset += size
        chunks += [pcm[i:i + 4096] for i in range(offset, len(pcm), 4096)]
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        return await self._send(request, response, [c for c in chunks if c], self.speech, cut=2)


def _error(status: int, message: str, kind: str, code: str | None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}, status=status)


# ================================================================ Deepgram live streaming


@dataclass
class DeepgramScript:
    words: list[str] = field(default_factory=lambda: "hello there how are you today".split())
    word_s: float = 0.2  # each word takes this much audio; word i is spoken in [i*word_s, (i+1)*word_s]
    final_every: int = 0  # make an is_final segment every this many words; 0: only Finalize does
    answer_finalize: bool = True
    close_after_s: float | None = None  # close once this much audio has arrived
    close_code: int = 1011
    close_reason: str = "NET-0001: no audio was received within the timeout window"
    close_on_finalize: bool = False  # close (as above) instead of answering Finalize
    error_before_close: str = ""  # send {"type": "Error"} with this description before closing
    chatter: bool = False  # answer the first audio with SpeechStarted, UtteranceEnd, unknown and non-JSON messages


@dataclass
class DeepgramSession:
    """What one client connection sent, and what the fake answered."""

    query: dict[str, str]
    headers: Headers
    audio_bytes: int = 0
    controls: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    final_upto: int = 0  # words already in is_final results
    segment_start: float = 0.0  # audio second where the unfinalized segment begins
    interim_upto: int = 0

    @property
    def sample_rate(self) -> int:
        return int(self.query["sample_rate"])

    @property
    def audio_s(self) -> float:
        return self.audio_bytes / (2 * self.sample_rate)


class FakeDeepgram:
    """A Deepgram /v1/listen server; `url` is what the client is given instead of the real one."""

    def __init__(self, api_key: str = "dg-test-fedcba9876543210",
                 encodings: frozenset[str] = frozenset({"linear16", "mulaw", "alaw", "opus", "flac"})) -> None:
        self.api_key = api_key
        self.encodings = encodings
        self.script = DeepgramScript()
        self.sessions: list[DeepgramSession] = []
        self.refused: list[int] = []
        self.url = ""
        self._server: Server | None = None
        self._request_id = str(uuid.uuid4())

    async def __aenter__(self) -> FakeDeepgram:
        # Its own logger, quiet at DEBUG, so tests can check the client never logs the key.
        quiet = logging.getLogger("tests.agent.fake_deepgram")
        quiet.setLevel(logging.INFO)
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check,
                                   compression=None, ping_interval=None, logger=quiet)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/listen"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # ------------------------------------------------------------ handshake

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return self._refuse(401, "INVALID_AUTH", "Invalid credentials.")
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        if query.get("encoding") not in self.encodings:
            return self._refuse(400, "Bad Request", f"Unsupported encoding: {query.get('encoding')}.")
        if not query.get("sample_rate", "").isdigit() or int(query["sample_rate"]) <= 0:
            return self._refuse(400, "Bad Request", "sample_rate is required for raw audio.")
        return None

    def _refuse(self, status: int, code: str, message: str) -> Response:
        self.refused.append(status)
        body = json.dumps({"err_code": code, "err_msg": message, "request_id": self._request_id}).encode()
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                           ("dg-request-id", self._request_id), ("dg-error", message),
                           ("Connection", "close")])
        return Response(status, {400: "Bad Request", 401: "Unauthorized"}[status], headers, body)

    # ------------------------------------------------------------ stream

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = {k: v[-1] for k, v in parse_qs(urlsplit(ws.request.path).query).items()}
        session = DeepgramSession(query, ws.request.headers)
        self.sessions.append(session)
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    if not await self._audio(ws, session, message):
                        return
                elif not await self._control(ws, session, json.loads(message)):
                    return
        except ConnectionClosed:
            pass
        finally:
            session.closed = True

    async def _audio(self, ws: ServerConnection, session: DeepgramSession, pcm: bytes) -> bool:
        script = self.script
        first = session.audio_bytes == 0
        session.audio_bytes += len(pcm)
        if script.close_after_s is not None and session.audio_s >= script.close_after_s:
            await self._fail(ws)
            return False
        if first and script.chatter:
            await self._chatter(ws)
        heard = min(len(script.words), int(session.audio_s / script.word_s + 1e-9))
        if script.final_every and heard - session.final_upto >= script.final_every:
            upto = session.final_upto + script.final_every
            await self._results(ws, session, upto, upto * script.word_s, is_final=True)
        elif heard > session.interim_upto:
            await self._results(ws, session, heard, session.audio_s, is_final=False)
        return True

    async def _control(self, ws: ServerConnection, session: DeepgramSession, message: dict[str, Any]) -> bool:
        kind = message["type"]
        session.controls.append(kind)
        heard = min(len(self.script.words), int(session.audio_s / self.script.word_s + 1e-9))
        if kind == "Finalize" and self.script.close_on_finalize:
            await self._fail(ws)
            return False
        if kind == "Finalize" and self.script.answer_finalize:
            await self._results(ws, session, heard, session.audio_s, is_final=True, from_finalize=True)
        elif kind == "CloseStream":
            if heard > session.final_upto:
                await self._results(ws, session, heard, session.audio_s, is_final=True)
            await self._send(ws, session, {
                "type": "Metadata", "transaction_key": "deprecated", "request_id": self._request_id,
                "sha256": "0" * 64, "created": "2024-08-29T22:37:55.202Z",
                "duration": session.audio_s, "channels": 1})
            await ws.close(1000)
            return False
        return True

    async def _results(self, ws: ServerConnection, session: DeepgramSession, upto: int, end: float,
                       is_final: bool, from_finalize: bool = False) -> None:
        """Results for the words since the last final up to `upto`, covering audio to `end`."""
        step = self.script.word_s
        words = [{"word": w, "start": round(i * step, 3), "end": round((i + 1) * step, 3),
                  "confidence": 0.99 - 0.02 * (i % 5), "punctuated_word": w}
                 for i, w in enumerate(self.script.words[session.final_upto:upto], session.final_upto)]
        confidence = sum(w["confidence"] for w in words) / len(words) if words else 0.0
        start = session.segment_start
        await self._send(ws, session, {
            "type": "Results", "channel_index": [0, 1], "duration": round(end - start, 3),
            "start": round(start, 3), "is_final": is_final, "speech_final": False,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": " ".join(w["word"] for w in words),
                                          "confidence": confidence, "words": words}]},
            "metadata": {"request_id": self._request_id, "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, "nova-2")),
                         "model_info": {"name": "2-general-nova", "version": "2024-01-18.26916", "arch": "nova-2"}}})
        session.interim_upto = upto
        if is_final:
            session.final_upto = upto
            session.segment_start = end

    async def _fail(self, ws: ServerConnection) -> None:
        if self.script.error_before_close:
            await ws.send(json.dumps({"type": "Error", "description": self.script.error_before_close,
                                      "message": "", "variant": "error"}))
        await ws.close(self.script.close_code, self.script.close_reason)

    async def _chatter(self, ws: ServerConnection) -> None:
        for message in ({"type": "SpeechStarted", "channel": [0], "timestamp": 0.0},
                        {"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 0.0},
                        {"type": "SomethingNew", "detail": 1}, [1, 2, 3],
                        {"type": "Results", "channel": {}}):
            await ws.send(json.dumps(message))
        await ws.send("this is not JSON")

    async def _send(self, ws: ServerConnection, session: DeepgramSession, message: dict[str, Any]) -> None:
        session.sent.append(message)
        await ws.send(json.dumps(message))
