"""The call-control AMI actions of the fake Asterisk, with manager.c's checks and wording.

Each handler takes the session and the action and returns the messages to write back in order
(the response, and for a list action its items and ...Complete event); the events an action
causes go out through the PBX like any other event, after its response.
"""

from __future__ import annotations

import re
import uuid as uuid_mod
from typing import TYPE_CHECKING

from controller.simulator.asterisk.ami_server import Action, AmiSession, Handler, error, response
from controller.simulator.asterisk.channel import NORMAL_CLEARING, CallerChannel, Fields

if TYPE_CHECKING:
    from controller.simulator.asterisk.channel import AmiChannel

DEFAULT_DTMF_MS = 100  # AST_DEFAULT_EMULATE_DTMF_DURATION
_MUTE_DIRECTIONS = {"in": (True, False), "out": (False, True), "all": (True, True)}


def _channel(session: AmiSession, action: Action) -> AmiChannel | None:
    return session.pbx.channels.get(action.get("Channel"))


async def getvar(session: AmiSession, action: Action) -> list[Fields]:
    name = action.get("Variable")
    if not name:
        return [error(action, "No variable specified")]
    if action.get("Channel"):
        channel = _channel(session, action)
        if channel is None:
            return [error(action, "No such channel")]
        value = channel.getvar(name)
    else:
        value = session.pbx.globals.get(name, "")
    return [response(action, "Success", ("Variable", name), ("Value", value))]


async def setvar(session: AmiSession, action: Action) -> list[Fields]:
    name, value = action.get("Variable"), action.get("Value")
    if not name:
        return [error(action, "No variable specified")]
    if action.get("Channel"):
        channel = _channel(session, action)
        if channel is None:
            return [error(action, "No such channel")]
        channel.set_var(name, value)
    else:
        session.pbx.globals[name] = value
        session.pbx.publish([("Event", "VarSet"), ("Privilege", "dialplan,all"), ("Channel", "none"),
                             ("Uniqueid", "none"), ("Variable", name), ("Value", value)])
    return [response(action, "Success", ("Message", "Variable Set"))]


async def hangup(session: AmiSession, action: Action) -> list[Fields]:
    if not action.get("Channel"):
        return [error(action, "No channel specified")]
    channel = _channel(session, action)
    if channel is None:
        return [error(action, "No such channel")]
    cause = action.get("Cause")
    channel.request_hangup(int(cause) if cause.isdigit() else NORMAL_CLEARING)
    return [response(action, "Success", ("Message", "Channel Hungup"))]


async def redirect(session: AmiSession, action: Action) -> list[Fields]:
    for key, missing in (("Channel", "Channel not specified"), ("Context", "Context not specified"),
                         ("Exten", "Exten not specified"), ("Priority", "Priority not specified")):
        if not action.get(key):
            return [error(action, missing)]
    priority = action.get("Priority")
    if not priority.isdigit() or int(priority) < 1:
        return [error(action, "Priority is invalid")]
    channel = _channel(session, action)
    if channel is None:
        return [error(action, f"Channel does not exist: {action.get('Channel')}")]
    if channel.cause is not None:
        return [error(action, "Redirect failed, channel not up.")]
    if not isinstance(channel, CallerChannel):
        return [error(action, "Redirect failed")]
    channel.redirect(action.get("Context"), action.get("Exten"), int(priority))
    return [response(action, "Success", ("Message", "Redirect successful"))]


BRIDGE_CONTEXT = "voxgate-bridged"  # not voxgate's context: the fake holds a channel there until it hangs up


async def bridge(session: AmiSession, action: Action) -> list[Fields]:
    """Both channels leave their applications for a new basic bridge: BridgeCreate, BridgeEnter for each.
    The fake does not carry audio between them; the bridge ends, hanging up the other, when one hangs up."""
    for key in ("Channel1", "Channel2"):
        if not action.get(key):
            return [error(action, f"{key} not specified")]
    found = [session.pbx.channels.get(action.get(key)) for key in ("Channel1", "Channel2")]
    for key, channel in zip(("Channel1", "Channel2"), found):
        if not isinstance(channel, CallerChannel) or channel.cause is not None:
            return [error(action, f"Channel{key[-1]} does not exist: {action.get(key)}")]
    one, two = found
    bridge_id = str(uuid_mod.uuid4())
    bridge_fields = [("BridgeUniqueid", bridge_id), ("BridgeType", "basic"), ("BridgeTechnology", "simple_bridge"),
                     ("BridgeCreator", "<unknown>"), ("BridgeName", "<unknown>"), ("BridgeNumChannels", "0")]
    session.pbx.publish([("Event", "BridgeCreate"), ("Privilege", "call,all"), *bridge_fields])
    for count, (channel, other) in enumerate(((one, two), (two, one)), 1):
        channel.redirect(BRIDGE_CONTEXT, "s", 1)
        channel.bridged_to = other.uniqueid
        channel.publish("BridgeEnter", [*bridge_fields[:-1], ("BridgeNumChannels", str(count))])
        session.pbx.spawn(_end_bridge(channel, other))
    return [response(action, "Success", ("Message", "Channels have been bridged"))]


async def _end_bridge(channel: CallerChannel, other: CallerChannel) -> None:
    await channel.ended.wait()
    other.hangup()


