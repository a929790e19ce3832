"""The first flow: greet, collect an account number by DTMF, read it back, say goodbye.

The dialplan may tune it per call: voxgate_digit_timeout (seconds to wait for the first digit).
"""

from __future__ import annotations

from controller import prompts
from controller.call import Call

MAX_DIGITS = 10
FIRST_DIGIT_TIMEOUT_S = 8.0
INTER_DIGIT_TIMEOUT_S = 3.0


async def greeting(call: Call) -> str:
    await call.answer()
    await call.play_audio(*prompts.load("greeting"))
    first_wait = _seconds(call.info.variables.get("voxgate_digit_timeout"), FIRST_DIGIT_TIMEOUT_S)
    digits = await call.collect_dtmf(MAX_DIGITS, first_wait, INTER_DIGIT_TIMEOUT_S, "#")
    if not digits:
        await call.play_audio(*prompts.load("no_input"))
        await call.hangup()
        return "no_input"
    call.info.variables["entered_digits"] = digits
    readback = ["you_entered", *(prompts.digit_name(d) for d in digits), "goodbye"]
    await call.play_audio(*prompts.sequence(readback))
    await call.hangup()
    return "completed"


def _seconds(value: str | None, default: float) -> float:
    try:
        seconds = float(value) if value else default
    except ValueError:
        return default
    return seconds if 0 < seconds <= 60 else default
