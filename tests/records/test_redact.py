"""Redaction before storage: what is removed, what is kept, and the counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from controller.records.cdr import TurnRecord
from controller.records.redact import Redactor, compile_patterns, luhn_ok

VISA = "4556737586899855"  # passes Luhn


@pytest.mark.parametrize("text,expected,counts", [
    (f"my card is {VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]} thanks", "my card is [card] thanks", {"card": 1}),
    ("four five five six seven three seven five eight six eight nine nine eight five five",
     "[card]", {"card": 1}),
    (f"card {VISA[:-1]}4 please", "card [digits] please", {"digits": 1}),  # fails Luhn: not a card, still redacted
    ("My order number is four five seven two one", "My order number is four five seven two one", {}),
    ("call me on five five five one two three four", "call me on [phone]", {"phone": 1}),
    ("or +1 (555) 123-4567 after six", "or +[phone] after six", {"phone": 1}),
    ("write to jane.doe+acme@example.co.uk today", "write to [email] today", {"email": 1}),
    ("my SSN is 123-45-6789", "my SSN is [national_id]", {"national_id": 1}),
    ("NI number AB 12 34 56 C", "NI number [national_id]", {"national_id": 1}),
    ("Order 45721 shipped on Monday, $9.99 refunded", "Order 45721 shipped on Monday, $9.99 refunded", {}),
])
def test_redaction(text, expected, counts):
    redacted, found = Redactor().redact(text)
    assert redacted == expected and dict(found) == counts


def test_luhn():
    assert luhn_ok(VISA) and not luhn_ok(VISA[:-1] + "4") and luhn_ok("79927398713")


def test_a_turn_is_redacted_everywhere_and_the_counts_are_kept_on_it():
    at = datetime(2026, 11, 24, tzinfo=UTC)
    turn = TurnRecord("freeswitch", "c1", 3, "caller", f"it's {VISA}", f"it's {VISA}", at, at,
                      detail={"tool_calls": [{"name": "pay", "arguments": {"card": VISA}, "result": "ok"}]})
    stored = Redactor(compile_patterns({"order": r"ORD-\d+"})).turn(turn)
    assert stored.text == stored.heard_text == "it's [card]"
    assert stored.detail["tool_calls"][0]["arguments"] == {"card": "[card]"}
    assert stored.detail["redactions"] == {"card": 3}
    assert VISA not in repr(stored)
    custom, found = Redactor(compile_patterns({"order": r"ORD-\d+"})).redact("ref ORD-991")
    assert custom == "ref [order]" and found == {"order": 1}


def test_a_bad_pattern_is_named():
    with pytest.raises(ValueError, match="'bad'"):
        compile_patterns({"bad": "("})
    assert isinstance(compile_patterns({"ok": "x"})["ok"], re.Pattern)
