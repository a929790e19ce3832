"""Speech-to-text client for Deepgram's live streaming API (WebSocket wss://api.deepgram.com/v1/listen).

Follows Deepgram's API reference "Speech to Text > Live audio" and the streaming guides for
Interim Results, Finalize, KeepAlive, CloseStream and "STT Troubleshooting WebSocket, NET, and
DATA Errors":

- options go in the query string; the key goes in an `Authorization: Token <key>` header;
  a refused handshake is an HTTP 4xx with a `dg-error` header and a JSON body;
- audio is sent as binary messages (never an empty one: that used to mean end of stream);
  control messages are JSON text: `Finalize`, `KeepAlive`, `CloseStream`;
- the server sends `Results` (interim, then `is_final` segments, `from_finalize` after a
  Finalize), `Metadata` when the stream ends, and with other options `SpeechStarted` and
  `UtteranceEnd`; it closes with 1008 (undecodable audio) or 1011 (timeouts, internal errors)
  and a reason such as "NET-0001 ...";
- with nothing sent for about 10 s the server closes the stream, hence the KeepAlive.

Timestamps in results are seconds of audio received, which is how late results for audio that
belongs to a committed or cleared utterance are recognised and dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.http11 import Response

from controller.agent.engines import EngineError, Transcript
from controller.config import Secret

log = logging.getLogger(__name__)
# websockets logs every handshake header at DEBUG, Authorization included: keep its logger above that.
_ws_log = logging.getLogger(__name__ + ".websocket")
_ws_log.setLevel(logging.INFO)

DEFAULT_URL = "wss://api.deepgram.com/v1/listen"
FINALIZE = json.dumps({"type": "Finalize"})
KEEPALIVE = json.dumps({"type": "KeepAlive"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})


class DeepgramStt:
    """A SpeechToText on Deepgram's live API: one WebSocket per call."""

    name = "deepgram"

    def __init__(self, api_key: str | Secret, *, url: str = DEFAULT_URL, model: str = "nova-2",
                 language: str = "en", finalize_timeout_s: float = 3.0, keepalive_s: float = 5.0,
                 open_timeout_s: float = 10.0) -> None:
        if not api_key:
            raise ValueError("Deepgram needs an API key")
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self._url = url
        self._model = model
        self._language = language
        self._finalize_timeout_s = finalize_timeout_s
        self._keepalive_s = keepalive_s
        self._open_timeout_s = open_timeout_s

    def listen_url(self, sample_rate: int) -> str:
        """The URL with our options: raw L16 mono, interim results on, our own end-of-turn logic."""
        query = urlencode({
            "encoding": "linear16", "sample_rate": sample_rate, "channels": 1,
            "model": self._model, "language": self._language,
            "interim_results": "true", "punctuate": "true", "smart_format": "true",
            "endpointing": "false", "vad_events": "false"})
        return f"{self._url}{'&' if '?' in self._url else '?'}{query}"

    async def open(self, sample_rate: int,
                   on_partial: Callable[[Transcript], None] | None = None) -> DeepgramStream:
        try:
            ws = await connect(
                self.listen_url(sample_rate), open_timeout=self._open_timeout_s, compression=None,
                additional_headers={"Authorization": f"Token {self._key.reveal()}"}, logger=_ws_log)
        except InvalidStatus as exc:
            raise EngineError(_refusal(exc.response)) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise EngineError(f"deepgram: cannot connect to {self._url}: {str(exc) or type(exc).__name__}") from exc
        return DeepgramStream(ws, sample_rate, on_partial, finalize_timeout_s=self._finalize_timeout_s,
                              keepalive_s=self._keepalive_s)


def _refusal(response: Response) -> str:
    """'HTTP 401: Invalid credentials.' from the JSON body, else the dg-error header."""
    try:
        body = json.loads(response.body)
        detail = body.get("err_msg") or body.get("err_code")
    except (ValueError, AttributeError):
        detail = None
    detail = detail or response.headers.get("dg-error") or response.reason_phrase
    request_id = response.headers.get("dg-request-id")
    suffix = f" (request {request_id})" if request_id else ""
    return f"deepgram refused the connection: HTTP {response.status_code}: {detail}{suffix}"


@dataclass(frozen=True, slots=True)
class _Segment:
    """The text of one Results message, and the audio it covers."""

    text: str
    confidence: float | None
    start: float
    end: float


def _segment(message: dict[str, Any], boundary: float) -> _Segment | None:
    """A Results message's text, less any words spoken before `boundary`; None if nothing is left."""
    alternatives = message["channel"]["alternatives"]
    if not alternatives:
        return None
    best = alternatives[0]
    all_words = best.get("words") or []
    words = [word for word in all_words if float(word["end"]) > boundary]
    if all_words and not words:
        return None
    if len(words) == len(all_words):
        text = best.get("transcript", "")
    else:
        text = " ".join(word.get("punctuated_word") or word["word"] for word in words)
    start = float(message.get("start", 0.0))
    end = start + float(message.get("duration", 0.0))
    if words:
        start, end = float(words[0]["start"]), float(words[-1]["end"])
    elif end <= boundary:
        return None
    confidence = best.get("confidence")
    text = text.strip()
    return _Segment(text, None if confidence is None else float(confidence), start, end) if text else None


