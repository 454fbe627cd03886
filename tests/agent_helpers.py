"""Shared pieces of the agent tests: a small task folder cut from the demo task, run configurations on the tiny
model, and a scripted chat model that replays fixed answers (and fails loudly when it runs out)."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tracers.context import register_configure_hook
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from pydantic import Field

from agent.config import RunConfig, build_config
from tools.data import FlockRecord, load_jsonl, write_jsonl
from tools.tasks.text2sql import categorize_sql

DEMO = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "text2sql"
DEMO_FC = DEMO.parent / "function_calling"
SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def mini_task_dir(root: Path, per_category: int = 6, validation_per_category: int = 2, *, source: Path = DEMO,
                  categorize: Callable[[FlockRecord], str] | None = None, name: str = "mini_task") -> Path:
    """A task folder with a few records per category from a bundled demo task (same task.json), small enough for
    tiny-model runs. ``categorize`` defaults to the text-to-SQL category of the last assistant turn."""
    categorize = categorize or (lambda record: categorize_sql(record.assistant_texts()[-1])[0])
    folder = root / name
    if (folder / "task.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, count in (("training_set.jsonl", per_category), ("validation_set.jsonl", validation_per_category)):
        by_category: dict[str, list[Any]] = defaultdict(list)
        for record in load_jsonl(source / file_name).records:
            category = categorize(record)
            if len(by_category[category]) < count:
                by_category[category].append(record)
        write_jsonl([r for c in sorted(by_category) for r in by_category[c]], folder / file_name)
    shutil.copy(source / "task.json", folder / "task.json")
    return folder


def build_tiny_model(folder: Path, tokenizer: Any) -> Path:
    """A tiny random LlamaForCausalLM with SmolLM2's vocabulary and tokenizer, saved as an HF folder. Seeded, so
    every session builds the same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_config(tmp_path: Path, task_dir: Path, weights: Path, *, planner: str = "policy",
                overrides: dict[str, Any] | None = None) -> RunConfig:
    """A run on the mini task with the tiny random model standing for SmolLM2 (same tokenizer and template)."""
    settings: dict[str, Any] = {
        "task": {"kind": "dir", "task_dir": str(task_dir)},
        "base_model": SMOL,
        "base_model_weights": str(weights),
        "generator": {"backend": "none", "batch_size": 8},
        # The scripted model stands in for the endpoint; the URL only satisfies the configuration check.
        "planner": {"kind": planner, **({"base_url": "http://127.0.0.1:9/v1"} if planner == "llm" else {})},
        "budget": {"max_iterations": 2, "max_synthetic_examples": 16, "no_gain_patience": 5,
                   "max_wall_seconds": 3600},
        "train": {"epochs": 1, "lora_rank": 4, "lora_alpha": 8, "batch_tokens": 2048},
        "eval": {"task_metric": False, "dev_fraction": 0.15, "test_fraction": 0.15},
        "runs_dir": str(tmp_path / "runs"),
    }
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            settings.setdefault(key, {}).update(value)
        else:
            settings[key] = value
    return build_config(None, settings)


#: A scripted LLM planner that shows every decision source: an answer with no JSON and one with an unknown
#: category (the policy overrides), one over the budget then a valid one (a retry), then two accepted answers.
#: tests/test_graph.py runs it; tests/recordings/retry-override-tiny is its recording.
RETRY_OVERRIDE_SCRIPT: list[Any] = [
    "I think we should generate more joins",  # no JSON at all
    {"action": "generate", "targets": {"joins": 5}, "train_overrides": None, "rationale": "typo"},  # unknown
    # (the policy decides: generate) then:
    {"action": "generate", "targets": {"join": 500}, "train_overrides": None, "rationale": "lots"},  # budget
    {"action": "train", "targets": {}, "train_overrides": None, "rationale": "ok, train"},  # retry succeeds
    {"action": "submit", "targets": {}, "train_overrides": None, "rationale": "submit"},
    {"action": "stop", "targets": {}, "train_overrides": None, "rationale": "done"},
]
#: The budget of that scenario.
RETRY_OVERRIDE_BUDGET = {"budget": {"max_iterations": 1, "max_synthetic_examples": 8}}


