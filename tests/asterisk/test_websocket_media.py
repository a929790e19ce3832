"""chan_websocket events, commands, framing and sender state against a real Asterisk 22.10.1."""

from __future__ import annotations

import dataclasses
import re

import pytest
from websockets.frames import Frame, Opcode

from controller.asterisk import websocket_media as wm
from tests.asterisk import websocket_fixtures as fx

CONNECTED = fx.connected_scenarios()
PLAIN = wm.ControlFormat.PLAIN
JSON = wm.ControlFormat.JSON
DOCUMENTED = {wm.MediaStart, wm.MediaXoff, wm.MediaXon, wm.QueueDrained, wm.MarkProcessed,
              wm.MediaBufferingCompleted, wm.Dtmf, wm.QueueStatus, wm.CommandError}
# The recorded app's deliberate mistakes, and what Asterisk made of them.
APP_MISTAKES = {
    "ws_basic": {"FOO_BAR"},  # unknown command: no reply, a WARNING in Asterisk's log
    "ws_json": {"GET_STATUS",  # plain text in JSON mode: ERROR "Unable to parse JSON command"
                '{"command": "MARK_MEDIA", "correlation_id": "m-1"',  # broken JSON: the same ERROR
                '{"command": "SET_MEDIA_DIRECTION", "direction": "sideways"}'},  # ERROR, not a direction
}


def _start(name: str) -> wm.MediaStart:
    return wm.expect_media_start(fx.texts(name)[0])


def _build(commands: wm.Commands, command: wm.Command) -> str:
    """Our rendering of a command Asterisk read: each builder is named after its command."""
    build = getattr(commands, command.name.lower())
    return build() if command.argument is None else build(command.argument)


# ---------------------------------------------------------------- connection


@pytest.mark.parametrize("name", CONNECTED)
def test_asterisk_upgrades_with_subprotocol_media_and_the_v_params_as_query(name):
    s = fx.scenario(name)
    lines = s["handshake"]["request"].split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert lines[0] == f"GET {s['request_path']} HTTP/1.1"
    assert list(headers) == ["Sec-WebSocket-Version", "Upgrade", "Connection", "Host",
                             "Sec-WebSocket-Protocol", "Sec-WebSocket-Key"]
    assert headers["Sec-WebSocket-Protocol"] == wm.SUBPROTOCOL == s["subprotocol"]
    assert "Sec-WebSocket-Extensions" not in headers  # no permessage-deflate: frame sizes are what we send
    v_params = re.search(r"v\(([^)]*)\)", s["dial"]).group(1)
    assert s["request_path"].split("?") == [s["request_path"].split("?")[0], v_params.replace(",", "&")]
    assert "\r\nSec-WebSocket-Protocol: media\r\n" in s["handshake"]["response"]


@pytest.mark.parametrize("name", CONNECTED)
def test_media_start_is_the_first_message_right_after_the_upgrade(name):
    s = fx.scenario(name)
    first = next(f for f in s["wire"] if f["dir"] == fx.FROM_ASTERISK)
    assert first["opcode"] == "TEXT"
    assert first["t_ms"] - s["handshake"]["response_t_ms"] < 1.5
    assert s["binary"][fx.FROM_ASTERISK]["first"][0]["t_ms"] >= first["t_ms"]  # audio follows at once
    assert wm.expect_media_start(first["bytes_or_text"]).connection_id in s["dial"]


def test_expect_media_start_refuses_anything_else_first():
    with pytest.raises(wm.WebSocketMediaError, match="BINARY"):
        wm.expect_media_start(b"\x00" * 640)
    with pytest.raises(wm.WebSocketMediaError, match="not MEDIA_START"):
        wm.expect_media_start(fx.texts("ws_basic")[2])


# ---------------------------------------------------------------- events


@pytest.mark.parametrize("name", CONNECTED)
def test_every_recorded_event_parses_to_its_documented_type(name):
    events = [wm.parse_event(text) for text in fx.texts(name)]
    assert events and all(type(e) in DOCUMENTED for e in events)


def test_the_recordings_cover_every_documented_event():
    seen = {type(wm.parse_event(t)) for name in CONNECTED for t in fx.texts(name)}
    assert seen == DOCUMENTED


