"""Function-calling generation, seed-anchored, with deterministic tool calls and a fallback writer.

Small models write poor JSON, so everything structured is built here, not by the model: the tools come from the
seed data, each call's arguments are sampled from the tool's JSON schema (enums, bounds, patterns) and from the
values seen in real calls, and the observation reuses the shape of a real observation of the same tool with the
new argument values substituted. The model writes only the natural-language turns: the user's requests and the
assistant's answers, which are the turns FLock scores. Each model-written turn must pass a check (a request
states every argument value; an answer reports a value from the observation; no meta-text); a turn that fails
is replaced by a deterministic writer (:mod:`.writers`), and provenance records which writer produced each turn.
The tools, arguments and results come from :class:`.catalog.ToolCatalog`.

Categories are the call patterns of :mod:`tools.tasks.function_calling.plugin`.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from prompts import load_prompt, text_hash
from tools.data import FlockRecord, Turn, parse_function_call
from tools.tasks.base import Candidate, Draft, GenerationStrategy, Rejection, TaskPlugin, parse_labeled_turns
from tools.tasks.function_calling.catalog import ArgumentError, ToolCatalog
from tools.tasks.function_calling.writers import (
    answer_problem,
    format_value,
    generic_problem,
    humanize,
    mentions,
    render_answer,
    render_ask_details,
    render_decline,
    render_request,
    request_problem,
    scalar_leaves,
)

#: Everyday subjects for plain-chat (no_tools) questions, so questions spread beyond the seeds' topics.
TOPICS = (
    "cooking", "personal finance", "astronomy", "biology", "history", "geography", "grammar", "mathematics",
    "physics", "chemistry", "health and exercise", "gardening", "travel planning", "computers", "music",
    "literature", "economics", "weather and climate", "languages", "home repair", "pets", "sports rules",
    "art", "study skills",
)


class FunctionCallingStrategy(GenerationStrategy):
    """New function-calling conversations from the seed data's tools, in the four call patterns."""

    name = "function_calling_seeded"

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord]):
        super().__init__(plugin, seeds)
        self.catalog = ToolCatalog(self.seeds)
        self.by_category: dict[str, list[FlockRecord]] = defaultdict(list)
        for record in self.seeds:
            self.by_category[plugin.categorize(record).primary].append(record)
        self.prompts = {name: load_prompt(f"function_calling_{name}") for name in ("turns", "no_call", "no_tools")}

    # ----- drafting ----------------------------------------------------------------------------------------
    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        if category == "no_tools":
            return self._draft_no_tools(rng)
        tools = self.catalog.callable_tools()
        if not tools:
            return Rejection("no_seed_tools", "the seed data has no tool with a recorded call", category)
        if category == "no_call":
            return self._draft_no_call(rng, tools)
        if category in ("single_call", "multi_call"):
            try:
                return self._draft_calls(category, rng, tools)
            except ArgumentError as exc:
                return Rejection("fc_args_unsampleable", str(exc), category)
        return Rejection("unknown_category", f"no function-calling pattern {category!r}", category)

    def _anchors(self, category: str, rng: random.Random, tool: str | None, k: int = 2) -> list[FlockRecord]:
        pool = self.by_category.get(category, [])
        if tool is not None:
            with_tool = [r for r in pool if any(t["name"] == tool for t in r.tool_list())]
            pool = with_tool or pool
        return rng.sample(pool, min(k, len(pool)))

    def _system(self, anchors: Sequence[FlockRecord], category: str, rng: random.Random) -> str | None:
        pool = anchors or self.by_category.get(category) or self.seeds
        return rng.choice(pool).system

    def _offered(self, tools: Sequence[str], rng: random.Random, distractor_p: float) -> list[dict[str, Any]]:
        offered = [self.catalog.tools[t] for t in tools]
        others = [t for t in self.catalog.tools if t not in tools]
        if others and rng.random() < distractor_p:
            offered.insert(rng.randint(0, len(offered)), self.catalog.tools[rng.choice(sorted(others))])
        return offered

    def _draft_calls(self, category: str, rng: random.Random, tools: list[str]) -> Draft:
        tool = rng.choice(tools)
        names = [tool]
        if category == "multi_call" and len(tools) > 1 and rng.random() < 0.3:
            names.append(rng.choice([t for t in tools if t != tool]))
        count = 1 if category == "single_call" else max(len(names), rng.choice((2, 2, 3)))
        exchanges: list[dict[str, Any]] = []
        for index in range(count):
            name = names[min(index, len(names) - 1)]
            previous = next((e for e in reversed(exchanges) if e["tool"] == name), None)
            try:
                arguments = self.catalog.sample_arguments(
                    name, rng, base=previous["arguments"] if previous else None, changes=rng.choice((1, 1, 2)))
            except ArgumentError:
                others = [t for t in tools if t not in names]
                if previous is None or not others:
                    raise
                # No second set of values for this tool: follow up with another tool instead.
                name = rng.choice(others)
                names.append(name)
                arguments = self.catalog.sample_arguments(name, rng)
            observation = self.catalog.observation(name, arguments, rng)
            schema = self.catalog.tools[name]
            exchanges.append({
                "tool": name, "arguments": arguments, "observation": observation,
                "fallback_user": render_request(schema, arguments, rng),
                "fallback_assistant": render_answer(observation, rng),
            })
        preamble = render_ask_details(self.catalog.tools[tool], rng) if rng.random() < 0.3 else None
        anchors = self._anchors(category, rng, tool)
        examples = [e for e in (self._example(r) for r in anchors) if e]
        prompt = self.prompts["turns"]
        text = prompt.render(
            tool_name=tool if len(names) == 1 else " and ".join(names),
            tool_description="; ".join(self.catalog.tools[n].get("description", "") for n in names),
            exchanges=[{"details": self._details(e["arguments"]), "result": e["observation"]} for e in exchanges],
            examples=examples,
        )
        state = {"mode": category, "system": self._system(anchors, category, rng),
                 "tools": self._offered(names, rng, 0.25), "exchanges": exchanges, "preamble": preamble}
        return Draft(category=category, messages=[{"role": "user", "content": text}], prompt_id=prompt.id,
                     prompt_hash=text_hash(prompt.file_hash + text), seed_ids=[r.record_id for r in anchors],
                     state=state)

    def _draft_no_call(self, rng: random.Random, tools: list[str]) -> Draft:
        tool = rng.choice(tools)
        schema = self.catalog.tools[tool]
        mode = rng.choice(("ask_details", "decline"))
        fallback = render_ask_details(schema, rng) if mode == "ask_details" else render_decline(schema, rng)
        anchors = self._anchors("no_call", rng, tool)
        prompt = self.prompts["no_call"]
        required = (schema.get("parameters") or {}).get("required") or []
        text = prompt.render(tool_name=tool, tool_description=schema.get("description", ""), mode=mode,
                             required=", ".join(humanize(r) for r in required) or "the details",
                             examples=[self._plain_example(r) for r in anchors])
        state = {"mode": mode, "system": self._system(anchors, "no_call", rng), "tool": tool,
                 "tools": self._offered([tool], rng, 0.2), "fallback": list(fallback)}
        return Draft(category="no_call", messages=[{"role": "user", "content": text}], prompt_id=prompt.id,
                     prompt_hash=text_hash(prompt.file_hash + text), seed_ids=[r.record_id for r in anchors],
                     state=state)

    def _draft_no_tools(self, rng: random.Random) -> Draft:
        anchors = self._anchors("no_tools", rng, None, k=3)
        topic = rng.choice(TOPICS)
        prompt = self.prompts["no_tools"]
        text = prompt.render(topic=topic, examples=[self._plain_example(r) for r in anchors])
        tools = anchors[0].tools if anchors else None
        state = {"mode": "no_tools", "topic": topic, "system": self._system(anchors, "no_tools", rng),
                 "tools_field": tools}
        return Draft(category="no_tools", messages=[{"role": "user", "content": text}], prompt_id=prompt.id,
                     prompt_hash=text_hash(prompt.file_hash + text), seed_ids=[r.record_id for r in anchors],
                     state=state)

    @staticmethod
    def _details(arguments: dict[str, Any]) -> str:
        return "; ".join(f"{k}: {format_value(v)}" for k, v in arguments.items())

    def _example(self, record: FlockRecord) -> str:
        """A seed conversation in the prompt's own format: exchange lines, then the labeled turns."""
        lines: list[str] = []
        labeled: list[str] = []
        turns = record.conversations
        user: str | None = None
        call: dict[str, Any] | None = None
        observation = ""
        for index, turn in enumerate(turns):
            if turn.role == "user":
                user, call = turn.content, None
            elif turn.role == "function_call" and call is None:
                calls = parse_function_call(turn.content)
                call = calls[0]
                observation = turns[index + 1].content if index + 1 < len(turns) else ""
            elif turn.role == "assistant" and user is not None and call is not None:
                n = len(labeled) // 2 + 1
                raw = call.get("arguments")
                arguments = raw if isinstance(raw, dict) else {}
                lines.append(f"Exchange {n}: details: {self._details(arguments)}; tool result: {observation}")
                labeled += [f"USER {n}: {user}", f"ASSISTANT {n}: {turn.content}"]
                user, call = None, None
        return "\n".join(lines + labeled)

    @staticmethod
    def _plain_example(record: FlockRecord) -> str:
        user = record.first_user_text()
        answer = next((t.content for t in record.conversations if t.role == "assistant"), "")
        return f"USER 1: {user}\nASSISTANT 1: {answer}"

    # ----- completing --------------------------------------------------------------------------------------
    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        parsed = parse_labeled_turns(model_text or "")
        users = [text for role, text in parsed if role == "user"]
        assistants = [text for role, text in parsed if role == "assistant"]
        mode = draft.state["mode"]
        if mode == "no_tools":
            return self._complete_no_tools(draft, users, assistants)
        if mode in ("ask_details", "decline"):
            return self._complete_no_call(draft, users, assistants)
        return self._complete_calls(draft, users, assistants)

    def _candidate(self, draft: Draft, turns: list[Turn], tools: str | None, writers: dict[str, str],
                   extras: dict[str, Any]) -> Candidate:
        kinds = {w.split(":")[0] for w in writers.values()}
        writer = "llm" if kinds == {"llm"} else "fallback" if "llm" not in kinds else "mixed"
        record = FlockRecord(system=draft.state.get("system"), conversations=turns, tools=tools)
        provenance = {"strategy": self.name, "writer": writer, "prompt_id": draft.prompt_id,
                      "prompt_hash": draft.prompt_hash, "seed_ids": draft.seed_ids, "turn_writers": writers,
                      **extras}
        return Candidate(record=record, category=draft.category, provenance=provenance)

    def _complete_calls(self, draft: Draft, users: list[str], assistants: list[str]) -> Candidate:
        turns: list[Turn] = []
        writers: dict[str, str] = {}
        preamble = draft.state.get("preamble")
        if preamble:
            turns += [Turn(role="user", content=preamble[0]), Turn(role="assistant", content=preamble[1])]
            writers["preamble"] = "fallback:template"
        for index, exchange in enumerate(draft.state["exchanges"]):
            user = users[index] if index < len(users) else ""
            problem = request_problem(user, exchange["arguments"]) if user else "missing"
            writers[f"user_{index + 1}"] = "llm" if problem is None else f"fallback:{problem}"
            answer = assistants[index] if index < len(assistants) else ""
            answer_issue = answer_problem(answer, exchange["observation"]) if answer else "missing"
            writers[f"assistant_{index + 1}"] = "llm" if answer_issue is None else f"fallback:{answer_issue}"
            call = {"name": exchange["tool"], "arguments": exchange["arguments"]}
            turns += [
                Turn(role="user", content=user if problem is None else exchange["fallback_user"]),
                Turn(role="function_call", content=json.dumps(call, ensure_ascii=False)),
                Turn(role="observation", content=exchange["observation"]),
                Turn(role="assistant", content=answer if answer_issue is None else exchange["fallback_assistant"]),
            ]
        tools = json.dumps(draft.state["tools"], ensure_ascii=False)
        extras = {"tools_called": [e["tool"] for e in draft.state["exchanges"]]}
        return self._candidate(draft, turns, tools, writers, extras)

    def _complete_no_call(self, draft: Draft, users: list[str], assistants: list[str]) -> Candidate:
        mode = draft.state["mode"]
        schema = self.catalog.tools[draft.state["tool"]]
        user, answer = (users[0] if users else ""), (assistants[0] if assistants else "")
        user_issue = generic_problem(user) if user else "missing"
        if user_issue is None:
            values = [v for args in self.catalog.calls.get(draft.state["tool"], []) for v in scalar_leaves(args)]
            if mode == "ask_details" and any(isinstance(v, str) and len(v) > 3 and mentions(user, v) for v in values):
                user_issue = "already gives details"
        answer_issue = generic_problem(answer) if answer else "missing"
        if answer_issue is None:
            if mode == "ask_details":
                required = (schema.get("parameters") or {}).get("required") or []
                words = {w for p in required for w in humanize(p).lower().split() if len(w) > 2}
                if "?" not in answer or (words and not any(w in answer.lower() for w in words)):
                    answer_issue = "does not ask for the missing details"
            elif not re.search(r"\b(sorry|can't|cannot|can not|unable|not able|don't have)\b", answer, re.I):
                answer_issue = "does not decline"
        fallback_user, fallback_answer = draft.state["fallback"]
        writers = {"user_1": "llm" if user_issue is None else f"fallback:{user_issue}",
                   "assistant_1": "llm" if answer_issue is None else f"fallback:{answer_issue}"}
        turns = [Turn(role="user", content=user if user_issue is None else fallback_user),
                 Turn(role="assistant", content=answer if answer_issue is None else fallback_answer)]
        tools = json.dumps(draft.state["tools"], ensure_ascii=False)
        return self._candidate(draft, turns, tools, writers, {"no_call_mode": mode})

    def _complete_no_tools(self, draft: Draft, users: list[str], assistants: list[str]) -> Candidate | Rejection:
        if not users or not assistants:
            return Rejection("writer_failed", "the model wrote no USER/ASSISTANT pair", "no_tools",
                             {"writer": "llm"})
        user, answer = users[0], assistants[0]
        for label, text in (("question", user), ("answer", answer)):
            problem = generic_problem(text)
            if problem:
                return Rejection("writer_failed", f"{label}: {problem}", "no_tools", {"writer": "llm"})
        turns = [Turn(role="user", content=user), Turn(role="assistant", content=answer)]
        return self._candidate(draft, turns, draft.state.get("tools_field"), {"user_1": "llm", "assistant_1": "llm"},
                               {"topic": draft.state["topic"]})
