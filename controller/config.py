"""Voxgate settings: defaults, then a TOML file, then VOXGATE_* environment variables.

Everything is checked at load so a typo or a weak secret stops startup with one message
listing every problem, instead of surfacing mid-call.
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, get_args, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.routing import Route, RouteError, parse_routes
from controller.webhooks import WebhookConfigError, WebhookEndpoint, parse_endpoints

ENV_PREFIX = "VOXGATE_"
CONFIG_ENV = "VOXGATE_CONFIG"
TOML_TABLE = "voxgate"
DEFAULT_ESL_PASSWORD = "ClueCon"
MIN_TOKEN_SECRET_CHARS = 16
MASK = "**********"

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Secret:
    """A string that never shows itself in repr, str or f-strings; call reveal() to use it."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return repr(MASK)

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


class ConfigError(ValueError):
    """The settings are unusable; the message has one line per problem, each naming its setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated runtime settings; build with load_settings(), which checks and completes them."""

    bind_host: str = "127.0.0.1"
    esl_outbound_port: int = 8084  # FreeSWITCH's `socket` app connects here; 0 = ephemeral
    esl_inbound: bool = False  # also connect to FreeSWITCH's event socket for parked calls
    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    esl_password: Secret | None = None
    allow_default_esl_password: bool = False
    asterisk: bool = False  # take calls from Asterisk: AMI control, AudioSocket and chan_websocket media
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_username: str = "voxgate"
    ami_secret: Secret | None = None
    audiosocket_port: int = 9092  # AudioSocket(${VOXGATE_ID},host:9092) connects here
    media_ws_port: int = 9093  # chan_websocket (websocket_client.conf uri) connects here
    media_ws_username: str = "asterisk"
    media_ws_password: Secret | None = None  # HTTP Basic password in websocket_client.conf
    asterisk_transfer_context: str = "voxgate-transfer"  # transfer(destination) = Redirect to destination@this
    asterisk_timezone: str = ""  # the Asterisk host's zone (Cdr times carry none); "" = this host's
    # channel variables voxgate reads (Getvar) when an Asterisk call arrives: Asterisk sends none with it
    asterisk_variables: str = "voxgate_digit_timeout,voxgate_record"
    ws_port: int = 8090  # mod_audio_fork WebSocket server
    ws_public_url: str = ""  # how FreeSWITCH reaches the WebSocket server; "" = derived
    audio_fork_mode: str = "streaming"  # streaming: jambonz bidirectional; classic: drachtio playAudio
    audio_fork_rate: int = 8000
    audio_fork_mix: str = "mono"
    token_secret: Secret | None = None  # HMAC key for per-call WebSocket tokens
    token_ttl_s: float = 30.0
    drain_s: float = 30.0  # on SIGTERM, calls in progress get this long to finish before they are ended
    instance_id: str = ""  # "" = the hostname
    database_url: Secret = Secret("sqlite:///var/voxgate.sqlite3")  # PostgreSQL URLs carry passwords
    journal_dir: str = "var/journal"  # records reach this disk journal (fsync'd) before the database
    store_raw_text: bool = False  # True stores transcripts unredacted (cards, IDs, e-mail, phone numbers)
    redact_patterns: str = ""  # JSON object of extra patterns: {"order_ref": "ORD-\\d+"}
    record_calls: bool = False  # stereo recordings (caller | agent), encrypted; the dialplan's voxgate_record overrides
    recordings_dir: str = "var/recordings"
    recording_keys: Secret | None = None  # "id:base64key[,old-id:base64key]": the first encrypts, all decrypt
    default_flow: str = "greeting"
    routes: tuple[Route, ...] = ()  # [[voxgate.routes]] or VOXGATE_ROUTES (JSON): number/caller id -> flow
    webhooks: tuple[WebhookEndpoint, ...] = ()  # [[voxgate.webhooks]] or VOXGATE_WEBHOOKS (JSON): url, secret, events
    max_ws_message: int = 65536
    log_level: str = "INFO"
    log_format: str = "text"  # text, or json: one object per line, for log shippers; both name the call
    tmp_dir: str = "var/tmp"
    stt: str = "whisper"  # whisper (embedded) | deepgram
    llm: str = "grounded"  # grounded (embedded) | llama (the 'llm' extra) | openai (any compatible server)
    tts: str = "hibari"  # hibari (embedded) | openai
    openai_base_url: str = "https://api.openai.com/v1"  # also vLLM, Ollama, llama.cpp server...
    openai_api_key: Secret | None = None
    openai_model: str = "gpt-4o-mini"
    openai_tts_model: str = "gpt-4o-mini-tts"
    openai_tts_voice: str = "alloy"
    deepgram_url: str = "wss://api.deepgram.com/v1/listen"
    deepgram_api_key: Secret | None = None
    preload_engines: bool = True  # load the embedded models at start-up, not on the first call
    # outbound calls (controller.dialer, `voxgate call`): trunks are tried in order, each pass after a backoff
    freeswitch_trunks: str = ""  # sofia gateway names, comma-separated: "carrier_a,carrier_b"
    freeswitch_dial_string: str = "sofia/gateway/{trunk}/{number}"  # {number} E.164, {digits} without the +
    esl_outbound_host: str = ""  # how FreeSWITCH's socket app reaches voxgate for dialled calls; "" = bind_host
    asterisk_trunks: str = ""  # comma-separated; each fills {trunk} of asterisk_dial_string
    asterisk_dial_string: str = "PJSIP/{number}@{trunk}"
    asterisk_outbound_context: str = "voxgate-outbound"  # where an answered call goes (dialplan/asterisk)
    default_region: str = ""  # ISO code (US, GB, ...) for numbers given without +; "" = only +E.164 numbers
    number_check: str = "valid"  # valid: a range the country assigned; possible: the length only (labs)
    caller_id_number: str = ""  # what the called party sees unless the call gives its own
    caller_id_name: str = ""
    dial_retries: int = 2  # passes over the trunk list after the first
    dial_backoff_s: float = 60.0  # wait before the second pass; times dial_backoff_factor before each next
    dial_backoff_factor: float = 2.0
    dial_backoff_max_s: float = 900.0
    dial_ring_timeout_s: int = 30
    api: bool = False  # serve the HTTP API (controller.http_api) on bind_host:api_port
    api_port: int = 8088  # 0 = ephemeral
    api_token: Secret | None = None  # the bearer token every API request carries; required when api is true
    otel: bool = False  # OpenTelemetry traces (the 'otel' extra), exported as the OTEL_* variables say
    token_secret_ephemeral: bool = False  # set by load_settings, not configurable

    @property
    def audio_fork_base_url(self) -> str:
        """The ws:// or wss:// base FreeSWITCH is told to connect to, without a trailing slash."""
        if self.ws_public_url:
            return self.ws_public_url.rstrip("/")
        host = f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host
        return f"ws://{host}:{self.ws_port}"

    @property
    def asterisk_cdr_zone(self) -> tzinfo:
        """Where Asterisk's Cdr times are local: the configured zone, else this host's."""
        if self.asterisk_timezone:
            return ZoneInfo(self.asterisk_timezone)
        return datetime.now().astimezone().tzinfo or UTC

    def trunks(self, pbx: str) -> tuple[str, ...]:
        """The trunks outbound calls try on `pbx` ("freeswitch" or "asterisk"), in order."""
        names = self.freeswitch_trunks if pbx == "freeswitch" else self.asterisk_trunks
        return tuple(name for name in names.split(",") if name)

    @property
    def database_url_redacted(self) -> str:
        return redact_url(self.database_url.reveal())

    def describe(self) -> list[str]:
        """"name = value" lines for startup logs, with secrets masked."""
        lines = []
        for f in fields(self):
            if f.name == "token_secret_ephemeral":
                continue
            value = getattr(self, f.name)
            if f.name == "database_url":
                shown = self.database_url_redacted
            elif f.name == "ws_public_url" and not value:
                shown = f"{self.audio_fork_base_url} (derived)"
            elif f.name == "routes":
                shown = f"{len(value)} route(s)"
            elif isinstance(value, Secret):
                shown = MASK
            elif value is None:
                shown = "(unset)"
            else:
                shown = str(value)
            if f.name == "token_secret" and self.token_secret_ephemeral:
                shown += " (ephemeral: tokens die with this process)"
            lines.append(f"{f.name} = {shown}")
        return lines


