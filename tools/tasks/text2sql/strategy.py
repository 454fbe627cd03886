"""Text-to-SQL generation, SQL first: sample an executable query, then have a model write its question.

For a target category, :meth:`Text2SQLStrategy.draft` picks a domain (a schema shared by seed records), samples a
query of exactly that category from the domain's synthesized database (:mod:`.sql.sampler`, in the seeds'
SQL style), and renders the ``text2sql_question`` prompt with 2-4 real seed examples of the same category as
anchors. :meth:`Text2SQLStrategy.complete` takes the model's text, keeps the question if it is faithful to the
SQL (:func:`.sql.faithfulness.faithfulness`) and otherwise uses the grammar-based renderer's question; with no
model (``model_text=None``) the renderer writes it directly. The record copies the seeds' format exactly: the
most common system text and user-turn layout around the schema and the question, with the SQL as the answer.

FLock scores only the SQL tokens, and the SQL here is sampled, executed and categorized by construction; the
question mostly decides how well the pair teaches. Measured: SmolLM2-135M writes an unfaithful question for most
queries (PITFALLS.md), so the renderer carries the default and a stronger model raises the share of LLM writers.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prompts import load_prompt, text_hash
from tools.data import FlockRecord, Turn
from tools.tasks.base import Candidate, Draft, GenerationStrategy, Rejection, TaskPlugin
from tools.tasks.text2sql.records import CREATE_TABLE, prompt_of
from tools.tasks.text2sql.sql.categories import CATEGORY_PRIORITY, categorize_sql, clean_sql
from tools.tasks.text2sql.sql.faithfulness import FaithCheck, faithfulness
from tools.tasks.text2sql.sql.literals import literal_pool, literal_rows
from tools.tasks.text2sql.sql.render import render_question
from tools.tasks.text2sql.sql.sampler import QuerySampler, SampledQuery, SamplerError
from tools.tasks.text2sql.sql.sandbox import sandbox_database
from tools.tasks.text2sql.sql.schema import Schema, SchemaError, parse_schema
from tools.tasks.text2sql.sql.style import SQLStyle, infer_style

PROMPT_ID = "text2sql_question"
_SCHEMA_SLOT = "\x00SCHEMA\x00"
_QUESTION_SLOT = "\x00QUESTION\x00"
_LIST_MARKER = re.compile(r"^\s*(?:[-*>]|\d+[.)])\s+")
_LEADING_LABEL = re.compile(r"^\s*(?:\*\*)?(?:question|q|user|answer|natural language)\s*(?:\*\*)?\s*[:\-]\s*(?:\*\*)?",
                            re.IGNORECASE)
_ROLE_LINE = re.compile(r"^\[(system|user|assistant|end)\]\s*$")
_QUOTES = "\"'`“”‘’"


class SeedFormatError(ValueError):
    """No seed record could be used: every one lacked a parsable schema or SQL answer."""


@dataclass(frozen=True)
class RecordFrame:
    """Where the schema and the question sit in a seed record: texts with slots for both."""

    system: str | None
    user: str

    def fill(self, schema_block: str, question: str) -> tuple[str | None, str]:
        def put(text: str) -> str:
            return text.replace(_SCHEMA_SLOT, schema_block).replace(_QUESTION_SLOT, question)

        return (put(self.system) if self.system is not None else None), put(self.user)


@dataclass
class Domain:
    """Seed records sharing one schema, with the schema block exactly as the seeds write it."""

    id: str
    schema_block: str
    schema: Schema
    records: list[FlockRecord] = field(default_factory=list)
    by_category: dict[str, list[FlockRecord]] = field(default_factory=lambda: defaultdict(list))


def question_of(record: FlockRecord) -> str:
    """A seed's question: what follows the schema, and of several lines the last (headers such as
    ``### Question`` or ``Question:`` are layout, not question)."""
    text = prompt_of(record).question
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return _LEADING_LABEL.sub("", lines[-1]).strip()


