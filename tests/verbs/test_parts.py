"""The verbs' parts without a call: state for the record, choices, parameter checks, keypad, hooks."""

from __future__ import annotations

import asyncio
import json

import pytest

from controller.call import CommandFailed
from controller.verbs.gather import GatherSpec, match_choice
from controller.verbs.hold import hold_audio
from controller.verbs.hooks import Hooks
from controller.verbs.keys import Keypad
from controller.verbs.record import RecordSpec
from controller.verbs.state import storable


def test_storable_state_keeps_json_values_and_names_the_rest():
    state = {"a": 1, "b": [1, "x", None, True, 2.5], "c": {"d": {1, 2}}, 7: "seven", None: "null",
             ("t",): "tuple key", "inf": float("inf")}
    kept, note = storable(state)
    assert kept == {"a": 1, "b": [1, "x", None, True, 2.5], "c": {}, "7": "seven", "null": "null"}
    json.dumps(kept, allow_nan=False)  # what the journal needs
    assert note is not None and "state['c']['d']: set is not a JSON value" in note
    assert "a tuple key is not a JSON key" in note and "state['inf']: inf is not a JSON number" in note


def test_empty_or_non_dict_state():
    assert storable({}) == (None, None)
    assert storable({"ok": True}) == ({"ok": True}, None)
    kept, note = storable(["not", "a", "dict"])  # type: ignore[arg-type]
    assert kept is None and note == "call.state not stored: it must be a dict, not list"


def test_deep_and_cyclic_state_is_cut_not_crashed():
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    loop: list = [1]
    loop.append(loop)
    kept, note = storable({"deep": deep, "loop": loop})
    assert kept is not None and kept["loop"] == [1]
    assert "nested deeper than 64" in note and "refers to itself" in note


CHOICES = {"1": ["sales", "buy something"], "2": ["support", "help"], "3": "billing"}


@pytest.mark.parametrize(("said", "choice"), [
    ("Sales, please.", "1"), ("I want to buy something", "1"), ("I need HELP!", "2"), ("Billing.", "3"),
    ("one", None), ("1", "1"), ("Something else", None), ("sales or support", None), ("", None),
    ("I want to buy", None),
])
def test_a_choice_matches_whole_words_and_a_tie_is_no_match(said, choice):
    assert match_choice(said, CHOICES) == choice


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_digits": 0}, "max_digits must be at least 1"), ({"terminator": "x"}, "terminator must be DTMF"),
    ({"timeout": 0}, "timeout must be more than 0"), ({"retries": -1}, "retries must be 0 or more"),
    ({"choices": {}}, "choices is empty"), ({"validate": "yes"}, "validate must be callable"),
    ({"overall_timeout": -1}, "overall_timeout must be more than 0"),
])
def test_bad_gather_parameters_are_refused_before_anything_plays(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GatherSpec(**kwargs)


def test_the_digit_limit_follows_the_choices():
    assert GatherSpec(choices={"1": ["a"], "22": ["b"], "sales": ["c"]}).digit_limit == 2
    assert GatherSpec(max_digits=4, choices={"1": ["a"]}).digit_limit == 4
    assert GatherSpec().digit_limit == 32


def test_bad_record_parameters(tmp_path):
    with pytest.raises(ValueError, match="max_s must be more than 0"):
        RecordSpec(max_s=0)
    with pytest.raises(ValueError, match="no such folder"):
        RecordSpec(path=tmp_path / "missing" / "x.wav")


async def test_waiting_for_a_key_does_not_take_it():
    keypad = Keypad()
    waiter = asyncio.create_task(keypad.pressed())
    await asyncio.sleep(0)
    assert not waiter.done()
    keypad.press("5")
    await asyncio.wait_for(waiter, 1)
    await asyncio.wait_for(keypad.pressed(), 1)  # at once: one is waiting
    assert keypad.pending == 1 and keypad.take() == "5" and keypad.take() is None
    cancelled = asyncio.create_task(keypad.pressed())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    keypad.press("6")  # a cancelled waiter is gone, not woken
    assert keypad.pending == 1


async def test_hold_music_must_be_audio_voxgate_reads(tmp_path):
    with pytest.raises(CommandFailed, match="hold music must be a WAV"):
        await hold_audio(tmp_path / "nothing.wav", 8000)
    assert (await hold_audio(None, 16000)).sample_rate == 16000


def test_a_hook_must_be_callable():
    with pytest.raises(TypeError, match="a dtmf hook must be callable, not str"):
        Hooks("uuid").add("dtmf", "print")  # type: ignore[arg-type]