def redact_url(url: str) -> str:
    """The URL with any password (userinfo or a *pass* query parameter) masked.

    Over-masks rather than under-masks: SQLAlchemy allows '/', '?' and '#' in passwords.
    """
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*://)(.*)", url, re.DOTALL)
    if not match:
        return MASK
    scheme, rest = match.groups()
    at = rest.rfind("@")
    if at != -1:
        user, has_password, _ = rest[:at].partition(":")
        if has_password:
            rest = f"{user}:{MASK}@{rest[at + 1:]}"
    rest = re.sub(r"(?i)([?&;][^=&;#]*pass[^=&;#]*=)[^&;#]*", rf"\g<1>{MASK}", rest)
    return scheme + rest


class _Invalid(Exception):
    """Why one value was rejected (the caller adds which setting)."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}")


def _coerce(kind: Any, value: Any) -> Any:
    """Turn an env string or TOML value into the field's type; secrets are never echoed."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if type(value) is int and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _Invalid(f"expected true/false/yes/no/1/0, got {_show(value)}")
    if kind is int:
        if type(value) is int:
            return value
        if isinstance(value, str):
            try:
                return int(value.strip(), 10)
            except ValueError:
                pass
        raise _Invalid(f"expected an integer, got {_show(value)}")
    if kind is float:
        if type(value) in (int, float):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise _Invalid(f"expected a number, got {_show(value)}") from None
        else:
            raise _Invalid(f"expected a number, got {_show(value)}")
        if not math.isfinite(number):
            raise _Invalid(f"expected a finite number, got {_show(value)}")
        return number
    if kind is str:
        if isinstance(value, str):
            return value.strip()
        raise _Invalid(f"expected a string, got {_show(value)}")
    if Secret in (kind, *get_args(kind)):
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return Secret(value)
        raise _Invalid(f"expected a string, got {_type_name(value)}")
    if kind == tuple[Route, ...]:
        try:
            return parse_routes(value)
        except RouteError as exc:
            raise _Invalid(*exc.problems) from None
    if kind == tuple[WebhookEndpoint, ...]:
        try:
            return parse_endpoints(value)
        except WebhookConfigError as exc:
            raise _Invalid(*exc.problems) from None
    raise TypeError(f"no coercion for {kind!r}")


