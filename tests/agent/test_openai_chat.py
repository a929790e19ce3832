"""OpenAIChatModel against a local server speaking the Chat Completions streaming protocol."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import pytest

from controller.agent.engines import EngineError, LlmDelta, Message, ToolCall, ToolSpec
from controller.agent.openai_chat import OpenAIChatModel, to_openai_messages
from controller.config import Secret
from tests.agent.fake_services import FakeOpenAI, ScriptedCall

WEATHER = ToolSpec("get_weather", "The weather in a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
HELLO = [Message("system", "Be brief."), Message("user", "Hi")]


@pytest.fixture
async def server():
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def model(server):
    llm = OpenAIChatModel(server.base_url, "gpt-4o-mini", Secret(server.api_key), timeout_s=2.0)
    yield llm
    await llm.close()


async def collect(llm: OpenAIChatModel, messages=HELLO, tools=()) -> list[LlmDelta]:
    return [delta async for delta in llm.stream(list(messages), list(tools))]


async def failure(llm: OpenAIChatModel, messages=HELLO) -> str:
    with pytest.raises(EngineError) as caught:
        await collect(llm, messages)
    return str(caught.value)


# ---------------------------------------------------------------- replies


async def test_text_streams_piece_by_piece(model, server):
    deltas = await collect(model)
    assert deltas == [LlmDelta(text="Hello"), LlmDelta(text=" there"), LlmDelta(text="!")]


async def test_first_text_arrives_before_the_reply_is_finished(model, server):
    server.chat.gate = asyncio.Event()
    stream = model.stream(HELLO, [])
    first = await asyncio.wait_for(anext(stream), 2)
    assert first == LlmDelta(text="Hello")
    server.chat.gate.set()
    assert [d.text async for d in stream] == [" there", "!"]


async def test_one_tool_call_with_arguments_split_across_chunks(model, server):
    server.chat.text = []
    server.chat.tool_calls = [ScriptedCall("call_abc123", "get_weather", '{"city": "Paris", "unit": "c"}', pieces=5)]
    deltas = await collect(model, tools=[WEATHER])
    assert deltas == [LlmDelta(tool_call=ToolCall("call_abc123", "get_weather", {"city": "Paris", "unit": "c"}))]


async def test_text_then_two_parallel_tool_calls_in_index_order(model, server):
    server.chat.text = ["Checking", " both."]
    server.chat.tool_calls = [ScriptedCall("call_1", "get_weather", '{"city": "Oslo"}'),
                              ScriptedCall("call_2", "get_weather", '{"city": "Lima"}', pieces=4)]
    deltas = await collect(model, tools=[WEATHER])
    assert [d.text for d in deltas[:2]] == ["Checking", " both."]
    assert [d.tool_call for d in deltas[2:]] == [ToolCall("call_1", "get_weather", {"city": "Oslo"}),
                                                 ToolCall("call_2", "get_weather", {"city": "Lima"})]


async def test_tool_call_without_arguments_gets_an_empty_dict(model, server):
    server.chat.text = []
    server.chat.tool_calls = [ScriptedCall("call_x", "hang_up", "")]
    assert await collect(model, tools=[ToolSpec("hang_up", "End the call")]) == [
        LlmDelta(tool_call=ToolCall("call_x", "hang_up", {}))]


async def test_usage_chunk_with_empty_choices_and_missing_done_are_fine(model, server):
    server.chat.omit_done = True  # finish_reason and a usage chunk, then the body just ends
    assert "".join(d.text for d in await collect(model)) == "Hello there!"


# ---------------------------------------------------------------- the request


async def test_request_json_and_headers(server):
    llm = OpenAIChatModel(server.base_url + "/", "gpt-4o-mini", server.api_key, timeout_s=2.0,
                          temperature=0.3, max_tokens=150)
    call = ToolCall("call_9", "get_weather", {"city": "Rome"})
    messages = [Message("system", "Be brief."), Message("user", "Weather in Rome?", name="caller"),
                Message("assistant", "", tool_calls=(call,)),
                Message("tool", '{"temp": 21}', tool_call_id="call_9", name="get_weather"),
                Message("assistant", "It is 21 degrees.")]
    try:
        await collect(llm, messages, [WEATHER])
    finally:
        await llm.close()
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {server.api_key}"
    assert request.json == {
        "model": "gpt-4o-mini", "stream": True, "temperature": 0.3, "max_tokens": 150,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Rome?", "name": "caller"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_9", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": '{"temp": 21}'},
            {"role": "assistant", "content": "It is 21 degrees."}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city", "parameters": WEATHER.parameters}}]}


async def test_no_tools_no_key_no_options_sends_a_minimal_request(server):
    server.api_key = None
    llm = OpenAIChatModel(server.base_url, "local-model", timeout_s=2.0)
    try:
        await collect(llm)
    finally:
        await llm.close()
    [request] = server.requests
    assert "Authorization" not in request.headers
    assert set(request.json) == {"model", "messages", "stream"}


def test_tool_message_without_call_id_is_refused():
    with pytest.raises(EngineError, match="tool_call_id"):
        to_openai_messages([Message("tool", "42")])


# ---------------------------------------------------------------- failures


async def test_wrong_key_is_401_with_the_servers_message_and_no_key(server):
    wrong = "sk-wrong-secret-value-123456"
    llm = OpenAIChatModel(server.base_url, "gpt-4o-mini", wrong, timeout_s=2.0)
    try:
        message = await failure(llm)
    finally:
        await llm.close()
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    assert wrong not in message and wrong not in repr(llm.__dict__)


@pytest.mark.parametrize("status, text", [(429, "Rate limit reached for gpt-4o-mini"),
                                          (500, "The server had an error while processing your request.")])
async def test_error_status_carries_status_and_message(model, server, status, text):
    server.chat.status, server.chat.error = status, text
    message = await failure(model)
    assert f"HTTP {status}" in message and text in message
    assert server.api_key not in message


async def test_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAIChatModel(f"http://127.0.0.1:{port}/v1", "m", "sk-never-shown", timeout_s=2.0)
    try:
        message = await failure(llm)
    finally:
        await llm.close()
    assert "cannot connect" in message and "sk-never-shown" not in message


async def test_disconnect_mid_stream(model, server):
    server.chat.ending = "disconnect"
    seen: list[LlmDelta] = []
    with pytest.raises(EngineError, match="lost mid-reply"):
        async for delta in model.stream(HELLO, []):
            seen.append(delta)
    assert seen == [LlmDelta(text="Hello")]


async def test_stream_that_ends_without_finish_reason_or_done(model, server):
    server.chat.ending = "eof"
    assert "ended before the reply was complete" in await failure(model)


async def test_malformed_json_line(model, server):
    server.chat.malformed_line = True
    assert "malformed JSON" in await failure(model)


async def test_error_object_in_the_stream(model, server):
    server.chat.error_event = "upstream model overloaded"
    assert "upstream model overloaded" in await failure(model)


async def test_tool_arguments_that_are_not_json(model, server):
    server.chat.text = []
    server.chat.tool_calls = [ScriptedCall("call_1", "get_weather", '{"city": "Par')]
    message = await failure(model)
    assert "get_weather" in message and "not valid JSON" in message


@pytest.mark.parametrize("before_headers", [False, True])
async def test_stall_times_out_quickly(server, before_headers):
    server.chat.ending = "stall"
    server.chat.stall_before_headers = before_headers
    llm = OpenAIChatModel(server.base_url, "gpt-4o-mini", server.api_key, timeout_s=0.3)
    started = time.monotonic()
    try:
        message = await failure(llm)
    finally:
        await llm.close()
    assert time.monotonic() - started < 1.5
    assert ("stalled" if not before_headers else "no response") in message


# ---------------------------------------------------------------- session


async def test_close_closes_only_a_session_it_made(server):
    async with aiohttp.ClientSession() as session:
        llm = OpenAIChatModel(server.base_url, "gpt-4o-mini", server.api_key, session=session)
        await collect(llm)
        await llm.close()
        assert not session.closed
    own = OpenAIChatModel(server.base_url, "gpt-4o-mini", server.api_key)
    await collect(own)
    session = own._http._session
    await own.close()
    assert session is not None and session.closed


async def test_the_key_is_never_logged_even_at_debug(model, server, caplog):
    caplog.set_level(logging.DEBUG)
    server.chat.status = 500
    await failure(model)
    server.chat.status = 200
    await collect(model)
    assert server.api_key not in caplog.text