def test_queue_limits_are_the_recorded_ones():
    limits = fx.data()["limits"]
    assert (wm.QUEUE_MAX_FRAMES, wm.XOFF_FRAMES, wm.XON_FRAMES, wm.MAX_COMMAND_BYTES) == (
        limits["QUEUE_LENGTH_MAX"], limits["QUEUE_LENGTH_XOFF_LEVEL"], limits["QUEUE_LENGTH_XON_LEVEL"],
        limits["max text command length"])
    statuses = [e for n in CONNECTED for e in map(wm.parse_event, fx.texts(n)) if isinstance(e, wm.QueueStatus)]
    assert {(e.xon_level, e.xoff_level) for e in statuses} == {(wm.XON_FRAMES, wm.XOFF_FRAMES)}
    # ws_flow: past QUEUE_MAX_FRAMES whole messages were dropped; the queue never went much beyond.
    assert max(e.queue_length for e in statuses) < wm.QUEUE_MAX_FRAMES + 50


@pytest.mark.parametrize("name", CONNECTED)
def test_events_render_back_to_the_recorded_bytes(name):
    start = _start(name)
    for text in fx.texts(name):
        assert wm.render_event(wm.parse_event(text), start.control_format, start.channel_id) == text


def test_plain_media_start():
    assert _start("ws_basic") == wm.MediaStart(
        connection_id="wsclient", channel="WebSocket/wsclient/0x55b6b31424f0", channel_id="1795472603.64",
        format="slin16", optimal_frame_size=640, ptime=20, control_format=PLAIN)


def test_json_media_start_carries_the_channel_variables():
    start = _start("ws_json")
    assert start.control_format is JSON
    assert (start.connection_id, start.format, start.optimal_frame_size, start.ptime) == (
        "wsclient_json", "slin16", 640, 20)
    assert start.channel_variables == {"DIALEDPEERNUMBER": "wsclient_json/c(slin16)f(json)v(mode=json)",
                                       "MEDIA_WEBSOCKET_CONNECTION_ID": "wsclient_json",
                                       "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": "640"}


@pytest.mark.parametrize(("name", "fmt", "rate", "l16", "frame"), [
    ("ws_basic", "slin16", 16000, True, 640), ("ws_slin8", "slin", 8000, True, 320),
    ("ws_ulaw", "ulaw", 8000, False, 160)])
def test_format_gives_rate_sample_kind_and_the_frame_asterisk_sends(name, fmt, rate, l16, frame):
    start = _start(name)
    assert (start.format, start.sample_rate, start.is_l16, start.optimal_frame_size) == (fmt, rate, l16, frame)
    assert start.audio.frame_bytes(start.ptime) == wm.OPTIMAL_FRAME_BYTES[fmt] == frame
    sizes = {int(k): v for k, v in fx.scenario(name)["binary"][fx.FROM_ASTERISK]["sizes"].items()}
    assert max(sizes, key=sizes.get) == frame and max(sizes) == frame  # the caller's last frame is shorter


def test_recorded_plain_and_json_events_are_equal_dataclasses():
    plain = [wm.parse_event(t) for t in fx.texts("ws_basic") + fx.texts("ws_buffering")]
    json_ = [wm.parse_event(t) for t in fx.texts("ws_json")]
    cid = _start("ws_json").channel_id

    def first(events, kind, **match):
        return next(e for e in events if type(e) is kind and all(getattr(e, k) == v for k, v in match.items()))

    assert dataclasses.replace(first(plain, wm.QueueStatus), channel_id=cid) == first(json_, wm.QueueStatus)
    assert dataclasses.replace(first(plain, wm.Dtmf, digit="#"), channel_id=cid) == first(json_, wm.Dtmf, digit="#")
    assert first(plain, wm.QueueDrained) == first(json_, wm.QueueDrained)
    json_start, plain_start = json_[0], plain[0]
    assert dataclasses.replace(plain_start, connection_id=json_start.connection_id, channel=json_start.channel,
                               channel_id=cid, control_format=JSON,
                               channel_variables=json_start.channel_variables) == json_start


@pytest.mark.parametrize("event", [
    wm.MediaXoff(), wm.MediaXon(), wm.QueueDrained(), wm.MarkProcessed("reply-end"), wm.MarkProcessed(""),
    wm.MediaBufferingCompleted("buf-1"), wm.Dtmf("*", "1.2"), wm.CommandError("1.2", "not: supported here"),
    wm.QueueStatus("1.2", 1049, 800, 900, True, False, True)], ids=lambda e: type(e).__name__)