def _frame_of(record: FlockRecord) -> tuple[RecordFrame, str] | None:
    """The record's frame and verbatim schema block, or None when it has no schema or question."""
    user = record.first_user_text()
    question = question_of(record)
    if not question:
        return None
    for where in ("user", "system"):
        text = user if where == "user" else (record.system or "")
        matches = list(CREATE_TABLE.finditer(text))
        if not matches:
            continue
        start, end = matches[0].start(), matches[-1].end()
        block = text[start:end]
        templated = text[:start] + _SCHEMA_SLOT + text[end:]
        if where == "user":
            position = templated.rfind(question)
            if position < 0:
                return None
            user_frame = templated[:position] + _QUESTION_SLOT + templated[position + len(question):]
            return RecordFrame(record.system, user_frame), block
        position = user.rfind(question)
        if position < 0:
            return None
        user_frame = user[:position] + _QUESTION_SLOT + user[position + len(question):]
        return RecordFrame(templated, user_frame), block
    return None


def chat_messages(rendered: str) -> list[dict[str, str]]:
    """Split a rendered prompt into chat messages at its ``[system]``/``[user]``/``[assistant]`` lines: few-shot
    examples as earlier turns suit chat models, small ones especially, better than one long message."""
    messages: list[dict[str, str]] = []
    role: str | None = None
    lines: list[str] = []
    for line in [*rendered.splitlines(), "[end]"]:
        marker = _ROLE_LINE.match(line)
        if marker is None:
            lines.append(line)
            continue
        content = "\n".join(lines).strip()
        if role is not None and content:
            messages.append({"role": role, "content": content})
        elif content:
            messages.append({"role": "user", "content": content})
        role, lines = marker.group(1), []
    return messages


def extract_question(model_text: str) -> str:
    """The question in a model's reply: the first non-empty line, labels ("Question:"), list markers, markdown
    and quotes removed, cut after the first question mark, first letter capitalized."""
    for line in model_text.strip().splitlines():
        text = _LEADING_LABEL.sub("", _LIST_MARKER.sub("", line.strip())).strip().strip("*").strip()
        text = text.strip(_QUOTES).strip()
        if not text:
            continue
        mark = text.find("?")
        if mark >= 0:
            text = text[: mark + 1]
        text = text.strip(_QUOTES).strip()
        return text[:1].upper() + text[1:]
    return ""


def _domain_id(schema: Schema) -> str:
    return ",".join(schema.table_names)


