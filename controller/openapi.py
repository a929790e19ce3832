"""The HTTP API's OpenAPI 3 document, and the checks of request inputs against it.

It is the one description of the API: the server (controller/http_api.py) builds its routes from
the document's operations, checks every parameter and body against the document's schemas, and
builds every response object from the properties the document lists. What is documented is what is
enforced. The checks understand a deliberate subset of JSON Schema; `check_enforceable` refuses a
document whose request schemas step outside it, so a keyword can never sit there unenforced.

The document varies only where the server does: the flows outbound calls may run, and the PBXs that
can dial. Response objects carry the record tables' own column names (docs/cdr.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from controller.causes import CAUSES

API_PREFIX = "/api/v1"
PAGE_DEFAULT = 50
PAGE_MAX = 500
MAX_BODY_BYTES = 16 * 1024
METHODS = ("get", "put", "post", "delete", "patch")

# Patterns are ECMA-262, anchored, and ASCII where the value reaches a PBX command.
CALL_UUID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"  # FreeSWITCH uuids, Asterisk uniqueids (1712345678.42)
WORD = r"^[!-~]{1,128}$"  # printable ASCII without spaces: flow names, outcomes
CURSOR = r"^[0-9]{1,18}\.[0-9]{1,18}$"
CALLER_NUMBER = r"^\+?[0-9*#]{1,32}$"
PHONE = r"^[+0-9][0-9 ().-]{0,39}$"
DESTINATION = r"^[A-Za-z0-9_.+*#@:-]{1,128}$"
TRUNK = r"^[A-Za-z0-9_.-]{1,64}$"
REQUEST_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
_VALUE_CHAR = r"!#-&(-+\--Z_-z~\u00a1-\u00ac\u00ae-\u024f"  # printable, none of , { } [ ] ' " \ ^ |
VALUE = rf"^(?:[{_VALUE_CHAR}](?:[ {_VALUE_CHAR}]{{0,254}}[{_VALUE_CHAR}])?)?$"  # no space at either end
VARIABLE_NAME = (r"^(?![Vv][Oo][Xx][Gg][Aa][Tt][Ee]_|[Oo][Rr][Ii][Gg][Ii][Nn][Aa][Tt](?:[Ii][Oo][Nn]|[Ee])_)"
                 r"[A-Za-z][A-Za-z0-9_]{0,63}$")  # the dialer's own prefixes are reserved
PBXS = ("freeswitch", "asterisk")
DIAL_OUTCOMES = ("dialing", "answered", "busy", "no_answer", "rejected", "failed", "invalid_number")

# ---------------------------------------------------------------- the document


def _string(pattern: str | None = None, **more: Any) -> dict[str, Any]:
    return {"type": "string", **({"pattern": pattern} if pattern else {}), **more}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _time(nullable: bool = False) -> dict[str, Any]:
    schema = {"type": "string", "format": "date-time"}
    return _or_null(schema) if nullable else schema


_INT = {"type": "integer"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_TEXT = {"type": "string"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_BOOL = {"type": "boolean"}
_JSON_OBJECT = {"type": "object"}


def _record(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    """A response object: every property always present, nothing else."""
    return {"type": "object", "description": description, "additionalProperties": False,
            "required": list(properties), "properties": properties}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


_SUMMARY = {
    "pbx": {"type": "string", "enum": list(PBXS)}, "call_uuid": _TEXT, "direction": _TEXT,
    "caller_id_name": _TEXT, "caller_id_number": _TEXT, "destination": _TEXT, "started_at": _time(),
    "answered_at": _time(nullable=True), "ended_at": _time(), "duration_s": _INT, "billsec": _INT,
    "hangup_cause": _TEXT, "flow": _TEXT, "outcome": _TEXT, "error": _TEXT_OR_NULL,
    "instance": _TEXT_OR_NULL | {"description": "the voxgate instance that handled the call (instance_id)"},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "additionalProperties": False, "required": ["error"],
        "properties": {"error": {
            "type": "object", "additionalProperties": False, "required": ["code", "message"],
            "properties": {"code": _TEXT, "message": _TEXT,
                           "field": _string(description="the parameter or body field at fault")}}}},
    "CallSummary": _record("A finished call's CDR.", _SUMMARY),
    "Call": _record("A finished call's CDR with its channel variables and the flow's state.", {
        **_SUMMARY, "variables": _JSON_OBJECT, "state": {"type": ["object", "null"]}}),
    "CallPage": _record("One page of calls, newest first.", {
        "calls": _list_of("CallSummary"),
        "next_cursor": _or_null(_string(CURSOR)) | {"description": "pass as `cursor` for the next page; "
                                                    "null on the last page"}}),
    "Turn": _record("One turn of the conversation; texts are stored redacted unless store_raw_text is set.", {
        "seq": _INT, "speaker": {"type": "string", "enum": ["caller", "agent"]}, "text": _TEXT,
        "heard_text": _TEXT_OR_NULL, "started_at": _time(), "ended_at": _time(), "confidence": _NUMBER_OR_NULL,
        "interrupted": _BOOL, "stt_ms": _NUMBER_OR_NULL, "llm_first_token_ms": _NUMBER_OR_NULL,
        "tts_first_audio_ms": _NUMBER_OR_NULL, "voice_to_voice_ms": _NUMBER_OR_NULL,
        "barge_in_ms": _NUMBER_OR_NULL, "engines": _JSON_OBJECT, "detail": _JSON_OBJECT}),
    "Event": _record("One PBX event of the call, in order.", {
        "seq": _INT, "at": _time(), "type": _TEXT, "payload": _JSON_OBJECT}),
    "Dtmf": _record("One DTMF digit (long private runs are stored masked).", {
        "seq": _INT, "at": _time(), "digit": _TEXT, "direction": _TEXT, "duration_ms": _INT}),
    "ToolCall": _record("One tool call the agent made.", {
        "turn_seq": _INT, "position": _INT, "at": _time(), "name": _TEXT, "arguments": _JSON_OBJECT,
        "result": _TEXT_OR_NULL, "error": _TEXT_OR_NULL, "duration_ms": {"type": "number"}}),
    "Transfer": _record("One transfer voxgate asked the PBX for.", {
        "seq": _INT, "at": _time(), "destination": _TEXT, "kind": _TEXT, "reason": _TEXT, "outcome": _TEXT,
        "error": _TEXT_OR_NULL}),
    "Recording": _record("An encrypted recording's metadata (`voxgate recording export` decrypts it).", {
        "seq": _INT, "started_at": _time(), "duration_s": {"type": "number"}, "channels": _INT,
        "sample_rate": _INT, "size_bytes": _INT, "sha256": _TEXT, "key_id": _TEXT, "complete": _BOOL}),
    "CallDetail": _record("A finished call and everything stored about it, each list in order.", {
        "call": _ref("Call"), "turns": _list_of("Turn"), "events": _list_of("Event"), "dtmf": _list_of("Dtmf"),
        "transfers": _list_of("Transfer"), "tool_calls": _list_of("ToolCall"),
        "recordings": _list_of("Recording")}),
    "LiveCall": _record("A call voxgate is handling now.", {
        "pbx": {"type": "string", "enum": list(PBXS)}, "call_uuid": _TEXT, "direction": _TEXT,
        "caller_id_name": _TEXT, "caller_id_number": _TEXT, "destination": _TEXT, "flow": _TEXT,
        "started_at": _time(nullable=True), "answered_at": _time(nullable=True)}),
    "LiveCalls": _record("The calls voxgate is handling now, oldest first.", {"calls": _list_of("LiveCall")}),
    "Accepted": {
        "type": "object", "additionalProperties": False, "required": ["call_uuid", "action"],
        "description": "The PBX took the command; the call's record follows under /calls once it ends.",
        "properties": {"call_uuid": _TEXT, "action": {"type": "string", "enum": ["hangup", "transfer"]},
                       "cause": _TEXT, "destination": _TEXT}},
    "Attempt": _record("One try of an outbound call on one trunk.", {
        "attempt": _INT, "trunk": _TEXT, "outcome": _TEXT, "cause": _TEXT, "started_at": _time(),
        "ended_at": _time(), "call_uuid": _TEXT_OR_NULL}),
    "OutboundCall": _record("An outbound call request and how far it got.", {
        "request_id": _TEXT, "status": {"type": "string", "enum": [*DIAL_OUTCOMES, "error"]},
        "pbx": _TEXT, "number": _TEXT, "flow": _TEXT,
        "call_uuid": _TEXT_OR_NULL | {"description": "the answered call, under /live-calls then /calls"},
        "error": _TEXT_OR_NULL | {"description": "why dialling stopped when status is error"},
        "attempts": _list_of("Attempt")}),
    "Health": _record("What an orchestrator's probe needs: is this instance alive, and does it take calls.", {
        "status": {"type": "string", "enum": ["live", "starting", "ready", "draining"]},
        "instance": _TEXT, "live_calls": _INT | {"minimum": 0},
        "uptime_s": {"type": "number", "minimum": 0}}),
}

_ERRORS = {
    400: "Malformed request: an unknown or repeated query parameter, or a body that is not JSON.",
    401: "The bearer token is missing or wrong.",
    404: "Nothing by that name.",
    409: "The call already ended or left voxgate, or an action on it is in progress.",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
    422: "A parameter or body field is invalid; error.field names it.",
    429: "Too many outbound requests are dialling at once.",
    502: "The PBX refused the command; error.message is its reply.",
    503: "The database (or, for outbound calls, the PBX connection they need) is unavailable.",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(ok: int, schema: str | dict[str, Any], description: str, *errors: int) -> dict[str, Any]:
    """The success response and the errors the operation can give; every one can give 400 (an unknown query
    parameter) and 401 (every route needs the token)."""
    responses = {str(ok): _json(_ref(schema) if isinstance(schema, str) else schema, description)}
    for status in sorted({400, 401, *errors}):
        responses[str(status)] = _json(_ref("Error"), _ERRORS[status])
    return responses


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, pattern: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _string(pattern)}


def _body(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": False, "properties": properties,
              **({"required": list(required)} if required else {})}
    return {"required": bool(required), "content": {"application/json": {"schema": schema}}}


def _paths(flows: Sequence[str], dial_pbxs: Sequence[str]) -> dict[str, Any]:
    flow = _string(WORD, **({"enum": list(flows)} if flows else {}))
    return {
        "/calls": {"get": {
            "operationId": "list_calls", "summary": "Finished calls, newest first, filtered and paged",
            "parameters": [
                _query("since", _time(), "calls that started at or after this time (RFC 3339, with an offset)"),
                _query("until", _time(), "calls that started before this time"),
                _query("flow", _string(WORD), "the flow that ran"),
                _query("outcome", _string(WORD), "the outcome the flow gave (completed, transferred, error...)"),
                _query("pbx", {"type": "string", "enum": list(PBXS)}, "the PBX that carried the call"),
                _query("direction", {"type": "string", "enum": ["inbound", "outbound"]}, "who placed it"),
                _query("caller_number", _string(CALLER_NUMBER), "the caller id number, exactly"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
                       f"calls per page, at most {PAGE_MAX}"),
                _query("cursor", _string(CURSOR), "next_cursor of the previous page"),
            ],
            "responses": _responses(200, "CallPage", "A page of calls.", 422, 503)}},
        "/calls/{call_uuid}": {"get": {
            "operationId": "get_call",
            "summary": "A finished call: its CDR, transcript with per-turn latencies, events, DTMF, transfers, "
                       "tool calls and recordings",
            "parameters": [_path("call_uuid", CALL_UUID)],
            "responses": _responses(200, "CallDetail", "The call.", 404, 422, 503)}},
        "/live-calls": {"get": {
            "operationId": "list_live_calls", "summary": "Calls voxgate is handling now",
            "responses": _responses(200, "LiveCalls", "The live calls.")}},
        "/live-calls/{call_uuid}/hangup": {"post": {
            "operationId": "hang_up", "summary": "Hang up a live call",
            "parameters": [_path("call_uuid", CALL_UUID)],
            "requestBody": _body({"cause": {"type": "string", "enum": sorted(CAUSES), "default": "NORMAL_CLEARING",
                                            "description": "the hangup cause, as FreeSWITCH names it"}}),
            "responses": _responses(202, "Accepted", "The PBX is hanging up.", 404, 409, 413, 422, 502, 503)}},
        "/live-calls/{call_uuid}/transfer": {"post": {
            "operationId": "transfer", "summary": "Blind-transfer a live call; it leaves voxgate",
            "parameters": [_path("call_uuid", CALL_UUID)],
            "requestBody": _body({
                "destination": _string(DESTINATION, description="a dialplan extension (FreeSWITCH) or an "
                                       "extension of asterisk_transfer_context (Asterisk)"),
                "reason": _string(maxLength=200, description="kept in the transfers record")}, ["destination"]),
            "responses": _responses(202, "Accepted", "The PBX transferred the call.", 404, 409, 413, 422, 502,
                                    503)}},
        "/outbound-calls": {"post": {
            "operationId": "start_outbound_call",
            "summary": "Dial a number over the configured trunks and run a flow on the answered call",
            "requestBody": _body({
                "number": _string(PHONE, format="phone", description="E.164 (+12025550123), or national when "
                                  "default_region is set; checked with libphonenumber"),
                "flow": flow,
                "caller_id_number": _string(CALLER_NUMBER, description="default: the caller_id_number setting"),
                "caller_id_name": _string(VALUE, description="default: the caller_id_name setting"),
                "variables": {"type": "object", "maxProperties": 32, "propertyNames": _string(VARIABLE_NAME),
                              "additionalProperties": _string(VALUE),
                              "description": "channel variables the flow reads (call.info.variables)"},
                "trunks": {"type": "array", "maxItems": 8, "items": _string(TRUNK),
                           "description": "tried in order; default: the PBX's configured trunks"},
                "pbx": {"type": "string", "enum": list(dial_pbxs or PBXS)},
                "retries": {"type": "integer", "minimum": 0, "maximum": 20,
                            "description": "passes over the trunks after the first; default: dial_retries"},
                "ring_timeout_s": {"type": "integer", "minimum": 1, "maximum": 600},
                "request_id": _string(REQUEST_ID, description="your id for the request; default: a new one"),
            }, ["number", "flow"]),
            "responses": _responses(202, "OutboundCall", "Dialling; follow it at /outbound-calls/{request_id}.",
                                    409, 413, 422, 429, 503)}},
        "/outbound-calls/{request_id}": {"get": {
            "operationId": "get_outbound_call", "summary": "An outbound call request: its status and tries",
            "parameters": [_path("request_id", REQUEST_ID)],
            "responses": _responses(200, "OutboundCall", "The request.", 404, 422, 503)}},
        "/health/live": {"get": {
            "operationId": "get_liveness", "summary": "Liveness: the process and its event loop answer",
            "responses": _responses(200, "Health", "Alive.")}},
        "/health/ready": {"get": {
            "operationId": "get_readiness",
            "summary": "Readiness: 200 while this instance takes new calls; 503 while starting or draining",
            "responses": _responses(200, "Health", "Taking calls.") | {
                "503": _json(_ref("Health"), "Not taking new calls: starting, or draining after SIGTERM.")}}},
        "/openapi.json": {"get": {
            "operationId": "get_document", "summary": "This document",
            "responses": _responses(200, {"type": "object"}, "The OpenAPI document.")}},
    }


@lru_cache(maxsize=8)
def _document(flows: tuple[str, ...], dial_pbxs: tuple[str, ...]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "voxgate", "version": "1",
                 "description": "Operate voxgate: finished calls and their records, live calls, outbound calls. "
                                "Every route, this document included, needs the bearer token (api_token)."},
        "servers": [{"url": API_PREFIX}],
        "security": [{"bearer": []}],
        "paths": _paths(flows, dial_pbxs),
        "components": {"schemas": _SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def document(flows: Sequence[str] = (), dial_pbxs: Sequence[str] = ()) -> dict[str, Any]:
    """The document for a server with these flows and dialling PBXs. Shared and cached: do not modify it."""
    return _document(tuple(sorted(flows)), tuple(p for p in PBXS if p in dial_pbxs))


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # relative to API_PREFIX, with {name} placeholders (aiohttp's syntax too)
    spec: Mapping[str, Any]

    @property
    def id(self) -> str:
        return self.spec["operationId"]


def operations(doc: Mapping[str, Any]) -> Iterator[Operation]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield Operation(method, path, item[method])


def schema(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A component schema by name."""
    return doc["components"]["schemas"][name]