def _in_range(low: int, high: int, *, low_open: bool = False) -> Callable[[Any], Any]:
    bounds = f"greater than {low} and at most {high}" if low_open else f"between {low} and {high}"

    def check(value: Any) -> Any:
        if value < low or (low_open and value == low) or value > high:
            raise _Invalid(f"must be {bounds}, got {value}")
        return value
    return check


def _one_of(*choices: Any, case: Callable[[str], str] = str.lower) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        normal = case(value) if isinstance(value, str) else value
        if normal not in choices:
            raise _Invalid(f"must be one of {', '.join(map(str, choices))}; got {_show(value)}")
        return normal
    return check


def _not_blank(value: str) -> str:
    if not value:
        raise _Invalid("must not be empty")
    return value


def _bind_host(value: str) -> str:
    if value == "localhost":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _Invalid(f"must be an IP address or 'localhost', got {_show(value)}") from None


def _host(value: str) -> str:
    if not value or any(ch.isspace() or ch in "/@?#" for ch in value):
        raise _Invalid(f"must be a host name or IP address, got {_show(value)}")
    return value


def _ws_url(value: str) -> str:
    if not value:
        return value
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise _Invalid(f"is not a valid URL: {_show(value)}") from None
    if parts.scheme not in ("ws", "wss"):
        raise _Invalid(f"must start with ws:// or wss://, got {_show(value)}")
    if not hostname:
        raise _Invalid(f"has no host: {_show(value)}")
    if parts.query or parts.fragment:
        raise _Invalid(f"must not have a query or fragment (the per-call token goes there): {_show(value)}")
    return value


def _nonempty_secret(value: Secret) -> Secret:
    if not value.reveal():
        raise _Invalid("must not be empty")
    return value


