"""The simulated mod_audio_fork against a real WebSocket server and the recorded FreeSWITCH traffic."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from websockets.asyncio.server import serve

from controller.audio import frame_bytes, mix, rms, silence, tone
from controller.simulator import audio_fork as af
from tests.fixture_data import audio_fork_scenarios

JAMBONZ = audio_fork_scenarios()
CLASSIC = audio_fork_scenarios(classic=True)
UUID = "0a06247f-757e-47f9-b885-f04943d7b714"


@dataclass
class FakeHost:
    tmp_dir: Path
    uuid: str = UUID
    sample_rate: int = 8000
    events: list[tuple[str, str | None]] = field(default_factory=list)
    breaks: int = 0

    def fire_custom(self, subclass: str, body: str | None) -> None:
        self.events.append((subclass, body))

    def break_playback(self) -> None:
        self.breaks += 1

    def subclasses(self) -> list[str]:
        return [subclass for subclass, _ in self.events]


async def until(predicate, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@asynccontextmanager
async def ws_server(subprotocols=(af.SUBPROTOCOL,), **kwargs):
    """A websockets server like the one the captures ran against; yields url, requests, connections."""
    requests, conns = [], asyncio.Queue()

    async def handler(conn):
        await conns.put(conn)
        await conn.wait_closed()

    def process_request(conn, request):
        requests.append(request)

    async with serve(handler, "127.0.0.1", 0, subprotocols=list(subprotocols) if subprotocols else None,
                     compression=None, ping_interval=None, process_request=process_request,
                     **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        yield SimpleNamespace(url=f"ws://127.0.0.1:{port}", requests=requests,
                              next_conn=lambda: asyncio.wait_for(conns.get(), 3))


async def recv(conn, timeout: float = 3.0):
    return await asyncio.wait_for(conn.recv(), timeout)


async def started(host, args, generation=af.JAMBONZ):
    bug = af.AudioForkBug(host, args, generation)
    await bug.start()
    assert bug.state == "connecting"
    return bug


def fixture_entries(scenario, kind, direction):
    return [e["bytes_or_text"] for e in scenario["entries"] if e["kind"] == kind and e["dir"] == direction]


def fork_events(scenario):
    """(subclass, body) of every mod_audio_fork event in a recorded scenario."""
    return [(e["event_subclass"], e["bytes_or_text"].get("_body")) for e in scenario["entries"]
            if e["kind"] == "esl_event" and (e.get("event_subclass") or "").startswith("mod_audio_fork::")]


def start_args(command: str, generation=af.JAMBONZ) -> af.ForkArgs:
    args = af.split_api_args(command.removeprefix("api uuid_audio_fork "), af.FORK_API_MAX_ARGS)
    assert args[1] == "start"
    return af.parse_start_args(args[2:], generation)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- API argument parsing ---------------------------------------------------------------------


def test_split_api_args_splits_unquoted_json_and_keeps_single_quoted_runs():
    spaced = '3f28fbf9 send_text {"note": "has a space"}'
    assert af.split_api_args(spaced) == ["3f28fbf9", "send_text", '{"note":', '"has', "a", 'space"}']
    quoted = "3f28fbf9 send_text '{\"note\": \"single-quoted, has a space\"}'"
    assert af.split_api_args(quoted) == ["3f28fbf9", "send_text", '{"note": "single-quoted, has a space"}']


def test_split_api_args_details_of_switch_separate_string():
    assert af.split_api_args("  a   b  ") == ["a", "b"]
    assert af.split_api_args("it's") == ["it's"]
    assert af.split_api_args("''") == [""]
    assert af.split_api_args(r"a\sb c\'d") == ["a b", "c'd"]
    assert af.split_api_args(r"a\ b") == [r"a\ b"]
    assert af.split_api_args("u start ws://h mono 8k bug {} true true 8000 extra", 10)[-1] == "8000 extra"
    assert af.split_api_args("") == []


def test_parse_start_args_from_recorded_commands():
    plain = JAMBONZ["mono_8k"]["entries"][4]["bytes_or_text"]
    args = start_args(plain)
    assert (args.mix, args.rate, args.bugname, args.bidi_stream) == ("mono", 8000, "audio_fork", False)
    assert args.metadata == fixture_entries(JAMBONZ["mono_8k"], "ws_text", "<<<")[0]
    assert args.url.startswith("ws://127.0.0.1:8090/mono_8k?callSid=")

    bidi = next(c for c in fixture_entries(JAMBONZ["bidi_8k"], "esl_api", ">>>") if "true true" in c)
    args = start_args(bidi)
    assert (args.bugname, args.bidirectional, args.bidi_stream, args.bidi_rate) == ("audio_fork", True, True, 8000)
    assert args.metadata == fixture_entries(JAMBONZ["bidi_8k"], "ws_text", "<<<")[1]

    bug2 = next(c for c in fixture_entries(JAMBONZ["server_close_1000"], "esl_api", ">>>") if " bug2 " in c)
    assert (start_args(bug2).bugname, start_args(bug2).metadata) == ("bug2", '{"again":2}')
    monitor = start_args(next(c for c in fixture_entries(JAMBONZ["bidi_8k"], "esl_api", ">>>") if "monitor" in c))
    assert monitor.bugname == "monitor" and monitor.bidirectional and not monitor.bidi_stream

    classic_bidi = next(c for c in fixture_entries(CLASSIC["bidi_8k"], "esl_api", ">>>") if "true true" in c)
    args = start_args(classic_bidi, af.CLASSIC)
    assert args.metadata == fixture_entries(CLASSIC["bidi_8k"], "ws_text", "<<<")[1]
    assert args.metadata.endswith("} true true 8000") and not args.bidi_stream


@pytest.mark.parametrize("args,expected", [
    (["ws://h", "stereo", "16k"], af.ForkArgs("ws://h", "stereo", 16000)),
    (["ws://h", "mixed", "16000", "bug"], af.ForkArgs("ws://h", "mixed", 16000, bugname="bug")),
    (["ws://h", "mono", "8000", "[1]"], af.ForkArgs("ws://h", "mono", 8000, metadata="[1]")),
    (["ws://h", "mono", "8k", "", "", "true", "true", "16000"],
     af.ForkArgs("ws://h", "mono", 8000, "audio_fork", None, True, True, 16000)),
    (["ws://h", "mono", "8k", "b", "{}", "false", "false", "0"],
     af.ForkArgs("ws://h", "mono", 8000, "b", "{}", False, False, None)),
])
def test_parse_start_args_shapes(args, expected):
    assert af.parse_start_args(args) == expected


@pytest.mark.parametrize("args", [
    ["ws://h", "mono"], ["ws://h", "quad", "8k"], ["ws://h", "mono", "11025"], ["ws://h", "mono", "fast"],
    ["ftp://h", "mono", "8k"],
])
def test_parse_start_args_rejects_what_freeswitch_refuses(args):
    with pytest.raises(ValueError):
        af.parse_start_args(args)


def test_parse_ws_url_like_parse_ws_uri():
    assert af.parse_ws_url("ws://127.0.0.1:8090/mono_8k?callSid=x&leg=A") == (
        "127.0.0.1", 8090, "/mono_8k?callSid=x&leg=A", False)
    assert af.parse_ws_url("wss://example.invalid") == ("example.invalid", 443, "/", True)
    assert af.parse_ws_url("http://h:81/p") == ("h", 81, "/p", False)


# --- the upgrade and the audio ------------------------------------------------------------------


async def test_upgrade_request_headers_match_libwebsockets(tmp_path):
    async with ws_server() as srv:
        bug = await started(FakeHost(tmp_path), af.ForkArgs(srv.url + "/mono_8k?leg=A", "mono", 8000))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        recorded = fixture_entries(JAMBONZ["mono_8k"], "ws_open", "---")[0]["request_headers"]
        sent = list(srv.requests[0].headers.raw_items())
        assert [name for name, _ in sent] == [name for name, _ in recorded]
        expected = dict(recorded) | {"Sec-WebSocket-Key": dict(sent)["Sec-WebSocket-Key"]}
        assert dict(sent) == expected
        assert srv.requests[0].path == "/mono_8k?leg=A"
        assert conn.subprotocol == af.SUBPROTOCOL
        await bug.stop()


async def test_handshake_rejected_with_404_and_raw_request_bytes(tmp_path):
    scenario = JAMBONZ["connect_failed_http_404"]
    recorded = fixture_entries(scenario, "http_upgrade_request_raw", "<<<")[0]
    reply = fixture_entries(scenario, "http_response_raw", ">>>")[0].encode()
    received = []

    async def answer(reader, writer):
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        host = FakeHost(tmp_path)
        bug = await started(host, af.ForkArgs(f"ws://127.0.0.1:{port}/missing", "mono", 8000, metadata='{"x":1}'))
        await until(lambda: host.events)
    key = re.search(rb"Sec-WebSocket-Key: (\S+)", received[0]).group(1).decode()
    assert received[0].decode() == re.sub(r"Sec-WebSocket-Key: \S+", f"Sec-WebSocket-Key: {key}", recorded)
    assert host.events == fork_events(scenario) == [
        ("mod_audio_fork::connect_failed", '{"reason":"HS: ws upgrade response not 101"}')]
    assert bug.state == "failed"
    await bug.stop()
    assert bug.state == "closed"


async def test_connect_refused(tmp_path):
    host = FakeHost(tmp_path)
    bug = await started(host, af.ForkArgs(f"ws://127.0.0.1:{free_port()}/nobody", "mono", 8000))
    await until(lambda: host.events)
    assert host.events == fork_events(JAMBONZ["connect_failed_no_listener"])[:1] == [
        ("mod_audio_fork::connect_failed", '{"reason":"Unable to connect"}')]
    assert bug.state == "failed"
    bug.on_tick(silence(8000), silence(8000))
    assert bug.frames_sent == 0
    await bug.stop()


@pytest.mark.parametrize("name,mix_type,rate,channel_rate", [
    ("mono_8k", "mono", 8000, 8000),
    ("mono_16k_resampled", "mono", 16000, 8000),
    ("mono_16k_native", "mono", 16000, 16000),
    ("stereo_8k", "stereo", 8000, 8000),
    ("stereo_16k", "stereo", 16000, 8000),
    ("mixed_8k", "mixed", 8000, 8000),
])
async def test_metadata_first_then_one_frame_per_tick_of_the_recorded_size(tmp_path, name, mix_type, rate,
                                                                           channel_rate):
    (size,) = set(fixture_entries(JAMBONZ[name], "ws_binary", "<<<"))
    metadata = fixture_entries(JAMBONZ[name], "ws_text", "<<<")[0]
    host = FakeHost(tmp_path, sample_rate=channel_rate)
    async with ws_server() as srv:
        bug = await started(host, af.ForkArgs(srv.url + "/" + name, mix_type, rate, metadata=metadata))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        assert host.events == [("mod_audio_fork::connect", None)]
        read, write = tone(440, 100, channel_rate), tone(660, 100, channel_rate, amplitude=3000)
        step = frame_bytes(channel_rate)
        for i in range(0, len(read), step):
            bug.on_tick(read[i:i + step], write[i:i + step])
        assert await recv(conn) == metadata
        frames = [await recv(conn) for _ in range(5)]
        assert [len(f) for f in frames] == [size] * 5
        assert bug.frames_sent == 5 and bug.frames_dropped == 0
        if channel_rate == rate:
            left = b"".join(frames)
            if mix_type == "stereo":
                samples = [left[i:i + 2] for i in range(0, len(left), 2)]
                assert b"".join(samples[0::2]) == read and b"".join(samples[1::2]) == write
            else:
                assert left == (mix(read, write) if mix_type == "mixed" else read)
        else:
            assert rms(frames[-1]) > 1000
        await bug.stop()


async def test_stop_sends_final_text_then_close_1000_without_reason(tmp_path):
    scenario = JAMBONZ["mono_8k"]
    final = fixture_entries(scenario, "ws_text", "<<<")[1]
    closed = fixture_entries(scenario, "ws_closed", "---")[0]
    async with ws_server() as srv:
        bug = await started(FakeHost(tmp_path), af.ForkArgs(srv.url, "mono", 8000))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        bug.on_tick(silence(8000), silence(8000))
        await bug.stop(final)
        assert bug.state == "closed"
        assert len(await recv(conn)) == 320
        assert await recv(conn) == final
        await asyncio.wait_for(conn.wait_closed(), 3)
        assert (conn.protocol.close_rcvd.code, conn.protocol.close_rcvd.reason) == (closed["close_rcvd"]["code"], "")
        bug.on_tick(silence(8000), silence(8000))
        assert bug.frames_sent == 1


async def test_hangup_closes_1000_without_text(tmp_path):
    async with ws_server() as srv:
        host = FakeHost(tmp_path)
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000, metadata='{"a":1}'))
        conn = await srv.next_conn()
        assert await recv(conn) == '{"a":1}'
        await bug.hangup()
        await asyncio.wait_for(conn.wait_closed(), 3)
        assert conn.protocol.close_rcvd.code == 1000 and conn.protocol.close_rcvd.reason == ""
        assert host.events == [("mod_audio_fork::connect", None)]


async def test_server_without_subprotocol_is_accepted(tmp_path):
    async with ws_server(subprotocols=None) as srv:
        host = FakeHost(tmp_path)
        bug = await started(host, af.ForkArgs(srv.url + "/nosub", "mono", 8000, metadata='{"x":1}'))
        conn = await srv.next_conn()
        assert conn.subprotocol is None
        assert await recv(conn) == '{"x":1}'
        assert host.events == fork_events(JAMBONZ["server_without_subprotocol"])
        await bug.stop()


@pytest.mark.parametrize("code,reason", [(1000, "bye"), (1011, "server error")])
async def test_server_close_gives_disconnect_and_the_close_is_echoed(tmp_path, code, reason):
    async with ws_server() as srv:
        host = FakeHost(tmp_path)
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        await conn.close(code, reason)
        await until(lambda: len(host.events) == 2)
        assert host.events == fork_events(JAMBONZ["server_close_1000"])[:2] == [
            ("mod_audio_fork::connect", None), ("mod_audio_fork::disconnect", None)]
        assert (conn.protocol.close_rcvd.code, conn.protocol.close_rcvd.reason) == (code, reason)
        assert bug.state == "closed"
        await bug.send_text('{"after":"close"}')
        bug.on_tick(silence(8000), silence(8000))
        assert bug.frames_sent == 0
        await bug.stop()
        assert len(host.events) == 2


async def test_tcp_abort_gives_disconnect(tmp_path):
    async with ws_server() as srv:
        host = FakeHost(tmp_path)
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        conn.transport.abort()
        await until(lambda: len(host.events) == 2)
        assert host.events[1] == ("mod_audio_fork::disconnect", None)
        assert bug.state == "closed"
        await bug.stop()


async def test_pause_resume_ping_and_send_text(tmp_path):
    async with ws_server() as srv:
        bug = await started(FakeHost(tmp_path), af.ForkArgs(srv.url, "mono", 8000))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        await bug.pause()
        bug.on_tick(silence(8000), silence(8000))
        await bug.resume()
        bug.on_tick(tone(440, 20, 8000), silence(8000))
        assert bug.frames_sent == 1
        assert await recv(conn) == tone(440, 20, 8000)
        pong = await conn.ping(b"ping-from-server")
        await asyncio.wait_for(pong, 1)
        note = fixture_entries(JAMBONZ["pause_resume_ping_send_text"], "ws_text", "<<<")[1]
        await bug.send_text(note)
        assert await recv(conn) == note
        await bug.stop()


async def test_graceful_shutdown_zero_length_frames_and_the_socket_stays_open(tmp_path):
    scenario = JAMBONZ["graceful_shutdown"]
    assert [size for size in fixture_entries(scenario, "ws_binary", "<<<") if size == 0] == [0, 0]
    async with ws_server() as srv:
        host = FakeHost(tmp_path)
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        bug.on_tick(silence(8000), silence(8000))
        await bug.graceful_shutdown()
        bug.on_tick(silence(8000), silence(8000))
        assert [len(await recv(conn)), await recv(conn)] == [320, b""]
        await bug.stop('{"final":"after-graceful"}')
        assert await recv(conn) == b""
        await bug.hangup()
        with pytest.raises(TimeoutError):
            await recv(conn, timeout=0.2)
        assert conn.state.name == "OPEN"
        await conn.close(1000, "server closing")
        assert (conn.protocol.close_rcvd.code, conn.protocol.close_rcvd.reason) == (1000, "server closing")
        assert host.events == [("mod_audio_fork::connect", None)]
        assert bug.frames_sent == 1


async def test_frames_are_dropped_when_the_socket_cannot_keep_up(tmp_path):
    async with ws_server(max_queue=None) as srv:
        host = FakeHost(tmp_path)
        bug = await started(host, af.ForkArgs(srv.url, "stereo", 16000))
        await srv.next_conn()
        await until(lambda: bug.state == "connected")
        for _ in range(40000):
            bug.on_tick(silence(8000), silence(8000))
            if bug.frames_dropped:
                break
        assert bug.frames_dropped == 1 and bug.frames_sent > 50
        bug.on_tick(silence(8000), silence(8000))
        assert host.subclasses() == ["mod_audio_fork::connect", "mod_audio_fork::buffer_overrun"]
        bug.abort()


# --- server messages ---------------------------------------------------------------------------


def with_real_audio(message: str) -> str:
    """The recorded playAudio messages carry truncated audio; give them a decodable payload."""
    if '"playAudio"' not in message:
        return message
    parsed = json.loads(message)
    if parsed["type"] == "playAudio":
        audio = tone(440, 100, parsed["data"].get("sampleRate", 8000))
        parsed["data"]["audioContent"] = base64.b64encode(audio).decode()
    return json.dumps(parsed)


def normalized(events, tmp_dir):
    """File paths as '<tmp>/<uuid>_N.tmp.ext' so recorded and simulated bodies compare."""
    out = []
    for subclass, body in events:
        if body:
            body = re.sub(r'"file":"(?:/opt/fs/run/tmp|' + re.escape(str(tmp_dir)) + r')/([0-9a-f-]+)_\d+\.tmp',
                          r'"file":"<tmp>/\1_N.tmp', body)
        out.append((subclass, body))
    return out


@pytest.mark.parametrize("generation,recorded", [(af.JAMBONZ, JAMBONZ), (af.CLASSIC, CLASSIC)])
async def test_recorded_server_messages_give_the_recorded_events(tmp_path, generation, recorded):
    scenario = recorded["server_messages"]
    uuid = re.search(r"start ws://\S+\?callSid=(\S+) ", fixture_entries(scenario, "esl_api", ">>>")[1]).group(1)
    host = FakeHost(tmp_path, uuid=uuid)
    expected = fork_events(scenario)
    async with ws_server() as srv:
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000), generation)
        conn = await srv.next_conn()
        for message in fixture_entries(scenario, "ws_text", ">>>"):
            await conn.send(with_real_audio(message))
        await until(lambda: len(host.events) == len(expected))
        await asyncio.sleep(0.05)
        assert normalized(host.events, tmp_path) == normalized(expected, "/opt/fs/run/tmp")
        assert host.breaks == 1
        files = [Path(json.loads(body)["file"]) for sub, body in host.events
                 if sub == "mod_audio_fork::play_audio" and "file" in json.loads(body)]
        numbers = [int(re.search(r"_(\d+)\.tmp", f.name).group(1)) for f in files]
        assert numbers == list(range(numbers[0], numbers[0] + 4))
        assert [f.suffix for f in files] == [".r8", ".r16", ".wav", ".r16"]
        assert files[0].read_bytes() == tone(440, 100, 8000)
        assert files[1].read_bytes() == tone(440, 100, 16000)
        await bug.stop()
        assert not any(f.exists() for f in files)


async def test_message_edge_cases(tmp_path):
    host = FakeHost(tmp_path)
    async with ws_server() as srv:
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000))
        conn = await srv.next_conn()
        await until(lambda: bug.state == "connected")
        for message in ['{"type":"transcription","data":{"text":"café"}}', '{"type":"error"}', "[1, 2]",
                        '{"type":"transfer","data":null}', '{"type":5}', '{"type":"disconnect","data":{"a":1}}',
                        '{"type":"mark","data":{"name":"m"}}', b"\x00\x01"]:
            await conn.send(message)
        await until(lambda: len(host.events) == 7)
        await asyncio.sleep(0.05)
        assert host.events[1:] == [
            ("mod_audio_fork::transcription", '{"text":"café"}'),
            ("mod_audio_fork::error", None),
            ("mod_audio_fork::json", "[1,2]"),
            ("mod_audio_fork::transfer", "null"),
            ("mod_audio_fork::json", '{"type":5}'),
            ("mod_audio_fork::disconnect", '{"a":1}'),
        ]
        assert bug.binary_discarded == 1 and bug.state == "connected"
        await bug.stop()


# --- bidirectional streaming (jambonz) ---------------------------------------------------------


def frames_of(audio: bytes, size: int = 320) -> list[bytes]:
    return [audio[i:i + size] for i in range(0, len(audio), size)]


def play(playout: af.StreamPlayout, ticks: int, samples: int = 160):
    """(audio or None, mark messages) for each tick."""
    return [playout.take(samples) for _ in range(ticks)]


def test_first_audio_waits_for_a_160_ms_prebuffer_then_80_ms():
    playout = af.StreamPlayout(8000, 8000)
    frames = frames_of(tone(440, 400, 8000))
    for frame in frames[:7]:
        playout.feed(frame)
    assert playout.take(160) == (None, [])
    playout.feed(frames[7])
    assert [audio for audio, _ in play(playout, 8)] == frames[:8]
    assert playout.take(160) == (None, [])
    for frame in frames[8:11]:
        playout.feed(frame)
    assert playout.buffered == 0
    playout.feed(frames[11])
    assert playout.buffered == 4 * 320


def test_odd_sized_messages_keep_their_last_byte_for_the_next():
    playout = af.StreamPlayout(8000, 8000)
    audio = tone(440, 160, 8000)
    playout.feed(audio[:1001])
    playout.feed(audio[1001:])
    assert b"".join(a for a, _ in play(playout, 8)) == audio


def test_marks_report_playout_where_the_recording_did():
    """bidi_8k: 1 s burst, mark m1, 1 s burst, mark m2; m1 plays 51 ticks in, m2 51 ticks later."""
    recorded = [t for t in fixture_entries(JAMBONZ["bidi_8k"], "ws_text", "<<<") if '"mark"' in t]
    times = [e["t_ms"] for e in JAMBONZ["bidi_8k"]["entries"] if e["kind"] == "ws_text" and '"playout"' in
             str(e["bytes_or_text"])]
    assert round((times[1] - times[0]) / 20) == 51
    playout = af.StreamPlayout(8000, 8000)
    for frame in frames_of(tone(440, 1000, 8000)):
        playout.feed(frame)
    playout.mark("m1")
    for frame in frames_of(tone(440, 1000, 8000)):
        playout.feed(frame)
    playout.mark("m2")
    marks = {i + 1: messages for i, (_, messages) in enumerate(play(playout, 110)) if messages}
    assert marks == {51: [recorded[0]], 102: [recorded[1]]}


def test_kill_audio_reports_pending_marks_cleared_on_the_next_tick_and_clear_marks_is_silent():
    recorded = [t for t in fixture_entries(JAMBONZ["bidi_8k"], "ws_text", "<<<") if '"cleared"' in t]
    playout = af.StreamPlayout(8000, 8000)
    for frame in frames_of(tone(440, 3000, 8000)):
        playout.feed(frame)
    playout.mark("m3")
    for frame in frames_of(tone(440, 1000, 8000)):
        playout.feed(frame)
    play(playout, 25)
    playout.kill()
    assert playout.take(160) == (None, recorded)
    assert playout.take(160) == (None, [])
    for frame in frames_of(tone(440, 1000, 8000)):
        playout.feed(frame)
    playout.mark("m4")
    playout.clear_marks()
    assert all(not messages for _, messages in play(playout, 60))


def test_resampled_stream_marks_only_ever_clear():
    """bidi_16k_in: 16 kHz stream on an 8 kHz channel; m1..m3 never play out, killAudio clears all three."""
    recorded = [t for t in fixture_entries(JAMBONZ["bidi_16k_in"], "ws_text", "<<<") if '"mark"' in t]
    playout = af.StreamPlayout(16000, 8000)
    burst = frames_of(tone(440, 1000, 16000), 640)
    for name in ("m1", "m2"):
        for frame in burst:
            playout.feed(frame)
        playout.mark(name)
    ticks = play(playout, 120)
    assert all(not messages for _, messages in ticks)
    audio = b"".join(a for a, _ in ticks if a)
    assert len(audio) >= 2 * 8000 * 2 - 320 and 5000 < rms(audio) < 6000
    for frame in frames_of(tone(440, 3000, 16000), 640):
        playout.feed(frame)
    playout.mark("m3")
    for frame in burst:
        playout.feed(frame)
    playout.kill()
    assert playout.take(160) == (None, recorded)


def test_a_tail_shorter_than_80_ms_waits_for_more_audio():
    playout = af.StreamPlayout(8000, 8000)
    frames = frames_of(tone(440, 200, 8000))
    for frame in frames:
        playout.feed(frame)
    assert sum(1 for audio, _ in play(playout, 12) if audio) == 8
    playout.feed(frames[0])
    assert sum(1 for audio, _ in play(playout, 12) if audio) == 0
    playout.feed(frames[1])
    assert sum(1 for audio, _ in play(playout, 12) if audio) == 4


def test_stop_play_drops_the_buffer_at_once():
    playout = af.StreamPlayout(8000, 8000)
    for frame in frames_of(tone(660, 6000, 8000)):
        playout.feed(frame)
    play(playout, 75)
    playout.stop_play()
    assert playout.take(160) == (None, [])


async def test_streaming_end_to_end_mark_kill_and_ignored_play_audio(tmp_path):
    host = FakeHost(tmp_path)
    async with ws_server() as srv:
        args = af.ForkArgs(srv.url + "/bidi", "mono", 8000, metadata='{"role":"bidi"}', bidi_stream=True,
                           bidi_rate=8000)
        bug = await started(host, args)
        conn = await srv.next_conn()
        assert await recv(conn) == '{"role":"bidi"}'
        for frame in frames_of(tone(440, 960, 8000)):
            await conn.send(frame)
        await conn.send(json.dumps({"type": "mark", "data": {"name": "m1"}}))
        await conn.send(with_real_audio('{"type":"playAudio","data":{"audioContentType":"raw","sampleRate":8000}}'))
        await conn.send('{"type":"transcription","data":{"sync":1}}')
        await until(lambda: len(host.events) == 2)
        played = [bug.take_playout(320) for _ in range(50)]
        assert all(played[:48]) and played[48:] == [None, None]
        assert 5600 < rms(b"".join(played[:48])) < 5700
        assert await recv(conn) == '{"type": "mark", "data": {"name":"m1", "event": "playout"}}'

        for frame in frames_of(tone(880, 2000, 8000)):
            await conn.send(frame)
        await conn.send('{"type": "mark", "data": {"name": "m3"}}')
        await conn.send(frames_of(tone(880, 20, 8000))[0])
        await conn.send('{"type": "killAudio"}')
        await until(lambda: len(host.events) == 3)
        assert host.events[2] == ("mod_audio_fork::kill_audio", None) and host.breaks == 1
        assert bug.take_playout(320) is None
        assert await recv(conn) == '{"type": "mark", "data": {"name":"m3", "event": "cleared"}}'
        assert host.subclasses() == ["mod_audio_fork::connect", "mod_audio_fork::transcription",
                                     "mod_audio_fork::kill_audio"]
        assert bug.stop_play() is True
        await bug.stop()
        assert bug.take_playout(320) is None


@pytest.mark.parametrize("generation,bidi_stream", [(af.JAMBONZ, False), (af.CLASSIC, True)])
async def test_binary_without_streaming_is_discarded_and_play_audio_handled(tmp_path, generation, bidi_stream):
    host = FakeHost(tmp_path)
    async with ws_server() as srv:
        args = af.ForkArgs(srv.url, "mono", 8000, bidi_stream=bidi_stream, bidi_rate=8000 if bidi_stream else None)
        bug = await started(host, args, generation)
        conn = await srv.next_conn()
        for frame in frames_of(tone(440, 200, 8000)):
            await conn.send(frame)
        await conn.send(with_real_audio('{"type":"playAudio","data":{"audioContentType":"raw","sampleRate":8000}}'))
        await until(lambda: len(host.events) == 2)
        assert bug.binary_discarded == 10 and host.subclasses()[1] == "mod_audio_fork::play_audio"
        assert all(bug.take_playout(320) is None for _ in range(20))
        assert bug.stop_play() is (generation == af.JAMBONZ)
        await bug.stop()


async def test_stop_while_connecting_fires_nothing(tmp_path):
    host = FakeHost(tmp_path)
    async with ws_server() as srv:
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000))
        await bug.stop()
        await asyncio.sleep(0.1)
        assert bug.state == "closed" and host.events == []


async def test_play_audio_is_announced_even_when_the_temp_file_cannot_be_written(tmp_path):
    host = FakeHost(tmp_path / "missing")
    async with ws_server() as srv:
        bug = await started(host, af.ForkArgs(srv.url, "mono", 8000))
        conn = await srv.next_conn()
        await conn.send(with_real_audio('{"type":"playAudio","data":{"audioContentType":"wav"}}'))
        await until(lambda: len(host.events) == 2)
        body = json.loads(host.events[1][1])
        assert body["file"].startswith(str(tmp_path / "missing" / UUID)) and body["file"].endswith(".tmp.wav")
        await bug.stop()