# ---------------------------------------------------------------- checking inputs


class InputError(ValueError):
    """A request input the document refuses. `field` names it; `malformed` when the request cannot be read."""

    def __init__(self, field: str | None, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.malformed = malformed


# format: date-time is parsed; other formats (phone) only name what their pattern already enforces
_ENFORCED = frozenset({"type", "enum", "pattern", "minLength", "maxLength", "format", "minimum", "maximum",
                       "properties", "required", "additionalProperties", "maxProperties", "propertyNames",
                       "items", "maxItems"})
_ANNOTATIONS = frozenset({"description", "default", "example", "title"})
_TYPES = frozenset({"string", "integer", "boolean", "object", "array"})
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")
_RFC3339 = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}):([0-9]{2})(\.[0-9]+)?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})")


def check_enforceable(doc: Mapping[str, Any]) -> None:
    """ValueError when a request schema uses a keyword (or type) these checks would not enforce."""
    for op in operations(doc):
        for parameter in op.spec.get("parameters", []):
            _enforceable(f"{op.id} {parameter['name']}", parameter["schema"])
        body = op.spec.get("requestBody")
        if body is not None:
            _enforceable(f"{op.id} body", body["content"]["application/json"]["schema"])


def _enforceable(where: str, node: Mapping[str, Any]) -> None:
    unknown = set(node) - _ENFORCED - _ANNOTATIONS
    if unknown or node.get("type") not in _TYPES:
        raise ValueError(f"{where}: request schemas are checked with type ({', '.join(sorted(_TYPES))}) and "
                         f"{', '.join(sorted(_ENFORCED))} only; found {sorted(unknown) or node.get('type')}")
    for child in (*node.get("properties", {}).values(), node.get("items"), node.get("propertyNames"),
                  node.get("additionalProperties")):
        if isinstance(child, Mapping):
            _enforceable(where, child)


