"""Planners: they turn a compact summary of the run into a proposed :class:`Decision`.

- :class:`LLMPlanner` drives any LangChain chat model with tool calling (an OpenAI-compatible endpoint through
  langchain-openai, a Hugging Face endpoint through langchain-huggingface); models without tool calling are asked
  for a JSON answer instead.
- :class:`LocalPlanner` runs a transformers model with JSON-schema-constrained decoding (xgrammar), so even
  SmolLM2-135M always writes a schema-valid decision.
- The deterministic policy (agent/policy.py) is the fallback.

A planner only proposes raw text; :func:`parse_decision` and the guardrail decide what it is worth.
:func:`build_planner` makes the planner a run is configured with.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any, Protocol

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from agent.config import RunConfig
from agent.data_value import recommended_mix
from agent.policy import (
    EPOCH_BOUNDS,
    LR_BOUNDS,
    ORIGINAL_EPOCH_BOUNDS,
    RANK_CHOICES,
    SYNTHETIC_WEIGHT_BOUNDS,
    PlanView,
    check_decision,
    examples_per_round,
    generation_plan,
)
from agent.state import Action, Decision, override_values
from memory.lessons import lessons_for
from prompts import load_prompt, text_hash
from tools.models import load_causal_lm, load_tokenizer

PLANNER_PROMPT_ID = "plan"
ACTIONS: tuple[Action, ...] = ("generate", "train", "evaluate", "refit", "submit", "stop")
RATIONALE_MAX_CHARS = 200


class Planner(Protocol):
    """Anything that answers a planning prompt with raw text (ideally a Decision as JSON)."""

    name: str

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str: ...


def allowed_actions(view: PlanView) -> list[Action]:
    """Actions the guardrail would accept now, each tried with a representative decision."""
    allowed: list[Action] = []
    for action in ACTIONS:
        decision = Decision(action=action)
        if action == "generate":
            plan = generation_plan(view, examples_per_round(view))
            decision = Decision(action=action, targets=plan.targets, strategies=plan.strategies)
        elif action == "train":
            decision = Decision(action=action, train_overrides=recommended_mix(view))
        if check_decision(decision, view) is None:
            allowed.append(action)
    return allowed


def decision_schema(categories: Sequence[str], actions: Sequence[str], strategies: Sequence[str] = (),
                    max_target: int = 500) -> dict[str, Any]:
    """JSON schema of a Decision for this task: the action, target and strategy keys are enumerated so a
    constrained decoder cannot invent them; training overrides are offered only when training is allowed."""
    overrides: dict[str, Any] = {"type": "null"}
    if "train" in actions:
        overrides = {"anyOf": [{"type": "null"}, {
            "type": "object",
            "properties": {
                "synthetic_weight": {"type": "number", "minimum": SYNTHETIC_WEIGHT_BOUNDS[0],
                                     "maximum": SYNTHETIC_WEIGHT_BOUNDS[1]},
                "original_epochs": {"type": "integer", "minimum": ORIGINAL_EPOCH_BOUNDS[0],
                                    "maximum": ORIGINAL_EPOCH_BOUNDS[1]},
                "learning_rate": {"type": "number", "minimum": LR_BOUNDS[0], "maximum": LR_BOUNDS[1]},
                "epochs": {"type": "integer", "minimum": EPOCH_BOUNDS[0], "maximum": EPOCH_BOUNDS[1]},
                "lora_r": {"type": "integer", "enum": list(RANK_CHOICES)},
            },
            "additionalProperties": False,
        }]}
    properties: dict[str, Any] = {
        "action": {"type": "string", "enum": list(actions)},
        "targets": {
            "type": "object",
            "properties": {c: {"type": "integer", "minimum": 1, "maximum": max_target} for c in categories},
            "additionalProperties": False,
        },
        "train_overrides": overrides,
        "rationale": {"type": "string", "maxLength": RATIONALE_MAX_CHARS},
    }
    if strategies:
        properties["strategies"] = {"type": "object",
                                    "properties": {c: {"type": "string", "enum": list(strategies)} for c in categories},
                                    "additionalProperties": False}
    return {"type": "object", "properties": properties,
            "required": ["action", "targets", "train_overrides", "rationale"], "additionalProperties": False}


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)


def _untrusted(text: str, limit: int = 300) -> str:
    """Task text is untrusted: cut it short and drop markup that could close the data block. It reaches the
    prompt only inside JSON strings (the callers serialise it), never as free text."""
    cleaned = re.sub(r"</?\s*data\s*>", "", text, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", cleaned).strip()[:limit]


def _data_value_evidence(view: PlanView, rounds: int = 2) -> dict[str, Any]:
    """The last rounds' DataValues, compact: overall gain and per category/strategy (rows) gain."""
    evidence: dict[str, Any] = {}
    for value in view.data_values[-rounds:]:
        entry: dict[str, Any] = {"overall": round(value.gain, 4)}
        entry.update({f"{a.category}/{a.strategy} ({a.rows} rows)": round(a.gain, 4) for a in value.arms})
        evidence[f"round {value.iteration} ({value.method} vs {value.reference})"] = entry
    return evidence