def test_each_event_reads_the_same_in_both_control_formats(event):
    as_plain = wm.parse_event(wm.render_event(event, PLAIN, "1.2"))
    as_json = wm.parse_event(wm.render_event(event, JSON, "1.2"))
    assert as_plain == as_json == event


def test_error_text_keeps_its_spaces_colons_and_newline():
    plain = [e for e in map(wm.parse_event, fx.texts("ws_passthrough")) if isinstance(e, wm.CommandError)]
    assert plain == [wm.CommandError("1795472665.88", "MARK_MEDIA not supported in passthrough mode")]
    json_ = [e for e in map(wm.parse_event, fx.texts("ws_json")) if isinstance(e, wm.CommandError)]
    assert [e.text for e in json_] == ["Unable to parse JSON command"] * 2 + [
        "'sideways' is not a valid direction for SET_MEDIA_DIRECTION.\n"]


@pytest.mark.parametrize(("text", "name", "fields"), [
    ("MEDIA_FUTURE", "MEDIA_FUTURE", {}),
    ("MEDIA_FUTURE level:3 note:two words", "MEDIA_FUTURE", {"level": "3", "note": "two words"}),
    ("MEDIA_FUTURE positional words", "MEDIA_FUTURE", {"data": "positional words"}),
    ('{"event":"MEDIA_FUTURE","channel_id":"1.2","level":3}', "MEDIA_FUTURE", {"channel_id": "1.2", "level": 3}),
])
def test_unknown_events_are_kept_not_fatal(text, name, fields):
    event = wm.parse_event(text)
    assert event == wm.UnknownEvent(name, fields)
    if "data" not in fields:  # the simulator can send them back as they came
        assert wm.render_event(event, wm.ControlFormat.JSON if text[0] == "{" else PLAIN, "1.2") == text


START = "MEDIA_START connection_id:c channel:WebSocket/c/0x1 channel_id:1.2 format:slin16"


@pytest.mark.parametrize(("text", "match"), [
    ("", "empty"), ("  \n", "empty"),
    ("{", "not valid JSON"), ('{"event": 5}', "without a string 'event'"), ('{"command": "GET_STATUS"}', "'event'"),
    ("[1, 2]", "not a chan_websocket event"), ("media_start x:1", "not a chan_websocket event"),
    (START, "without 'optimal_frame_size'"), (START + " optimal_frame_size:6x0 ptime:20", "not a whole number"),
    (START + " optimal_frame_size:0 ptime:20", "non-positive"), ("MEDIA_START slin16", "key:value"),
    ('{"event":"MEDIA_START","connection_id":"c","channel":"x","channel_id":"1.2","format":"slin16",'
     '"optimal_frame_size":"640","ptime":20,"channel_variables":[]}', "channel_variables"),
    ('{"event":"MEDIA_START","connection_id":"c","channel":"x","channel_id":"1.2","format":"slin16",'
     '"optimal_frame_size":true,"ptime":20}', "not a whole number"),
    ("STATUS channel_id:1 queue_length:0 xon_level:800 xoff_level:900 queue_full:maybe bulk_media:false "
     "media_paused:false", "true/false"),
    ("DTMF_END digit:12 channel_id:1.2", "not one DTMF key"), ("DTMF_END channel_id:1.2", "without 'digit'"),
    ('{"event":"DTMF_END","channel_id":1,"digit":"1"}', "not a string"),
    ("ERROR channel_id:1.2", "without error_text"),
])
def test_malformed_text_raises_a_clear_error(text, match):
    with pytest.raises(wm.WebSocketMediaError, match=match):
        wm.parse_event(text)