def read_parameters(op: Operation, query: Mapping[str, Sequence[str]],
                    path: Mapping[str, str]) -> dict[str, Any]:
    """The operation's parameters from the query string (name -> every value given) and the path, checked
    and typed (integers, UTC datetimes); absent optional ones take their default or None."""
    declared = op.spec.get("parameters", [])
    known = {p["name"] for p in declared if p["in"] == "query"}
    for name, given in query.items():
        if name not in known:
            raise InputError(name, f"unknown query parameter {name!r}", malformed=True)
        if len(given) > 1:
            raise InputError(name, f"query parameter {name!r} given {len(given)} times", malformed=True)
    values: dict[str, Any] = {}
    for parameter in declared:
        name, spec = parameter["name"], parameter["schema"]
        raw = path.get(name) if parameter["in"] == "path" else next(iter(query.get(name, ())), None)
        if raw is None:
            if parameter.get("required"):
                raise InputError(name, f"{name} is required")
            values[name] = spec.get("default")
        elif spec["type"] == "integer":
            if not _INTEGER_TEXT.fullmatch(raw):
                raise InputError(name, f"{name} must be an integer, got {_show(raw)}")
            values[name] = check_value(name, spec, int(raw))
        else:
            values[name] = check_value(name, spec, raw)
    return values