class Text2SQLStrategy(GenerationStrategy):
    """SQL-first generation for text-to-SQL tasks (see the module docstring)."""

    name = "sql_first"
    max_new_tokens = 64

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord], *, database_seed: int = 0,
                 examples: tuple[int, int] = (2, 4)):
        super().__init__(plugin, seeds)
        self.database_seed = database_seed
        self.examples = examples
        self.prompt = load_prompt(PROMPT_ID)
        self.skipped: list[str] = []
        frames: Counter[RecordFrame] = Counter()
        domains: dict[str, Domain] = {}
        for index, record in enumerate(self.seeds):
            answers = record.assistant_texts()
            found = _frame_of(record)
            if found is None or not answers:
                self.skipped.append(f"seed {index} ({record.record_id}): no schema, question or SQL answer")
                continue
            frame, block = found
            domain = domains.get(block)
            if domain is None:
                try:
                    schema = parse_schema(block)
                except SchemaError as exc:
                    self.skipped.append(f"seed {index} ({record.record_id}): {exc}")
                    continue
                domain = domains[block] = Domain(_domain_id(schema), block, schema)
            frames[frame] += 1
            domain.records.append(record)
            primary, _tags = categorize_sql(answers[-1])
            domain.by_category[primary].append(record)
        if not domains:
            detail = "; ".join(self.skipped[:3]) or "no seed records"
            raise SeedFormatError(f"no usable text-to-SQL seed among {len(self.seeds)} records: {detail}")
        self.domains = list(domains.values())
        self.frame = frames.most_common(1)[0][0]
        self.style: SQLStyle = infer_style(clean_sql(r.assistant_texts()[-1]) for d in self.domains for r in d.records)
        self._samplers: dict[str, QuerySampler] = {}

    # ----- pieces -----------------------------------------------------------------------------------------------
    def sampler(self, domain: Domain) -> QuerySampler:
        """The domain's query sampler over its synthesized, locked-down database (built once, then cached)."""
        sampler = self._samplers.get(domain.schema_block)
        if sampler is None:
            sqls = [clean_sql(r.assistant_texts()[-1]) for r in domain.records]
            conn = sandbox_database(domain.schema, seed=self.database_seed,
                                    literal_pool=literal_pool(domain.schema, sqls),
                                    literal_rows=literal_rows(domain.schema, sqls))
            sampler = self._samplers[domain.schema_block] = QuerySampler(domain.schema, conn, self.style)
        return sampler

    def anchors(self, domain: Domain, category: str, rng: random.Random) -> list[FlockRecord]:
        """2-4 real examples: the category in this domain first, then the category elsewhere, then this domain."""
        wanted = rng.randint(*self.examples)
        chosen: list[FlockRecord] = []
        pools = [domain.by_category.get(category, []),
                 [r for d in self.domains if d is not domain for r in d.by_category.get(category, [])],
                 domain.records]
        for pool in pools:
            candidates = [r for r in pool if r not in chosen]
            chosen += rng.sample(candidates, min(len(candidates), wanted - len(chosen)))
            if len(chosen) >= wanted:
                break
        return chosen

    def build_record(self, domain: Domain, question: str, sql: str) -> FlockRecord:
        system, user = self.frame.fill(domain.schema_block, question)
        return FlockRecord(system=system, conversations=[Turn(role="user", content=user),
                                                         Turn(role="assistant", content=sql)])

    # ----- the interface ----------------------------------------------------------------------------------------
    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        if category not in CATEGORY_PRIORITY:
            return Rejection("unknown_category", f"no text-to-SQL category {category!r}; known: "
                             f"{', '.join(CATEGORY_PRIORITY)}", category)
        order = list(self.domains)
        rng.shuffle(order)
        failures: list[str] = []
        for domain in order[:3]:
            try:
                query = self.sampler(domain).sample(category, rng)
            except SamplerError as exc:
                failures.append(f"{domain.id}: {exc}")
                continue
            return self._draft(domain, query, rng)
        return Rejection("sampler_failed", "; ".join(failures), category)

    def _draft(self, domain: Domain, query: SampledQuery, rng: random.Random) -> Draft:
        anchors = self.anchors(domain, query.category, rng)
        examples = [{"sql": clean_sql(r.assistant_texts()[-1]), "question": question_of(r)} for r in anchors]
        text = self.prompt.render(schema=domain.schema_block, sql=query.sql, examples=examples)
        fallback = render_question(query.sql, domain.schema, rng)
        return Draft(
            category=query.category,
            messages=chat_messages(text),
            prompt_id=self.prompt.id,
            prompt_hash=text_hash(text),
            seed_ids=[r.record_id for r in anchors],
            state={"domain": domain.schema_block, "sql": query.sql, "shape": query.shape, "tags": list(query.tags),
                   "row_count": query.row_count, "rendered_question": fallback},
        )

    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        state = draft.state
        domain = next((d for d in self.domains if d.schema_block == state.get("domain")), None)
        if domain is None or "sql" not in state:
            return Rejection("bad_draft", "the draft was not made by this strategy", draft.category)
        sql: str = state["sql"]
        provenance: dict[str, Any] = {
            "strategy": self.name, "prompt_id": draft.prompt_id, "prompt_hash": draft.prompt_hash,
            "seed_ids": list(draft.seed_ids), "domain": domain.id, "sql_category": draft.category,
            "sql_tags": list(state.get("tags", [])), "sql_shape": state.get("shape"),
            "sql_rows": state.get("row_count"),
        }
        writer = "renderer"
        question = state["rendered_question"]
        verdict: FaithCheck | None = None
        if model_text is not None:
            proposed = extract_question(model_text)
            verdict = faithfulness(proposed, sql, domain.schema)
            provenance["llm_question"] = proposed
            if verdict.ok:
                writer, question = "llm", proposed
        final = verdict if writer == "llm" else faithfulness(question, sql, domain.schema)
        if final is None or not final.ok:
            return Rejection("unfaithful_question", f"no faithful question for {sql!r}: {final}", draft.category,
                             {**provenance, "writer": writer})
        provenance["writer"] = writer
        provenance["faithfulness"] = {
            "ok": True, "llm": None if verdict is None else {"ok": verdict.ok, "reason": verdict.reason,
                                                            "missing": list(verdict.missing)}}
        record = self.build_record(domain, question, sql)
        primary = self.plugin.categorize(record).primary
        if primary != draft.category:
            return Rejection("category_mismatch", f"wanted {draft.category}, the record is {primary}",
                             draft.category, provenance)
        return Candidate(record=record, category=draft.category, provenance=provenance)