@pytest.mark.parametrize(("name", "codes", "normal"), [
    ("ws_basic", [(fx.FROM_ASTERISK, 1000)], True),  # the caller hung up
    ("ws_flow", [(fx.FROM_ASTERISK, 1000)], True),  # after our HANGUP
    ("ws_app_close", [(fx.TO_ASTERISK, 1000), (fx.FROM_ASTERISK, 1001)], True),  # we closed; Asterisk going away
    ("ws_toobig", [], False),  # a 100000-byte frame: TCP reset, no close frame (websockets reports 1006)
])
def test_hangup_is_the_websocket_close(name, codes, normal):
    assert fx.close_codes(name) == codes
    assert wm.Hangup(codes[-1][1] if codes else None).normal is normal


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize("name", CONNECTED)
def test_commands_serialise_exactly_as_the_recorded_app_sent_them(name):
    start = _start(name)
    commands = wm.Commands(start.control_format)
    for text in fx.texts(name, fx.TO_ASTERISK):
        if text not in APP_MISTAKES.get(name, ()):
            assert _build(commands, wm.parse_command(text, start.control_format)) == text


def test_the_recordings_exercise_every_command():
    names = {wm.parse_command(t, _start(n).control_format).name for n in CONNECTED
             for t in fx.texts(n, fx.TO_ASTERISK) if t not in APP_MISTAKES.get(n, ())}
    assert names == {"ANSWER", "HANGUP", "START_MEDIA_BUFFERING", "STOP_MEDIA_BUFFERING", "MARK_MEDIA",
                     "FLUSH_MEDIA", "REPORT_QUEUE_DRAINED", "GET_STATUS", "PAUSE_MEDIA", "CONTINUE_MEDIA",
                     "SET_MEDIA_DIRECTION"}


def test_the_apps_mistakes_are_what_asterisk_refused():
    for text in ("GET_STATUS", '{"command": "MARK_MEDIA", "correlation_id": "m-1"'):
        with pytest.raises(wm.WebSocketMediaError, match="Unable to parse JSON command"):
            wm.parse_command(text, JSON)
    with pytest.raises(wm.WebSocketMediaError, match="direction"):
        wm.Commands(JSON).set_media_direction("sideways")
    assert wm.parse_command("FOO_BAR", PLAIN) == wm.Command("FOO_BAR")  # Asterisk: WARNING only
    assert wm.parse_command(" MARK_MEDIA reply-end ", PLAIN) == wm.Command("MARK_MEDIA", "reply-end")


def test_plain_and_json_command_shapes():
    plain, json_ = wm.Commands(), wm.Commands(JSON)
    assert (plain.mark_media("a-1"), json_.mark_media("a-1")) == (
        "MARK_MEDIA a-1", '{"command": "MARK_MEDIA", "correlation_id": "a-1"}')
    assert (plain.stop_media_buffering(), json_.stop_media_buffering()) == (
        "STOP_MEDIA_BUFFERING", '{"command": "STOP_MEDIA_BUFFERING"}')
    assert json_.set_media_direction("in") == '{"command": "SET_MEDIA_DIRECTION", "direction": "in"}'


@pytest.mark.parametrize("name", ["", "two words", "line\nbreak", "tab\there", "nul\x00", "x" * 118])
def test_mark_names_that_would_break_the_plain_format_are_refused(name):
    with pytest.raises(wm.WebSocketMediaError, match="mark/correlation id|bytes"):
        wm.Commands().mark_media(name)


def test_commands_longer_than_asterisk_reads_are_refused():
    assert len(wm.Commands().mark_media("x" * 117)) == wm.MAX_COMMAND_BYTES
    assert len(wm.Commands(JSON).mark_media("x" * 81)) == wm.MAX_COMMAND_BYTES
    with pytest.raises(wm.WebSocketMediaError, match="ignores TEXT messages over 128"):
        wm.Commands(JSON).mark_media("x" * 82)


def test_set_media_direction_exists_only_in_json():
    with pytest.raises(wm.WebSocketMediaError, match="JSON control format"):
        wm.Commands().set_media_direction("out")


# ---------------------------------------------------------------- binary media


def test_the_largest_message_fits_the_frame_limit_asterisk_counts():
    assert len(Frame(Opcode.BINARY, b"\0" * wm.MAX_MESSAGE_BYTES).serialize(mask=False)) == wm.MAX_FRAME_BYTES
    assert len(Frame(Opcode.BINARY, b"\0" * (wm.MAX_MESSAGE_BYTES + 1)).serialize(mask=False)) > wm.MAX_FRAME_BYTES
    toobig = fx.scenario("ws_toobig")["binary"][fx.TO_ASTERISK]["first"][0]
    # "Cannot fit huge websocket frame of 100010 bytes": payload plus its 10-byte header.
    assert toobig["payload_len"] + len(toobig["header_hex"]) // 2 == 100010


