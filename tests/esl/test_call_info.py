"""What voxgate takes from a real outbound connect reply (CHANNEL_DATA), including a takeover's session."""

from __future__ import annotations

import pytest

from controller.call import SESSION_SEQ_SPAN
from controller.esl import protocol as esl
from controller.freeswitch.call import SESSION_VAR, call_info_from_channel
from tests.fixture_data import esl_sessions, received_stream


def _channel_data() -> dict[str, str]:
    parser = esl.EslParser()
    parser.feed(received_stream(esl_sessions("esl_outbound_session.json")[0]))
    return esl.connect_reply_headers(parser.frames()[0])


def test_a_first_session_reads_the_caller_from_channel_data():
    info = call_info_from_channel(_channel_data())
    assert (info.uuid, info.pbx, info.caller_id_number, info.destination) == (
        "28023d39-040e-4616-9a6a-e5a441533fca", "freeswitch", "15551230003", "300")
    assert info.variables["my_custom_var"] == "hello_from_dialplan"
    assert info.answered_at is None and info.session == 0 and info.seq_base == 0


@pytest.mark.parametrize("mark,session", [("0", 1), ("3", 4), ("", 0), ("x1", 0), ("-1", 0)])
def test_a_channel_marked_by_an_earlier_session_is_taken_over_after_it(mark, session):
    info = call_info_from_channel(_channel_data() | {f"variable_{SESSION_VAR}": mark})
    assert info.session == session and info.seq_base == session * SESSION_SEQ_SPAN
