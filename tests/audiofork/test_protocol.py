"""mod_audio_fork commands and messages against what the real module took and sent."""

from __future__ import annotations

import base64
import json

import pytest

from controller.audiofork import protocol as fork
from tests.fixture_data import audio_fork_scenarios

JAMBONZ = audio_fork_scenarios()


def _sent_api(name: str) -> list[str]:
    return [e["bytes_or_text"] for e in JAMBONZ[name]["entries"] if e["kind"] == "esl_api"]


def test_streaming_start_has_the_bidirectional_args_the_module_took():
    recorded = next(c for c in _sent_api("bidi_8k") if "bidi_8k-bidi" in c)
    uuid = "999c9184-042d-401c-aacb-ffa2b1faa457"
    spec = fork.ForkSpec(url="ws://127.0.0.1:8090/bidi_8k-bidi?leg=B", streaming=True, stream_rate=8000)
    ours = "api " + fork.start_command(uuid, spec, {"role": "bidi", "callSid": uuid})
    assert ours == recorded


def test_classic_start_has_no_bidirectional_args():
    spec = fork.ForkSpec(url="ws://h/fork/x?token=t", streaming=False, rate=16000)
    assert fork.start_command("x", spec, {"a": 1}) == 'uuid_audio_fork x start ws://h/fork/x?token=t mono 16k audio_fork {"a":1}'


def test_metadata_with_spaces_is_single_quoted():
    spec = fork.ForkSpec(url="ws://h/f", streaming=False)
    assert fork.start_command("x", spec, {"name": "Ada Lovelace"}).endswith("""'{"name":"Ada Lovelace"}'""")
    assert fork.stop_command("x", {"final": "a b"}) == """uuid_audio_fork x stop '{"final":"a b"}'"""


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="mix"):
        fork.ForkSpec(url="ws://h", mix="quad")
    with pytest.raises(ValueError, match="rates"):
        fork.ForkSpec(url="ws://h", rate=11025)
    with pytest.raises(ValueError, match="spaces"):
        fork.ForkSpec(url="ws://h/a b")


def test_server_messages_are_what_the_module_understood():
    sent = {json.loads(e["bytes_or_text"])["type"] for e in JAMBONZ["bidi_8k"]["entries"]
            if e["kind"] == "ws_text" and e["dir"] == ">>>"}
    assert {"killAudio", "mark", "clearMarks"} <= sent
    assert json.loads(fork.kill_audio()) == {"type": "killAudio"}
    assert json.loads(fork.mark("m1")) == {"type": "mark", "data": {"name": "m1"}}
    assert json.loads(fork.clear_marks()) == {"type": "clearMarks"}
    play = json.loads(fork.play_audio(b"\x01\x00\x02\x00", 8000))
    assert play["data"]["audioContentType"] == "raw" and play["data"]["sampleRate"] == 8000
    assert base64.b64decode(play["data"]["audioContent"]) == b"\x01\x00\x02\x00"


def test_mark_reports_parse_exactly_as_sent_by_the_module():
    received = [e["bytes_or_text"] for e in JAMBONZ["bidi_8k"]["entries"]
                if e["kind"] == "ws_text" and e["dir"] == "<<<" and '"mark"' in e["bytes_or_text"]]
    reports = [fork.parse_client_text(t) for t in received]
    assert reports == [fork.MarkReport("m1", "playout"), fork.MarkReport("m2", "playout"),
                       fork.MarkReport("m3", "cleared")]
    assert fork.parse_client_text("not json") is None
    assert fork.parse_client_text('{"bye":"bidi"}') == {"bye": "bidi"}


def test_every_text_frame_from_both_module_generations_parses():
    count = 0
    for classic in (False, True):
        for scenario in audio_fork_scenarios(classic).values():
            texts = [e["bytes_or_text"] for e in scenario["entries"] if e["kind"] == "ws_text" and e["dir"] == "<<<"]
            for text in texts:
                parsed = fork.parse_client_text(text)
                try:
                    is_json = isinstance(json.loads(text), dict)
                except ValueError:  # classic metadata carries the bidi args after the JSON
                    is_json = False
                assert (parsed is not None) == is_json, text[:60]
                count += 1
    assert count > 40


def test_binary_frame_sizes_match_mix_and_rate():
    sizes = {}
    for scenario in audio_fork_scenarios().values():
        frames = [e["bytes_or_text"] for e in scenario["entries"] if e["kind"] == "ws_binary" and e["dir"] == "<<<"]
        if frames:
            sizes[scenario["name"]] = set(frames) - {0}
    assert sizes["mono_8k"] == {320} and sizes["mono_16k_native"] == {640}
    assert sizes["stereo_8k"] == {640} and sizes["stereo_16k"] == {1280} and sizes["mixed_8k"] == {320}
    for name, (mix, rate) in {"mono_8k": ("mono", 8000), "stereo_16k": ("stereo", 16000)}.items():
        spec = fork.ForkSpec(url="ws://h", mix=mix, rate=rate)
        assert sizes[name] == {rate // 50 * 2 * spec.channels}