@pytest.mark.parametrize(("frame", "width"), [(640, 2), (320, 2), (160, 1), (1920, 2)])
def test_outbound_audio_is_cut_into_whole_frames_within_the_limit(frame, width):
    framer = wm.MediaFramer(frame, width)
    pcm = bytes(range(256)) * 800
    frames = framer.cut(pcm)
    messages = framer.messages(frames)
    assert len(frames) % frame == 0 and framer.held_bytes == len(pcm) % frame
    assert all(len(m) <= wm.MAX_MESSAGE_BYTES and len(m) % frame == 0 for m in messages)
    assert b"".join(messages) == frames == pcm[:len(frames)]


def test_the_held_partial_frame_joins_the_next_audio():
    framer = wm.MediaFramer(640)
    assert framer.cut(b"\1" * 1000) == b"\1" * 640
    assert framer.cut(b"\2" * 280) == b"\1" * 360 + b"\2" * 280
    assert framer.held_bytes == 0


@pytest.mark.parametrize(("fmt", "pad"), [("slin16", b"\x00"), ("ulaw", b"\xff"), ("alaw", b"\xd5")])
def test_the_tail_is_padded_with_the_formats_silence(fmt, pad):
    audio = wm.AUDIO_FORMATS[fmt]
    framer = wm.MediaFramer(audio.frame_bytes(20), audio.sample_width, audio.silence)
    frames = framer.cut(b"\x11" * 100, end=True)
    assert frames == b"\x11" * 100 + pad * (audio.frame_bytes(20) - 100)
    assert framer.cut(b"", end=True) == b""


def test_the_recorded_reply_keeps_its_last_partial_frame():
    # ws_basic: 64000 + 64000 + 26318 bytes; Asterisk kept 241 frames and dropped the 78-byte rest.
    sizes = fx.scenario("ws_basic")["binary"][fx.TO_ASTERISK]["sizes"]
    total = sum(int(k) * v for k, v in sizes.items())
    framer = wm.MediaFramer(640)
    assert len(framer.cut(b"\1" * total)) // 640 == 241 and framer.held_bytes == 78
    assert len(framer.cut(b"", end=True)) == 640


def test_passthrough_sends_one_frame_per_message():
    # ws_passthrough: 3200-byte messages were each played as one 20 ms frame, 5x too fast.
    framer = wm.MediaFramer.for_start(_start("ws_passthrough"), passthrough=True)
    assert [len(m) for m in framer.messages(framer.cut(b"\0" * 3200))] == [640] * 5


@pytest.mark.parametrize("name", CONNECTED)
def test_every_recorded_inbound_frame_is_accepted(name):
    framer = wm.MediaFramer.for_start(_start(name))
    for size in fx.scenario(name)["binary"][fx.FROM_ASTERISK]["sizes"]:
        assert framer.check_inbound(b"\0" * int(size)) is not None
    assert framer.dropped == {}


def test_unusable_inbound_frames_are_counted_and_dropped():
    slin = wm.MediaFramer(640)
    assert slin.check_inbound(b"\0" * 455) is None
    assert slin.check_inbound(b"") is None
    assert slin.check_inbound(b"\0" * 455) is None
    assert slin.dropped == {"partial sample": 2, "empty frame": 1}
    assert wm.MediaFramer(160, 1).check_inbound(b"\xff" * 113) == b"\xff" * 113


def test_formats_voxgate_cannot_frame_are_refused():
    opus = dataclasses.replace(_start("ws_basic"), format="opus", optimal_frame_size=0)
    assert opus.sample_rate is None and not opus.is_l16
    with pytest.raises(wm.WebSocketMediaError, match="cannot frame 'opus'"):
        wm.MediaSession(opus)
    with pytest.raises(wm.WebSocketMediaError, match="frame size 641"):
        wm.MediaFramer(641)


# ---------------------------------------------------------------- sender state, replayed


