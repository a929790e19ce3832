"""gather(): keys and speech, timeouts, retries with their prompts, choices, validation, hangup."""

from __future__ import annotations

import asyncio

import pytest

from controller.agent.conversation import Engines
from controller.agent.fixed import FixedLlm, FixedTts
from controller.agent.silero import SileroVad
from controller.agent.whisper import WhisperStt
from controller.call import CallGone
from controller.simulator.caller import Dtmf, Hangup, Listen, Say, Wait, WaitFor
from tests.verbs.rig import barge_in_s, fast_engines, run_call, utterance

MENU = "For orders press one. For a manager press two."


@pytest.fixture(scope="module")
def whisper():
    stt = WhisperStt()
    asyncio.run(stt.load())
    return stt


def on_hangup_time(call, kept) -> None:
    call.on_hangup(lambda cause: kept.setdefault("hung_up_at", asyncio.get_running_loop().time()))


@pytest.mark.parametrize("mode", ["streaming", "classic"])
async def test_digits_up_to_the_terminator(tmp_path, sqlite_url, mode):
    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather("Enter your account number, then the pound key.", timeout=8)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.3, timeout=10), Dtmf("4321#"),
                                                      Wait(0.5), Hangup()], mode=mode)
    result = out.kept["result"]
    assert (result.kind, result.digits, result.text, result.choice, result.attempts) == ("dtmf", "4321", "", None, 1)


async def test_inter_digit_timeout_ends_the_entry_and_max_digits_bounds_it(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["paused"] = await call.gather(timeout=5, inter_digit_timeout=0.6)
        kept["bounded"] = await call.gather(max_digits=2, timeout=5)
        await asyncio.sleep(0.5)  # the third key comes meanwhile
        kept["left"] = call.keypad.pending

    out = await run_call(tmp_path, sqlite_url, flow, [
        WaitFor("answer"), Wait(0.3), Dtmf("12"), Wait(1.5), Dtmf("345"), Wait(0.5), Hangup()])
    assert out.kept["paused"].digits == "12"
    assert out.kept["bounded"].digits == "34" and out.kept["left"] == 1  # the 5 waits for the next reader


async def test_no_input_retries_with_the_no_input_prompt_then_says_no_input(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        started = asyncio.get_running_loop().time()
        kept["result"] = await call.gather("Press a key.", timeout=0.5, retries=1, no_input_prompt="Sorry, once more.")
        kept["took"] = asyncio.get_running_loop().time() - started

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(6), Hangup()])
    result = out.kept["result"]
    assert (result.kind, result.digits, result.attempts) == ("no_input", "", 2)
    heard = [round(end - start, 2) for start, end in out.channel.agent_speech]
    assert len(heard) == 3, heard  # the prompt, the no-input prompt, the prompt again
    assert abs(heard[1] - len("Sorry, once more.") * 0.06) < 0.1, heard
    spoken = (2 * len("Press a key.") + len("Sorry, once more.")) * 0.06
    assert spoken + 2 * 0.5 < out.kept["took"] < spoken + 2 * 0.5 + 2.0


async def test_an_invalid_key_gets_the_invalid_prompt_and_another_try(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather(MENU, choices={"1": ["orders"], "2": ["manager"]}, retries=2,
                                           invalid_prompt="That is not an option.")

    out = await run_call(tmp_path, sqlite_url, flow, [
        WaitFor("answer"), Wait(0.5), Dtmf("9"), Wait(0.5), Dtmf("2"), Wait(0.5), Hangup()])
    result = out.kept["result"]
    assert (result.kind, result.digits, result.choice, result.attempts) == ("dtmf", "2", "2", 2)


async def test_invalid_after_the_last_retry_is_a_result_not_an_error(tmp_path, sqlite_url):
    entries = []

    def four_digits(digits: str) -> bool:
        entries.append(digits)
        return len(digits) == 4

    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather(timeout=3, inter_digit_timeout=1, validate=four_digits, retries=1,
                                           invalid_prompt="Four digits please.")
        kept["after"] = "went on"

    out = await run_call(tmp_path, sqlite_url, flow, [
        WaitFor("answer"), Wait(0.3), Dtmf("12#"), Listen(0.3, timeout=5), Dtmf("98765#"), Wait(0.5), Hangup()])
    result = out.kept["result"]
    assert (result.kind, result.digits, result.attempts) == ("invalid", "98765", 2)
    assert entries == ["12", "98765"] and out.kept["after"] == "went on"
    assert out.cdr["outcome"] == "completed" and out.cdr["error"] is None


async def test_async_validate_and_a_valid_entry(tmp_path, sqlite_url):
    async def known(digits: str) -> bool:
        await asyncio.sleep(0.01)  # a lookup
        return digits == "2024"

    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather(timeout=3, validate=known)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.3), Dtmf("2024#"), Wait(0.5),
                                                      Hangup()])
    assert out.kept["result"].kind == "dtmf" and out.kept["result"].digits == "2024"


