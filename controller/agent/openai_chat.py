"""Language model client for OpenAI-compatible Chat Completions, streamed.

Follows the OpenAI API reference, "Chat > Create chat completion" (POST /v1/chat/completions)
with `stream: true`, and the streaming guide: the reply is a text/event-stream of
`chat.completion.chunk` objects, one per `data:` line, ending with `data: [DONE]`. Text comes
in `choices[0].delta.content`; tool calls come in `choices[0].delta.tool_calls` fragments keyed
by `index` (the first fragment carries `id` and `function.name`, later ones pieces of the
`function.arguments` JSON string); `finish_reason` closes the choice. Chunks with an empty
`choices` list (usage reports) carry nothing for us. Errors are `{"error": {"message": ...}}`.

The same server shape is spoken by vLLM, llama.cpp's server, Ollama, LiteLLM and others, so
`base_url` is anything up to and including the version, e.g. "https://api.openai.com/v1".
`OpenAIHttp` is shared with openai_speech: one place knows how to post, time out and fail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from controller.agent.engines import EngineError, LlmDelta, Message, ToolCall, ToolSpec
from controller.agent.sse import SseParser
from controller.config import Secret

DONE = "[DONE]"
_ERROR_TEXT_CHARS = 300


def _as_secret(key: str | Secret | None) -> Secret | None:
    """Keys are held as Secret so no repr, log line or traceback local can show them."""
    if isinstance(key, Secret) or key is None:
        return key
    return Secret(key) if key else None


class OpenAIHttp:
    """POSTs JSON to an OpenAI-style API and streams the response body, failing as EngineError.

    Every failure names the service and what went wrong; the API key is scrubbed from any text
    the server sends back (some servers echo it in 401 messages).
    """

    def __init__(self, who: str, base_url: str, api_key: str | Secret | None, timeout_s: float,
                 session: aiohttp.ClientSession | None) -> None:
        self._who = who
        self._base_url = base_url.rstrip("/")
        self._key = _as_secret(api_key)
        self._timeout_s = timeout_s
        self._session = session
        self._own_session = session is None

    async def post_stream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[bytes]:
        """The response body as it arrives; a silence of timeout_s is a stall, not a wait."""
        url = self._base_url + path
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client().post(url, json=payload, headers=self._headers())
        except TimeoutError:
            raise EngineError(f"{self._who}: no response from {url} within {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise EngineError(f"{self._who}: cannot connect to {url}: {self._scrub(str(exc))}") from exc
        async with response:
            if response.status >= 300:
                raise EngineError(await self._status_error(url, response))
            while True:
                data = await self._read(url, response)
                if not data:
                    return
                yield data

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        """Made on first use so the session belongs to the running event loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}

    async def _read(self, url: str, response: aiohttp.ClientResponse) -> bytes:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await response.content.readany()
        except TimeoutError:
            raise EngineError(
                f"{self._who}: {url} stalled, no data for {self._timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise EngineError(
                f"{self._who}: connection to {url} lost mid-reply: {self._scrub(str(exc))}") from exc

    async def _status_error(self, url: str, response: aiohttp.ClientResponse) -> str:
        """'HTTP 429 from <url>: <the server's error.message>' (or the start of its body)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                body = await response.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError):
            body = ""
        detail = _error_message(body) or body.strip()[:_ERROR_TEXT_CHARS] or response.reason or ""
        return f"{self._who}: HTTP {response.status} from {url}: {self._scrub(detail)}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._key.reveal(), "***") if self._key else text


def _error_message(body: str) -> str | None:
    """error.message of an OpenAI error body, if that is what the body is."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "") or None
    return str(error) if error else None


