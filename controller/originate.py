"""What the dialer says to each PBX to place a call, and how it reads the answer (sans-I/O).

FreeSWITCH: `originate {var=value,...}<dial string> '&socket(host:port async full)'` through bgapi;
the job's output is `+OK <uuid>` once answered or `-ERR <CAUSE>`. Asterisk: an async Originate
whose OriginateResponse says Success or Failure with the last control frame as Reason.

Values go into those strings unescaped, so they are checked instead: nothing in them may read as a
separator of FreeSWITCH's variable block or dial string, a quote, or a split point of AMI's
Variable header. The settings use the same checks at load.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from controller.asterisk.ami import OriginateOutcome

ANSWERED, BUSY, NO_ANSWER, REJECTED, FAILED, INVALID_NUMBER = (
    "answered", "busy", "no_answer", "rejected", "failed", "invalid_number")

MAX_VALUE_CHARS = 256
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
RESERVED_PREFIXES = ("voxgate_", "origination_", "originate_")  # the dialer's own, and originate's controls
_UNSAFE = frozenset(",{}[]'\"\\^|")
_PLACEHOLDERS = frozenset({"number", "digits", "trunk"})
_CHANNEL = re.compile(r"[A-Za-z0-9_-]+/[^\s,|{}\[\]'\"\\^&]+")

# FreeSWITCH's `-ERR <cause>`; causes not listed are failures worth another try.
_FREESWITCH_OUTCOMES = {
    "USER_BUSY": BUSY,
    "NO_ANSWER": NO_ANSWER, "NO_USER_RESPONSE": NO_ANSWER, "PROGRESS_TIMEOUT": NO_ANSWER,
    "ALLOTTED_TIMEOUT": NO_ANSWER, "SUBSCRIBER_ABSENT": NO_ANSWER,
    "CALL_REJECTED": REJECTED, "USER_CHALLENGE": REJECTED,
    "UNALLOCATED_NUMBER": INVALID_NUMBER, "INVALID_NUMBER_FORMAT": INVALID_NUMBER, "NUMBER_CHANGED": INVALID_NUMBER,
}
# Asterisk only says which control frame came last (ami.ORIGINATE_REASONS): a rejection (1) may be an
# unallocated number as well, which it does not tell apart; congestion (8) is a failure.
_ASTERISK_OUTCOMES = {"answered": ANSWERED, "busy": BUSY, "no_answer": NO_ANSWER, "hangup": REJECTED}


# ---------------------------------------------------------------- checks


def check_variable_value(name: str, value: str) -> str:
    """A channel variable's value that no PBX can misread as more variables or another dial string."""
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_VALUE_CHARS:
        raise ValueError(f"{name}: longer than {MAX_VALUE_CHARS} characters")
    bad = sorted({c for c in value if c in _UNSAFE or not c.isprintable()})
    if bad:
        raise ValueError(f"{name}: may not contain {' '.join(repr(c) for c in bad)} "
                         "(separators and quotes of the PBX's dial strings)")
    if value != value.strip():
        raise ValueError(f"{name}: may not start or end with a space")
    return value


def check_variables(variables: Mapping[str, str]) -> dict[str, str]:
    """A request's own channel variables: plain names, none of the reserved ones, safe values."""
    checked = {}
    for name, value in variables.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"variable name {name!r}: up to 64 letters, digits and _, starting with a letter")
        if name.lower().startswith(RESERVED_PREFIXES):
            raise ValueError(f"variable name {name!r}: names starting with {', '.join(RESERVED_PREFIXES)} "
                             "are reserved")
        checked[name] = check_variable_value(f"variable {name}", value)
    return checked


def check_dial_string(template: str, technology: str) -> None:
    """A trunk's dial string: one channel, with {number} (E.164) or {digits} (no +) and maybe {trunk}."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r} is not a template: {exc}") from None
    names = {name for _, name, _, _ in parts if name is not None}
    plain = all(not spec and not conversion for _, name, spec, conversion in parts if name is not None)
    if not plain or not names <= _PLACEHOLDERS:
        raise ValueError(f"{template!r}: the placeholders are {{number}}, {{digits}} and {{trunk}}, "
                         "without formats")
    if not names & {"number", "digits"}:
        raise ValueError(f"{template!r} must contain {{number}} or {{digits}}")
    if not _CHANNEL.fullmatch(dial_string(template, "+15551230001", "trunk")):
        raise ValueError(f"{template!r} must be one {technology} channel (technology/resource) without spaces, "
                         "commas, | or brackets: voxgate tries the trunks itself")


def dial_string(template: str, number: str, trunk: str) -> str:
    return template.format(number=number, digits=number.lstrip("+"), trunk=trunk)


# ---------------------------------------------------------------- FreeSWITCH


def freeswitch_originate(variables: Mapping[str, str], channel: str, socket_address: str) -> str:
    """The originate command for bgapi: the call runs `socket` into voxgate once answered.

    A value with a space is single-quoted, as FreeSWITCH's argument splitter wants; so is the
    application, whose arguments have spaces.
    """
    listed = ",".join(f"{name}={_quoted(value)}" for name, value in variables.items())
    return f"originate {{{listed}}}{channel} '&socket({socket_address} async full)'"


def _quoted(value: str) -> str:
    return f"'{value}'" if " " in value or not value else value


def freeswitch_result(output: str) -> tuple[str, str]:
    """(outcome, cause) from originate's output: `+OK <uuid>` or `-ERR <CAUSE>`."""
    text = output.strip()
    if text.startswith("+OK"):
        return ANSWERED, "SUCCESS"
    if text.startswith("-ERR"):
        cause = text[4:].strip() or "UNKNOWN"
        return _FREESWITCH_OUTCOMES.get(cause, FAILED), cause
    return FAILED, f"unexpected originate output {text[:80]!r}"


# ---------------------------------------------------------------- Asterisk


def asterisk_caller_id(number: str, name: str) -> str | None:
    """Originate's CallerID: '"Name" <number>', the number alone, or None for the trunk's default."""
    if name:
        return f'"{name}" <{number}>'
    return number or None


def asterisk_result(outcome: OriginateOutcome) -> tuple[str, str]:
    """(outcome, cause) of an OriginateResponse."""
    return _ASTERISK_OUTCOMES.get(outcome.result, FAILED), f"Reason {outcome.reason} ({outcome.result})"