async def test_a_spoken_choice_over_the_prompt_is_recognised(tmp_path, sqlite_url, whisper):
    engines = Engines(stt=whisper, llm=FixedLlm("unused"), tts=FixedTts(), vad=SileroVad())
    prompt = "Say order status, or ask for a manager, or press a key. " * 2

    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather(prompt, speech=True,
                                           choices={"1": ["order", "status"], "2": ["manager", "operator"]})

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(1.0), Say(utterance("u03")),
                                                      Wait(2.5), Hangup()], engines=engines)
    result = out.kept["result"]
    assert (result.kind, result.choice, result.attempts) == ("speech", "2", 1), result
    assert result.text.lower().startswith("can i speak"), result.text  # the first words were kept
    assert result.digits == "" and result.confidence is not None
    assert 0 < barge_in_s(out.channel, utterance("u03")) < 0.4, "the prompt went on over the caller"


async def test_words_matching_no_choice_are_invalid(tmp_path, sqlite_url, whisper):
    engines = Engines(stt=whisper, llm=FixedLlm("unused"), tts=FixedTts(), vad=SileroVad())

    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather("Which department?", speech=True, retries=0,
                                           choices={"1": ["sales"], "2": ["support"]})

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.3, timeout=5),
                                                      Say(utterance("u05")), Wait(2.0), Hangup()], engines=engines)
    result = out.kept["result"]
    assert result.kind == "invalid" and result.choice is None and "sarah" in result.text.lower(), result


async def test_speech_without_choices_is_the_transcript(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["result"] = await call.gather("How can I help?", speech=True, timeout=5)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.3, timeout=5),
                                                      Say(utterance("u01")), Wait(1.5), Hangup()],
                         engines=fast_engines("check my order"))
    assert out.kept["result"].kind == "speech" and out.kept["result"].text == "check my order"


@pytest.mark.parametrize("during", ["input", "speech"])
async def test_hangup_mid_gather_raises_call_gone_promptly(tmp_path, sqlite_url, during):
    async def flow(call, kept):
        on_hangup_time(call, kept)
        await call.answer()
        await call.gather("Go ahead.", speech=True, timeout=10)

    talk = [Say(utterance("u01"))] if during == "speech" else [Wait(1.0)]
    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Listen(0.3, timeout=5), *talk, Hangup()],
                         finish_after_hangup=5)
    assert isinstance(out.kept["raised"], CallGone)
    assert out.kept["raised_at"] - out.kept["hung_up_at"] < 0.3
    assert out.cdr["outcome"] == "abandoned"


async def test_collect_dtmf_still_works(tmp_path, sqlite_url):
    async def flow(call, kept):
        await call.answer()
        kept["digits"] = await call.collect_dtmf(4, timeout=3, inter_digit_timeout=1)
        kept["rest"] = await call.collect_dtmf(4, timeout=0.5, inter_digit_timeout=0.3)
        kept["nothing"] = await call.collect_dtmf(4, timeout=0.3)

    out = await run_call(tmp_path, sqlite_url, flow, [WaitFor("answer"), Wait(0.3), Dtmf("12345"), Wait(1.0),
                                                      Hangup()])
    assert (out.kept["digits"], out.kept["rest"], out.kept["nothing"]) == ("1234", "5", "")
