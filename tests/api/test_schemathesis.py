"""The whole API checked against its own OpenAPI document by schemathesis, over real HTTP.

Every operation gets valid requests (each must be accepted: 2xx, or 404/409 for names that do not
exist) and invalid ones (each must be refused with a 4xx), and every response must match the
document: status codes, content type, body schema, the bearer scheme (a request without the token
must be refused). The server runs on this test's event loop; schemathesis is synchronous, so it runs
in a worker thread. Examples are few and derandomized, to keep the test short and repeatable.
"""

from __future__ import annotations

import asyncio
import time

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from controller.simulator.callee import Busy
from tests.api.conftest import AUTH, SEEDED, detail_records, seed

EXAMPLES = 25
# A number libphonenumber takes as valid (555-01xx is reserved for fiction): the document's `phone` format.
PHONES = st.integers(100, 199).map(lambda n: f"+1202555{n:04d}")


def _check_all(base: str) -> dict[str, int]:
    """Run every operation in both modes; the number of requests sent per operation and mode."""
    schemathesis.openapi.format("phone", PHONES)
    # the document as the server serves it; from_url would leave out the document's own operation
    served = requests.get(f"{base}/openapi.json", headers=AUTH, timeout=10)
    served.raise_for_status()
    schema = schemathesis.openapi.from_dict(served.json())
    schema.validate()  # a valid OpenAPI 3.1 document
    sent: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.path_parameters or operation.query or operation.body:  # something to get wrong
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            sent[f"{operation.label} {mode.value}"] = _check(operation, mode, base)
    return sent


def _check(operation, mode: GenerationMode, base: str) -> int:
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(base_url=base, headers=AUTH)

    check()
    return sent


async def test_the_api_conforms_to_its_own_document(dial_rig):
    await seed(dial_rig.database_url, [*SEEDED, *detail_records("c2")])
    dial_rig.sim.callees.script(Busy())  # outbound requests end at once, busy
    channel = await dial_rig.place()
    await dial_rig.live(channel.uuid)

    started = time.monotonic()
    sent = await asyncio.to_thread(_check_all, dial_rig.base)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {sum(sent.values())} requests in {elapsed:.1f} s: {sent}")
    assert len({key.rsplit(" ", 1)[0] for key in sent}) == 10  # every operation of the document
    assert all(count > 0 for count in sent.values()), sent
    assert not channel.ended.is_set()  # nothing generated could reach the live call
