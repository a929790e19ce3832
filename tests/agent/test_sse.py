"""SseParser against the event-stream rules of the WHATWG HTML standard, fed in any chunking."""

from __future__ import annotations

import pytest

from controller.agent.sse import SseEvent, SseParser

STREAM = (
    b": a comment, then an event with a type and an id\n"
    b"event: update\n"
    b"id: 7\n"
    b"data: first line\n"
    b"data:second line, no space\n"
    b"data:  two spaces keep one\n"
    b"\n"
    b"data: {\"caf\xc3\xa9\": \"\xe2\x82\xac\"}\r\n"
    b"\r\n"
    b"data: cr only\r"
    b"\r"
    b"retry: 1000\n"
    b"unknown: field\n"
    b"data\n"
    b"\n"
    b"event: ignored, no data\n"
    b"\n"
    b"data: [DONE]\n\n"
)

EXPECTED = [
    SseEvent("update", "first line\nsecond line, no space\n two spaces keep one", "7"),
    SseEvent("message", '{"café": "€"}', "7"),
    SseEvent("message", "cr only", "7"),
    SseEvent("message", "", "7"),
    SseEvent("message", "[DONE]", "7"),
]


def test_whole_stream_in_one_feed():
    assert SseParser().feed(STREAM) == EXPECTED


def test_byte_at_a_time_gives_the_same_events():
    parser = SseParser()
    events = [event for i in range(len(STREAM)) for event in parser.feed(STREAM[i:i + 1])]
    assert events == EXPECTED


@pytest.mark.parametrize("size", [2, 3, 5, 7, 13, 64])
def test_any_chunk_size_gives_the_same_events(size):
    parser = SseParser()
    events = [event for i in range(0, len(STREAM), size) for event in parser.feed(STREAM[i:i + size])]
    assert events == EXPECTED


def test_crlf_split_between_feeds_is_one_line_ending():
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [SseEvent("message", "a")]
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SseEvent("message", "b")]


def test_an_unfinished_event_waits_for_its_blank_line():
    parser = SseParser()
    assert parser.feed(b"data: partial") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\n") == [SseEvent("message", "partial")]


def test_leading_byte_order_mark_is_dropped_and_event_type_resets():
    parser = SseParser()
    events = parser.feed(b"\xef\xbb\xbfevent: a\ndata: 1\n\ndata: 2\n\n")
    assert events == [SseEvent("a", "1"), SseEvent("message", "2")]


def test_openai_style_chunks():
    body = b'data: {"choices":[]}\n\ndata: [DONE]\n\n'
    assert [e.data for e in SseParser().feed(body)] == ['{"choices":[]}', "[DONE]"]
