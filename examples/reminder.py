"""An outbound appointment reminder: confirm with 1 or "yes", reschedule with 2 or "reschedule".

    voxgate call +12025550123 --flow reminder --flows examples.reminder --var appointment="Tuesday at 3 pm"

The appointment comes from the call's variables (--var, or OutboundCall(variables=...) from Python).
The outcome (confirmed, rescheduled with the new day, or no answer) is kept in call.state and stored
with the call record.
"""

from __future__ import annotations

from controller.call import Call
from controller.flows import flow

DAYS = {"1": ["monday"], "2": ["tuesday"], "3": ["wednesday"], "4": ["thursday"], "5": ["friday"]}
CONFIRM_CHOICES = {"1": ["yes", "confirm", "correct"], "2": ["reschedule", "change", "no"]}


@flow("reminder")
async def reminder(call: Call) -> str:
    appointment = call.info.variables.get("appointment", "your appointment")
    call.state["appointment"] = appointment
    await call.answer()
    answer = await call.gather(
        f"Hello, this is Acme Clinic reminding you of your appointment on {appointment}. "
        "To confirm, press 1 or say yes. To reschedule, press 2 or say reschedule.",
        choices=CONFIRM_CHOICES, speech=True, timeout=6, retries=1,
        no_input_prompt="Sorry, I didn't hear you.", invalid_prompt="Sorry, I didn't get that.")
    if answer.choice == "1":
        call.state["outcome"] = "confirmed"
        await call.say("Thank you, see you then. Goodbye.", interruptible=False)
    elif answer.choice == "2":
        await reschedule(call)
    else:
        call.state["outcome"] = "no_answer"
        await call.say("We will call you again later. Goodbye.", interruptible=False)
    await call.hangup()
    return call.state["outcome"]


async def reschedule(call: Call) -> None:
    day = await call.gather("Which day suits you better? Say a weekday, or press 1 for Monday to 5 for Friday.",
                            choices=DAYS, speech=True, timeout=6, retries=1,
                            invalid_prompt="Sorry, we are open Monday to Friday.")
    if day.choice is None:
        call.state["outcome"] = "reschedule_requested"
        await call.say("No problem, a colleague will call you to find a day. Goodbye.", interruptible=False)
        return
    new_day = DAYS[day.choice][0].title()
    call.state.update(outcome="rescheduled", new_day=new_day)
    await call.say(f"Done: we moved your appointment to {new_day}, same time. Goodbye.", interruptible=False)
