"""The ESL codec against every byte recorded from a real FreeSWITCH 1.10.12."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from controller.esl import protocol as esl
from tests.fixture_data import esl_sessions, received_chunks, received_stream, sent_commands

INBOUND = esl_sessions("esl_inbound_session.json")
OUTBOUND = esl_sessions("esl_outbound_session.json")
ALL = [(f"in-{i}", s) for i, s in enumerate(INBOUND)] + [(f"out-{i}", s) for i, s in enumerate(OUTBOUND)]


@pytest.mark.parametrize("name,session", ALL, ids=[n for n, _ in ALL])
def test_every_message_parses_whole_stream(name, session):
    parser = esl.EslParser()
    parser.feed(received_stream(session))
    frames = parser.frames()
    assert len(frames) == len(received_chunks(session))
    assert parser.buffered == 0
    for frame in frames:
        event = esl.parse_event(frame)
        if frame.content_type.startswith("text/event"):
            assert event is not None and event.name


@pytest.mark.parametrize("name,session", ALL, ids=[n for n, _ in ALL])
def test_byte_at_a_time_gives_the_same_frames(name, session):
    whole = esl.EslParser()
    whole.feed(received_stream(session))
    trickle = esl.EslParser()
    for b in received_stream(session):
        trickle.feed(bytes([b]))
    assert trickle.frames() == whole.frames()


def _events(session):
    parser = esl.EslParser()
    parser.feed(received_stream(session))
    return [(f, esl.parse_event(f)) for f in parser.frames()]


def test_plain_custom_event_body_is_kept_separate_from_headers():
    events = [e for _, e in _events(INBOUND[1]) if e and e.name == "CUSTOM"]
    play = next(e for e in events if e.subclass == "mod_audio_fork::play_audio")
    assert json.loads(play.body)["file"].endswith("_1.tmp.r8")
    assert play.headers["variable_current_application"] == "playback"
    assert play.unique_id == "3f28fbf9-28a9-4df4-8bf9-9c3a4c50279e"
    disconnects = [e.body for e in events if e.subclass == "mod_audio_fork::disconnect"]
    assert disconnects == ['{"reason":"server asked to disconnect"}']
    transcription = next(e for e in events if e.subclass == "mod_audio_fork::transcription")
    assert transcription.json_body() == {"text": "hello this is a test", "is_final": True, "confidence": 0.93}


def test_plain_headers_are_url_decoded():
    api_event = next(e for _, e in _events(INBOUND[1]) if e and e.name == "API")
    assert api_event.headers["FreeSWITCH-IPv6"] == "fd00::2"
    assert api_event.headers["Event-Date-Local"] == "2026-11-23 22:18:11"


def test_json_events_carry_body_and_duplicate_keys():
    events = [e for _, e in _events(INBOUND[2]) if e]
    assert all(e.fmt == "json" for e in events)
    transcription = next(e for e in events if e.subclass == "mod_audio_fork::transcription")
    assert transcription.json_body()["text"]
    complete = [e for e in events if e.name == "CHANNEL_HANGUP_COMPLETE"]
    assert {e.headers["Hangup-Cause"] for e in complete} == {"NORMAL_CLEARING", "USER_BUSY"}


def test_background_job_body_and_job_uuid():
    jobs = [e for _, e in _events(INBOUND[1]) if e and e.name == "BACKGROUND_JOB"]
    by_job = {e.headers["Job-UUID"]: e for e in jobs}
    assert by_job["aaaaaaaa-0000-4000-8000-000000000002"].body == "-ERR UNALLOCATED_NUMBER\n"
    assert by_job["aaaaaaaa-0000-4000-8000-000000000003"].body.startswith("+OK a1a1a1a1")
    assert by_job["aaaaaaaa-0000-4000-8000-000000000003"].headers["Job-Command-Arg"].startswith(
        "{origination_uuid=")


def test_error_replies_are_not_ok():
    frames = [f for f, _ in _events(INBOUND[1])]
    texts = {f.text for f in frames if f.content_type == "api/response"}
    assert "-ERR No such channel!\n" in texts
    replies = [f for f in frames if f.content_type == "command/reply"]
    bad = next(f for f in replies if f.reply_text == "-ERR command not found")
    assert not bad.ok
    bg = next(f for f in replies if f.reply_text.startswith("+OK Job-UUID"))
    assert bg.ok and bg.headers["Job-UUID"] == "aaaaaaaa-0000-4000-8000-000000000001"


def test_wrong_password_session():
    frames = [f for f, _ in _events(INBOUND[0])]
    assert [f.content_type for f in frames] == ["auth/request", "command/reply", "text/disconnect-notice"]
    assert frames[1].reply_text == "-ERR invalid"
    assert frames[2].text == esl.DISCONNECT_TEXT


@pytest.mark.parametrize("session", OUTBOUND, ids=["call1", "call2", "call3"])
def test_outbound_connect_reply_is_channel_data(session):
    first = _events(session)[0][0]
    data = esl.connect_reply_headers(first)
    assert data["Event-Name"] == "CHANNEL_DATA"
    assert data["Reply-Text"] == "+OK\n"
    assert data["Socket-Mode"] == "async" and data["Control"] == "full"
    assert data["variable_current_application_data"] == "127.0.0.1:8084 async full"
    assert list(first.headers)[0] == "Event-Name"  # Content-Type is not first


def test_outbound_linger_notices():
    frames = [f for f, _ in _events(OUTBOUND[2])]
    notices = [f for f in frames if f.content_type == "text/disconnect-notice"]
    assert [n.headers["Content-Disposition"] for n in notices] == ["linger", "disconnect"]
    assert notices[0].headers["Linger-Time"] == "2"


# ---- encoding: the simulator must produce the same bytes FreeSWITCH did

def _plain_chunks():
    for session in INBOUND + OUTBOUND:
        for chunk in received_chunks(session):
            if b"Content-Type: text/event-plain" in chunk[:80]:
                yield chunk


def _reencode_plain(chunk: bytes) -> bytes:
    frame_parser = esl.EslParser()
    frame_parser.feed(chunk)
    (frame,) = frame_parser.frames()
    head, _, rest = frame.body.partition(b"\n\n")
    pairs = []
    for line in head.decode().split("\n"):
        key, _, value = line.partition(": ")
        if key != "Content-Length":
            pairs.append((key, unquote(value)))
    event = esl.parse_event(frame)
    return esl.event_plain(pairs, event.body)


def test_plain_events_reencode_byte_for_byte():
    chunks = list(_plain_chunks())
    assert len(chunks) > 100
    for chunk in chunks:
        assert _reencode_plain(chunk) == chunk


def test_json_events_reencode_byte_for_byte():
    count = 0
    for chunk in received_chunks(INBOUND[2]):
        if b"text/event-json" not in chunk[:80]:
            continue
        parser = esl.EslParser()
        parser.feed(chunk)
        (frame,) = parser.frames()
        pairs = json.loads(frame.body, object_pairs_hook=list)
        body = next((v for k, v in pairs if k == "_body"), None)
        pairs = [(k, v) for k, v in pairs if k not in ("_body", "Content-Length")]
        assert esl.event_json(pairs, body) == chunk
        count += 1
    assert count > 30


def test_connect_reply_reencodes_byte_for_byte():
    chunk = received_chunks(OUTBOUND[0])[0]
    parser = esl.EslParser()
    parser.feed(chunk)
    (frame,) = parser.frames()
    data = [(k, v) for k, v in esl.connect_reply_headers(frame).items()
            if k not in ("Content-Type", "Reply-Text", "Socket-Mode", "Control")]
    assert esl.connect_reply(data) == chunk


def test_replies_and_notices_reencode():
    chunks = set(received_chunks(INBOUND[0]) + received_chunks(INBOUND[1]))
    assert esl.auth_request() in chunks
    assert esl.command_reply("+OK accepted") in chunks
    assert esl.command_reply("-ERR invalid") in chunks
    assert esl.api_response("-ERR No such channel!\n") in chunks
    assert esl.disconnect_notice() in chunks
    job = "aaaaaaaa-0000-4000-8000-000000000001"
    assert esl.command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]) in chunks


# ---- commands voxgate sends

def test_commands_match_what_was_sent():
    sent = set(sent_commands(INBOUND[1])) | set(sent_commands(OUTBOUND[0]))
    assert esl.auth("ClueCon") in sent
    assert esl.encode_command("event plain ALL") in sent
    assert esl.api("version") in sent
    assert esl.bgapi("status", "aaaaaaaa-0000-4000-8000-000000000001") in sent
    assert esl.sendmsg("answer", lock=True) in sent
    assert esl.sendmsg("playback", "/opt/fs/run/sounds/short8k.wav",
                       event_uuid="11110000-0000-4000-8000-0000000000e1") in sent
    assert esl.sendmsg_hangup("NORMAL_CLEARING") in sent
    assert esl.subscribe(["PLAYBACK_START", "PLAYBACK_STOP"]) in sent


def test_subscribe_puts_custom_last():
    cmd = esl.subscribe(["mod_audio_fork::connect", "CHANNEL_ANSWER", "CUSTOM", "DTMF"])
    assert cmd == b"event plain CHANNEL_ANSWER DTMF CUSTOM mod_audio_fork::connect\n\n"


def test_newlines_cannot_inject_commands():
    with pytest.raises(ValueError):
        esl.api("uuid_kill x\n\napi shutdown")
    with pytest.raises(ValueError):
        esl.sendmsg("playback", "file\nexecute-app-name: hangup")


def test_quote_arg_wraps_json_with_spaces():
    assert esl.quote_arg('{"note": "has a space"}') == '\'{"note": "has a space"}\''
    assert esl.quote_arg('{"a":1}') == '{"a":1}'


def test_garbage_is_a_clear_error():
    parser = esl.EslParser()
    with pytest.raises(esl.EslProtocolError, match="colon"):
        parser.feed(b"this is not esl\n\n")
    parser = esl.EslParser()
    with pytest.raises(esl.EslProtocolError, match="Content-Length"):
        parser.feed(b"Content-Type: api/response\nContent-Length: many\n\n")
    parser = esl.EslParser()
    with pytest.raises(esl.EslProtocolError, match="exceeds"):
        parser.feed(b"X: " + b"a" * (esl.MAX_HEADER_BLOCK + 10))
