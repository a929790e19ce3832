"""The AudioSocket codec and pacer against frames recorded from a real Asterisk 22.10.1."""

from __future__ import annotations

import random
import re

import pytest

from controller.asterisk import audiosocket as aso
from tests.asterisk.audiosocket_fixtures import TO_ASTERISK, frames, notes, scenario, stream

# app: AudioSocket() (always slin 8 kHz); chan_*: Dial(AudioSocket/...) with or without c(codec).
FROM_ASTERISK_SCENARIOS = ["app_realtime", "chan_default_codec", "chan_slin16", "chan_slin48", "chan_ulaw",
                           "app_hangup_frame", "chan_idle_no_timeout"]
FRAME = 320  # 20 ms of 8 kHz slin


def _expected(name: str) -> list[aso.Event]:
    """The events each recorded frame stands for, read from the recorder's own annotations."""
    out: list[aso.Event] = []
    for f in frames(name):
        if f["kind"] == "UUID":
            out.append(aso.CallId(f["uuid"]))
        elif f["kind"] == "DTMF":
            out.append(aso.Digit(f["digit"]))
        else:
            kind = int(f["type_byte"], 16)
            out.append(aso.Audio(f["raw"][3:], aso.RATE_OF_KIND[kind]))
    return out


def _parse_chunks(data: bytes, sizes: list[int]) -> list[aso.Event]:
    parser = aso.AudioSocketParser()
    events: list[aso.Event] = []
    pos = 0
    for size in sizes:
        events += parser.feed(data[pos:pos + size])
        pos += size
    events += parser.feed(data[pos:])
    parser.eof()
    return events


# ---------------------------------------------------------------- parsing what Asterisk sent


@pytest.mark.parametrize("name", FROM_ASTERISK_SCENARIOS)
def test_recorded_stream_parses_whole(name):
    parser = aso.AudioSocketParser()
    events = parser.feed(stream(name))
    parser.eof()
    assert events == _expected(name)
    assert events[0] == aso.CallId(scenario(name)["setup"]["uuid"])
    assert parser.call_id == scenario(name)["setup"]["uuid"]
    assert parser.dropped == {}


