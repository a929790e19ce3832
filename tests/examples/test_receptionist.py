"""examples/receptionist.py with the embedded engines: a known caller greeted by name, a lookup, a transfer."""

from __future__ import annotations

from controller.records.store import list_turns
from controller.simulator.caller import Listen, Say, WaitFor
from examples import receptionist
from tests.examples.conftest import place, spoken


def test_the_crm_finds_customers_by_phone_account_or_name(examples_dir):
    path = examples_dir / "crm.sqlite3"
    examples_dir.mkdir()
    assert receptionist.find("+1 (555) 123-0003", path).name == "Grace Hopper"
    assert receptionist.find("1002", path).name == "Alan Turing"
    assert receptionist.find("ada lovelace", path).account == "1001"
    assert receptionist.find("9999", path) is None and receptionist.find("", path) is None


async def test_a_known_caller_is_greeted_by_name_and_put_through(tmp_path, sqlite_url, embedded):
    ask = await spoken(embedded.tts, "Can I speak to a person please?")
    placed = await place(tmp_path, sqlite_url, "examples.receptionist", "receptionist", [
        WaitFor("answer"), Listen(0.8, timeout=30), Say(ask), WaitFor("hangup", timeout=30)], embedded,
        caller_id_number="+15551230001")
    cdr = placed.cdr
    assert cdr["outcome"] == "transferred" and [t["destination"] for t in placed.transfers] == ["1000"]
    assert cdr["state"]["customer"]["name"] == "Ada Lovelace" and cdr["state"]["customer"]["found_by"] == "caller_id"
    agent = [t["text"] for t in list_turns(sqlite_url, placed.channel.uuid) if t["speaker"] == "agent"]
    assert agent[0].startswith("Hi Ada, welcome back")


async def test_an_unknown_caller_is_looked_up_by_account_number(tmp_path, sqlite_url, embedded):
    lines = [await spoken(embedded.tts, text) for text in
             ("My account number is one zero zero two.", "Please transfer me to technical support.")]
    placed = await place(tmp_path, sqlite_url, "examples.receptionist", "receptionist", [
        WaitFor("answer"), Listen(0.8, timeout=30), Say(lines[0]), Listen(0.8, timeout=30), Say(lines[1]),
        WaitFor("hangup", timeout=30)], embedded, caller_id_number="+15559990000")
    state = placed.cdr["state"]
    assert state["caller_id"] == "+15559990000" and state["transferred_to"] == "1000"
    assert state["customer"]["name"] == "Alan Turing" and state["customer"]["found_by"] == "lookup"
    agent = [t["text"] for t in list_turns(sqlite_url, placed.channel.uuid) if t["speaker"] == "agent"]
    assert any(text.startswith("Thanks, Alan.") for text in agent), agent