def _token_secret(value: Secret) -> Secret:
    if len(value.reveal()) < MIN_TOKEN_SECRET_CHARS:
        raise _Invalid(
            f"must be at least {MIN_TOKEN_SECRET_CHARS} characters; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return value


def _instance_id(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise _Invalid(f"must be 1-64 characters of A-Z a-z 0-9 _ . -, got {_show(value)}")
    return value


def _database_url(value: Secret) -> Secret:
    url = value.reveal()
    match = re.match(r"([A-Za-z0-9]+)(\+[A-Za-z0-9_]+)?://(.*)", url, re.DOTALL)
    dialect = match.group(1).lower() if match else ""
    if dialect == "postgres":
        raise _Invalid(f"use postgresql:// (SQLAlchemy rejects postgres://), got {redact_url(url)}")
    if dialect not in ("sqlite", "postgresql"):
        raise _Invalid(f"must be a sqlite:/// or postgresql:// URL, got {redact_url(url)}")
    rest = match.group(3)
    if dialect == "sqlite" and rest and not rest.startswith("/"):
        raise _Invalid("a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, "
                       f"got {redact_url(url)}")
    if dialect == "postgresql" and not rest:
        raise _Invalid(f"a PostgreSQL URL needs a host or database, got {redact_url(url)}")
    return value


def _redact_patterns(value: str) -> str:
    from controller.records.redact import compile_patterns

    try:
        patterns = json.loads(value or "{}")
    except ValueError as exc:
        raise _Invalid(f"must be a JSON object of name: regex ({exc})") from None
    if not isinstance(patterns, dict) or not all(isinstance(v, str) for v in patterns.values()):
        raise _Invalid("must be a JSON object of name: regex")
    try:
        compile_patterns(patterns)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return value


def _timezone(value: str) -> str:
    if value:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _Invalid(f"not a time zone name (like Europe/Paris or UTC): {value!r}") from None
    return value


def _trunk_list(value: str) -> str:
    names = [name.strip() for name in value.split(",")] if value else []
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise _Invalid(f"trunk names are 1-64 characters of A-Z a-z 0-9 _ . -, got {_show(name)}")
    if len(set(names)) < len(names):
        raise _Invalid(f"names a trunk twice: {_show(value)}")
    return ",".join(names)


def _variable_list(value: str) -> str:
    names = [name.strip() for name in value.split(",")] if value else []
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,79}", name):
            raise _Invalid(f"channel variable names are letters, digits and _, got {_show(name)}")
    return ",".join(dict.fromkeys(names))


def _dial_string(technology: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        from controller.originate import check_dial_string

        try:
            check_dial_string(value, technology)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
        return value
    return check


def _region(value: str) -> str:
    from controller.phone_numbers import check_region

    try:
        return check_region(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _caller_id_number(value: str) -> str:
    if value and not re.fullmatch(r"\+?[0-9*#]{1,32}", value):
        raise _Invalid(f"must be digits (an optional leading +), got {_show(value)}")
    return value


def _caller_id_name(value: str) -> str:
    from controller.originate import check_variable_value

    try:
        return check_variable_value("caller_id_name", value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _optional_host(value: str) -> str:
    return _host(value) if value else value


def _recording_keys(value: Secret) -> Secret:
    from controller.records.recording import parse_keys

    try:
        parse_keys(value.reveal())
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return value


_PORT = _in_range(0, 65535)
_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "bind_host": _bind_host,
    "esl_outbound_port": _PORT,
    "esl_host": _host,
    "esl_port": _in_range(1, 65535),
    "esl_password": _nonempty_secret,
    "ws_port": _PORT,
    "ws_public_url": _ws_url,
    "audio_fork_mode": _one_of("streaming", "classic"),
    "audio_fork_rate": _one_of(8000, 16000),
    "audio_fork_mix": _one_of("mono", "stereo", "mixed"),
    "token_secret": _token_secret,
    "token_ttl_s": _in_range(0, 3600, low_open=True),
    "drain_s": _in_range(0, 86400),
    "instance_id": _instance_id,
    "database_url": _database_url,
    "default_flow": _not_blank,
    "max_ws_message": _in_range(1024, 16 * 1024 * 1024),
    "log_level": _one_of("DEBUG", "INFO", "WARNING", "ERROR", case=str.upper),
    "log_format": _one_of("text", "json"),
    "tmp_dir": _not_blank,
    "journal_dir": _not_blank,
    "redact_patterns": _redact_patterns,
    "recordings_dir": _not_blank,
    "ami_host": _host,
    "ami_port": _in_range(1, 65535),
    "ami_username": _not_blank,
    "ami_secret": _nonempty_secret,
    "audiosocket_port": _PORT,
    "media_ws_port": _PORT,
    "media_ws_username": _not_blank,
    "media_ws_password": _nonempty_secret,
    "asterisk_transfer_context": _not_blank,
    "asterisk_variables": _variable_list,
    "asterisk_timezone": _timezone,
    "recording_keys": _recording_keys,
    "stt": _one_of("whisper", "deepgram"),
    "llm": _one_of("grounded", "llama", "openai"),
    "tts": _one_of("hibari", "openai"),
    "openai_base_url": _not_blank,
    "openai_api_key": _nonempty_secret,
    "openai_model": _not_blank,
    "deepgram_url": _not_blank,
    "deepgram_api_key": _nonempty_secret,
    "freeswitch_trunks": _trunk_list,
    "freeswitch_dial_string": _dial_string("freeswitch"),
    "esl_outbound_host": _optional_host,
    "asterisk_trunks": _trunk_list,
    "asterisk_dial_string": _dial_string("asterisk"),
    "asterisk_outbound_context": _instance_id,
    "default_region": _region,
    "number_check": _one_of("valid", "possible"),
    "caller_id_number": _caller_id_number,
    "caller_id_name": _caller_id_name,
    "dial_retries": _in_range(0, 20),
    "dial_backoff_s": _in_range(0, 86400),
    "dial_backoff_factor": _in_range(1, 10),
    "dial_backoff_max_s": _in_range(0, 86400),
    "dial_ring_timeout_s": _in_range(1, 600),
    "api_port": _PORT,
    "api_token": _token_secret,
}
_DEFAULTS = Settings()
_SETTABLE = tuple(f.name for f in fields(Settings) if f.name != "token_secret_ephemeral")


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")


def _read_toml(path: Path, subject: str, problems: list[str]) -> dict[str, tuple[Any, str]]:
    """TOML values by field name, each with the words naming where it was set."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        problems.append(f"{subject}: cannot read config file: {exc.strerror or exc}")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{subject}: not valid TOML: {exc}")
        return {}
    table = dict(data)
    nested = table.pop(TOML_TABLE, {})
    if not isinstance(nested, dict):
        problems.append(f"{TOML_TABLE} in {path}: must be a table ([{TOML_TABLE}])")
        nested = {}
    for key, value in nested.items():
        if key in table:
            problems.append(f"{key} in {path}: set both at top level and in [{TOML_TABLE}]")
        table[key] = value
    found = {}
    for key, value in table.items():
        if key in _SETTABLE:
            found[key] = (value, f"{key} in {path}")
        else:
            problems.append(f"{key} in {path}: {_unknown(key, list(_SETTABLE))}")
    return found


def _read_env(env: Mapping[str, str], problems: list[str]) -> dict[str, tuple[Any, str]]:
    known = {_env_name(name): name for name in _SETTABLE}
    found = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV or key.startswith(ENV_PREFIX + "TEST_"):
            continue
        if key in known:
            found[known[key]] = (value, key)
        else:
            problems.append(f"{key}: {_unknown(key, list(known))}")
    return found


def _cross_checks(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, why) for rules spanning settings; settings that failed on their own are absent."""
    found = []
    if values.get("esl_inbound") and "esl_password" in values and values["esl_password"] is None:
        found.append(("esl_password", "required when esl_inbound is true"))
    password = values.get("esl_password")
    if (password is not None and password.reveal() == DEFAULT_ESL_PASSWORD
            and not values.get("allow_default_esl_password")):
        found.append(("esl_password", f"is FreeSWITCH's default {DEFAULT_ESL_PASSWORD!r}; change it in "
                      "event_socket.conf.xml (or set allow_default_esl_password for a lab)"))
    ws_port, esl_port = values.get("ws_port"), values.get("esl_outbound_port")
    if ws_port and ws_port == esl_port:
        found.append(("ws_port", f"is the same as esl_outbound_port ({esl_port}); both listen on bind_host"))
    if values.get("asterisk"):
        for name, where in (("ami_secret", "manager.conf secret"), ("media_ws_password", "websocket_client.conf")):
            if name in values and values[name] is None:
                found.append((name, f"required when asterisk is true (the {where})"))
    ports = [values.get(n) for n in ("esl_outbound_port", "ws_port", "audiosocket_port", "media_ws_port")]
    if values.get("asterisk") and len({p for p in ports if p}) < len([p for p in ports if p]):
        found.append(("audiosocket_port", f"the listening ports must differ: {ports}"))
    if values.get("record_calls") and "recording_keys" in values and values["recording_keys"] is None:
        found.append(("recording_keys", "required when record_calls is true (recordings are never stored "
                      "unencrypted); make one with `voxgate recording new-key`"))
    if values.get("stt") == "deepgram" and values.get("deepgram_api_key") is None:
        found.append(("deepgram_api_key", "required when stt is deepgram"))
    if values.get("api") and "api_token" in values and values["api_token"] is None:
        found.append(("api_token", "required when api is true; generate one with "
                      "python -c 'import secrets; print(secrets.token_urlsafe(32))'"))
    if values.get("api") and values.get("api_port") and values["api_port"] in (ws_port, esl_port):
        found.append(("api_port", f"is the same as another listening port ({values['api_port']})"))
    bind_host = values.get("bind_host")
    if (values.get("freeswitch_trunks") and values.get("esl_outbound_host") == ""
            and bind_host not in (None, "localhost") and ipaddress.ip_address(bind_host).is_unspecified):
        found.append(("esl_outbound_host", f"required when bind_host is {bind_host} and freeswitch_trunks are set: "
                      "FreeSWITCH's socket application cannot connect to a wildcard address"))
    if (values.get("ws_public_url") == "" and bind_host not in (None, "localhost")
            and ipaddress.ip_address(bind_host).is_unspecified):
        found.append(("ws_public_url", f"required when bind_host is {bind_host}: "
                      "FreeSWITCH cannot connect to a wildcard address"))
    if values.get("otel"):
        from controller.tracing import unavailable

        if (why := unavailable()) is not None:
            found.append(("otel", why))
    return found


def load_settings(env: Mapping[str, str] | None = None, path: str | Path | None = None) -> Settings:
    """Settings from defaults < TOML file (path, else $VOXGATE_CONFIG) < VOXGATE_* env vars.

    Raises ConfigError listing every problem; unknown keys are errors because they are
    usually typos that would otherwise silently leave a default in place.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    given: dict[str, tuple[Any, str]] = {}
    if path is not None:
        given.update(_read_toml(Path(path), f"config file {path}", problems))
    elif env.get(CONFIG_ENV):
        given.update(_read_toml(Path(env[CONFIG_ENV]), f"{CONFIG_ENV}={env[CONFIG_ENV]}", problems))
    given.update(_read_env(env, problems))

    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    subjects: dict[str, str] = {}
    for name in _SETTABLE:
        value, subjects[name] = given.get(name, (getattr(_DEFAULTS, name), f"{name} ({_env_name(name)})"))
        if name == "instance_id" and value == "":
            value = socket.gethostname()
        try:
            if value is not None:  # only an unset optional default is None
                value = _VALIDATORS.get(name, lambda v: v)(_coerce(hints[name], value))
        except _Invalid as exc:  # one problem per argument (a route table can have several)
            problems += [f"{subjects[name]}: {why}" for why in exc.args]
            continue
        values[name] = value

    problems += [f"{subjects[name]}: {why}" for name, why in _cross_checks(values)]
    if problems:
        raise ConfigError(problems)
    if values["token_secret"] is None:
        values["token_secret"] = Secret(secrets.token_urlsafe(32))
        values["token_secret_ephemeral"] = True
    return Settings(**values)