class Replay:
    """Drives a MediaSession with the recorded app's actions; collects what it puts on the wire."""

    def __init__(self, start_text: str, **kwargs) -> None:
        self.session = wm.MediaSession(wm.expect_media_start(start_text), **kwargs)
        self.texts: list[str] = []
        self.binary: list[int] = []
        self.flushed: list[wm.Flushed] = []

    def act(self, text: str, t: float) -> None:
        """Do what the app did when it sent `text`, the session's way."""
        s = self.session
        command = wm.parse_command(text, s.start.control_format)
        match command.name:
            case "MARK_MEDIA":
                s.mark(command.argument)
            case "FLUSH_MEDIA":
                self.flushed.append(s.flush(t))
            case "PAUSE_MEDIA":
                s.pause(t)
            case "CONTINUE_MEDIA":
                s.resume(t)
            case "REPORT_QUEUE_DRAINED":
                s.report_queue_drained()
            case _:
                s.send_command(text)
        self.pump(t)

    def pump(self, t: float) -> None:
        for message in self.session.messages_to_send(t):
            if isinstance(message, str):
                self.texts.append(message)
            else:
                self.binary.append(len(message))


def test_flow_replay_gates_on_xoff_and_knows_what_the_caller_heard_at_the_flush():
    timeline = fx.flow_timeline()
    start = next(e for e in timeline if e["src"] == "ws_rx")
    replay = Replay(start["text"], max_lead_ms=17980)  # the app sent 33.8 s "as fast as possible"
    s = replay.session
    received_before_flush = 0
    released_at_xoff = None
    for e in timeline[timeline.index(start) + 1:]:
        t = e["t_ms"] / 1000
        if e["src"] == "ws_rx":
            estimate = s.played_ms(t)
            event = s.receive_text(e["text"], t)
            if isinstance(event, wm.MediaXoff):
                released_at_xoff = sum(replay.binary)
            if isinstance(event, wm.MarkProcessed):
                assert abs(estimate - s.heard_ms) <= 20 and s.heard_ms == 949 * 20
            replay.pump(t)
        elif e["src"] == "ws_tx" and e["kind"] == "binary":
            s.send_audio(b"\0" * e["len"])
            replay.pump(t)
        elif e["src"] == "ws_tx":
            if e["text"] == "FLUSH_MEDIA":
                assert s.xoff and sum(replay.binary) == released_at_xoff == 899 * 640
            replay.act(e["text"], t)
        elif e["src"] == "caller_rx_audio" and not replay.flushed:
            received_before_flush += e["frames"]

    assert replay.texts == [e["text"] for e in timeline if e["src"] == "ws_tx" and e["kind"] == "text"]
    (flushed,) = replay.flushed
    # 3016 ms before PAUSE_MEDIA + 1000 ms after CONTINUE_MEDIA; the caller's leg got 200 frames.
    assert abs(flushed.heard_ms - received_before_flush * 20) <= 40
    assert flushed.dropped_marks == ()
    assert flushed.heard_ms + flushed.discarded_ms == pytest.approx(1687 * 20)  # every whole frame accepted
    after_flush = sum(e["frames"] for e in timeline if e["src"] == "caller_rx_audio"
                      and 5034.3 < e["t_ms"] < 7035.0)
    assert s.heard_ms - 899 * 20 == after_flush * 20 == 1000
    assert replay.binary[-1] == 32000 and not s.xoff and s.outstanding_marks == ()


def test_basic_replay_queue_estimate_follows_asterisks_status():
    log = fx.app_log("ws_basic")
    replay = Replay(log[0]["bytes_or_text"], max_lead_ms=17980)
    s = replay.session
    statuses = []
    for e in log[1:]:
        t = e["t_ms"] / 1000
        if e["dir"] == fx.FROM_ASTERISK:
            estimate = s.played_ms(t)
            event = s.receive_text(e["bytes_or_text"], t)
            if isinstance(event, wm.QueueStatus) and event.queue_length:
                statuses.append((event.queue_length, s.queued_ms(t) / 20))
            if isinstance(event, wm.MarkProcessed):
                assert abs(estimate - 242 * 20) <= 20 and s.heard_ms == 242 * 20
            replay.pump(t)
        elif e["kind"] == "binary":
            s.send_audio(b"\0" * e["len"])
            replay.pump(t)
        elif e["kind"] == "text":
            replay.act(e["bytes_or_text"], t)
    assert replay.texts == fx.texts("ws_basic", fx.TO_ASTERISK)
    assert [q for q, _ in statuses] == [231, 181]
    assert all(abs(q - ours) <= 2 for q, ours in statuses)  # ours has the padded 242nd frame
    assert replay.binary == [64000, 64000, 26240, 640]


