"""The function-calling strategy: schema-valid calls, plausible observations, model turns checked, fallbacks."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tools.data import FlockRecord, load_jsonl
from tools.quality import CategoryGate, FormatGate, GateSuite, PrivacyGate, TaskValidityGate
from tools.tasks import strategy_class
from tools.tasks.base import Candidate, Draft, Rejection
from tools.tasks.function_calling import FunctionCallingPlugin
from tools.tasks.function_calling.catalog import ToolCatalog, sample_regex
from tools.tasks.function_calling.strategy import FunctionCallingStrategy
from tools.tasks.function_calling.writers import answer_problem, request_problem, scalar_leaves

DEMO = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "function_calling" / "training_set.jsonl"
FLOCK_SAMPLE = Path("/work/shared/flock/samples/quickstart_function_calling_demo.jsonl")
CALL_CATEGORIES = ("single_call", "multi_call", "no_call")


@pytest.fixture(scope="module")
def seeds() -> list[FlockRecord]:
    return load_jsonl(DEMO).records


@pytest.fixture(scope="module")
def strategy(seeds: list[FlockRecord]) -> FunctionCallingStrategy:
    made = FunctionCallingPlugin().make_strategy(seeds)
    assert isinstance(made, FunctionCallingStrategy)
    return made


def structural_gates() -> GateSuite:
    plugin = FunctionCallingPlugin()
    return GateSuite([FormatGate(), PrivacyGate(), TaskValidityGate(plugin.name), CategoryGate(plugin)])


def draft(strategy: FunctionCallingStrategy, category: str, seed: int) -> Draft:
    drafted = strategy.draft(category, random.Random(seed))
    assert isinstance(drafted, Draft), drafted
    return drafted


def completed(strategy: FunctionCallingStrategy, drafted: Draft, text: str | None) -> Candidate:
    result = strategy.complete(drafted, text)
    assert isinstance(result, Candidate), result
    return result


def test_registry_maps_plugins_to_strategies() -> None:
    assert strategy_class("function_calling") is FunctionCallingStrategy
    with pytest.raises(ValueError, match="no generation strategy for task type 'vision'"):
        strategy_class("vision")


@pytest.mark.parametrize("source", [DEMO, FLOCK_SAMPLE], ids=["demo", "flock_sample"])
def test_fallback_conversations_pass_format_validity_and_category_gates(source: Path) -> None:
    if not source.exists():
        pytest.skip(f"{source} is not available here")
    records = load_jsonl(source).records
    strategy = FunctionCallingStrategy(FunctionCallingPlugin(), records)
    gates = structural_gates()
    for category in CALL_CATEGORIES:
        for seed in range(25):
            candidate = completed(strategy, draft(strategy, category, seed), None)
            outcome = gates.run(candidate.record, category)
            assert outcome.passed, (category, seed, outcome.failure, candidate.record.to_json_line())
            assert candidate.provenance["writer"] == "fallback"


def test_drafts_are_a_function_of_the_rng(strategy: FunctionCallingStrategy) -> None:
    first = draft(strategy, "multi_call", 42)
    again = draft(strategy, "multi_call", 42)
    assert first.messages == again.messages
    assert first.state == again.state
    assert first.seed_ids == again.seed_ids and first.seed_ids
    assert first.prompt_id == "function_calling_turns" and len(first.prompt_hash) == 16


def test_prompt_shows_the_decided_calls_and_seed_examples(strategy: FunctionCallingStrategy,
                                                          seeds: list[FlockRecord]) -> None:
    drafted = draft(strategy, "single_call", 3)
    prompt = drafted.messages[0]["content"]  # type: ignore[index]
    exchange = drafted.state["exchanges"][0]
    assert exchange["observation"] in prompt
    for value in exchange["arguments"].values():
        assert str(value if not isinstance(value, list) else value[0]) in prompt
    by_id = {r.record_id: r for r in seeds}
    anchor = by_id[drafted.seed_ids[0]]
    assert anchor.first_user_text() in prompt


def well_written(drafted: Draft) -> str:
    """A model answer that satisfies the checks: every argument value stated, a result value reported."""
    lines = []
    for n, exchange in enumerate(drafted.state["exchanges"], start=1):
        values = []
        for value in exchange["arguments"].values():
            values.extend(value if isinstance(value, list) else [value])
        stated = " and ".join(json.dumps(v) if not isinstance(v, str) else v for v in values if not isinstance(v, bool))
        reported = scalar_leaves(json.loads(exchange["observation"]))[0]
        lines.append(f"USER {n}: I would like some help with {stated} please.")
        lines.append(f"ASSISTANT {n}: Sure, the result shows {reported} for you.")
    return "Some preamble the parser ignores.\n" + "\n".join(lines)


def test_model_turns_that_pass_the_checks_are_used(strategy: FunctionCallingStrategy) -> None:
    drafted = draft(strategy, "single_call", 8)
    candidate = completed(strategy, drafted, well_written(drafted))
    turns = candidate.provenance["turn_writers"]
    assert turns["user_1"] == "llm" and turns["assistant_1"] == "llm"
    assert candidate.record.conversations[-1].content.startswith("Sure, the result shows")
    assert structural_gates().run(candidate.record, "single_call").passed


def test_bad_model_turns_fall_back_and_say_why(strategy: FunctionCallingStrategy) -> None:
    drafted = draft(strategy, "multi_call", 5)
    text = ("USER 1: Here is the conversation you asked for.\n"
            "ASSISTANT 1: The answer {\"result\": 1} is here.\n"
            "USER 2: Please do it.")
    candidate = completed(strategy, drafted, text)
    writers = candidate.provenance["turn_writers"]
    assert writers["user_1"].startswith("fallback:meta-text")
    assert writers["assistant_1"] == "fallback:contains braces"
    assert writers["user_2"].startswith("fallback:does not state")
    assert writers["assistant_2"] == "fallback:missing"
    assert candidate.provenance["writer"] == "fallback"
    assert candidate.record.first_user_text() == drafted.state["exchanges"][0]["fallback_user"] or \
        drafted.state["preamble"] is not None


def test_turn_checks() -> None:
    arguments = {"city": "Porto", "units": "celsius", "days": 3}
    assert request_problem("What's the weather in Porto in celsius for 3 days?", arguments) is None
    assert request_problem("What's the weather in Porto in celsius?", arguments) == "does not state '3'"
    assert answer_problem("It is 21 degrees and sunny.", '{"temperature": 21, "condition": "sunny"}') is None
    assert answer_problem("It is lovely out there today.", '{"temperature": 21}') == \
        "reports no value from the tool result"
    assert answer_problem("ok", '{"temperature": 21}') == "too short"


def test_no_call_modes(strategy: FunctionCallingStrategy) -> None:
    modes = {}
    for seed in range(30):
        drafted = draft(strategy, "no_call", seed)
        modes.setdefault(drafted.state["mode"], drafted)
    ask, decline = modes["ask_details"], modes["decline"]
    no_question = completed(strategy, ask,
                            "USER 1: I want to do something with this.\nASSISTANT 1: Okay then, will do.")
    assert no_question.provenance["turn_writers"]["assistant_1"] == "fallback:does not ask for the missing details"
    good = completed(strategy, decline, "USER 1: Can you mow my lawn today?\n"
                                        "ASSISTANT 1: Sorry, I can't mow lawns, but I can help with other things.")
    assert good.provenance["writer"] == "llm"
    assert FunctionCallingPlugin().categorize(good.record).primary == "no_call"


def test_no_tools_needs_the_model_and_keeps_the_seed_tools_convention(strategy: FunctionCallingStrategy) -> None:
    drafted = draft(strategy, "no_tools", 1)
    assert drafted.prompt_id == "function_calling_no_tools"
    rejected = strategy.complete(drafted, "I am a tiny model and I wrote this.")
    assert isinstance(rejected, Rejection) and rejected.reason == "writer_failed"
    meta = strategy.complete(drafted, "USER 1: Here is the question: why?\nASSISTANT 1: Because of physics, mostly.")
    assert isinstance(meta, Rejection) and "meta-text" in meta.detail
    good = completed(strategy, drafted, "USER 1: Why is the sky blue during the day?\n"
                                        "ASSISTANT 1: Air molecules scatter blue light more than red light.")
    assert good.record.tools == "[]"  # the demo seeds mark plain chat with an empty tool list
    assert FunctionCallingPlugin().categorize(good.record).primary == "no_tools"


def test_arguments_follow_the_schema_and_observations_follow_the_arguments(seeds: list[FlockRecord]) -> None:
    catalog = ToolCatalog(seeds)
    rng = random.Random(0)
    for _ in range(40):
        arguments = catalog.sample_arguments("book_table", rng)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", arguments["date"])
        assert 1 <= int(arguments["date"][5:7]) <= 12
        assert re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", arguments["time"])
        assert 1 <= arguments["party_size"] <= 20
    weather = catalog.sample_arguments("get_weather", rng)
    observation = json.loads(catalog.observation("get_weather", weather, rng))
    assert observation["city"] == weather["city"]
    changed = catalog.sample_arguments("get_weather", rng, base=weather, changes=1)
    assert changed != weather


def test_regex_sampler() -> None:
    rng = random.Random(1)
    for pattern in (r"^[A-Z]{3}$", r"^\d{4}-\d{2}-\d{2}$", r"^(ups|fedex)-\d{6}$", r"^[a-z0-9_]{3,8}$"):
        for _ in range(10):
            assert re.fullmatch(pattern, sample_regex(pattern, rng)), pattern
    with pytest.raises(ValueError, match="unsupported"):
        sample_regex(r"^(?=abc)\w+$", rng)


def test_no_seed_tools_is_a_rejection_not_a_crash() -> None:
    plain = [FlockRecord.model_validate({"conversations": [{"role": "user", "content": "Hi"},
                                                           {"role": "assistant", "content": "Hello!"}]})]
    strategy = FunctionCallingStrategy(FunctionCallingPlugin(), plain)
    result = strategy.draft("single_call", random.Random(0))
    assert isinstance(result, Rejection) and result.reason == "no_seed_tools"
