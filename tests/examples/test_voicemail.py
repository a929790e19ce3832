"""examples/voicemail.py: the message until the hangup, transcribed after it (finish_after_hangup), WAV kept."""

from __future__ import annotations

import wave

from controller.simulator.caller import Hangup, Listen, Say, Wait, WaitFor
from tests.examples.conftest import place, spoken


async def test_a_message_ended_by_hanging_up_is_transcribed_and_kept(tmp_path, sqlite_url, embedded, examples_dir):
    message = await spoken(embedded.tts, "Hi, this is Alan. Please call me back about my order, thanks.")
    placed = await place(tmp_path, sqlite_url, "examples.voicemail", "voicemail", [
        WaitFor("answer"), Listen(0.6, timeout=20), Wait(0.5), Say(message), Wait(1.0), Hangup()], embedded,
        caller_id_number="15551230002")
    voicemail = placed.cdr["state"]["voicemail"]
    assert placed.cdr["outcome"] == "message" and voicemail["ended_by"] == "hangup"
    assert voicemail["from"] == "15551230002" and 3.5 < voicemail["seconds"] < 6.5
    assert "call me back about my order" in voicemail["transcript"].lower(), voicemail
    wav = examples_dir / f"voicemail-{placed.channel.uuid}.wav"
    assert voicemail["wav"] == str(wav) and (wav.stat().st_mode & 0o777) == 0o600
    with wave.open(str(wav)) as saved:
        assert abs(saved.getnframes() / saved.getframerate() - voicemail["seconds"]) < 0.1
