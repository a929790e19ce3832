"""An AI receptionist: greets known customers by name, looks callers up in a small CRM, hands over to a person.

    voxgate serve --flows examples.receptionist  # the dialplan sets voxgate_flow=receptionist

The CRM is a SQLite file under the examples' data dir, created and seeded on first use; every query
runs off the event loop. The caller id finds a known customer before the agent says a word; others
can give their account or phone number (or, with a hosted LLM, their name) and the `find_customer`
tool looks them up. Who called ends up in call.state, stored with the call record.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from controller.agent.conversation import AgentConfig
from controller.agent.grounded import Intent
from controller.agent.tools import EndCall, TransferCall, tool
from controller.call import Call
from controller.flows import flow
from examples import data_dir

FRONT_DESK = "1000"
SEED = [  # phone, name, account, plan
    ("+15551230001", "Ada Lovelace", "1001", "premium"),
    ("+15551230002", "Alan Turing", "1002", "basic"),
    ("+15551230003", "Grace Hopper", "1003", "premium"),
]
ASK_NUMBER = "Sure. What is your account number or phone number?"


@dataclass(frozen=True, slots=True)
class Customer:
    name: str
    account: str
    phone: str
    plan: str

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


def crm_path() -> Path:
    return data_dir() / "crm.sqlite3"


def _connect(path: Path) -> sqlite3.Connection:
    """The CRM, created and seeded the first time."""
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS customers "
                   "(phone TEXT UNIQUE, name TEXT, account TEXT UNIQUE, plan TEXT)")
        db.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?)", SEED)
    return db


def find(who: str, path: Path | None = None) -> Customer | None:
    """A customer by phone number (any format), account number or full name. Blocking: run it in a thread."""
    digits = re.sub(r"\D", "", who)
    with closing(_connect(path or crm_path())) as db:
        row = db.execute(
            "SELECT name, account, phone, plan FROM customers WHERE account = ? OR (length(?) >= 7 AND "
            "replace(phone, '+', '') LIKE '%' || ?) OR lower(name) = lower(?)",
            (digits, digits, digits, who.strip())).fetchone()
    return Customer(*row) if row else None


@tool
async def find_customer(who: str, call: Call) -> dict[str, str]:
    """Look a customer up by account number, phone number or full name."""
    customer = await asyncio.to_thread(find, who)
    if customer is None:
        return {"say": "I couldn't find that account. Could you check the number?"}
    call.state["customer"] = {**asdict(customer), "found_by": "lookup"}  # the agent's tools get the call
    return {"say": f"Thanks, {customer.first_name}. I found your {customer.plan} account. How can I help?"}


@tool
def transfer_to_human() -> TransferCall:
    """Connect the caller to a person at the front desk."""
    return TransferCall(FRONT_DESK, "Of course. Connecting you to a colleague now.")


@tool
def end_call() -> EndCall:
    """End the call when the caller is done."""
    return EndCall("Thanks for calling Acme. Goodbye!")


CONFIG = AgentConfig(
    system_prompt=("You are Acme's receptionist. Answer in one short sentence. Look callers up with "
                   "find_customer when they give an account number, a phone number or their name; "
                   "connect them to a person when they ask."),
    greeting="Hi, thanks for calling Acme. Can I have your account number, or shall I connect you to someone?",
    tools=(find_customer, transfer_to_human, end_call),
    intents=(
        Intent("lookup", ("my account number is", "my phone number is", "look up my account", "account number"),
               tool="find_customer", slot="who", ask=ASK_NUMBER),
        Intent("human", ("speak to a person", "talk to someone", "speak to a manager", "transfer me",
                         "technical support", "human"), tool="transfer_to_human"),
        Intent("bye", ("thank you goodbye", "that's all thanks", "bye", "thank you very much for your help"),
               tool="end_call"),
    ),
)


@flow("receptionist")
async def receptionist(call: Call) -> str:
    customer = await asyncio.to_thread(find, call.info.caller_id_number)
    call.state["caller_id"] = call.info.caller_id_number
    config = CONFIG
    if customer is not None:
        call.state["customer"] = {**asdict(customer), "found_by": "caller_id"}
        config = replace(config, greeting=f"Hi {customer.first_name}, welcome back to Acme. How can I help you today?")
    await call.answer()
    result = await call.agent(config)
    if result.reason == "transfer" and result.transfer_to:
        call.state["transferred_to"] = result.transfer_to
        await call.transfer(result.transfer_to, reason="asked for a person")
        return "transferred"
    if result.reason != "caller_hangup":
        await call.hangup()
    return result.reason
