"""Sans-I/O mod_audio_fork: the API commands that drive a fork and the WebSocket messages.

Both module generations are covered: the jambonz module (bidirectional streaming, marks,
stop_play) and the classic drachtio module (playAudio temp files played over ESL).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from controller.esl.protocol import quote_arg

SUBPROTOCOL = "audio.drachtio.org"
DEFAULT_BUG = "audio_fork"
MIXES = ("mono", "mixed", "stereo")
RATES = (8000, 16000)


@dataclass(frozen=True, slots=True)
class ForkSpec:
    """How voxgate asks FreeSWITCH to fork one channel."""

    url: str
    mix: str = "mono"
    rate: int = 8000
    streaming: bool = True
    stream_rate: int = 8000

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"audio fork mix must be one of {MIXES}, not {self.mix!r}")
        if self.rate not in RATES or self.stream_rate not in RATES:
            raise ValueError(f"audio fork rates must be one of {RATES}")
        if " " in self.url:
            raise ValueError("audio fork URL must not contain spaces")

    @property
    def channels(self) -> int:
        return 2 if self.mix == "stereo" else 1


def start_command(call_uuid: str, spec: ForkSpec, metadata: dict) -> str:
    """uuid_audio_fork ... start: metadata is quoted when it has spaces (the API splits on them)."""
    meta = quote_arg(json.dumps(metadata, separators=(",", ":")))
    words = [f"uuid_audio_fork {call_uuid} start {spec.url} {spec.mix} {spec.rate // 1000}k {DEFAULT_BUG} {meta}"]
    if spec.streaming:
        words.append(f"true true {spec.stream_rate}")
    return " ".join(words)


def stop_command(call_uuid: str, final_text: dict | None = None) -> str:
    """Stop the fork (also needed after a failure: the media bug stays attached until stop)."""
    if final_text is None:
        return f"uuid_audio_fork {call_uuid} stop"
    return f"uuid_audio_fork {call_uuid} stop {quote_arg(json.dumps(final_text, separators=(',', ':')))}"


def stop_play_command(call_uuid: str) -> str:
    """jambonz module only: drop the streamed audio FreeSWITCH has buffered, within one frame."""
    return f"uuid_audio_fork {call_uuid} stop_play"


# ---------------------------------------------------------------- server -> FreeSWITCH text messages


def _msg(kind: str, data: dict | None = None) -> str:
    body = {"type": kind} if data is None else {"type": kind, "data": data}
    return json.dumps(body, separators=(",", ":"))


def kill_audio() -> str:
    return _msg("killAudio")


def mark(name: str) -> str:
    return _msg("mark", {"name": name})


def clear_marks() -> str:
    return _msg("clearMarks")


def play_audio(pcm: bytes, sample_rate: int) -> str:
    """Classic playback: FreeSWITCH writes this to a temp file and announces it over ESL."""
    return _msg("playAudio", {"audioContentType": "raw", "sampleRate": sample_rate,
                              "audioContent": base64.b64encode(pcm).decode("ascii")})


# ---------------------------------------------------------------- FreeSWITCH -> server text messages


@dataclass(frozen=True, slots=True)
class MarkReport:
    """A mark reached playout ('playout') or was dropped by killAudio ('cleared')."""

    name: str
    event: str


def parse_client_text(text: str) -> MarkReport | dict | None:
    """A text frame from the module after the metadata: a mark report, other JSON, or None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == "mark" and isinstance(data.get("data"), dict):
        inner = data["data"]
        if isinstance(inner.get("name"), str) and inner.get("event") in ("playout", "cleared"):
            return MarkReport(inner["name"], inner["event"])
    return data if isinstance(data, dict) else None