class DeepgramStream:
    """One call's recognition stream: audio out, results folded into the current utterance."""

    def __init__(self, ws: ClientConnection, sample_rate: int,
                 on_partial: Callable[[Transcript], None] | None, *,
                 finalize_timeout_s: float, keepalive_s: float) -> None:
        self._ws = ws
        self._bytes_per_s = 2 * sample_rate
        self._on_partial = on_partial
        self._finalize_timeout_s = finalize_timeout_s
        self._keepalive_s = keepalive_s
        self._fed = 0  # bytes of audio sent
        self._boundary = 0.0  # audio seconds; anything heard before belongs to a finished utterance
        self._finals: list[_Segment] = []
        self._interim: _Segment | None = None
        self._partial_text = ""
        self._finalized: asyncio.Future[None] | None = None
        self._error: EngineError | None = None
        self._closing = False
        self._last_send = time.monotonic()
        self._reader = asyncio.create_task(self._read(), name="deepgram-reader")
        self._keepalive = asyncio.create_task(self._keep_alive(), name="deepgram-keepalive")

    async def feed(self, pcm: bytes) -> None:
        if pcm:
            await self._send(pcm)
            self._fed += len(pcm)

    async def result(self, final: bool) -> Transcript:
        self._raise_if_failed()
        if not final:
            return self._current(final=False)
        upto = self._fed / self._bytes_per_s
        if upto > self._boundary:
            await self._finalize()
        transcript = self._current(final=True)
        self._reset(upto)
        return transcript

    def clear(self) -> None:
        self._reset(self._fed / self._bytes_per_s)

    async def close(self) -> None:
        """CloseStream, then give the server a moment to send its last words and Metadata."""
        if self._closing:
            return
        self._closing = True
        self._keepalive.cancel()
        if self._error is None:
            try:
                await self._ws.send(CLOSE_STREAM)
                await asyncio.wait({self._reader}, timeout=self._finalize_timeout_s)
            except ConnectionClosed:
                pass
        await self._ws.close()
        await asyncio.gather(self._reader, self._keepalive, return_exceptions=True)

    # ------------------------------------------------------------ sending

    async def _send(self, message: bytes | str) -> None:
        self._raise_if_failed()
        try:
            await self._ws.send(message)
        except ConnectionClosed:
            self._fail(self._closed_error())
            raise EngineError(str(self._error)) from None
        self._last_send = time.monotonic()

    async def _finalize(self) -> None:
        """Flush the server's buffered audio into final results; a silent server costs only the timeout."""
        self._finalized = asyncio.get_running_loop().create_future()
        try:
            await self._send(FINALIZE)
            async with asyncio.timeout(self._finalize_timeout_s):
                await self._finalized
        except TimeoutError:
            log.warning("deepgram: no reply to Finalize within %g s; using the text heard so far",
                        self._finalize_timeout_s)
        finally:
            self._finalized = None

    async def _keep_alive(self) -> None:
        """Deepgram closes a stream that has been sent nothing for ~10 s (NET-0001)."""
        while True:
            idle = time.monotonic() - self._last_send
            if idle >= self._keepalive_s:
                try:
                    await self._send(KEEPALIVE)
                except EngineError:
                    return
                idle = 0.0
            await asyncio.sleep(self._keepalive_s - idle)

    # ------------------------------------------------------------ receiving

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    self._message(message)
        except ConnectionClosed:
            pass
        error = self._closed_error()
        if not self._closing:
            log.warning("%s", error)
        self._fail(error)

    def _message(self, text: str) -> None:
        """One server message; anything unexpected is logged and skipped, never fatal."""
        try:
            message = json.loads(text)
            kind = message.get("type")
            if kind == "Results":
                self._results(message)
            elif kind == "Metadata":
                log.debug("deepgram: request %s ended after %s s of audio",
                          message.get("request_id"), message.get("duration"))
            elif kind == "Error":
                detail = message.get("description") or message.get("message") or text
                log.warning("deepgram reported an error: %s", detail)
                self._fail(EngineError(f"deepgram reported an error: {detail}"))
        except (ValueError, AttributeError, KeyError, TypeError, IndexError):
            log.warning("deepgram: ignored a malformed message: %.200s", text)

    def _results(self, message: dict[str, Any]) -> None:
        segment = _segment(message, self._boundary)
        if message.get("is_final"):
            if segment is not None:
                self._finals.append(segment)
            self._interim = None
        else:
            self._interim = segment
        self._tell_partial()
        if message.get("from_finalize") and self._finalized is not None and not self._finalized.done():
            self._finalized.set_result(None)

    def _tell_partial(self) -> None:
        transcript = self._current(final=False)
        if transcript.text == self._partial_text:
            return
        self._partial_text = transcript.text
        if self._on_partial is not None:
            try:
                self._on_partial(transcript)
            except Exception:
                log.exception("deepgram: the partial-result callback failed")

    # ------------------------------------------------------------ state

    def _current(self, final: bool) -> Transcript:
        segments = self._finals + ([self._interim] if self._interim is not None else [])
        if not segments:
            return Transcript("", final)
        confidences = [s.confidence for s in segments if s.confidence is not None]
        return Transcript(
            " ".join(s.text for s in segments), final,
            confidence=sum(confidences) / len(confidences) if confidences else None,
            audio_start=segments[0].start, audio_end=segments[-1].end)

    def _reset(self, boundary: float) -> None:
        self._finals = []
        self._interim = None
        self._partial_text = ""
        self._boundary = max(self._boundary, boundary)

    def _closed_error(self) -> EngineError:
        if self._closing:
            return EngineError("deepgram: the stream is closed")
        code, reason = self._ws.close_code, self._ws.close_reason
        detail = f"{code} {reason}".strip() if code is not None else "connection lost"
        return EngineError(f"deepgram closed the stream: {detail}")

    def _fail(self, error: EngineError) -> None:
        """Remember the first failure; every later call raises it, a waiting Finalize at once."""
        if self._error is None:
            self._error = error
        if self._finalized is not None and not self._finalized.done():
            self._finalized.set_exception(EngineError(str(self._error)))

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise EngineError(str(self._error))