def render_planner_prompt(view: PlanView, last_error: str | None) -> tuple[str, str]:
    """The planner prompt for this state and its hash. Every number is rounded so the prompt stays short."""
    prompt = load_prompt(PLANNER_PROMPT_ID)

    def round_scores(summary: Any) -> dict[str, Any]:
        return {"bpc": round(summary.bpc, 4),
                **{c: round(s.bpc, 4) for c, s in sorted(summary.per_category.items())},
                **({summary.task_metric_name: round(summary.task_metric, 3)} if summary.task_metric is not None
                   and summary.task_metric_name else {})}

    history = {e.adapter_id: round_scores(e) for e in view.evaluations}
    left = {k: (round(v) if k != "wall_seconds" else f"{v / 60:.1f} min") for k, v in view.remaining().items()}
    data_counts = {c: f"{view.dataset.original_per_category.get(c, 0)}+{view.dataset.synthetic_per_category.get(c, 0)}"
                   for c in view.task.categories}
    mix = override_values(recommended_mix(view))
    data_mix = {"synthetic_weight": mix.get("synthetic_weight", view.learning.synthetic_weight),
                "original_epochs": view.learning.original_epochs, "refit_before_submit": view.learning.refit}
    evidence = _data_value_evidence(view)
    text = prompt.render(
        task=_compact({"title": _untrusted(view.task.title, 120), "type": view.task.task_type,
                       "base_model": view.task.base_model,
                       "description": _untrusted(view.task.description_excerpt)}),
        categories=_compact(view.task.categories),
        iteration=view.iteration,
        budget_left=_compact(left),
        baseline=_compact(round_scores(view.baseline)),
        history=_compact(history) if history else "none yet",
        datasets=_compact(data_counts),
        acceptance=_compact({k: round(v, 2) for k, v in view.dataset.acceptance.items()}) or "none yet",
        strategies=_compact(view.task.strategies) if view.task.strategies else "the task's default only",
        data_value=_compact(evidence) if evidence else "not measured yet",
        data_mix=_compact(data_mix),
        memory=_compact([_untrusted(line, 200) for line in lessons_for(view.memory, 5)]) if view.memory else "none",
        last_error=last_error or "",
        actions_allowed=", ".join(allowed_actions(view)) or "stop",
    )
    return text, text_hash(f"{prompt.file_hash}:{text}")


def recorded_call_inputs(planner_name: str, prompt_hash: str) -> dict[str, str]:
    """What a recorded planner call is keyed by. The prompt file's own hash lets a replay that differs name the
    prompt file that changed."""
    return {"prompt_id": PLANNER_PROMPT_ID, "prompt_file_hash": load_prompt(PLANNER_PROMPT_ID).file_hash,
            "prompt_hash": prompt_hash, "planner": planner_name}


