"""The AMI codec and call-control helpers against every byte recorded from a real Asterisk 22.10.1."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from controller.asterisk import ami
from tests.asterisk.ami_fixtures import cdr_csv_rows, panoramisk, received, rx_bytes, sent

KINDS = {"banner": ami.Banner, "response": ami.AmiResponse, "event": ami.AmiEvent}


def _parse(data: bytes, parser: ami.AmiParser | None = None) -> list[ami.AmiMessage]:
    parser = parser or ami.AmiParser()
    parser.feed(data)
    assert parser.buffered == 0
    return parser.messages()


MESSAGES = _parse(rx_bytes())
EVENTS = [m for m in MESSAGES if isinstance(m, ami.AmiEvent)]


def _response(action_id: str) -> ami.AmiResponse:
    return next(m for m in MESSAGES if isinstance(m, ami.AmiResponse) and m.action_id == action_id)


def _events(name: str) -> list[ami.AmiEvent]:
    return [e for e in EVENTS if e.name == name]


def _event(text: str) -> ami.AmiEvent:
    message = _parse(text.replace("\n", "\r\n").encode())[0]
    assert isinstance(message, ami.AmiEvent)
    return message


# ---------------------------------------------------------------- framing


def test_whole_stream_gives_every_recorded_message():
    recorded = received()
    assert len(MESSAGES) == len(recorded) == 225
    assert Counter(type(m) for m in MESSAGES) == {ami.Banner: 2, ami.AmiResponse: 33, ami.AmiEvent: 190}
    for message, (item, _) in zip(MESSAGES, recorded):
        assert isinstance(message, KINDS[item["kind"]])


def test_each_recorded_message_alone_parses_to_the_same_message():
    for message, (_, raw) in zip(MESSAGES, received()):
        assert _parse(raw) == [message]


def test_byte_at_a_time_gives_the_same_messages():
    parser = ami.AmiParser()
    out: list[ami.AmiMessage] = []
    for b in rx_bytes():
        parser.feed(bytes([b]))
        out += parser.messages()
    assert out == MESSAGES and parser.buffered == 0


@pytest.mark.parametrize("seed", range(5))
def test_random_chunks_give_the_same_messages(seed):
    rng, data, pos = random.Random(seed), rx_bytes(), 0
    parser = ami.AmiParser()
    while pos < len(data):
        step = rng.randint(1, 600)
        parser.feed(data[pos:pos + step])
        pos += step
    assert parser.messages() == MESSAGES and parser.buffered == 0


def test_banner_is_a_line_not_a_block():
    assert MESSAGES[0] == ami.Banner("Asterisk Call Manager", "11.0.0")
    parser = ami.AmiParser()
    parser.feed(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: a\r\n\r\n")
    banner, response = parser.messages()
    assert banner.version == "11.0.0" and response.action_id == "a"


def test_stray_blank_lines_between_messages_are_skipped():
    assert [m.name for m in _parse(b"\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n")] == ["A", "B"]


# ---------------------------------------------------------------- responses


def test_login_responses():
    assert _response("login-bad") == ami.AmiResponse(
        "Error", "login-bad", "Authentication failed",
        (("Response", "Error"), ("ActionID", "login-bad"), ("Message", "Authentication failed")))
    assert _response("ping-before-login").message == "Permission denied"
    assert _response("login-ok").message == "Authentication accepted"
    ping = _response("ping-1")
    assert ping.ok and ping.get("Ping") == "Pong" and ping.get("timestamp") == "1795472530.037865"
    assert ping.message == ""


def test_command_output_one_output_header_per_cli_line():
    version = _response("cmd-version")
    assert version.ok and version.message == "Command output follows"
    assert version.output == (
        "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-23 22:11:44 UTC",)
    multi = _response("cmd-multiline").output
    assert len(multi) == 9
    assert multi[0] == "[ Context 'test' created by 'pbx_config' ]"
    assert multi[1].startswith("  '110' =>          1. NoOp(")  # CLI indentation kept
    assert multi[2].startswith("                    2. Answer()")
    assert multi[7] == "" and multi[8] == "-= 1 extension (6 priorities) in 1 context. =-"
    invalid = _response("cmd-invalid")
    assert not invalid.ok and invalid.response == "Error"
    assert invalid.output == (
        "No such command 'no such cli command' (type 'core show help no such' for other possible commands)",)


def test_getvar_setvar_and_error_responses():
    assert _response("getvar-missing-variable").message == "No variable specified"
    assert not _response("getvar-nochan").ok and _response("getvar-nochan").message == "No such channel"
    assert _response("hangup-nochan").message == "No such channel"
    assert _response("unknown-action").message.startswith("Invalid/unknown command: FooBar. Use Action:")
    glob = _response("getvar-global")
    assert (glob.get("Variable"), glob.get("Value")) == ("LABGLOBAL", "hello world")
    func = _response("getvar-func")
    assert (func.get("Variable"), func.get("Value")) == ("CHANNEL(state)", "Up")
    assert _response("getvar-2").get("value") == "changed-by-ami"
    assert _response("setvar-1").message == "Variable Set"
    mute = _response("mute-1")
    assert mute.ok and mute.message == "" and mute.fields == (("Response", "Success"), ("ActionID", "mute-1"))
    goodbye = _response("logoff-1")
    assert goodbye.ok and goodbye.response == "Goodbye" and goodbye.message == "Thanks for all the fish."


def test_synchronous_originate_replies_and_no_originate_response_event():
    assert _response("originate-busy-sync").message == "Originate failed"
    assert _response("originate-app-sync").message == "Originate successfully queued"  # misleading, but sync
    answered = {e.action_id for e in _events("OriginateResponse")}
    assert answered == {"originate-call1", "originate-call2", "originate-badtech"}
    # the busy failure came before that call's own events: responses and events are not ordered
    busy = MESSAGES.index(_response("originate-busy-sync"))
    assert any(isinstance(m, ami.AmiEvent) and m.get("Channel", "").startswith("Local/busy@test")
               for m in MESSAGES[busy + 1:])
    assert not any(isinstance(m, ami.AmiEvent) and m.get("Channel", "").startswith("Local/busy@test")
                   for m in MESSAGES[:busy])


# ---------------------------------------------------------------- events and fields


def test_values_with_colons_keep_everything_after_the_first_separator():
    user = next(e for e in _events("UserEvent") if e.action_id == "userevent-1")
    assert user.get("Header1") == "value one" and user.get("Header2") == "value: two"
    assert _events("RequestBadFormat")[0].get("RequestType") == "Action: FooBar"
    assert _events("Cdr")[0].get("CallerID") == '"AMI Lab" <2000>'


def test_repeated_keys_are_kept_in_order_and_lookup_ignores_case():
    status = _events("Status")[0]
    assert status.get_all("Variable") == ("PARKVAR=initial", "CHANNEL(state)=Up")
    assert status.get("variable") == "PARKVAR=initial"
    assert status.get("Privilege") == "Call" and status.action_id == "status-1"  # ActionID comes last here
    cdr = _events("Cdr")[0]
    assert ("UniqueID", "1795472530.51") in cdr.fields  # case as sent
    assert cdr.get("uniqueid") == cdr.get("UNIQUEID") == "1795472530.51" and "uniqueId" in cdr
    assert cdr.get("Nope") is None and cdr.get("Nope", "x") == "x" and "Nope" not in cdr
    assert cdr.get("UserField") == "audiosocket-chan" and _events("Cdr")[2].get("UserField") == ""


def test_event_ids_and_placeholders():
    first = _events("Newchannel")[0]
    assert (first.uniqueid, first.linkedid, first.action_id) == ("1795472530.50", "1795472530.50", None)
    global_set = next(e for e in _events("VarSet") if e.get("Channel") == "none")
    assert global_set.get("Uniqueid") == "none" and global_set.uniqueid is None


# ---------------------------------------------------------------- errors


def test_malformed_message_is_reported_and_the_parser_goes_on():
    parser = ami.AmiParser()
    with pytest.raises(ami.AmiProtocolError, match="not 'Key: value'.*garbage line"):
        parser.feed(b"Event: A\r\n\r\nEvent: B\r\ngarbage line\r\n\r\nEvent: C\r\n\r\n")
    assert [m.name for m in parser.messages()] == ["A", "C"]
    parser.feed(b"Event: D\r\n\r\n")
    assert [m.name for m in parser.messages()] == ["D"] and not parser.dead


def test_several_malformed_messages_in_one_chunk_are_counted():
    parser = ami.AmiParser()
    with pytest.raises(ami.AmiProtocolError, match=r"starts with 'Action'.*\(and 1 more"):
        parser.feed(b"Action: Ping\r\n\r\nEvent: A\r\n\r\nno colon\r\n\r\n")
    assert [m.name for m in parser.messages()] == ["A"]


def test_oversized_message_kills_the_parser():
    parser = ami.AmiParser()
    parser.feed(b"Event: Fine\r\n\r\nEvent: Big\r\n")
    with pytest.raises(ami.AmiProtocolError, match="longer than 65536 bytes"):
        parser.feed(b"X: " + b"y" * ami.MAX_MESSAGE)
    assert parser.dead and parser.buffered == 0
    assert [m.name for m in parser.messages()] == ["Fine"]
    with pytest.raises(ami.AmiProtocolError, match="dead"):
        parser.feed(b"Event: After\r\n\r\n")


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_size_limit_does_not_depend_on_chunking(chunk):
    fits = b"Event: A\r\nX: " + b"y" * 80 + b"\r\n\r\n"
    parser = ami.AmiParser(max_message=len(fits))
    for i in range(0, len(fits), chunk):
        parser.feed(fits[i:i + chunk])
    assert len(parser.messages()) == 1
    too_big = fits.replace(b"y\r\n", b"yy\r\n")
    parser = ami.AmiParser(max_message=len(fits))
    with pytest.raises(ami.AmiProtocolError):
        for i in range(0, len(too_big), chunk):
            parser.feed(too_big[i:i + chunk])
    assert parser.dead


def test_legacy_follows_command_body():
    raw = (b"Response: Follows\r\nPrivilege: Command\r\nActionID: old-1\r\n"
           b"Asterisk 13.38.3 built by x\nUptime: 5 minutes\n\n  indented\n--END COMMAND--\r\n\r\n"
           b"Event: After\r\n\r\n")
    whole = _parse(raw)
    trickle = ami.AmiParser()
    for b in raw:
        trickle.feed(bytes([b]))
    assert trickle.messages() == whole
    follows, after = whole
    assert follows.ok and follows.response == "Follows" and follows.action_id == "old-1"
    assert follows.output == ("Asterisk 13.38.3 built by x", "Uptime: 5 minutes", "", "  indented")
    assert after.name == "After"
    glued = _parse(b"Response: Follows\r\nPrivilege: Command\r\nno newline--END COMMAND--\r\n\r\n")[0]
    assert glued.output == ("no newline",) and glued.action_id is None


# ---------------------------------------------------------------- actions


def _fields_of(raw: bytes) -> tuple[str, str, dict[str, str | list[str]]]:
    lines = raw.decode().removesuffix("\r\n\r\n").split("\r\n")
    pairs = [line.split(": ", 1) for line in lines]
    fields: dict[str, str | list[str]] = {}
    for key, value in pairs[2:]:
        if key in fields:
            prev = fields[key]
            fields[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            fields[key] = value
    assert pairs[0][0] == "Action" and pairs[1][0] == "ActionID"
    return pairs[0][1], pairs[1][1], fields


def test_every_recorded_action_is_reproduced_byte_for_byte():
    actions = sent()
    assert len(actions) == 33
    for raw in actions:
        name, action_id, fields = _fields_of(raw)
        assert ami.action(name, action_id, fields) == raw


def test_login_action_matches_the_recording():
    actions = sent()
    assert ami.login_action("login-bad", "test", "wrong-secret") == actions[0]
    assert ami.login_action("login-ok", "test", "testsecret", events="off") == actions[2]


def test_originate_action_matches_the_recorded_async_originates():
    by_id = {_fields_of(raw)[1]: raw for raw in sent()}
    call1 = ami.originate_action(
        "originate-call1", "Local/110@test", context="test", exten="speaker", caller_id='"AMI Lab" <2000>',
        timeout_ms=20000, account="lab-acct",
        variables={"ASUUID": "c6dc7876-6c55-4b0c-8eec-58514498cfed", "RECNAME": "ami_call1",
                   "SPEAKER_WAIT": "1", "SPEECH": "/opt/ast/sounds/short8k"})
    assert call1 == by_id["originate-call1"]
    call2 = ami.originate_action("originate-call2", "Local/park@test", context="test", exten="hold", priority=1,
                                 caller_id='"Park Test" <3000>', channel_id="lab-park-1",
                                 other_channel_id="lab-park-2")
    assert call2 == by_id["originate-call2"]
    badtech = ami.originate_action("originate-badtech", "Foo/bar", application="Wait", data="1")
    assert badtech == by_id["originate-badtech"]


def test_originate_action_is_always_async_and_needs_one_target():
    assert b"Async: true\r\n" in ami.originate_action("o", "Local/1@t", application="Echo")
    with pytest.raises(ValueError, match="context and exten"):
        ami.originate_action("o", "Local/1@t", context="t")
    with pytest.raises(ValueError, match="not both"):
        ami.originate_action("o", "Local/1@t", context="t", exten="s", application="Echo")
    with pytest.raises(ValueError, match="application"):
        ami.originate_action("o", "Local/1@t", context="t", exten="s", data="x")


def test_variable_values_are_escaped_against_asterisk_comma_splitting():
    raw = ami.action("Originate", "o", {"Variable": {"A": "x,y", "CDR(userfield)": 'say "hi" \\ [1]'}})
    assert raw == (b"Action: Originate\r\nActionID: o\r\nVariable: A=x\\,y\r\n"
                   b'Variable: CDR\\(userfield\\)=say \\"hi\\" \\\\ \\[1\\]\r\n\r\n')
    with pytest.raises(ValueError, match="variable name"):
        ami.action("Originate", "o", {"Variable": {"A=B": "x"}})


def test_scalar_values():
    assert ami.action("X", "1", {"Async": True, "Off": False, "N": 5, "Skip": None, "L": ["a", "b"]}) == (
        b"Action: X\r\nActionID: 1\r\nAsync: true\r\nOff: false\r\nN: 5\r\nL: a\r\nL: b\r\n\r\n")
    with pytest.raises(TypeError):
        ami.action("X", "1", {"F": 1.5})


@pytest.mark.parametrize("fields", [
    {"Channel": "SIP/x\r\nAction: Hangup"},
    {"Channel": "line\nbreak"},
    {"Channel": "cr\ronly"},
    {"Bad\r\nKey": "v"},
    {"Bad: Key": "v"},
    {"": "v"},
    {"Variable": {"A": "x\r\nAction: Hangup"}},
    {"L": ["ok", "bad\n"]},
    {"ActionID": "again"},
])
def test_header_injection_and_bad_names_are_refused(fields):
    with pytest.raises(ValueError):
        ami.action("Getvar", "g", fields)


def test_action_name_and_id_are_checked_too():
    with pytest.raises(ValueError, match="ActionID"):
        ami.action("Ping", "")
    with pytest.raises(ValueError, match="one line"):
        ami.action("Ping", "x\r\nAction: Hangup")
    with pytest.raises(ValueError, match="one line"):
        ami.action("Ping\r\n", "x")


# ---------------------------------------------------------------- login


def test_check_login():
    ami.check_login(_response("login-ok"))
    with pytest.raises(ami.AmiLoginError, match="Authentication failed"):
        ami.check_login(_response("login-bad"))


# ---------------------------------------------------------------- originate outcome


def test_originate_outcomes_from_the_recording():
    call1, call2, badtech = (ami.originate_outcome(e) for e in _events("OriginateResponse"))
    assert call1 == ami.OriginateOutcome("originate-call1", True, "answered", 4, "Local/110@test-00000016;1",
                                         "1795472530.50")
    assert call2.answered and call2.uniqueid == "lab-park-1"  # ChannelId fixed the Uniqueid up front
    assert badtech == ami.OriginateOutcome("originate-badtech", False, "failed", 0, "Foo/bar", None)


@pytest.mark.parametrize("reason,result", [
    ("0", "failed"), ("1", "hangup"), ("3", "no_answer"), ("4", "failed"), ("5", "busy"), ("8", "congestion"),
    ("42", "failed"), ("", "failed"),
])
def test_originate_failure_reasons(reason, result):
    event = _event(f"Event: OriginateResponse\nActionID: o\nResponse: Failure\nChannel: PJSIP/x\n"
                   f"Reason: {reason}\nUniqueid: <unknown>\n\n")
    outcome = ami.originate_outcome(event)
    assert not outcome.answered and outcome.result == result and outcome.uniqueid is None


def test_originate_outcome_wants_an_originate_response():
    with pytest.raises(ValueError):
        ami.originate_outcome(_events("Hangup")[0])


def test_panoramisk_failure_is_a_failure_here():
    pano = panoramisk()["originate_async_badtech"]["items"]
    assert pano[1]["success"] is True  # panoramisk's view of a Failure
    event = ami.message_from_headers(pano[1]["headers"])
    assert isinstance(event, ami.AmiEvent) and ami.originate_outcome(event).result == "failed"
    queued = ami.message_from_headers(pano[0]["headers"])
    assert isinstance(queued, ami.AmiResponse) and queued.message == "Originate successfully queued"


# ---------------------------------------------------------------- CDR


def test_cdr_events_match_master_csv():
    records = [ami.CdrRecord.from_event(e) for e in _events("Cdr")]
    rows = cdr_csv_rows()
    assert len(records) == len(rows) == 8
    for record, row in zip(records, rows):
        (account, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, start, answer, end,
         duration, billsec, disposition, amaflags, uniqueid, userfield) = row
        assert (record.account_code, record.source, record.destination, record.destination_context,
                record.caller_id, record.channel, record.destination_channel, record.last_application,
                record.last_data) == (account, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata)
        assert record.start.strftime("%Y-%m-%d %H:%M:%S") == start  # Master.csv is written in UTC
        assert (record.answer.strftime("%Y-%m-%d %H:%M:%S") if record.answer else "") == answer
        assert record.end.strftime("%Y-%m-%d %H:%M:%S") == end
        assert (record.duration, record.billable_seconds) == (int(duration), int(billsec))
        assert (record.disposition, record.ama_flags, record.unique_id, record.user_field) == (
            disposition, amaflags, uniqueid, userfield)


def test_cdr_values_and_time_zones():
    first = ami.CdrRecord.from_event(_events("Cdr")[0])
    assert first.start == datetime(2026, 11, 23, 22, 22, 10, tzinfo=timezone.utc)
    assert first.end.tzinfo is timezone.utc and first.duration == 5 and first.disposition == "ANSWERED"
    busy = ami.CdrRecord.from_event(_events("Cdr")[4])
    assert busy.disposition == "BUSY" and busy.answer is None and busy.billable_seconds == 0
    berlin = ami.CdrRecord.from_event(_events("Cdr")[0], tz=ZoneInfo("Europe/Berlin"))
    assert berlin.start.astimezone(timezone.utc) == datetime(2026, 11, 23, 21, 22, 10, tzinfo=timezone.utc)


def test_cdr_comes_before_or_after_the_hangup_of_its_channel():
    order = []
    for cdr in _events("Cdr"):
        hangup = next(e for e in _events("Hangup") if e.uniqueid == cdr.get("UniqueID"))
        order.append(EVENTS.index(cdr) < EVENTS.index(hangup))
    assert order == [True] * 7 + [False]  # the Local/echo;2 half's Cdr came after its Hangup


def test_cdr_from_panoramisk_without_its_empty_last_header():
    headers = panoramisk()["sample_events"]["Cdr"]
    assert "UserField" not in headers  # panoramisk strips the message, losing "UserField: "
    record = ami.CdrRecord.from_event(ami.message_from_headers(headers))
    assert record.user_field == "" and record.destination == "echo" and record.duration == 2


def test_broken_cdr_is_refused():
    with pytest.raises(ami.AmiProtocolError, match="StartTime"):
        ami.CdrRecord.from_event(_event("Event: Cdr\nStartTime: 23/11/2026\nDuration: 1\n\n"))
    with pytest.raises(ami.AmiProtocolError, match="Duration"):
        ami.CdrRecord.from_event(_event("Event: Cdr\nStartTime: 2026-11-23 22:22:10\n"
                                        "EndTime: 2026-11-23 22:22:10\nDuration: x\n\n"))
    with pytest.raises(ValueError):
        ami.CdrRecord.from_event(_events("Hangup")[0])


# ---------------------------------------------------------------- list actions


def _collect(messages, *action_ids):
    collector = ami.ListCollector()
    for action_id in action_ids:
        collector.expect(action_id)
    claimed = [m for m in messages if collector.feed(m)]
    return collector, claimed


def test_core_show_channels_and_status_lists_from_the_recording():
    collector, claimed = _collect(MESSAGES, "coreshowchannels-1", "status-1")
    channels, status = collector.finished()
    assert len(claimed) == 4 + 3 and "coreshowchannels-1" not in collector
    assert channels.ok and channels.action_id == "coreshowchannels-1"
    assert [e.get("Channel") for e in channels.events] == ["Local/park@test-00000017;1",
                                                            "Local/park@test-00000017;2"]
    assert channels.complete.get("ListItems") == "2"
    assert status.ok and [e.name for e in status.events] == ["Status"]
    assert status.complete.name == "StatusComplete"


def test_list_events_may_arrive_before_the_response():
    in_order = [m for m in MESSAGES if not isinstance(m, ami.Banner) and m.action_id == "coreshowchannels-1"]
    shuffled = in_order[1:3] + in_order[:1] + in_order[3:]
    collector, _ = _collect(shuffled, "coreshowchannels-1")
    (late,) = collector.finished()
    collector, _ = _collect(in_order, "coreshowchannels-1")
    assert collector.finished() == [late] and len(late.events) == 2
    response_last = in_order[1:] + in_order[:1]
    collector, _ = _collect(response_last, "coreshowchannels-1")
    assert collector.finished() == [late]


def test_list_refused_by_its_response_finishes_at_once():
    collector, claimed = _collect([_response("getvar-nochan")], "getvar-nochan")
    (refused,) = collector.finished()
    assert claimed and not refused.ok and refused.complete is None and refused.events == ()


def test_collector_claims_only_what_it_expects():
    collector = ami.ListCollector()
    collector.expect("status-1")
    with pytest.raises(ValueError):
        collector.expect("status-1")
    originate = _events("OriginateResponse")[0]
    assert not collector.feed(originate) and not collector.feed(MESSAGES[0])
    collector.cancel("status-1")
    assert not collector.feed(_events("Status")[0]) and collector.finished() == []


def test_panoramisk_list_converts():
    items = [ami.message_from_headers(i["headers"]) for i in panoramisk()["coreshowchannels_busy"]["items"]]
    collector, _ = _collect(items, items[0].action_id)
    (result,) = collector.finished()
    assert len(result.events) == 2 and result.complete.get("ListItems") == "2"


# ---------------------------------------------------------------- routing


def test_call_keys_route_every_call1_event_to_its_linkedid():
    start = EVENTS.index(_events("Newchannel")[0])
    end = next(i for i, e in enumerate(EVENTS) if (e.get("Channel") or "").startswith("Local/park"))
    call1 = [ami.call_key(e) for e in EVENTS[start:end]]
    linked = {k.linkedid for k in call1 if k is not None}
    assert linked == {"1795472530.50", None}
    assert {k.uniqueid for k in call1 if k is not None} >= {"1795472530.50", "1795472530.51", "1795472530.52"}


def test_call_key_fallbacks_and_absences():
    dial = next(e for e in _events("DialBegin") if "Uniqueid" not in e)
    assert ami.call_key(dial) == ami.CallKey(dial.get("DestUniqueid"), dial.get("DestLinkedid"))
    bridge = _events("LocalBridge")[0]
    assert ami.call_key(bridge) == ami.CallKey("1795472530.50", "1795472530.50")
    assert ami.call_key(_events("Cdr")[0]) == ami.CallKey("1795472530.51", None)
    assert ami.call_key(_events("DeviceStateChange")[0]) is None
    assert ami.call_key(next(e for e in _events("VarSet") if e.get("Channel") == "none")) is None
    assert ami.call_key(_events("OriginateResponse")[2]) is None  # Uniqueid: <unknown>


# ---------------------------------------------------------------- panoramisk headers


def test_message_from_panoramisk_headers():
    multi = ami.message_from_headers(panoramisk()["command_multi_line"]["headers"])
    assert isinstance(multi, ami.AmiResponse) and multi.output[2] == "" and len(multi.output) == 4
    single = ami.message_from_headers(panoramisk()["command_single_line"]["headers"])
    assert single.output == (panoramisk()["command_single_line"]["headers"]["Output"],)
    event = ami.message_from_headers({"Privilege": "call,all", "Event": "Hangup", "Uniqueid": "1.2"})
    assert event.name == "Hangup" and event.fields[0] == ("Event", "Hangup")
    with pytest.raises(ami.AmiProtocolError):
        ami.message_from_headers({"Foo": "bar"})
