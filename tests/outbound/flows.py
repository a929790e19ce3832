"""A short outbound flow for the tests (and `voxgate call --flows tests.outbound.flows`)."""

from __future__ import annotations

from controller import prompts
from controller.call import Call
from controller.flows import flow


@flow("reminder")
async def reminder(call: Call) -> str:
    """Speak, take one key (1 confirms), read it back, hang up."""
    await call.answer()
    await call.play_audio(*prompts.load("you_entered"))
    digits = await call.collect_dtmf(1, timeout=5)
    call.info.variables["confirmed"] = "yes" if digits == "1" else "no"
    if digits:
        await call.play_audio(*prompts.load(prompts.digit_name(digits)))
    await call.hangup()
    return "confirmed" if digits == "1" else "unconfirmed"
