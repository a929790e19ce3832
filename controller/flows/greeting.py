"""The first flow: greet, collect an account number by DTMF, read it back, say goodbye."""

from __future__ import annotations

from controller import prompts
from controller.call import Call

MAX_DIGITS = 10
FIRST_DIGIT_TIMEOUT_S = 8.0
INTER_DIGIT_TIMEOUT_S = 3.0


async def greeting(call: Call) -> str:
    await call.answer()
    await call.play_audio(*prompts.load("greeting"))
    digits = await call.collect_dtmf(MAX_DIGITS, FIRST_DIGIT_TIMEOUT_S, INTER_DIGIT_TIMEOUT_S, "#")
    if not digits:
        await call.play_audio(*prompts.load("no_input"))
        await call.hangup()
        return "no_input"
    call.info.variables["entered_digits"] = digits
    readback = ["you_entered", *(prompts.digit_name(d) for d in digits), "goodbye"]
    await call.play_audio(*prompts.sequence(readback))
    await call.hangup()
    return "completed"
