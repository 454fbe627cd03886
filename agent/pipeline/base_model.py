"""The model cache: the base model and its tokenizer, loaded once per run and shared by evaluation and generation.
Adapters are applied unmerged for one use and removed after it, leaving the base unchanged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from agent import progress
from agent.config import RunConfig
from tools.models import load_causal_lm, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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
