"""The demo AI agent: Acme's order line. Grounded in tools and a small knowledge base.

Callers can check an order (the tool asks for the number first), ask about hours, returns,
shipping and payment, ask for a person (transfer) and say goodbye (end of call). Any
language model can drive it; the embedded grounded model needs no weights and never invents.
"""

from __future__ import annotations

from controller.agent.conversation import AgentConfig
from controller.agent.grounded import Intent
from controller.agent.knowledge import Fact, Knowledge
from controller.agent.tools import EndCall, TransferCall, tool
from controller.call import Call

ORDERS = {
    "45721": "Order 45721 shipped on Monday and arrives by Thursday.",
    "86390": "Order 86390 is packed and leaves our warehouse today.",
    "12345": "Order 12345 was delivered yesterday to the front desk.",
}
HUMAN_QUEUE = "1000"

KNOWLEDGE = Knowledge([
    Fact("opening hours", "We are open from nine to six, Monday to Saturday.",
         ("hours", "open", "close", "time", "store", "today", "closing")),
    Fact("returns and refunds", "You can return any item within thirty days for a full refund.",
         ("return", "refund", "money", "back", "purchase")),
    Fact("shipping", "Standard shipping takes three to five days and is free over fifty dollars.",
         ("shipping", "delivery", "deliver", "long", "arrive", "cost")),
    Fact("payment", "We take all major cards and PayPal. We never ask for your card number by phone.",
         ("pay", "payment", "card", "credit", "charged", "paypal")),
])

ASK_ORDER = "Sure. What is your order number?"


@tool
def order_status(order_number: str) -> dict[str, str]:
    """Look up an order's delivery status by its number."""
    return {"say": ORDERS.get(order_number, f"I couldn't find order {' '.join(order_number)}. "
                                          "Could you check the number?")}


@tool
def transfer_to_human() -> TransferCall:
    """Connect the caller to a person in the support team."""
    return TransferCall(HUMAN_QUEUE, "Of course. I'm connecting you to a colleague now.")


@tool
def end_call() -> EndCall:
    """End the call when the caller is done."""
    return EndCall("Thanks for calling Acme. Goodbye!")


CONFIG = AgentConfig(
    system_prompt=("You are Acme's phone assistant. Answer in one or two short sentences, from the facts "
                   "given and the tools only. If you don't know, say so and offer a person."),
    greeting=("Hi, thanks for calling Acme. I can check an order for you, or answer questions about "
              "our hours, returns and shipping. How can I help you today?"),
    tools=(order_status, transfer_to_human, end_call),
    knowledge=KNOWLEDGE,
    banned_topics=("password",),
    refusal="For your security I can't help with passwords on the phone. Please use the website.",
    intents=(
        Intent("order", ("check status of my order", "where is my order", "order status", "track my package",
                         "my order number is"), tool="order_status", slot="order_number", ask=ASK_ORDER),
        Intent("human", ("speak to a manager", "talk to a person", "transfer me to support",
                         "speak to someone", "human agent"), tool="transfer_to_human"),
        Intent("bye", ("thank you goodbye", "that's all thanks", "bye", "thank you very much for your help"),
               tool="end_call"),
    ),
)


async def assistant(call: Call) -> str:
    await call.answer()
    result = await call.agent(CONFIG)
    if result.reason == "transfer" and result.transfer_to:
        await call.transfer(result.transfer_to, reason="agent")
        return "transferred"
    if result.reason in ("end_call", "idle", "max_turns"):
        await call.hangup()
    return result.reason
