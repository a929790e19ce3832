"""Voicemail to transcript: a prompt, a beep, the message until silence, # or the hangup, transcribed.

    voxgate serve --flows examples.voicemail     # the dialplan sets voxgate_flow=voicemail

Most callers end a message by hanging up, so the flow is registered with finish_after_hangup:
record() returns at the hangup and the flow has 30 more seconds to transcribe and store it. The
WAV goes under the examples' data dir, the transcript into call.state (stored with the call record).
"""

from __future__ import annotations

import asyncio

from controller.call import Call
from controller.flows import flow
from examples import data_dir


@flow("voicemail", finish_after_hangup=30)
async def voicemail(call: Call) -> str:
    await call.answer()
    await call.say("Sorry we missed you. Please leave a message after the tone, and press pound when you are done.",
                   interruptible=False)
    folder = await asyncio.to_thread(data_dir)
    message = await call.record(max_s=120, silence_s=4, terminators="#",
                                path=folder / f"voicemail-{call.info.uuid}.wav", transcribe=True)
    call.state["voicemail"] = {"from": call.info.caller_id_number, "seconds": round(message.duration, 1),
                               "ended_by": message.ended_by, "transcript": message.text, "wav": message.path}
    if message.ended_by != "hangup":
        await call.say("Thank you, your message has been saved. Goodbye.", interruptible=False)
        await call.hangup()
    return "message" if message.text else "empty"