def read_body(op: Operation, body: Any) -> dict[str, Any]:
    """The operation's JSON body (parsed; None when empty), checked, with the defaults of absent fields."""
    spec = op.spec["requestBody"]
    if body is None and spec.get("required"):
        raise InputError(None, "a JSON body is required")
    return check_value("", spec["content"]["application/json"]["schema"], {} if body is None else body)


def check_value(field: str, spec: Mapping[str, Any], value: Any) -> Any:
    """`value` checked against `spec`; date-time strings come back as UTC datetimes, everything else as given."""
    kind = spec["type"]
    if not _is(kind, value):
        raise InputError(field or None, f"{field or 'the body'} must be {_ARTICLE[kind]}, got {_type_name(value)}")
    if "enum" in spec and value not in spec["enum"]:
        raise InputError(field, f"{field} must be one of {', '.join(map(str, spec['enum']))}; got {_show(value)}")
    if kind == "string":
        return _check_string(field, spec, value)
    if kind == "integer":
        value = int(value)  # JSON Schema counts 431.0 as an integer
        low, high = spec.get("minimum"), spec.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InputError(field, f"{field} must be between {low} and {high}, got {value}")
    if kind == "object":
        return _check_object(field, spec, value)
    if kind == "array":
        if len(value) > spec.get("maxItems", len(value)):
            raise InputError(field, f"{field} may have at most {spec['maxItems']} items")
        return [check_value(f"{field}[{i}]", spec.get("items", {"type": "string"}), item)
                for i, item in enumerate(value)]
    return value


