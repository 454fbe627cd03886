"""Chat / character generation: persona-anchored multi-turn dialogues seeded from real conversations.

For a target category (a recurring persona, or a reply-length bucket; see :mod:`tools.tasks.chat`) the strategy
picks a real conversation of that category as the anchor: its system prompt becomes the new dialogue's persona,
its shape (number of exchanges, reply length) the target shape, and the conversation itself the style example.
The topic comes from another seed conversation of the same category, so new dialogues stay in the task's
domain without copying the anchor. The model writes the whole dialogue; there is no deterministic writer for
open conversation, so a dialogue that fails its checks is rejected (``writer_failed``) rather than patched.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from prompts import load_prompt, text_hash
from tools.data import FlockRecord, Turn
from tools.tasks.base import Candidate, Draft, GenerationStrategy, Rejection, TaskPlugin, meta_text, parse_labeled_turns
from tools.tasks.chat.categories import length_bucket

#: Reply-length instruction and word limits per length bucket (the chat plugin's thresholds).
REPLY_LENGTHS: dict[str, tuple[str, int, int]] = {
    "short": ("under 60 words", 2, 80),
    "medium": ("between 60 and 200 words", 30, 260),
    "long": ("over 200 words", 120, 900),
}
MAX_EXCHANGES = 4
_EXAMPLE_WORDS = 120
DEFAULT_PERSONA = "You are a helpful assistant."


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


class ChatStrategy(GenerationStrategy):
    """New multi-turn dialogues in the persona and shape of real conversations of the target category."""

    name = "chat_persona"
    max_new_tokens = 320

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord]):
        super().__init__(plugin, seeds)
        self.by_category: dict[str, list[FlockRecord]] = defaultdict(list)
        for record in self.seeds:
            self.by_category[plugin.categorize(record).primary].append(record)
        self.prompt = load_prompt("chat_dialogue")

    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        pool = self.by_category.get(category)
        if not pool:
            return Rejection("no_seed_examples", f"no seed conversation of category {category!r}", category)
        anchor = rng.choice(pool)
        others = [r for r in pool if r is not anchor] or pool
        topic_source = rng.choice(others)
        topic = f"a subject like this one: \"{_clip(topic_source.first_user_text(), 20)}\""
        exchanges = max(1, min(MAX_EXCHANGES, sum(1 for t in anchor.conversations if t.role == "user")))
        bucket = length_bucket(anchor)
        persona = anchor.system if anchor.system and anchor.system.strip() else DEFAULT_PERSONA
        text = self.prompt.render(persona=persona, example=self._example(anchor), topic=topic,
                                  exchanges=exchanges, reply_length=REPLY_LENGTHS[bucket][0])
        state = {"system": anchor.system, "exchanges": exchanges, "bucket": bucket}
        return Draft(category=category, messages=[{"role": "user", "content": text}], prompt_id=self.prompt.id,
                     prompt_hash=text_hash(self.prompt.file_hash + text),
                     seed_ids=[anchor.record_id, topic_source.record_id], state=state)

    @staticmethod
    def _example(record: FlockRecord) -> str:
        lines = []
        number = 0
        for turn in record.conversations:
            if turn.role == "user":
                number += 1
                if number > MAX_EXCHANGES:
                    break
                lines.append(f"USER {number}: {_clip(turn.content, _EXAMPLE_WORDS)}")
            elif turn.role == "assistant" and number:
                lines.append(f"ASSISTANT {number}: {_clip(turn.content, _EXAMPLE_WORDS)}")
        return "\n".join(lines)

    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        def reject(detail: str) -> Rejection:
            return Rejection("writer_failed", detail, draft.category, {"writer": "llm"})

        parsed = parse_labeled_turns(model_text or "")
        if not parsed:
            return reject("the model wrote no USER/ASSISTANT lines")
        if parsed[0][0] != "user":
            return reject("the dialogue does not start with the user")
        turns: list[Turn] = []
        expected = "user"
        for role, content in parsed:
            if role != expected:
                return reject(f"two {role} turns in a row at turn {len(turns) + 1}")
            if not content:
                return reject(f"empty {role} turn at turn {len(turns) + 1}")
            turns.append(Turn(role=role, content=content))
            expected = "assistant" if role == "user" else "user"
        if turns[-1].role == "user":
            turns.pop()  # an unanswered last question carries no training signal
        turns = turns[:2 * draft.state["exchanges"]]
        if not turns:
            return reject("no complete user/assistant exchange")
        _, low, high = REPLY_LENGTHS[draft.state["bucket"]]
        for index, turn in enumerate(turns):
            found = meta_text(turn.content)
            if found:
                return reject(f"turn {index + 1}: meta-text {found!r}")
            words = len(turn.content.split())
            if turn.role == "assistant" and not low <= words <= high:
                return reject(f"turn {index + 1}: reply of {words} words, outside {low}-{high}")
        record = FlockRecord(system=draft.state["system"], conversations=turns)
        provenance = {"strategy": self.name, "writer": "llm", "prompt_id": draft.prompt_id,
                      "prompt_hash": draft.prompt_hash, "seed_ids": draft.seed_ids,
                      "exchanges": len(turns) // 2, "length_bucket": draft.state["bucket"]}
        return Candidate(record=record, category=draft.category, provenance=provenance)
