"""Numbers are checked and written in E.164 before anything is dialled."""

from __future__ import annotations

import pytest

from controller.phone_numbers import InvalidNumber, check_region, to_e164


@pytest.mark.parametrize("text, region, expected", [
    ("+12025550123", "", "+12025550123"),
    ("+1 (202) 555-0123", "", "+12025550123"),
    ("(202) 555-0123", "US", "+12025550123"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("020 7946 0958", "gb", "+442079460958"),
    ("+44 20 7946 0958", "US", "+442079460958"),  # an international number ignores the region
    ("01 45 67 89 10", "FR", "+33145678910"),
])
def test_numbers_are_written_in_e164(text, region, expected):
    assert to_e164(text, region) == expected


@pytest.mark.parametrize("text, region, why", [
    ("202 555 0123", "", "not in international form"),
    ("+1555", "", "too short"),
    ("+1202555012345678", "", "too long"),
    ("+15551234567", "", "not a valid number"),  # the right length, but 555-1234 is no assigned range
    ("call me", "US", "not a phone number"),
    ("", "US", "not a phone number"),
    ("+" + "1" * 70, "", "not a phone number"),
    ("+44 20 7946 0958 ext 12", "", "has an extension"),
    ("+999 1234 5678", "", "not a phone number"),
])
def test_numbers_that_cannot_be_dialled_are_refused(text, region, why):
    with pytest.raises(InvalidNumber, match=why):
        to_e164(text, region)


def test_the_possible_check_takes_fictional_numbers_of_the_right_length():
    assert to_e164("+15551234567", check="possible") == "+15551234567"
    with pytest.raises(InvalidNumber, match="too short"):
        to_e164("+1555123", check="possible")
    with pytest.raises(ValueError, match="check must be one of"):
        to_e164("+12025550123", check="lenient")


def test_regions_are_iso_codes_libphonenumber_knows():
    assert check_region("gb") == "GB" and check_region("") == ""
    with pytest.raises(ValueError, match="not a region"):
        check_region("XX")