async def play_dtmf(session: AmiSession, action: Action) -> list[Fields]:
    """The digit plays for its duration before the response (ast_senddigit_external blocks)."""
    channel = _channel(session, action)
    if channel is None:
        return [error(action, "Channel not found")]
    digit = action.get("Digit")
    if not digit:
        return [error(action, "No digit specified")]
    duration = action.get("Duration")
    ms = int(duration) if duration.isdigit() and int(duration) > 0 else DEFAULT_DTMF_MS
    if isinstance(channel, CallerChannel):
        channel.play_dtmf(digit[0].upper(), ms)
    await session.pbx.clock.sleep(ms / 1000)
    return [response(action, "Success", ("Message", "DTMF successfully queued"))]


async def mute_audio(session: AmiSession, action: Action) -> list[Fields]:
    for key, missing in (("Channel", "Channel not specified"), ("Direction", "Direction not specified"),
                         ("State", "State not specified")):
        if not action.get(key):
            return [error(action, missing)]
    channel = _channel(session, action)
    if channel is None:
        return [error(action, "No such channel")]
    sides = _MUTE_DIRECTIONS.get(action.get("Direction").lower())
    if sides is None:
        return [error(action, "Invalid direction specified")]
    on = action.get("State").lower() in ("on", "yes", "true", "1")
    if isinstance(channel, CallerChannel):
        mute_in, mute_out = sides
        channel.mute_in = on if mute_in else channel.mute_in
        channel.mute_out = on if mute_out else channel.mute_out
    return [response(action, "Success")]


async def core_show_channels(session: AmiSession, action: Action) -> list[Fields]:
    """A list: the response, one CoreShowChannel per channel, then CoreShowChannelsComplete."""
    own_id = [("ActionID", action.action_id)] if action.action_id else []
    channels = list(session.pbx.channels.values())
    return [response(action, "Success", ("EventList", "start"), ("Message", "Channels will follow")),
            *([("Event", "CoreShowChannel"), *own_id, *channel.show_row()] for channel in channels),
            [("Event", "CoreShowChannelsComplete"), *own_id, ("EventList", "Complete"),
             ("ListItems", str(len(channels)))]]


async def user_event(session: AmiSession, action: Action) -> list[Fields]:
    name = action.get("UserEvent")
    if not name:
        return [error(action, "UserEvent header missing")]
    own_id = [("ActionID", action.action_id)] if action.action_id else []
    rest = [(k, v) for k, v in action.headers if k.lower() not in ("action", "actionid", "userevent")]
    session.pbx.publish([("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", name), *own_id, *rest])
    return [response(action, "Success", ("Message", "Event Sent"))]


async def originate(session: AmiSession, action: Action) -> list[Fields]:
    """Async: queued at once, OriginateResponse later. Sync: the response waits for the outcome
    (success is still worded "queued"), and no OriginateResponse comes."""
    if not action.get("Channel"):
        return [error(action, "Channel not specified")]
    if not action.get("Exten") and not action.get("Application"):
        return [error(action, "Exten not specified")]
    pbx = session.pbx
    if action.get("Async").lower() in ("true", "yes", "1", "on"):
        pbx.spawn(pbx.originate(action, report=True))
        return [response(action, "Success", ("Message", "Originate successfully queued"))]
    if await pbx.originate(action, report=False):
        return [response(action, "Success", ("Message", "Originate successfully queued"))]
    return [error(action, "Originate failed")]


def originate_variables(action: Action) -> dict[str, str]:
    """Every Variable header; one may hold several name=value items split on unescaped commas."""
    variables: dict[str, str] = {}
    for header in action.get_all("Variable"):
        for item in re.findall(r'(?:\\.|"[^"]*"|[^,])+', header):
            name, _, value = re.sub(r"\\(.)", r"\1", item).partition("=")
            if name:
                variables[name.strip()] = value
    return variables


def dialled(channel: str) -> tuple[str, str]:
    """(trunk, number) of an Originate's Channel: PJSIP/<number>@<trunk>, SIP/<trunk>/<number>, Tech/<number>."""
    resource = channel.partition("/")[2]
    if "@" in resource:
        number, _, trunk = resource.partition("@")
        return trunk, number
    if "/" in resource:
        trunk, _, number = resource.partition("/")
        return trunk, number
    return "", resource


# OriginateResponse Reason (the last control frame, frame.h) for how a ringing call ended.
_REASONS = {"USER_BUSY": 5, "NO_ANSWER": 3, "NORMAL_CIRCUIT_CONGESTION": 8, "SWITCH_CONGESTION": 8,
            "CALL_REJECTED": 1, "UNALLOCATED_NUMBER": 1, "NUMBER_CHANGED": 1, "INVALID_NUMBER_FORMAT": 1,
            "NO_ROUTE_DESTINATION": 1}


def originate_reason(cause: str) -> str:
    """Reason code for a cause: a far end that answered the INVITE with a refusal sends a hangup (1);
    a channel that could not even be made, none (0)."""
    return str(_REASONS.get(cause, 0))


def caller_id(text: str) -> tuple[str, str]:
    """'"Name" <number>' (or a bare number) as (number, name)."""
    match = re.fullmatch(r'\s*"?([^"<]*?)"?\s*<([^>]*)>\s*', text)
    if match:
        return match.group(2), match.group(1)
    return text.strip(), ""


ACTIONS: dict[str, Handler] = {
    "getvar": getvar, "setvar": setvar, "hangup": hangup, "redirect": redirect, "playdtmf": play_dtmf,
    "muteaudio": mute_audio, "coreshowchannels": core_show_channels, "userevent": user_event,
    "originate": originate, "bridge": bridge,
}
