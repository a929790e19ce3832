"""What the dialer sends and how it reads the answers, the checks on its values, its settings and its plan."""

from __future__ import annotations

import pytest

from controller.app import Controller
from controller.asterisk import ami
from controller.config import ConfigError, load_settings
from controller.dialer import DialError, OutboundCall
from controller.flows import builtin_flows
from controller.originate import (
    asterisk_caller_id, asterisk_result, check_dial_string, check_variable_value, check_variables,
    freeswitch_originate, freeswitch_result,
)
from controller.simulator.api import split_args
from tests.e2e.conftest import make_settings
from tests.outbound.conftest import NUMBER


def test_freeswitch_originate_command_splits_as_freeswitch_splits_it():
    command = freeswitch_originate(
        {"origination_uuid": "u-1", "origination_caller_id_name": "Clinic Reminders", "voxgate_flow": "reminder"},
        "sofia/gateway/carrier_a/+12025550123", "127.0.0.1:8084")
    assert command == ("originate {origination_uuid=u-1,origination_caller_id_name='Clinic Reminders',"
                       "voxgate_flow=reminder}sofia/gateway/carrier_a/+12025550123 "
                       "'&socket(127.0.0.1:8084 async full)'")
    assert split_args(command.removeprefix("originate ")) == [
        "{origination_uuid=u-1,origination_caller_id_name=Clinic Reminders,voxgate_flow=reminder}"
        "sofia/gateway/carrier_a/+12025550123", "&socket(127.0.0.1:8084 async full)"]


@pytest.mark.parametrize("output, expected", [
    ("+OK 3f28fbf9-28a9-4df4-8bf9-9c3a4c50279e\n", ("answered", "SUCCESS")),
    ("-ERR USER_BUSY\n", ("busy", "USER_BUSY")),
    ("-ERR NO_ANSWER\n", ("no_answer", "NO_ANSWER")),
    ("-ERR CALL_REJECTED\n", ("rejected", "CALL_REJECTED")),
    ("-ERR UNALLOCATED_NUMBER\n", ("invalid_number", "UNALLOCATED_NUMBER")),  # as recorded from FreeSWITCH
    ("-ERR NORMAL_TEMPORARY_FAILURE\n", ("failed", "NORMAL_TEMPORARY_FAILURE")),
    ("-ERR INVALID_GATEWAY\n", ("failed", "INVALID_GATEWAY")),
    ("-ERR\n", ("failed", "UNKNOWN")),
    ("what\n", ("failed", "unexpected originate output 'what'")),
])
def test_freeswitch_originate_output_becomes_an_outcome(output, expected):
    assert freeswitch_result(output) == expected


@pytest.mark.parametrize("response, reason, expected", [
    ("Success", "4", "answered"), ("Failure", "5", "busy"), ("Failure", "3", "no_answer"),
    ("Failure", "1", "rejected"), ("Failure", "8", "failed"), ("Failure", "0", "failed"),
])
def test_asterisk_originate_response_becomes_an_outcome(response, reason, expected):
    event = ami.AmiEvent("OriginateResponse", (
        ("Event", "OriginateResponse"), ("ActionID", "1"), ("Response", response),
        ("Channel", "PJSIP/+12025550123@carrier_a"), ("Reason", reason), ("Uniqueid", "<unknown>")))
    outcome, cause = asterisk_result(ami.originate_outcome(event))
    assert outcome == expected and cause.startswith(f"Reason {reason} ")


def test_asterisk_caller_id():
    assert asterisk_caller_id("+12025550100", "Clinic") == '"Clinic" <+12025550100>'
    assert asterisk_caller_id("+12025550100", "") == "+12025550100"
    assert asterisk_caller_id("", "") is None


@pytest.mark.parametrize("value", ["a,origination_uuid=x", "}sofia/gateway/evil/1{", "it's", 'say "hi"', "a|b",
                                   "back\\slash", "^^:x", "[x]", "line\nbreak", " padded", "x" * 300])
def test_values_that_could_become_more_variables_or_dial_strings_are_refused(value):
    with pytest.raises(ValueError):
        check_variable_value("v", value)


def test_variable_names_are_plain_and_not_reserved():
    assert check_variables({"patient": "Ada Lovelace", "slot": "10:30 @ clinic"}) == {
        "patient": "Ada Lovelace", "slot": "10:30 @ clinic"}
    for name in ("voxgate_flow", "origination_uuid", "Originate_timeout", "1st", "with space", "a-b", ""):
        with pytest.raises(ValueError, match="variable name"):
            check_variables({name: "x"})


def test_dial_string_templates():
    check_dial_string("sofia/gateway/{trunk}/{number}", "freeswitch")
    check_dial_string("PJSIP/{digits}@{trunk}", "asterisk")
    check_dial_string("PJSIP/{number}@carrier", "asterisk")
    for bad, why in (("sofia/gateway/{trunk}", "must contain"), ("{number}", "one freeswitch channel"),
                     ("sofia/gateway/{trunk}/{number}|sofia/gateway/b/{number}", "one freeswitch channel"),
                     ("sofia/gateway/{gw}/{number}", "placeholders"), ("sofia/{number!r}", "placeholders"),
                     ("sofia/{number", "not a template")):
        with pytest.raises(ValueError, match=why):
            check_dial_string(bad, "freeswitch")