@pytest.mark.parametrize("name", FROM_ASTERISK_SCENARIOS)
def test_byte_at_a_time_and_random_chunks_give_the_same_events(name):
    data = stream(name)
    whole = _expected(name)
    assert _parse_chunks(data, [1] * len(data)) == whole
    rng = random.Random(name)
    for _ in range(5):
        assert _parse_chunks(data, [rng.randint(0, 700) for _ in range(len(data) // 50)]) == whole


def test_app_sends_uuid_then_8k_audio_then_digits_at_key_release():
    events = aso.AudioSocketParser().feed(stream("app_realtime"))
    audio = [e for e in events if isinstance(e, aso.Audio)]
    assert {(e.sample_rate, len(e.pcm)) for e in audio} == {(8000, aso.FRAME_BYTES[8000])}
    assert [e.digit for e in events if isinstance(e, aso.Digit)] == ["1", "2", "#"]
    assert scenario("app_realtime")["connection"]["rx_dtmf"] == ["1", "2", "#"]


@pytest.mark.parametrize("name,rate", [("chan_default_codec", 8000), ("chan_slin16", 16000), ("chan_slin48", 48000)])
def test_channel_driver_audio_rate_comes_from_the_type_byte(name, rate):
    audio = [e for e in aso.AudioSocketParser().feed(stream(name)) if isinstance(e, aso.Audio)]
    assert audio and {(e.sample_rate, len(e.pcm)) for e in audio} == {(rate, aso.FRAME_BYTES[rate])}
    digits = [e.digit for e in aso.AudioSocketParser().feed(stream(name)) if isinstance(e, aso.Digit)]
    assert digits == ["1", "2", "#"]  # DTMF arrives as 0x03 frames on the channel driver too


def test_ulaw_channel_is_indistinguishable_from_slin():
    # c(ulaw) still sends type 0x10: 160 bytes of mu-law look like 10 ms of slin. The dial string
    # must say c(slin) or c(slin16); the parser cannot tell.
    audio = [e for e in aso.AudioSocketParser().feed(stream("chan_ulaw")) if isinstance(e, aso.Audio)]
    assert {(e.sample_rate, len(e.pcm)) for e in audio} == {(8000, 160)}


def test_caller_hangup_is_a_clean_close_without_a_hangup_frame():
    parser = aso.AudioSocketParser()
    events = parser.feed(stream("app_realtime"))
    assert not any(isinstance(e, (aso.Hangup, aso.PeerError)) for e in events)
    assert any("EOF from Asterisk (TCP FIN), 0 stray header bytes" in text for _, text in notes("app_realtime"))
    assert parser.eof() is None


def test_close_before_the_uuid_frame_is_an_error():
    # AudioSocket() on an unanswered channel connects and closes without a single frame.
    assert frames("app_unanswered") == []
    parser = aso.AudioSocketParser()
    assert parser.feed(stream("app_unanswered")) == []
    with pytest.raises(aso.AudioSocketError, match="before the UUID frame.*Answer"):
        parser.eof()


@pytest.mark.parametrize("cut,missing", [(1, "1 of the 3 header bytes arrived (2 missing)"),
                                         (2, "2 of the 3 header bytes arrived (1 missing)"),
                                         (3, "announced 320 payload bytes, 0 arrived (320 missing)"),
                                         (103, "announced 320 payload bytes, 100 arrived (220 missing)"),
                                         (322, "announced 320 payload bytes, 319 arrived (1 missing)")])
def test_close_mid_frame_says_what_is_missing(cut, missing):
    uuid_frame, audio = frames("app_realtime")[:2]
    parser = aso.AudioSocketParser()
    events = parser.feed(uuid_frame["raw"] + audio["raw"][:cut])
    assert events == [aso.CallId(uuid_frame["uuid"])]
    with pytest.raises(aso.AudioSocketError, match="closed mid-frame: .*" + re.escape(missing)):
        parser.eof()


# ---------------------------------------------------------------- bad input


UUID_FRAME = frames("app_realtime")[0]["raw"]


def _after_uuid(data: bytes) -> tuple[aso.AudioSocketParser, list[aso.Event]]:
    parser = aso.AudioSocketParser()
    parser.feed(UUID_FRAME)
    return parser, parser.feed(data)


@pytest.mark.parametrize("first", [aso.audio_frame(bytes(FRAME), 8000), b"\x03\x00\x011", b"\x00\x00\x00"])
def test_first_frame_must_be_the_uuid(first):
    with pytest.raises(aso.AudioSocketError, match="first AudioSocket frame is type 0x.., not the 0x01 UUID"):
        aso.AudioSocketParser().feed(first)


@pytest.mark.parametrize("size", [0, 15, 17, 36])
def test_uuid_frame_must_carry_16_bytes(size):
    with pytest.raises(aso.AudioSocketError, match=f"UUID frame carries {size} bytes, not 16"):
        aso.AudioSocketParser().feed(bytes((1, 0, size)) + bytes(size))


def test_second_uuid_frame_is_an_error():
    with pytest.raises(aso.AudioSocketError, match="second UUID frame on call b88255fe-"):
        _after_uuid(aso.call_id_frame("5121ee53-12cc-44fb-814e-4c6a4571b46e"))


@pytest.mark.parametrize("kind", [0x02, 0x04, 0x0F, 0x19, 0x20, 0xFE])
def test_unknown_type_is_an_error(kind):
    with pytest.raises(aso.AudioSocketError, match=f"unknown AudioSocket frame type 0x{kind:02x} \\(2 payload"):
        _after_uuid(bytes((kind, 0, 2, 0, 0)))


def test_unusable_frames_are_dropped_counted_and_the_stream_goes_on():
    good = aso.audio_frame(b"\x01\x00" * 160, 8000)
    bad = [b"\x10\x00\x00", b"\x10\x01\x41" + bytes(321), b"\x12\x00\x01\x00",  # empty and odd audio
           b"\x03\x00\x00", b"\x03\x00\x0212", b"\x03\x00\x01x"]  # DTMF not one digit
    parser, events = _after_uuid(b"".join(bad) + good + b"\x03\x00\x01#")
    assert events == [aso.Audio(b"\x01\x00" * 160, 8000), aso.Digit("#")]
    assert parser.dropped == {"empty audio": 1, "odd-length audio": 2, "bad DTMF payload": 3}


def test_lowercase_dtmf_letters_are_the_keypad_letters():
    assert _after_uuid(b"\x03\x00\x01a\x03\x00\x01D")[1] == [aso.Digit("A"), aso.Digit("D")]


def test_largest_frames_the_length_field_allows():
    _, events = _after_uuid(b"\x16\xff\xfe" + bytes(0xFFFE))
    assert events == [aso.Audio(bytes(0xFFFE), 48000)]
    parser, events = _after_uuid(b"\x16\xff\xff" + bytes(0xFFFF))
    assert events == [] and parser.dropped == {"odd-length audio": 1}


def test_hangup_and_error_frames_from_the_spec():
    # 22.10.1 never sends them, but the protocol defines them; other implementations may.
    parser, events = _after_uuid(b"\xff\x00\x01\x02\xff\x00\x00\x00\x00\x00")
    assert events == [aso.PeerError(2), aso.PeerError(None), aso.Hangup()]
    assert parser.hung_up
    with pytest.raises(aso.AudioSocketError, match="0x10 frame after the hangup frame"):
        parser.feed(aso.audio_frame(bytes(FRAME), 8000))


def test_all_slin_types_map_to_their_rates():
    assert {k.name: aso.RATE_OF_KIND[k] for k in aso.Kind if k in aso.RATE_OF_KIND} == {
        "SLIN": 8000, "SLIN12": 12000, "SLIN16": 16000, "SLIN24": 24000, "SLIN32": 32000,
        "SLIN44": 44100, "SLIN48": 48000, "SLIN96": 96000, "SLIN192": 192000}
    for name in ("app_realtime", "chan_slin16", "chan_slin48"):
        audio = frames(name)[1]
        assert aso.RATE_OF_KIND[int(audio["type_byte"], 16)] * 20 // 1000 * 2 == audio["len"]


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize("name,rate", [("app_realtime", 8000), ("chan_default_codec", 8000), ("chan_slin16", 16000)])
def test_audio_frames_are_byte_identical_to_what_asterisk_played(name, rate):
    sent = frames(name, TO_ASTERISK)
    assert sent
    for f in sent:
        assert aso.audio_frame(f["raw"][3:], rate) == f["raw"]


@pytest.mark.parametrize("name", ["app_hangup_frame", "chan_hangup_frame"])
def test_hangup_frame_is_the_recorded_one(name):
    assert [f["raw"] for f in frames(name, TO_ASTERISK)] == [aso.hangup_frame()] == [b"\x00\x00\x00"]


@pytest.mark.parametrize("name", FROM_ASTERISK_SCENARIOS)
def test_simulator_frames_are_what_asterisk_sends(name):
    for f in frames(name):
        if f["kind"] == "UUID":
            assert aso.call_id_frame(f["uuid"]) == f["raw"]
            assert aso.call_id_frame(f["uuid"].upper()) == f["raw"]
        elif f["kind"] == "DTMF":
            assert aso.digit_frame(f["digit"]) == f["raw"]


def test_encoder_refuses_what_asterisk_would_hang_up_on_or_garble():
    with pytest.raises(ValueError, match="empty audio frame.*Invalid message length"):
        aso.audio_frame(b"", 8000)
    with pytest.raises(ValueError, match="321-byte audio frame is not whole 16-bit samples"):
        aso.audio_frame(bytes(321), 8000)
    with pytest.raises(ValueError, match="65536-byte audio frame exceeds the 65535-byte length field"):
        aso.audio_frame(bytes(65536), 8000)
    with pytest.raises(ValueError, match="no frame type for 22050 Hz"):
        aso.audio_frame(bytes(FRAME), 22050)
    with pytest.raises(ValueError, match="not a DTMF digit"):
        aso.digit_frame("12")
    assert aso.audio_frame(bytes(65534), 8000)[:3] == b"\x10\xff\xfe"


# ---------------------------------------------------------------- what Asterisk makes of the server's frames


def _server_frames(name: str) -> list[aso.Event]:
    parser = aso.ServerFrameParser()
    events: list[aso.Event] = []
    for f in frames(name, TO_ASTERISK):
        events += parser.feed(f["raw"])
    parser.eof()
    return events


def test_asterisk_side_reads_the_servers_audio_and_hangup():
    events = _server_frames("app_realtime")
    assert events and all(e == aso.Audio(e.pcm, 8000) and len(e.pcm) == FRAME for e in events)
    assert _server_frames("chan_slin16")[0].sample_rate == 16000
    assert _server_frames("app_hangup_frame") == [aso.Hangup()]


@pytest.mark.parametrize("name", ["app_server_sends_dtmf", "app_server_sends_uuid"])
def test_asterisk_side_hangs_up_on_dtmf_or_uuid_from_the_server(name):
    bad = frames(name, TO_ASTERISK)
    assert len(bad) == 1 and bad[0]["kind"] in ("DTMF", "UUID")
    assert any("message other than hangup or audio" in line for line in scenario(name)["asterisk_log"])
    with pytest.raises(aso.AudioSocketError, match="message other than hangup or audio"):
        aso.ServerFrameParser().feed(bad[0]["raw"])


def test_asterisk_side_takes_any_length_but_zero():
    one, zero = (f["raw"] for f in frames("app_oddsizes", TO_ASTERISK))
    runs = scenario("app_oddsizes")["frame_runs(type/len x count, in order)"][TO_ASTERISK]
    assert runs == "0x10/160x100 0x10/321x50 0x10/1x1 0x10/0x1"
    parser = aso.ServerFrameParser()
    odd = parser.feed(b"\x10\x00\xa0" + bytes(160) + b"\x10\x01\x41" + bytes(321) + one)
    assert [len(e.pcm) for e in odd] == [160, 321, 1]
    with pytest.raises(aso.AudioSocketError, match="Invalid message length"):
        parser.feed(zero)


def test_asterisk_side_split_frame():
    # The recorded server wrote the header and 100 of 320 bytes, then paused: after ~5 ms Asterisk
    # gave up. The simulator applies the same rule when the server closes mid-frame.
    assert any("header announcing 320 bytes + first 100 bytes" in t for _, t in notes("app_splitframe"))
    parser = aso.ServerFrameParser()
    assert parser.feed(b"\x10\x01\x40" + bytes(100)) == []
    with pytest.raises(aso.AudioSocketError, match="320 payload bytes, 100 arrived \\(220 missing\\)"):
        parser.eof()


def test_app_idle_timeout_matches_the_recording():
    (uuid_frame,) = frames("app_idle_timeout")  # a silent caller, a silent server: only the UUID
    eof_t = scenario("app_idle_timeout")["connection"]["eof_t_ms"]
    assert (eof_t - uuid_frame["t_ms"]) / 1000 == pytest.approx(aso.APP_IDLE_TIMEOUT_S, abs=0.01)
    assert any("Reached timeout after 2000 ms" in line for line in scenario("app_idle_timeout")["asterisk_log"])
    # the channel driver stayed silent for 5.5 s without a timeout
    assert scenario("chan_idle_no_timeout")["connection"]["eof_t_ms"] > 5000


# ---------------------------------------------------------------- pacing


def _tone(ms: int, rate: int = 8000) -> bytes:
    """Non-silent PCM whose samples count up, so reordering or loss would show."""
    return b"".join((i % 30000 + 1).to_bytes(2, "little") for i in range(rate * ms // 1000))


def _payloads(sent: list[bytes]) -> bytes:
    return b"".join(frame[3:] for frame in sent)


def _run(pacer: aso.Pacer, until: float, late: float = 0.0) -> list[tuple[float, bytes]]:
    """Poll at every due time (plus `late`) until `until`; (poll time, frame) for each frame."""
    out = []
    while (due := pacer.next_due()) is not None and due <= until:
        now = due + late
        out += [(now, frame) for frame in pacer.poll(now)]
    return out


def test_one_frame_per_20_ms_on_schedule():
    pacer = aso.Pacer(8000)
    pcm = _tone(1000)
    pacer.push(pcm, now=10.0)
    assert pacer.next_due() == 10.0 and pacer.queued_ms == 1000
    sent = _run(pacer, until=20.0)
    assert [t for t, _ in sent] == pytest.approx([10.0 + 0.02 * k for k in range(50)])
    assert all(frame[:3] == b"\x10\x01\x40" and len(frame) == 323 for _, frame in sent)
    assert _payloads([f for _, f in sent]) == pcm
    assert pacer.sent_ms == 1000 and pacer.queued_ms == 0 and pacer.slipped_ms == 0
    assert pacer.next_due() is None and pacer.poll(30.0) == []


def test_polling_early_or_between_slots_sends_nothing():
    pacer = aso.Pacer(8000)
    pacer.push(_tone(100), now=0.0)
    assert pacer.poll(-0.001) == []
    assert len(pacer.poll(0.0)) == 1
    assert pacer.poll(0.0) == [] and pacer.poll(0.019) == []
    assert len(pacer.poll(0.02)) == 1


def test_jittery_wakeups_stay_on_the_absolute_schedule():
    pacer = aso.Pacer(8000)
    pacer.push(_tone(2000), now=0.0)
    rng = random.Random(7)
    sent_at: list[float] = []
    while (due := pacer.next_due()) is not None:
        now = due + rng.uniform(0, 0.008)  # the event loop wakes up to 8 ms late
        sent_at += [now] * len(pacer.poll(now))
    assert len(sent_at) == 100
    # frame k leaves within 8 ms of k * 20 ms: lateness never accumulates
    assert all(0 <= t - 0.02 * k <= 0.008 for k, t in enumerate(sent_at))


def test_stall_is_slipped_not_caught_up():
    pacer = aso.Pacer(8000)
    pcm = _tone(500)
    pacer.push(pcm, now=0.0)
    first = pacer.poll(0.0)
    late = pacer.poll(0.065)  # slots 20, 40, 60 ms were all missed by one 45 ms stall
    assert len(late) == aso.MAX_BURST_FRAMES == 1  # the phone played the gap already: no burst
    assert pacer.slipped_ms == 40
    assert pacer.next_due() == pytest.approx(0.08)  # back on the 20 ms grid
    rest = _run(pacer, until=5.0)
    assert _payloads(first + late + [f for _, f in rest]) == pcm  # late, but nothing lost


def test_short_stall_is_caught_up_within_max_burst():
    pacer = aso.Pacer(8000, max_burst=3)
    pacer.push(_tone(500), now=0.0)
    assert len(pacer.poll(0.0)) == 1
    assert len(pacer.poll(0.065)) == 3
    assert pacer.next_due() == pytest.approx(0.08)
    assert pacer.slipped_ms == 0


def test_long_stall_catches_up_at_most_max_burst_and_slips_the_rest():
    pacer = aso.Pacer(8000, max_burst=3)
    pcm = _tone(1000)
    pacer.push(pcm, now=0.0)
    first = pacer.poll(0.0)
    burst = pacer.poll(0.110)  # a full GC pass: slots 20..100 ms (5 frames) missed
    assert len(burst) == 3
    assert pacer.slipped_ms == 40
    assert pacer.next_due() == pytest.approx(0.120)  # back on the 20 ms grid
    rest = _run(pacer, until=5.0)
    assert all(b - a == pytest.approx(0.02) for (a, _), (b, _) in zip(rest, rest[1:]))
    assert _payloads(first + burst + [f for _, f in rest]) == pcm  # late, but nothing lost
    assert pacer.sent_ms == 1000


def test_burst_bound_holds_under_random_stalls():
    pacer = aso.Pacer(8000, max_burst=2)
    pcm = _tone(3000)
    pacer.push(pcm, now=0.0)
    rng = random.Random(3)
    sent: list[bytes] = []
    now = 0.0
    while pacer.next_due() is not None:
        now = max(now, pacer.next_due()) + (rng.uniform(0.02, 0.3) if rng.random() < 0.1 else rng.uniform(0, 0.004))
        out = pacer.poll(now)
        assert 1 <= len(out) <= 2
        assert len(sent) + len(out) <= int(now / 0.02 + 1e-9) + 1  # never ahead of real time
        sent += out
    assert _payloads(sent) == pcm  # stalls delay audio, never drop it
    assert pacer.slipped_ms > 0 and pacer.sent_ms == 3000


def test_trailing_partial_frame_is_padded_with_silence():
    pacer = aso.Pacer(8000)
    pcm = _tone(1000)[:500]  # 31.25 ms
    pacer.push(pcm, now=0.0)
    sent = [f for _, f in _run(pacer, until=1.0)]
    assert [len(f) for f in sent] == [323, 323]
    assert sent[1][3:] == pcm[320:] + bytes(140)
    assert pacer.sent_ms == 31 and pacer.next_due() is None


def test_flush_drops_the_queue_and_reports_it():
    pacer = aso.Pacer(8000)
    pacer.push(_tone(1000), now=0.0)
    assert len(_run(pacer, until=0.19)) == 10
    assert pacer.flush() == 800
    assert pacer.sent_ms == 200 and pacer.queued_ms == 0
    assert pacer.next_due() is None and pacer.poll(0.2) == []
    assert pacer.flush() == 0


def test_new_audio_after_idle_starts_a_fresh_schedule_but_not_before_the_last_frame_ended():
    pacer = aso.Pacer(8000)
    pacer.push(_tone(20), now=0.0)
    assert len(pacer.poll(0.0)) == 1 and pacer.next_due() is None
    pacer.push(_tone(20), now=0.005)
    assert pacer.next_due() == pytest.approx(0.02)  # two frames 5 ms apart would be a burst
    pacer.poll(0.02)
    pacer.push(_tone(40), now=3.0)
    assert pacer.next_due() == 3.0  # no catch-up for the idle time: nothing was owed
    assert len(pacer.poll(3.0)) == 1 and pacer.poll(3.0) == []


def test_keep_alive_fills_idle_slots_with_silence_on_the_same_schedule():
    pacer = aso.Pacer(8000)
    pacer.keep_alive(now=0.0)
    sent = _run(pacer, until=0.99)
    assert len(sent) == 50 and all(f == b"\x10\x01\x40" + bytes(320) for _, f in sent)
    pcm = _tone(100)
    pacer.push(pcm, now=0.995)
    assert pacer.next_due() == pytest.approx(1.0)  # audio joins the running schedule
    sent = _run(pacer, until=1.5, late=0.001)
    times = [t for t, _ in sent]
    assert max(b - a for a, b in zip(times, times[1:])) == pytest.approx(0.02)
    assert _payloads([f for _, f in sent[:5]]) == pcm
    assert all(f[3:] == bytes(320) for _, f in sent[5:])
    assert pacer.sent_ms == 100 and pacer.silence_frames == 50 + len(sent) - 5


def test_flush_with_keep_alive_goes_on_with_silence():
    pacer = aso.Pacer(8000)
    pacer.keep_alive(now=0.0)
    pacer.push(_tone(500), now=0.0)
    _run(pacer, until=0.09)
    assert pacer.flush() == 400
    assert pacer.next_due() == pytest.approx(0.1)
    assert pacer.poll(0.1) == [b"\x10\x01\x40" + bytes(320)]


def test_paced_frames_are_the_frames_the_recorded_server_played():
    recorded = [f["raw"] for f in frames("app_realtime", TO_ASTERISK)]
    pacer = aso.Pacer(8000)
    pacer.push(_payloads(recorded), now=0.0)
    assert [f for _, f in _run(pacer, until=10.0)] == recorded


@pytest.mark.parametrize("rate", sorted(aso.FRAME_BYTES))
def test_every_rate_paces_whole_frames_asterisk_accepts(rate):
    pacer = aso.Pacer(rate)
    pacer.push(_tone(50, rate), now=0.0)
    sent = [f for _, f in _run(pacer, until=1.0)]
    assert len(sent) == 3
    parser = aso.ServerFrameParser()
    for frame in sent:  # every element is exactly one frame: one write each
        (event,) = parser.feed(frame)
        assert event.sample_rate == rate and len(event.pcm) == aso.FRAME_BYTES[rate] == rate // 50 * 2


def test_pacer_refuses_bad_input():
    with pytest.raises(ValueError, match="no frame type for 11025 Hz"):
        aso.Pacer(11025)
    with pytest.raises(ValueError, match="max_burst"):
        aso.Pacer(8000, max_burst=0)
    with pytest.raises(ValueError, match="321 bytes of PCM is not whole 16-bit samples"):
        aso.Pacer(8000).push(bytes(321), now=0.0)
    pacer = aso.Pacer(8000)
    pacer.push(b"", now=0.0)
    assert pacer.next_due() is None