class ScriptedChatModel(BaseChatModel):
    """Answers with the given messages in order; a string becomes text, a dict becomes a ``decide`` tool call.
    Running out is an error, so a test cannot pass by accident on a cycled answer."""

    script: list[Any]
    position: int = 0
    prompts: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        if self.position >= len(self.script):
            raise AssertionError(f"scripted model ran out after {len(self.script)} answers")
        answer = self.script[self.position]
        self.position += 1
        self.prompts.append(str(messages[-1].content))
        if isinstance(answer, dict):
            call = {"name": "decide", "args": answer, "id": f"call{self.position}"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content=str(answer))
        return ChatResult(generations=[ChatGeneration(message=message)])


def read_state(runs_dir: Path, run_id: str) -> dict[str, Any]:
    from memory.checkpoint import load_state
    from memory.runs import RunStore

    return load_state(RunStore(runs_dir).paths(run_id))


def dataset_hashes(state: dict[str, Any]) -> list[str]:
    return [d["version"] for d in state.get("datasets", [])]


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# A run collector attached to every LangChain run the way LangSmith's tracer is when LANGSMITH_TRACING is on: an
# inheritable configure hook (langchain_core.tracers.context), so nested runs reach it through their parents.
_run_collector: ContextVar[RunCollectorCallbackHandler | None] = ContextVar("synthgen_test_run_collector",
                                                                            default=None)
register_configure_hook(_run_collector, inheritable=True)


@contextmanager
def collected_runs() -> Iterator[RunCollectorCallbackHandler]:
    """Every LangChain run started inside, as LangSmith would receive it (no network)."""
    collector = RunCollectorCallbackHandler()
    token = _run_collector.set(collector)
    try:
        yield collector
    finally:
        _run_collector.reset(token)


#: What the scripted planner of :func:`traced_function_calling_run` answers, in order.
SCRIPTED_FC_DECISIONS = [
    # "..." is the placeholder a small planner copies from the answer shape: the report marks it.
    {"action": "generate", "targets": {"no_tools": 4, "single_call": 4}, "train_overrides": None, "rationale": "..."},
    {"action": "train", "targets": {}, "train_overrides": None, "rationale": "train on the new rows"},
    {"action": "submit", "targets": {}, "train_overrides": None, "rationale": "it beats the base model"},
    {"action": "stop", "targets": {}, "train_overrides": None, "rationale": "submitted"},
]


def traced_function_calling_run(root: Path, weights: Path) -> tuple[Any, list[Any]]:
    """A finished one-round run on a function-calling task cut from the bundled demo-fc task, planned by a scripted
    LLM planner (:data:`SCRIPTED_FC_DECISIONS`), with the tiny model as student and generator and the task metric
    on: its :class:`agent.runner.RunOutcome` and the LangChain runs it traced."""
    from agent.planner import LLMPlanner
    from agent.runner import Runner
    from memory.runs import RunStore
    from tools.tasks.function_calling import FunctionCallingPlugin

    plugin = FunctionCallingPlugin()
    task_dir = mini_task_dir(root, 4, 1, source=DEMO_FC, categorize=lambda r: plugin.categorize(r).primary,
                             name="mini_fc_task")
    config = tiny_config(root, task_dir, weights, planner="llm", overrides={
        # The tiny model as generator never writes a usable plain-chat answer, so no_tools rows are rejected
        # (writer_failed) while single_call rows pass through the fallback writer.
        "generator": {"backend": "local", "model": str(weights), "batch_size": 4, "max_new_tokens": 16},
        "budget": {"max_iterations": 1, "max_synthetic_examples": 8, "max_generation_tokens": 300},
        "eval": {"task_metric": True, "max_new_tokens": 16}})
    model = ScriptedChatModel(script=SCRIPTED_FC_DECISIONS)
    runner = Runner(RunStore(config.runs_dir), planner_factory=lambda c: LLMPlanner(model, name="scripted"))
    with collected_runs() as collector:
        outcome = runner.start(config, run_id="traced-fc")
    return outcome, list(collector.traced_runs)