def test_mark_position_matches_the_mark_processed_time():
    log = fx.app_log("ws_basic")
    mark_sent = next(e["t_ms"] for e in log if e.get("bytes_or_text") == "MARK_MEDIA reply-end")
    processed = next(e["t_ms"] for e in log if e.get("bytes_or_text") == "MEDIA_MARK_PROCESSED reply-end")
    assert abs((processed - mark_sent) - 241 * 20) <= 20  # played in real time from the queue


def test_json_replay_sends_json_commands_in_order():
    log = fx.app_log("ws_json")
    replay = Replay(log[0]["bytes_or_text"])
    s = replay.session
    for e in log[1:]:
        t = e["t_ms"] / 1000
        if e["dir"] == fx.FROM_ASTERISK:
            event = s.receive_text(e["bytes_or_text"], t)
            if isinstance(event, wm.MarkProcessed):
                assert abs(s.played_ms(t) - 1000) <= 40 and s.heard_ms == 1000
        elif e["kind"] == "binary":
            s.send_audio(b"\0" * e["len"])
        elif e["kind"] == "text" and e["bytes_or_text"] not in APP_MISTAKES["ws_json"]:
            replay.act(e["bytes_or_text"], t)
        replay.pump(t)
    expected = [t for t in fx.texts("ws_json", fx.TO_ASTERISK) if t not in APP_MISTAKES["ws_json"]]
    assert replay.texts == expected
    assert replay.binary == [32000, 9600]  # 400 bytes held back: Asterisk would drop a partial frame


def test_externalmedia_replay_flush_drops_the_outstanding_mark():
    log = fx.externalmedia_log()
    texts = [m for m in log if m["kind"] in ("text", "binary")]
    replay = Replay(texts[0]["text"], max_lead_ms=17980)
    s = replay.session
    received = []
    for m in texts[1:]:
        t = m["t_ms"] / 1000
        if m["dir"] == "rx":
            received.append(s.receive_text(m["text"], t))
        elif m["kind"] == "binary":
            s.send_audio(b"\0" * m["len"])
        else:
            replay.act(m["text"], t)
        replay.pump(t)
    (flushed,) = replay.flushed
    assert flushed.dropped_marks == ("reply-end",)
    assert abs(flushed.heard_ms - 2000) <= 20  # FLUSH_MEDIA 2.0 s after the reply went out
    assert wm.QueueDrained() in received  # REPORT_QUEUE_DRAINED survives the flush
    assert [e.name for e in received if isinstance(e, wm.MarkProcessed)] == ["after-flush"]
    assert replay.texts == [m["text"] for m in texts if m["dir"] == "tx" and m["kind"] == "text"]


# ---------------------------------------------------------------- sender state, unit


def _session(**kwargs) -> wm.MediaSession:
    return wm.MediaSession(_start("ws_basic"), **kwargs)


def test_default_lead_keeps_asterisks_queue_near_one_second():
    s = _session()
    s.send_audio(b"\0" * 640 * 250)
    t, released, wakeups = 0.0, 0, 0
    while (due := s.next_send_time(t)) is not None:
        t = due
        released += sum(len(m) for m in s.messages_to_send(t)) // 640
        assert s.queued_ms(t) <= wm.DEFAULT_MAX_LEAD_MS + 1e-6
        wakeups += 1
    # 50 frames at once, then 10 each time 200 ms (DEFAULT_REFILL_MS) of them have played.
    assert released == 250 and wakeups == 21 and t == pytest.approx(4.0)


def test_a_full_queue_is_topped_up_only_after_refill_ms_played():
    s = _session()
    s.send_audio(b"\0" * 640 * 60)
    assert len(s.messages_to_send(0.0)[0]) == 640 * 50
    assert s.messages_to_send(0.19) == [] and s.next_send_time(0.19) == pytest.approx(0.2)
    assert [len(m) for m in s.messages_to_send(0.2)] == [640 * 10]


