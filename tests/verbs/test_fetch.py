"""Audio sources: URLs fetched with limits and clear errors, WAV of any format decoded, prompts told apart."""

from __future__ import annotations

import numpy as np
import pytest

from controller.audio import Pcm, tone
from controller.call import CommandFailed
from controller.verbs.fetch import fetch, shown
from controller.verbs.play import decode_wav, load_audio, looks_like_audio
from tests.verbs.conftest import prompt_at, wav_bytes


async def test_a_wav_url_is_fetched_and_decoded(audio_server):
    pcm = await load_audio(f"{audio_server}/prompt.wav")
    assert pcm == prompt_at(16000)


async def test_http_errors_say_the_status(audio_server):
    with pytest.raises(CommandFailed, match=r"HTTP 404 Not Found"):
        await load_audio(f"{audio_server}/missing.wav")


async def test_a_page_is_not_a_wav(audio_server):
    with pytest.raises(CommandFailed, match=r"not a WAV file \(Content-Type text/html\)"):
        await load_audio(f"{audio_server}/page")


async def test_a_body_over_the_limit_is_refused(audio_server):
    with pytest.raises(CommandFailed, match=r"more than the 100000-byte limit"):
        await fetch(f"{audio_server}/endless.wav", max_bytes=100_000)


async def test_a_declared_length_over_the_limit_is_refused_before_reading(audio_server):
    with pytest.raises(CommandFailed, match=r"bytes is over the 1000-byte limit"):
        await fetch(f"{audio_server}/prompt.wav", max_bytes=1000)


async def test_a_slow_server_times_out(audio_server):
    with pytest.raises(CommandFailed, match=r"no complete answer within 0.3 s"):
        await fetch(f"{audio_server}/slow.wav", timeout_s=0.3)


async def test_nothing_listening_is_a_clear_error(unused_tcp_port):
    with pytest.raises(CommandFailed, match=r"fetching http://127.0.0.1:\d+/x.wav: ClientConnectorError"):
        await fetch(f"http://127.0.0.1:{unused_tcp_port}/x.wav")


def test_errors_never_show_credentials_or_query_strings():
    assert shown("https://user:secret@example.com:8443/a.wav?token=abc") == "https://example.com:8443/a.wav"


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_of_any_width_rate_and_channels_becomes_16_bit_mono(width):
    left = tone(440, 200, 44100, 12000)
    samples = np.frombuffer(left, "<i2").astype(np.int32)
    stereo = np.stack([samples, samples], axis=1).reshape(-1)  # the same on both sides: the mix is the tone
    if width == 1:
        data = ((stereo >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = stereo.astype("<i2").tobytes()
    elif width == 3:
        wide = (stereo << 8).astype("<i4").tobytes()
        data = b"".join(wide[i:i + 3] for i in range(0, len(wide), 4))
    else:
        data = (stereo << 16).astype("<i4").tobytes()
    pcm = decode_wav(wav_bytes(Pcm(data, 44100, 2), width))
    assert pcm.sample_rate == 44100 and pcm.channels == 1
    decoded = np.frombuffer(pcm.data, "<i2").astype(np.int32)
    assert len(decoded) == len(samples)
    assert np.max(np.abs(decoded - samples)) <= (256 if width == 1 else 1)


def test_not_a_wav_is_a_value_error():
    with pytest.raises(ValueError, match="not a PCM WAV file"):
        decode_wav(b"ID3 an mp3 perhaps")


async def test_a_path_voxgate_cannot_read_is_left_to_the_pbx(tmp_path):
    raw = tmp_path / "prompt.r8"
    raw.write_bytes(bytes(1600))
    assert await load_audio(raw) is None
    assert await load_audio(tmp_path / "missing.wav") is None
    assert await load_audio("/usr/share/freeswitch/sounds/en/us/callie/ivr/8000/ivr-welcome.wav") is None


@pytest.mark.parametrize(("value", "audio"), [
    ("Welcome to Acme.", False), ("Press 1 for sales.wav files", False), ("greeting.wav", True),
    ("/srv/prompts/menu.WAV", True), ("https://example.com/menu", True), ("silence_stream://500", True),
    ("Visit example.com", False),
])
def test_a_prompt_is_audio_or_text(value, audio):
    assert looks_like_audio(value) is audio