def parse_decision(raw: str) -> tuple[Decision | None, str | None]:
    """A Decision from a planner's raw text: the first JSON object in it, validated. Returns (decision, error)."""
    start = raw.find("{")
    if start < 0:
        return None, "the answer holds no JSON object"
    try:
        obj, _ = json.JSONDecoder().raw_decode(raw[start:])
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON: {exc.msg} at char {exc.pos}"
    if isinstance(obj, dict) and isinstance(obj.get("rationale"), str):
        obj["rationale"] = obj["rationale"][:600]
    if isinstance(obj, dict):
        # Only generate has targets and strategies, only train has overrides; small models copy the last ones into
        # every answer the schema asks them for.
        if obj.get("action") != "generate":
            for key in ("targets", "strategies"):
                if isinstance(obj.get(key), dict):
                    obj[key] = {}
        if obj.get("action") != "train" and isinstance(obj.get("train_overrides"), dict):
            obj["train_overrides"] = None
    try:
        return Decision.model_validate(obj), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "decision"
        return None, f"{where}: {first['msg']}"


class LLMPlanner:
    """A LangChain chat model as planner: tool calling when the model has it, a JSON answer otherwise."""

    def __init__(self, chat_model: Any, name: str | None = None):
        self.chat_model = chat_model
        self.name = name or getattr(chat_model, "model_name", None) or type(chat_model).__name__

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
        lc_messages = [SystemMessage(m["content"]) if m["role"] == "system" else HumanMessage(m["content"])
                       for m in messages]
        tool = {"type": "function",
                "function": {"name": "decide", "description": "Record the next action of the agent.",
                             "parameters": schema}}
        try:
            runnable = self.chat_model.bind_tools([tool], tool_choice="decide")
        except (NotImplementedError, AttributeError, TypeError):
            runnable = self.chat_model
        reply = runnable.invoke(lc_messages)
        if isinstance(reply, AIMessage) and reply.tool_calls:
            return json.dumps(reply.tool_calls[0]["args"], ensure_ascii=False)
        content = reply.content if isinstance(reply, AIMessage) else reply
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


class LocalPlanner:
    """A local transformers model whose output is constrained to the decision's JSON schema by xgrammar."""

    def __init__(self, model_spec: str, max_new_tokens: int = 256):
        self.model_spec = model_spec
        self.name = model_spec
        self.max_new_tokens = max_new_tokens
        self._model: Any = None
        self._tokenizer: Any = None
        self._compiler: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        # xgrammar loads torch: imported when a local planner first runs, not when the CLI starts.
        import xgrammar as xgr

        self._tokenizer = load_tokenizer(self.model_spec)
        self._model = load_causal_lm(self.model_spec)
        self._model.eval()
        info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._model.config.vocab_size)
        self._compiler = xgr.GrammarCompiler(info)

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
        import torch  # loaded by _load already; named here for inference_mode
        from xgrammar.contrib.hf import LogitsProcessor

        self._load()
        grammar = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        inputs = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)
        with torch.inference_mode():
            output = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          logits_processor=[LogitsProcessor(grammar)],
                                          pad_token_id=self._tokenizer.pad_token_id)
        text: str = self._tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return text


def build_planner(config: RunConfig) -> Planner | None:
    """The configured planner; None for the policy (it needs no model)."""
    if config.planner.kind == "policy":
        return None
    if config.planner.kind == "local":
        return LocalPlanner(config.planner.model)
    settings = config.planner
    api_key = os.environ.get(settings.api_key_env)
    chat_model: Any
    # Each LangChain integration takes seconds to import and a run uses one: imported when chosen.
    if settings.provider == "openai":
        from langchain_openai import ChatOpenAI

        chat_model = ChatOpenAI(model=settings.model, base_url=settings.base_url, api_key=api_key or "not-needed",
                                temperature=0, timeout=120, max_retries=3)
    else:
        from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

        endpoint = HuggingFaceEndpoint(  # type: ignore[call-arg]
            endpoint_url=settings.base_url, repo_id=None if settings.base_url else settings.model,
            huggingfacehub_api_token=api_key, temperature=0.01, max_new_tokens=512)
        chat_model = ChatHuggingFace(llm=endpoint)
    return LLMPlanner(chat_model, name=settings.model)