def test_after_a_stall_the_queue_is_refilled_at_once():
    s = _session()
    s.send_audio(b"\0" * 640 * 200)
    s.messages_to_send(0.0)
    assert [len(m) for m in s.messages_to_send(2.5)] == [640 * 50]  # the caller heard a 1.5 s gap
    assert s.played_ms(2.5) == 1000 and s.queued_ms(2.5) == 1000


def test_xoff_holds_audio_and_marks_but_not_commands():
    s = _session()
    s.receive_text("MEDIA_XOFF", 0.0)
    s.send_audio(b"\0" * 640)
    s.mark("m")
    s.send_command(s.commands.get_status())
    assert s.messages_to_send(1.0) == ["GET_STATUS"]
    assert s.next_send_time(1.0) is None
    s.receive_text("MEDIA_XON", 1.0)
    assert s.messages_to_send(1.0) == [b"\0" * 640, "MARK_MEDIA m"]


def test_marks_travel_behind_their_audio():
    s = _session(max_lead_ms=20)
    s.send_audio(b"\1" * 1000)
    s.mark("a")
    assert s.position_ms == 40 and s.outstanding_marks == ("a",)
    assert s.messages_to_send(0.0) == [b"\1" * 640]
    assert s.next_send_time(0.0) == pytest.approx(0.02)
    assert s.messages_to_send(0.02) == [b"\1" * 360 + b"\0" * 280, "MARK_MEDIA a"]
    with pytest.raises(wm.WebSocketMediaError, match="already outstanding"):
        s.mark("a")
    s.receive_text("MEDIA_MARK_PROCESSED a", 0.05)
    assert s.heard_ms == 40 and s.outstanding_marks == ()


def test_flush_drops_backlog_and_marks_and_reports_the_position():
    s = _session()
    s.send_audio(b"\0" * 640 * 100)
    s.mark("end")
    s.messages_to_send(0.0)
    flushed = s.flush(0.5)
    assert flushed == wm.Flushed(heard_ms=500.0, discarded_ms=1500.0, dropped_marks=("end",))
    assert s.messages_to_send(0.5) == ["FLUSH_MEDIA"] and s.queued_ms(0.5) == 0
    assert s.position_ms == 1000 and s.next_send_time(0.5) is None


def test_pause_freezes_playback_and_resume_restarts_it():
    s = _session()
    s.send_audio(b"\0" * 640 * 50)
    s.messages_to_send(0.0)
    s.pause(0.4)
    s.pause(0.5)
    assert s.queued_ms(2.0) == pytest.approx(600) and s.paused
    s.resume(2.0)
    assert s.messages_to_send(2.0) == ["PAUSE_MEDIA", "CONTINUE_MEDIA"]
    assert s.played_ms(2.3) == pytest.approx(700)


def test_passthrough_refuses_what_asterisk_refuses_and_flushes_only_locally():
    s = wm.MediaSession(_start("ws_passthrough"), passthrough=True)
    for action in (lambda: s.mark("pt-1"), lambda: s.pause(0.0), s.report_queue_drained):
        with pytest.raises(wm.WebSocketMediaError, match="passthrough"):
            action()
    s.send_audio(b"\0" * 640 * 60)
    assert [len(m) for m in s.messages_to_send(0.0)] == [640] * 50
    assert s.flush(0.1).discarded_ms == pytest.approx(1100)
    assert s.messages_to_send(0.1) == [] and s.queued_ms(0.1) == pytest.approx(900)


def test_send_command_keeps_playback_commands_in_their_methods():
    s = _session()
    with pytest.raises(wm.WebSocketMediaError, match=r"flush\(\)"):
        s.send_command("FLUSH_MEDIA")
    with pytest.raises(wm.WebSocketMediaError, match="Unable to parse JSON"):
        wm.MediaSession(_start("ws_json")).send_command("HANGUP")


def test_session_checks_its_inputs():
    with pytest.raises(wm.WebSocketMediaError, match="max_lead_ms"):
        _session(max_lead_ms=18000)
    with pytest.raises(wm.WebSocketMediaError, match="second MEDIA_START"):
        _session().receive_text(fx.texts("ws_basic")[0], 0.0)
    s = _session()
    assert s.receive_binary(b"\0" * 456) == b"\0" * 456 and s.receive_binary(b"\0" * 3) is None
    assert s.framer.dropped == {"partial sample": 1}
