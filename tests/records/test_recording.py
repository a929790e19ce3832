"""Encrypted stereo recordings: written while the call goes on, read back only with the key, tampering caught."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime

import numpy as np
import pytest

from controller.audio import tone
from controller.records.recording import (
    RecordingError, RecordingKey, RecordingStore, decrypt, new_key_text, parse_keys,
)

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
KEY = parse_keys(new_key_text("k2"))[0]
OLD = parse_keys(new_key_text("k1"))[0]
FRAME = 320  # 20 ms of 8 kHz L16


def _channels(pcm: bytes) -> tuple[np.ndarray, np.ndarray]:
    samples = np.frombuffer(pcm, "<i2").reshape(-1, 2)
    return samples[:, 0], samples[:, 1]


async def _record(tmp_path, key: RecordingKey = KEY, seconds: float = 3.3, agent_from_s: float = 1.0):
    """Caller frames for `seconds`; the agent (at 16 kHz) starts speaking at `agent_from_s` for one second."""
    store = RecordingStore(tmp_path / "rec", key)
    recorder = store.start("freeswitch", "call-1", 8000, T0)
    caller = tone(440, int(seconds * 1000), 8000)
    agent = tone(1000, 1000, 16000)
    for offset in range(0, len(caller), FRAME):
        recorder.caller(caller[offset:offset + FRAME], 8000)
        if offset == int(agent_from_s * 8000) * 2:
            for start in range(0, len(agent), 640):
                recorder.agent(agent[start:start + 640], 16000)
    record = await recorder.close()
    store.close()
    return record, caller


async def test_a_recording_reads_back_as_caller_left_agent_right(tmp_path):
    record, caller = await _record(tmp_path)
    assert record is not None and record.complete and record.key_id == "k2"
    assert record.channels == 2 and record.sample_rate == 8000 and record.duration_s == 3.3
    path = tmp_path / "rec" / "2026" / "11" / "24" / "call-1.vxrec"
    assert record.path == str(path) and record.size_bytes == path.stat().st_size
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    recording = decrypt(path, [KEY])
    assert recording.complete and recording.sample_rate == 8000
    left, right = _channels(recording.pcm)
    assert left.tobytes() == caller
    assert not right[:8000].any(), "the agent was silent for the first second"
    spoken = np.abs(right[8000:16000].astype(float))
    assert spoken.mean() > 3000 and not right[16400:].any()  # one second of agent audio, where it was sent


async def test_nothing_readable_without_the_key(tmp_path):
    record, caller = await _record(tmp_path)
    raw = open(record.path, "rb").read()
    assert caller[:640] not in raw and tone(440, 20, 8000) not in raw
    with pytest.raises(RecordingError, match="key 'k2', which is not configured"):
        decrypt(record.path, [OLD])
    wrong = RecordingKey("k2", bytes(32))
    with pytest.raises(RecordingError, match="segment 0 fails authentication"):
        decrypt(record.path, [wrong])


async def test_rotated_keys_still_read_old_recordings(tmp_path):
    record, _ = await _record(tmp_path, key=OLD)
    assert decrypt(record.path, [KEY, OLD]).complete


@pytest.mark.parametrize("where", ["header", "segment", "swap"])
async def test_tampering_is_caught(tmp_path, where):
    record, _ = await _record(tmp_path)
    data = bytearray(open(record.path, "rb").read())
    header_end = data.index(b"\n", 7) + 1
    if where == "header":  # claim another sample rate
        data[:header_end] = data[:header_end].replace(b'"sample_rate":8000', b'"sample_rate":16000')
    elif where == "segment":
        data[header_end + 100] ^= 0x01
    else:  # move the second segment in front of the first
        first = 4 + int.from_bytes(data[header_end:header_end + 4], "big")
        second = 4 + int.from_bytes(data[header_end + first:header_end + first + 4], "big")
        a, b = data[header_end:header_end + first], data[header_end + first:header_end + first + second]
        data[header_end:header_end + first + second] = b + a
    open(record.path, "wb").write(bytes(data))
    with pytest.raises(RecordingError, match="fails authentication"):
        decrypt(record.path, [KEY])


async def test_a_file_cut_short_is_known_as_incomplete(tmp_path):
    record, caller = await _record(tmp_path)
    data = open(record.path, "rb").read()
    open(record.path, "wb").write(data[:-10])  # the final segment is gone
    recording = decrypt(record.path, [KEY])
    assert not recording.complete
    left, _ = _channels(recording.pcm)
    assert left.tobytes() == caller[:len(left) * 2] and len(left) == 3 * 8000  # the whole seconds are kept
    open(record.path, "wb").write(data + data[-200:])
    with pytest.raises(RecordingError, match="after the final segment"):
        decrypt(record.path, [KEY])


async def test_a_disk_failure_stops_the_recording_not_the_call(tmp_path, caplog):
    (tmp_path / "rec").write_text("a file where the folder should be")
    record, _ = await _record(tmp_path)
    assert record is None
    assert "recording stopped" in caplog.text and "the call goes on" in caplog.text


def test_keys_are_checked():
    assert [k.key_id for k in parse_keys(f"{new_key_text('new')},{new_key_text('old')}")] == ["new", "old"]
    short = base64.b64encode(bytes(16)).decode()
    for text, message in [("", "no recording key"), (f"k1:{short}", "16 bytes"), ("k1:***", "not base64"),
                          ("nokey", "id:base64key"), (f"{new_key_text('a')},{new_key_text('a')}", "twice")]:
        with pytest.raises(ValueError, match=message):
            parse_keys(text)
    assert "k1" in repr(KEY) or "k2" in repr(KEY)
    assert base64.b64encode(KEY.key).decode() not in repr(KEY)


async def test_a_later_session_of_the_call_records_to_a_file_of_its_own(tmp_path):
    first, _ = await _record(tmp_path)
    store = RecordingStore(tmp_path / "rec", KEY)
    recorder = store.start("freeswitch", "call-1", 8000, T0, seq=1_000_001)  # taken over by another instance
    recorder.caller(tone(300, 500, 8000), 8000)
    second = await recorder.close()
    store.close()
    assert second.seq == 1_000_001 and first.seq == 1
    assert second.path.endswith("call-1-1000001.vxrec") and second.path != first.path
    assert decrypt(first.path, [KEY]).complete  # the first session's file is untouched
    assert len(decrypt(second.path, [KEY]).pcm) == 2 * len(tone(300, 500, 8000))
