"""The API commands of the simulated switch ('api X' / 'bgapi X'), with FreeSWITCH 1.10's replies.

Wording comes from the recorded sessions where they have it, otherwise from mod_commands.c and
mod_audio_fork.c of the versions recorded. A command the simulator does not know answers as an
unknown command does in FreeSWITCH.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.simulator.audio_fork import (
    DEFAULT_BUGNAME, FORK_API_MAX_ARGS, AudioForkBug, parse_start_args, split_api_args,
)
from controller.simulator.caller import run_script
from controller.simulator.callee import Answer, ring
from controller.simulator.events import VERSION_BANNER, VERSION_SHORT

if TYPE_CHECKING:
    from controller.simulator.fake_freeswitch import FakeFreeSwitch

NO_CHANNEL = "-ERR No such channel!\n"
FORK_OK = "+OK Success\n"
FORK_FAILED = "-ERR Operation Failed\n"
FORK_USAGE = ("-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] "
              "[wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] "
              "[metadata] [bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] "
              "[bidirectionalAudio_stream_samplerate]\n")
ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
                   "[<cid_name>] [<cid_num>] [<timeout_sec>]\n")
SHOW_USAGE = ("-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels "
              "[count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|"
              "complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits\n")

Handler = Callable[["FakeFreeSwitch", str], Awaitable[str]]


async def execute(switch: FakeFreeSwitch, command: str, arg: str) -> str | None:
    """The output of one API command; None when FreeSWITCH would not know the command."""
    handler = _COMMANDS.get(command.lower())
    return None if handler is None else await handler(switch, arg)


async def _version(switch: FakeFreeSwitch, arg: str) -> str:
    return VERSION_BANNER + "\n"


async def _status(switch: FakeFreeSwitch, arg: str) -> str:
    up_us = int((switch.clock.now() - switch.started_at) * 1_000_000)
    seconds, us = divmod(up_us, 1_000_000)
    parts = [(seconds // 31_536_000, "year"), (seconds % 31_536_000 // 86_400, "day"),
             (seconds % 86_400 // 3600, "hour"), (seconds % 3600 // 60, "minute"), (seconds % 60, "second"),
             (us // 1000, "millisecond"), (us % 1000, "microsecond")]
    uptime = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in parts)
    stats = switch.stats
    return "".join(line + "\n" for line in (
        f"UP {uptime}",
        f"FreeSWITCH (Version {VERSION_SHORT}) is ready",
        f"{stats.total} session(s) since startup",
        f"{len(switch.channels)} session(s) - peak {stats.peak}, last 5min {stats.peak} ",
        f"0 session(s) per Sec out of max 30, peak {stats.peak_per_second}, last 5min {stats.peak_per_second} ",
        "100 session(s) max",
        "min idle cpu 0.00/100.00",
        "Current Stack Size/Max 240K/8192K",
    ))


async def _uuid_answer(switch: FakeFreeSwitch, arg: str) -> str:
    channel = switch.channels.get(arg.strip())
    if channel is None:
        return NO_CHANNEL
    channel.answer()
    return "+OK\n"


async def _uuid_kill(switch: FakeFreeSwitch, arg: str) -> str:
    argv = arg.split()
    if not argv:
        return "-USAGE: <uuid> [cause]\n"
    ringing = switch.ringing.get(argv[0])
    if ringing is not None:  # an originate's leg that has not answered yet: the originate is cancelled
        ringing.set()
        return "+OK\n"
    channel = switch.channels.get(argv[0])
    if channel is None or channel.hung_up:
        return NO_CHANNEL
    channel.hangup(argv[1] if len(argv) > 1 else None)
    return "+OK\n"


async def _uuid_break(switch: FakeFreeSwitch, arg: str) -> str:
    if not arg:
        return "-USAGE: <uuid> [all]\n"
    uuid, _, flag = arg.partition(" ")
    channel = switch.channels.get(uuid)
    if channel is None:
        return NO_CHANNEL
    if "all" in flag:
        channel.flush_queue()
    channel.break_playback()
    return "+OK\n"


async def _uuid_broadcast(switch: FakeFreeSwitch, arg: str) -> str:
    argv = arg.split()
    if len(argv) < 2:
        return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
    channel = switch.channels.get(argv[0])
    if channel is None or channel.hung_up:
        return "-ERR Operation Failed\n"
    channel.enqueue("playback", argv[1])
    return "+OK Message sent\n"


async def _uuid_send_dtmf(switch: FakeFreeSwitch, arg: str) -> str:
    argv = arg.split()
    if len(argv) < 2:
        return "-USAGE: <uuid> <dtmf_data>\n"
    channel = switch.channels.get(argv[0])
    if channel is None:
        return "-ERR Cannot locate session!\n"
    channel.send_dtmf(argv[1])
    return f"+OK {argv[0]} sent DTMF {argv[1]}.\n"


async def _uuid_transfer(switch: FakeFreeSwitch, arg: str) -> str:
    argv = [a for a in arg.split() if a not in ("-bleg", "-both")]
    if len(argv) < 2:
        return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
    channel = switch.channels.get(argv[0])
    if channel is None or channel.hung_up:
        return NO_CHANNEL
    channel.transfer(argv[1])
    return "+OK\n"


async def _uuid_bridge(switch: FakeFreeSwitch, arg: str) -> str:
    argv = arg.split()
    if len(argv) != 2:
        return "-USAGE: <uuid> <other_uuid>\n"
    for uuid in argv:
        channel = switch.channels.get(uuid)
        if channel is None or channel.hung_up:
            return f"-ERR Invalid uuid {uuid}\n"
    switch.bridge(switch.channels[argv[0]], switch.channels[argv[1]])
    return f"+OK {argv[0]}\n"


async def _uuid_getvar(switch: FakeFreeSwitch, arg: str) -> str:
    argv = arg.split()
    if len(argv) < 2:
        return "-USAGE: <uuid> <var>\n"
    channel = switch.channels.get(argv[0])
    if channel is None:
        return NO_CHANNEL
    return channel.variables.get(argv[1], "_undef_")


async def _uuid_setvar(switch: FakeFreeSwitch, arg: str) -> str:
    argv = arg.split(" ", 2)
    if len(argv) < 2 or not argv[0]:
        return "-USAGE: <uuid> <var> [value]\n"
    channel = switch.channels.get(argv[0])
    if channel is None:
        return NO_CHANNEL
    channel.set_var(argv[1], argv[2] if len(argv) > 2 else None)
    return "+OK\n"


async def _uuid_exists(switch: FakeFreeSwitch, arg: str) -> str:
    return "true" if arg.strip() in switch.channels else "false"


async def _show(switch: FakeFreeSwitch, arg: str) -> str:
    argv = arg.split()
    if not argv or argv[0].lower() != "channels":
        return SHOW_USAGE
    rows = [channel.show_row(switch.hostname) for channel in switch.channels.values()]
    if len(argv) > 1 and argv[1].lower() == "count":
        return f"\n{len(rows)} total.\n"
    if len(argv) > 2 and argv[1].lower() == "as" and argv[2].lower() == "json":
        if not rows:
            return '{"row_count": 0}\n'
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"), ensure_ascii=False)
    header = ",".join(_SHOW_COLUMNS)
    lines = [",".join(row[column] for column in _SHOW_COLUMNS) for row in rows]
    return header + "\n" + "".join(line + "\n" for line in lines) + f"\n{len(rows)} total.\n"


async def _originate(switch: FakeFreeSwitch, arg: str) -> str:
    """loopback/<dest> answers at once; sofia/gateway/<gw>/<number> rings its scripted callee first."""
    argv = split_args(arg)
    if not 2 <= len(argv) <= 7:
        return ORIGINATE_USAGE
    url, exten = argv[0], argv[1]
    variables: dict[str, str] = {}
    match = re.match(r"\{([^}]*)\}(.*)", url)
    if match:
        url = match.group(2)
        for item in filter(None, match.group(1).split(",")):
            name, _, value = item.partition("=")
            variables[name.strip()] = value.strip().strip("'")
    endpoint = url.split("/")
    app, app_arg = "park", None
    app_match = re.fullmatch(r"&([\w-]+)(?:\((.*)\))?", exten)
    if app_match:
        app, app_arg = app_match.group(1), app_match.group(2) or None
    leg = _Leg(variables, app, app_arg,
               variables.get("origination_caller_id_number") or (argv[5] if len(argv) > 5 else "0000000000"),
               variables.get("origination_caller_id_name") or (argv[4] if len(argv) > 4 else ""))
    if endpoint[0] == "sofia" and switch.gateways:
        return await _originate_gateway(switch, endpoint, leg)
    if endpoint[0] != "loopback" or len(endpoint) < 2 or not endpoint[1]:
        return "-ERR CHAN_NOT_IMPLEMENTED\n"
    codec = re.fullmatch(r"L16@(\d+)h", variables.get("loopback_initial_codec", ""))
    channel = switch.originate(
        destination=endpoint[1], variables=variables, app=app, app_arg=app_arg,
        caller_id_number=leg.caller_id_number, caller_id_name=leg.caller_id_name,
        sample_rate=int(codec.group(1)) if codec else 8000)
    return f"+OK {channel.uuid}\n"


@dataclass(frozen=True, slots=True)
class _Leg:
    """What an originate asks of its leg, whatever the endpoint."""

    variables: dict[str, str]
    app: str
    app_arg: str | None
    caller_id_number: str
    caller_id_name: str


async def _originate_gateway(switch: FakeFreeSwitch, endpoint: list[str], leg: _Leg) -> str:
    """sofia/gateway/<gw>/<number>: ring the callee the switch has scripted for it, then answer or fail.

    The reply is what the originate API prints: `+OK <uuid>` once answered, else `-ERR <CAUSE>`
    (USER_BUSY, NO_ANSWER after originate_timeout, ORIGINATOR_CANCEL when uuid_kill'ed while ringing).
    The leg exists only once answered here; a real one also fires its events while it rings.
    """
    if len(endpoint) < 4 or endpoint[1] != "gateway" or not endpoint[3]:
        return "-ERR CHAN_NOT_IMPLEMENTED\n"
    gateway, number = endpoint[2], "/".join(endpoint[3:])
    if gateway not in switch.gateways:
        return "-ERR INVALID_GATEWAY\n"
    callee = switch.callees.pick(gateway, number) or Answer()
    switch.callees.note(gateway, number, callee)
    uid = leg.variables.get("origination_uuid") or str(uuid_mod.uuid4())
    timeout = leg.variables.get("originate_timeout", "")
    cancelled = switch.ringing[uid] = asyncio.Event()
    try:
        cause = await ring(callee, switch.clock, int(timeout) if timeout.isdigit() and int(timeout) else 60,
                           cancelled)
    finally:
        switch.ringing.pop(uid, None)
    if cause is not None:
        return f"-ERR {cause}\n"
    channel = switch.originate(
        destination=number, variables={**leg.variables, "origination_uuid": uid}, app=leg.app,
        app_arg=leg.app_arg, caller_id_number=leg.caller_id_number, caller_id_name=leg.caller_id_name,
        gateway=gateway)
    if isinstance(callee, Answer) and callee.script:
        channel.run_caller(run_script(channel, callee.script))
    return f"+OK {channel.uuid}\n"


def split_args(text: str) -> list[str]:
    """switch_separate_string on blanks: single quotes keep spaces in, and are dropped; \\ escapes a character."""
    args: list[str] = []
    current: list[str] = []
    quoted = escaped = started = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = started = True
        elif char == "'":
            quoted = not quoted
            started = True
        elif char == " " and not quoted:
            if started:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        args.append("".join(current))
    return args


async def _create_uuid(switch: FakeFreeSwitch, arg: str) -> str:
    return str(uuid_mod.uuid4())


async def _uuid_audio_fork(switch: FakeFreeSwitch, arg: str) -> str:
    """mod_audio_fork's fork_function: argument handling and replies as the module has them."""
    argv = split_api_args(arg, FORK_API_MAX_ARGS) if arg else []
    if len(argv) < 2 or (argv[1] == "start" and len(argv) < 4):
        return FORK_USAGE
    channel = switch.channels.get(argv[0])
    if channel is None or channel.hung_up:
        return FORK_FAILED
    verb = argv[1].lower()
    bugname = DEFAULT_BUGNAME
    if verb == "start":
        try:
            fork_args = parse_start_args(argv[2:], switch.generation)
        except ValueError:
            return FORK_FAILED
        if fork_args.bugname in channel.bugs:
            return FORK_FAILED
        if not channel.media_up:
            channel.pre_answer()
        bug = AudioForkBug(channel, fork_args, switch.generation)
        channel.attach_bug(fork_args.bugname, bug)
        await bug.start()
        return FORK_OK
    if verb in ("stop", "send_text"):
        text = None
        if len(argv) > 3:
            bugname, text = argv[2], argv[3]
        elif len(argv) > 2:
            if argv[2][:1] in ("{", "["):
                text = argv[2]
            else:
                bugname = argv[2]
        elif verb == "send_text":
            return ""  # the module writes nothing; the socket answers '-ERR no reply'
        bug = channel.bugs.get(bugname)
        if bug is None:
            return FORK_FAILED
        if verb == "send_text":
            await bug.send_text(text or "")
        else:
            await bug.stop(text)
            channel.detach_bug(bugname)
        return FORK_OK
    if verb in ("pause", "resume", "graceful-shutdown"):
        bug = channel.bugs.get(argv[2] if len(argv) > 2 else bugname)
        if bug is None:
            return FORK_FAILED
        await {"pause": bug.pause, "resume": bug.resume, "graceful-shutdown": bug.graceful_shutdown}[verb]()
        return FORK_OK
    if verb == "stop_play":
        bug = channel.bugs.get(bugname)
        return FORK_OK if bug is not None and bug.stop_play() else FORK_FAILED
    return FORK_FAILED


_SHOW_COLUMNS = (
    "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr", "dest",
    "application", "application_data", "dialplan", "context", "read_codec", "read_rate", "read_bit_rate",
    "write_codec", "write_rate", "write_bit_rate", "secure", "hostname", "presence_id", "presence_data",
    "accountcode", "callstate", "callee_name", "callee_num", "callee_direction", "call_uuid", "sent_callee_name",
    "sent_callee_num", "initial_cid_name", "initial_cid_num", "initial_ip_addr", "initial_dest",
    "initial_dialplan", "initial_context",
)

_COMMANDS: dict[str, Handler] = {
    "version": _version, "status": _status, "uuid_answer": _uuid_answer, "uuid_kill": _uuid_kill,
    "uuid_break": _uuid_break, "uuid_broadcast": _uuid_broadcast, "uuid_send_dtmf": _uuid_send_dtmf,
    "uuid_transfer": _uuid_transfer, "uuid_bridge": _uuid_bridge, "uuid_getvar": _uuid_getvar, "uuid_setvar": _uuid_setvar,
    "uuid_exists": _uuid_exists, "show": _show, "originate": _originate, "create_uuid": _create_uuid,
    "uuid_audio_fork": _uuid_audio_fork,
}
