"""The generation-strategy interface shared by every task type.

A strategy works in two halves so the engine can batch model calls across many examples:

1. :meth:`GenerationStrategy.draft` prepares one example of a target category: everything that needs no model
   (e.g. a sampled, executed SQL query) plus, when a model must write something, the chat messages to send.
2. The engine sends the drafts' messages to a backend in batches.
3. :meth:`GenerationStrategy.complete` turns a draft and the model's text into a :class:`Candidate` (a FLock
   record with provenance) or a :class:`Rejection` with a reason code.

The engine then runs the quality gates on candidates and records provenance for accepted and rejected rows.
A task plugin offers its strategies by name (:attr:`tools.tasks.base.TaskPlugin.strategies`). The helpers at the
end read model-written dialogue (``USER n:`` / ``ASSISTANT n:`` lines) and spot generator meta-text.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tools.data import FlockRecord

if TYPE_CHECKING:
    from tools.tasks.base.plugin import TaskPlugin


@dataclass
class Draft:
    """One example in the making."""

    category: str
    #: Chat messages ({"role", "content"}) for the generator model; None when no model call is needed.
    messages: list[dict[str, str]] | None
    #: Prompt file id (e.g. "text2sql_question") and the hash of the rendered prompt, for provenance.
    prompt_id: str = ""
    prompt_hash: str = ""
    #: Ids (FlockRecord.record_id) of the real examples used as few-shot anchors.
    seed_ids: list[str] = field(default_factory=list)
    #: Strategy-private state carried to complete() (e.g. the SQL, its schema, its domain).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Candidate:
    """A generated example ready for the quality gates."""

    record: FlockRecord
    category: str
    #: strategy, writer ("llm" / "renderer" / ...), prompt_id, prompt_hash, seed_ids and strategy extras.
    provenance: dict[str, Any]


@dataclass
class Rejection:
    """A draft or candidate that was dropped, with a machine-readable reason code and a human detail."""

    reason: str
    detail: str
    category: str
    provenance: dict[str, Any] = field(default_factory=dict)


class GenerationStrategy(ABC):
    """Generates examples of a task type, anchored on the task's real (seed) examples."""

    #: The strategy's name, as plugins offer it and provenance records it.
    name: ClassVar[str]
    #: How many tokens the model writes for one draft, by default (what a strategy asks of the model).
    max_new_tokens: ClassVar[int] = 192

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord]):
        self.plugin = plugin
        self.seeds = list(seeds)

    @abstractmethod
    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        """Prepare one example of ``category``."""

    @abstractmethod
    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        """Finish a draft with the model's output (None when the draft asked for no model call)."""


# ----- model-written text -----------------------------------------------------------------------------------
_LABEL = re.compile(r"^\W{0,3}(USER|ASSISTANT)\s*(\d+)?\s*[*_]{0,2}\s*[:：]\s*[*_]{0,2}\s*",
                    re.IGNORECASE | re.MULTILINE)
_META = re.compile(
    r"\b(here(?:'s| is| are) (?:the|a|an|your) (?:new )?(?:conversation|dialogue|request|reply|response|example|"
    r"question|answer)s?|exchange \d|the user(?:'s)? (?:request|message|question) (?:is|was)|the (?:assistant|"
    r"ai)(?:'s)? (?:reply|response) (?:is|was)|as requested,|the answer (?:is|would be)\s*:|note:|"
    r"labeled lines?|tool result:)",
    re.IGNORECASE,
)


def parse_labeled_turns(text: str) -> list[tuple[str, str]]:
    """``USER n: ...`` / ``ASSISTANT n: ...`` lines as ``(role, content)`` pairs, multi-line contents joined;
    anything before the first label is ignored."""
    matches = list(_LABEL.finditer(text))
    turns = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        content = " ".join(text[match.end():end].split())
        turns.append(("user" if match.group(1).lower() == "user" else "assistant", content))
    return turns


def meta_text(text: str) -> str | None:
    """The first piece of generator meta-text ("Here is the conversation", "Note:") in ``text``, or None."""
    match = _META.search(text)
    return match.group() if match else None
