"""Phone numbers for outbound calls: parsed, checked and written in E.164 with Google's libphonenumber.

A number is refused before anything is dialled: a trunk bills for a wrong number as for any other,
and a typo must not reach a stranger. "+" numbers are international; any other needs a region
(ISO 3166 code such as US or GB) to say which national plan it belongs to.
"""

from __future__ import annotations

import phonenumbers

MAX_INPUT_CHARS = 64  # libphonenumber's own limit is 250; no real number needs more than this
CHECKS = ("valid", "possible")


class InvalidNumber(ValueError):
    """A number that cannot be dialled; the message says which and why."""


def check_region(region: str) -> str:
    """The region upper-cased; ValueError for a code libphonenumber does not know ("" means none)."""
    code = region.strip().upper()
    if code and code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"not a region libphonenumber knows (an ISO 3166 code like US, GB, FR): {region!r}")
    return code


def to_e164(text: str, region: str = "", *, check: str = "valid") -> str:
    """`text` as an E.164 number ("+15551230001"); InvalidNumber when it cannot be one.

    check "valid" wants a number in a range the country has assigned; "possible" only the right
    length (a lab's fictional numbers, or a new range libphonenumber does not know yet).
    """
    if check not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, not {check!r}")
    shown = text if len(text) <= MAX_INPUT_CHARS else text[:MAX_INPUT_CHARS] + "..."
    if not text.strip() or len(text) > MAX_INPUT_CHARS:
        raise InvalidNumber(f"{shown!r} is not a phone number")
    stripped = text.strip()
    if not stripped.startswith("+") and not region:
        raise InvalidNumber(f"{shown!r} is not in international form (+ and the country code) "
                            "and no default region is set for national numbers")
    try:
        number = phonenumbers.parse(stripped, region.upper() or None)
    except phonenumbers.NumberParseException as exc:
        reason = exc.args[0] if exc.args else "unreadable"
        raise InvalidNumber(f"{shown!r} is not a phone number: {reason}") from None
    if number.extension:
        raise InvalidNumber(f"{shown!r} has an extension ({number.extension}): a trunk cannot dial one; "
                            "send it as DTMF once the call is answered")
    if not phonenumbers.is_possible_number(number):
        reason = phonenumbers.is_possible_number_with_reason(number)
        raise InvalidNumber(f"{shown!r} cannot be a phone number: {_WHY.get(reason, 'wrong length')}")
    if check == "valid" and not phonenumbers.is_valid_number(number):
        raise InvalidNumber(f"{shown!r} is not a valid number: no such range is assigned "
                            f"(region {phonenumbers.region_code_for_number(number) or 'unknown'})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_REASONS = phonenumbers.ValidationResult
_WHY = {
    _REASONS.INVALID_COUNTRY_CODE: "unknown country code",
    _REASONS.TOO_SHORT: "too short",
    _REASONS.TOO_LONG: "too long",
    _REASONS.INVALID_LENGTH: "no number of the country has that length",
}