# ---------------------------------------------------------------- request


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages in the Chat Completions request shape."""
    return [_to_openai(message) for message in messages]


def _to_openai(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        if not message.tool_call_id:
            raise EngineError("a tool message must say which call it answers (tool_call_id)")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
            for call in message.tool_calls]
    return out


def to_openai_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [{"type": "function",
             "function": {"name": tool.name, "description": tool.description,
                          "parameters": tool.parameters}}
            for tool in tools]


# ---------------------------------------------------------------- reply


@dataclass(slots=True)
class _PartialCall:
    """A tool call whose fragments are still arriving."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def complete(self) -> ToolCall:
        text = "".join(self.arguments).strip() or "{}"
        try:
            arguments = json.loads(text)
        except ValueError:
            raise EngineError(
                f"openai-chat: arguments of tool call {self.name!r} are not valid JSON: "
                f"{text[:_ERROR_TEXT_CHARS]!r}") from None
        if not isinstance(arguments, dict):
            raise EngineError(f"openai-chat: arguments of tool call {self.name!r} are not a JSON object")
        return ToolCall(self.id, self.name, arguments)


class _Reply:
    """Folds chunks into deltas: text at once, each tool call once it is whole."""

    def __init__(self) -> None:
        self.finished = False
        self._calls: dict[int, _PartialCall] = {}

    def chunk(self, data: str) -> list[LlmDelta]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise EngineError(f"openai-chat: malformed JSON in the stream: {data[:_ERROR_TEXT_CHARS]!r}") from None
        if not isinstance(chunk, dict):
            raise EngineError(f"openai-chat: unexpected chunk in the stream: {data[:_ERROR_TEXT_CHARS]!r}")
        if chunk.get("error"):
            detail = _error_message(data) or "unknown error"
            raise EngineError(f"openai-chat: the server reported an error mid-reply: {detail}")
        deltas: list[LlmDelta] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) == 0:
                deltas += self._choice(choice)
        return deltas

    def _choice(self, choice: dict[str, Any]) -> list[LlmDelta]:
        delta = choice.get("delta") or {}
        deltas = [LlmDelta(text=delta["content"])] if delta.get("content") else []
        for fragment in delta.get("tool_calls") or ():
            self._fragment(fragment)
        if choice.get("finish_reason"):
            self.finished = True
            deltas += self.flush()
        return deltas

    def _fragment(self, fragment: dict[str, Any]) -> None:
        index = fragment.get("index", len(self._calls))
        call = self._calls.setdefault(index, _PartialCall(id=f"call_{index}"))
        call.id = fragment.get("id") or call.id
        function = fragment.get("function") or {}
        call.name = function.get("name") or call.name
        if function.get("arguments"):
            call.arguments.append(function["arguments"])

    def flush(self) -> list[LlmDelta]:
        """Every call gathered so far, in index order; a finish_reason or the stream's end."""
        calls = [self._calls[index].complete() for index in sorted(self._calls)]
        self._calls.clear()
        return [LlmDelta(tool_call=call) for call in calls]


# ---------------------------------------------------------------- the engine


class OpenAIChatModel:
    """A LanguageModel on any OpenAI-compatible /chat/completions endpoint."""

    name = "openai-chat"
    calls_tools = True

    def __init__(self, base_url: str, model: str, api_key: str | Secret | None = None, *,
                 timeout_s: float = 30.0, temperature: float | None = None,
                 max_tokens: int | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self._http = OpenAIHttp(self.name, base_url, api_key, timeout_s, session)
        self._model = model
        self._temperature = temperature
        self._max_tokens = max_tokens

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LlmDelta]:
        reply = _Reply()
        parser = SseParser()
        body = self._http.post_stream("/chat/completions", self._payload(messages, tools))
        async with aclosing(body):
            async for data in body:
                for event in parser.feed(data):
                    if event.data.strip() == DONE:
                        for delta in reply.flush():
                            yield delta
                        return
                    for delta in reply.chunk(event.data):
                        yield delta
        if not reply.finished:
            raise EngineError("openai-chat: the stream ended before the reply was complete "
                              "(no finish_reason and no [DONE])")
        for delta in reply.flush():
            yield delta

    async def close(self) -> None:
        await self._http.close()

    def _payload(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self._model, "messages": to_openai_messages(messages),
                                   "stream": True}
        if tools:
            payload["tools"] = to_openai_tools(tools)
        if self._temperature is not None:
            payload["temperature"] = self._temperature
        if self._max_tokens is not None:
            payload["max_tokens"] = self._max_tokens
        return payload
