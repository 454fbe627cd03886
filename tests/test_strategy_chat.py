"""The chat strategy: persona-anchored dialogues from real conversations of the same category."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tools.data import FlockRecord, load_jsonl
from tools.quality import CategoryGate, FormatGate, GateSuite, TaskValidityGate
from tools.tasks.base import Candidate, Draft, Rejection
from tools.tasks.chat import ChatPlugin, persona_id
from tools.tasks.chat.strategy import ChatStrategy

PERSONAS = {
    "pirate": "You are Captain Redbeard, a cheerful pirate who speaks in nautical slang.",
    "chef": "You are Chef Amelie, a warm French cook who loves sharing kitchen tips.",
    "coach": "You are Coach Dana, a direct and encouraging fitness coach.",
}
FLOCK_CHAT_SAMPLE = Path("/work/shared/flock/samples/quickstart_demo_data.jsonl")


def dialogue(system: str, pairs: list[tuple[str, str]]) -> FlockRecord:
    turns = []
    for user, assistant in pairs:
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return FlockRecord.model_validate({"system": system, "conversations": turns})


@pytest.fixture(scope="module")
def seeds() -> list[FlockRecord]:
    records = []
    for name, system in PERSONAS.items():
        for i in range(4):
            records.append(dialogue(system, [(f"{name} question {i}: what do you do all day?",
                                              f"As a {name}, I spend my day on task {i}, and I enjoy it."),
                                             (f"Follow-up {i}?", f"Yes, follow-up answer {i} from the {name}.")]))
    return records


@pytest.fixture(scope="module")
def plugin(seeds: list[FlockRecord]) -> ChatPlugin:
    return ChatPlugin().fit(seeds)


@pytest.fixture(scope="module")
def strategy(plugin: ChatPlugin, seeds: list[FlockRecord]) -> ChatStrategy:
    made = plugin.make_strategy(seeds)
    assert isinstance(made, ChatStrategy)
    return made


def test_drafts_anchor_on_a_real_conversation_of_the_persona(strategy: ChatStrategy, plugin: ChatPlugin) -> None:
    category = persona_id(PERSONAS["chef"])
    assert category in plugin.categories()
    drafted = strategy.draft(category, random.Random(0))
    assert isinstance(drafted, Draft)
    prompt = drafted.messages[0]["content"]  # type: ignore[index]
    assert PERSONAS["chef"] in prompt
    assert "2 exchanges" in prompt and "under 60 words" in prompt
    by_id = {r.record_id: r for r in strategy.seeds}
    assert all(by_id[i].system == PERSONAS["chef"] for i in drafted.seed_ids)
    assert drafted == strategy.draft(category, random.Random(0))


def test_a_well_formed_dialogue_becomes_a_candidate_of_the_same_category(strategy: ChatStrategy,
                                                                         plugin: ChatPlugin) -> None:
    category = persona_id(PERSONAS["pirate"])
    drafted = strategy.draft(category, random.Random(1))
    assert isinstance(drafted, Draft)
    text = ("USER 1: Ahoy, what's the best way to tie a knot?\n"
            "ASSISTANT 1: Arr, the bowline be the sailor's friend, matey.\n"
            "USER 2: Can you teach me?\n"
            "ASSISTANT 2: Aye! Make a loop, pass the rabbit through, round the tree and back down the hole.\n"
            "USER 3: Thanks!")
    candidate = strategy.complete(drafted, text)
    assert isinstance(candidate, Candidate)
    assert candidate.record.system == PERSONAS["pirate"]
    assert [t.role for t in candidate.record.conversations] == ["user", "assistant"] * 2  # unanswered turn dropped
    assert candidate.provenance["writer"] == "llm"
    gates = GateSuite([FormatGate(), TaskValidityGate("chat"), CategoryGate(plugin)])
    assert gates.run(candidate.record, category).passed


@pytest.mark.parametrize(("text", "detail"), [
    ("I'd rather not.", "no USER/ASSISTANT lines"),
    ("ASSISTANT 1: Hello!\nUSER 1: Hi", "does not start with the user"),
    ("USER 1: Hi\nUSER 2: Hello?\nASSISTANT 1: Yes.", "two user turns in a row"),
    ("USER 1: Hi\nASSISTANT 1: Here is the conversation you wanted.", "meta-text"),
    ("USER 1: Hi\nASSISTANT 1: " + "word " * 100, "reply of 100 words"),
    ("USER 1: Hi", "no complete user/assistant exchange"),
])
def test_unusable_dialogues_are_rejected_with_a_reason(strategy: ChatStrategy, text: str, detail: str) -> None:
    drafted = strategy.draft(persona_id(PERSONAS["coach"]), random.Random(2))
    assert isinstance(drafted, Draft)
    result = strategy.complete(drafted, text)
    assert isinstance(result, Rejection)
    assert result.reason == "writer_failed"
    assert detail in result.detail


def test_unknown_category_is_a_rejection(strategy: ChatStrategy) -> None:
    result = strategy.draft("persona:nobody", random.Random(0))
    assert isinstance(result, Rejection) and result.reason == "no_seed_examples"


def test_length_buckets_on_the_flock_sample() -> None:
    if not FLOCK_CHAT_SAMPLE.exists():
        pytest.skip("FLock sample not available here")
    records = load_jsonl(FLOCK_CHAT_SAMPLE).records
    plugin = ChatPlugin().fit(records)
    strategy = ChatStrategy(plugin, records)
    categories = plugin.primary_counts(records)
    for category, count in categories.items():
        drafted = strategy.draft(category, random.Random(3))
        if count == 0:
            assert isinstance(drafted, Rejection)
        else:
            assert isinstance(drafted, Draft)
            assert drafted.state["bucket"] == category
