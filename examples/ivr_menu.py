"""An IVR menu, by keys or by voice: sales, support (with a submenu), opening hours.

    voxgate serve --flows examples.ivr_menu      # the dialplan sets voxgate_flow=ivr

Callers press a key or say what they want; silence and answers that match nothing get a short
notice and the question again (gather's retries), then a goodbye. The path taken is kept in
call.state, which is stored with the call record.
"""

from __future__ import annotations

from controller.call import Call
from controller.flows import flow

SALES_QUEUE = "2001"
SUPPORT_QUEUES = {"1": "2101", "2": "2102"}  # billing, technical
MAX_ROUNDS = 3  # the main menu comes back after the opening hours, this many times at most

WELCOME = "Thanks for calling Acme."
MAIN_MENU = "For sales, press 1 or say sales. For support, press 2 or say support. For our opening hours, press 3."
MAIN_CHOICES = {"1": ["sales", "buy", "pricing"], "2": ["support", "help", "problem"],
                "3": ["hours", "opening hours", "open"]}
SUPPORT_MENU = "Support. For billing, press 1 or say billing. For technical help, press 2 or say technical."
SUPPORT_CHOICES = {"1": ["billing", "bill", "invoice"], "2": ["technical", "tech", "internet"]}
HOURS = "We are open from nine to six, Monday to Saturday."
NO_INPUT = "Sorry, I didn't hear anything."
INVALID = "Sorry, I didn't get that."
GOODBYE = "Thanks for calling. Goodbye."


async def ask(call: Call, prompt: str, choices: dict[str, list[str]]) -> str | None:
    """The caller's choice by key or speech, or None after the retries; each answer goes in call.state."""
    answer = await call.gather(prompt, choices=choices, speech=True, timeout=5, retries=2,
                               no_input_prompt=NO_INPUT, invalid_prompt=INVALID)
    call.state.setdefault("answers", []).append(
        {"kind": answer.kind, "choice": answer.choice, "heard": answer.text or answer.digits})
    return answer.choice


async def connect(call: Call, queue: str, name: str) -> str:
    call.state["queue"] = name
    await call.say(f"Connecting you to {name}.", interruptible=False)
    await call.transfer(queue, reason=name)  # the caller leaves voxgate: the record's outcome is "transferred"
    return "transferred"


async def goodbye(call: Call, outcome: str) -> str:
    await call.say(GOODBYE, interruptible=False)
    await call.hangup()
    return outcome


@flow("ivr")
async def ivr(call: Call) -> str:
    await call.answer()
    for round_ in range(MAX_ROUNDS):
        choice = await ask(call, MAIN_MENU if round_ else f"{WELCOME} {MAIN_MENU}", MAIN_CHOICES)
        if choice == "1":
            return await connect(call, SALES_QUEUE, "sales")
        if choice == "2":
            team = await ask(call, SUPPORT_MENU, SUPPORT_CHOICES)
            if team is None:
                return await goodbye(call, "no_choice")
            return await connect(call, SUPPORT_QUEUES[team], "billing" if team == "1" else "technical")
        if choice is None:
            return await goodbye(call, "no_choice")
        await call.say(HOURS)  # "3": then the menu again
    return await goodbye(call, "hours")