def _check_string(field: str, spec: Mapping[str, Any], value: str) -> Any:
    low, high = spec.get("minLength", 0), spec.get("maxLength")
    if len(value) < low or (high is not None and len(value) > high):
        raise InputError(field, f"{field} must be {low} to {high if high is not None else 'any number of'} "
                                "characters long")
    pattern = spec.get("pattern")
    if pattern is not None and not _compiled(pattern).search(value):
        raise InputError(field, f"{field} does not match {pattern}: {_show(value)}")
    return parse_time(field, value) if spec.get("format") == "date-time" else value


def _check_object(field: str, spec: Mapping[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    where = f"{field}." if field else ""
    for name in spec.get("required", ()):
        if name not in value:
            raise InputError(where + name, f"{where + name} is required")
    if len(value) > spec.get("maxProperties", len(value)):
        raise InputError(field, f"{field} may have at most {spec['maxProperties']} entries")
    properties, extra = spec.get("properties", {}), spec.get("additionalProperties", True)
    checked = {}
    for name, item in value.items():
        if "propertyNames" in spec:
            check_value(where + name, spec["propertyNames"], name)
        if name in properties:
            checked[name] = check_value(where + name, properties[name], item)
        elif extra is False:
            known = ", ".join(properties) or "none"
            raise InputError(where + name, f"unknown field {where + name!r} (known: {known})")
        else:
            checked[name] = check_value(where + name, extra, item) if isinstance(extra, Mapping) else item
    for name, item in properties.items():
        if name not in checked and "default" in item:
            checked[name] = item["default"]
    return checked


def parse_time(field: str, text: str) -> datetime:
    """An RFC 3339 date-time as an aware UTC datetime; instants beyond Python's range are clamped to it."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise InputError(field, f"{field} must be an RFC 3339 date-time with an offset "
                                f"(2026-01-31T09:30:00Z), got {_show(text)}")
    date, hours_minutes, seconds, fraction, offset = match.groups()
    seconds = min(seconds, "59")  # a leap second reads as the second before it
    try:
        moment = datetime.fromisoformat(f"{date}T{hours_minutes}:{seconds}{(fraction or '')[:7]}{offset.upper()}")
    except ValueError as exc:
        raise InputError(field, f"{field} is not a real date and time: {exc}") from None
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # a few hours from year 1 or 9999 with an offset
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


_ARTICLE = {"string": "a string", "integer": "an integer", "boolean": "true or false", "object": "an object",
            "array": "an array"}


def _is(kind: str, value: Any) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float)
                                                                             and value.is_integer())
    return isinstance(value, {"string": str, "boolean": bool, "object": dict, "array": list}[kind])


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "an object",
            list: "an array"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    """An ECMA-262 pattern for Python: its `$` (no multiline) is the very end, which Python spells \\Z."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)