def test_outbound_settings_are_checked_at_load():
    settings = load_settings({"VOXGATE_FREESWITCH_TRUNKS": " carrier_a, carrier_b ", "VOXGATE_DEFAULT_REGION": "us",
                              "VOXGATE_DIAL_BACKOFF_S": "0.5"})
    assert settings.trunks("freeswitch") == ("carrier_a", "carrier_b") and settings.trunks("asterisk") == ()
    assert settings.default_region == "US" and settings.dial_backoff_s == 0.5
    with pytest.raises(ConfigError) as error:
        load_settings({"VOXGATE_FREESWITCH_TRUNKS": "a,a", "VOXGATE_ASTERISK_TRUNKS": "bad name",
                       "VOXGATE_DEFAULT_REGION": "XX", "VOXGATE_ASTERISK_DIAL_STRING": "PJSIP/{trunk}",
                       "VOXGATE_CALLER_ID_NUMBER": "clinic", "VOXGATE_CALLER_ID_NAME": "a,b",
                       "VOXGATE_DIAL_RING_TIMEOUT_S": "0", "VOXGATE_NUMBER_CHECK": "loose"})
    names = {problem.split(" ", 1)[0] for problem in error.value.problems}
    assert names == {"VOXGATE_FREESWITCH_TRUNKS:", "VOXGATE_ASTERISK_TRUNKS:", "VOXGATE_DEFAULT_REGION:",
                     "VOXGATE_ASTERISK_DIAL_STRING:", "VOXGATE_CALLER_ID_NUMBER:", "VOXGATE_CALLER_ID_NAME:",
                     "VOXGATE_DIAL_RING_TIMEOUT_S:", "VOXGATE_NUMBER_CHECK:"}, error.value.problems
    with pytest.raises(ConfigError, match="esl_outbound_host"):
        load_settings({"VOXGATE_FREESWITCH_TRUNKS": "a", "VOXGATE_BIND_HOST": "0.0.0.0",
                       "VOXGATE_WS_PUBLIC_URL": "ws://192.0.2.1:8090"})


@pytest.fixture
def controller(sqlite_url):
    settings = make_settings(sqlite_url, VOXGATE_ASTERISK="true", VOXGATE_AMI_SECRET="s", VOXGATE_MEDIA_WS_PASSWORD="p",
                             VOXGATE_ASTERISK_TRUNKS="a,b,c", VOXGATE_DIAL_RETRIES="3", VOXGATE_DIAL_BACKOFF_S="10",
                             VOXGATE_DIAL_BACKOFF_MAX_S="25", VOXGATE_DEFAULT_REGION="US",
                             VOXGATE_CALLER_ID_NAME="Clinic")
    return Controller(settings, builtin_flows())


def test_a_plan_tries_every_trunk_in_turn_with_a_growing_backoff_between_passes(controller):
    plan = controller.dialer.plan(OutboundCall("(202) 555-0123", "greeting", request_id="r1"))
    assert (plan.pbx, plan.number, plan.caller_id_name, plan.request_id) == ("asterisk", NUMBER, "Clinic", "r1")
    waits = [(attempt, trunk, wait) for attempt, trunk, wait in plan.schedule()]
    assert [trunk for _, trunk, _ in waits] == ["a", "b", "c"] * 4
    assert [attempt for attempt, _, _ in waits] == list(range(1, 13))
    assert [wait for _, _, wait in waits if wait] == [10.0, 20.0, 25.0]  # doubling, capped at 25
    assert [index for index, (_, _, wait) in enumerate(waits) if wait] == [3, 6, 9]  # only before a pass


def test_a_request_overrides_the_settings(controller):
    plan = controller.dialer.plan(OutboundCall(NUMBER, "greeting", trunks=("z",), retries=0, caller_id_number="",
                                               caller_id_name="", ring_timeout_s=5, variables={"k": "v"}))
    assert [trunk for _, trunk, _ in plan.schedule()] == ["z"]
    assert (plan.caller_id_number, plan.caller_id_name, plan.ring_timeout_s) == ("", "", 5)
    assert plan.call_variables(1, "z") == {"k": "v", "voxgate_flow": "greeting", "voxgate_request_id": plan.request_id,
                                           "voxgate_attempt": "1", "voxgate_trunk": "z", "voxgate_number": NUMBER}


@pytest.mark.parametrize("change, why", [
    ({"trunks": ("bad trunk",)}, "trunk"), ({"retries": 21}, "retries"), ({"retries": 1.5}, "retries"),
    ({"ring_timeout_s": 0}, "ring_timeout_s"), ({"backoff_s": -1}, "backoff_s"), ({"pbx": "sip"}, "pbx"),
    ({"request_id": "a b"}, "request id"), ({"caller_id_number": "x1"}, "caller id number"),
    ({"caller_id_name": "O'Brien"}, "caller id name"),
])
def test_bad_requests_are_refused_with_the_reason(controller, change, why):
    with pytest.raises(ValueError, match=why):
        controller.dialer.plan(OutboundCall(NUMBER, "greeting", **change))


def test_a_pbx_not_set_up_for_outbound_calls_is_named(controller):
    with pytest.raises(DialError, match="VOXGATE_ESL_INBOUND"):
        controller.dialer.plan(OutboundCall(NUMBER, "greeting", pbx="freeswitch"))
