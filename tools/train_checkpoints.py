"""Files a training run writes: resumable checkpoints (atomic) and the adapter FLock takes.

A checkpoint (``<output_dir>/.checkpoints/step-NNNNNNN``) holds the trainable LoRA weights, the optimizer and
scheduler states and the random generators; ``latest.json`` points to the newest complete one, so a run killed
mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.fileio import atomic_write_text

if TYPE_CHECKING:
    import torch

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".step-", dir=root))
    save_file(_trainable_state(model), str(staging / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, staging / "optimizer.pt")
    (staging / "state.json").write_text(json.dumps(state))
    final = root / f"step-{state['step']:07d}"
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    atomic_write_text(root / "latest.json", json.dumps({"dir": final.name}))
    for old in root.iterdir():  # older checkpoints and staging left by a killed run
        if old.is_dir() and old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(root: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
    import torch
    from safetensors.torch import load_file

    pointer = root / "latest.json"
    if not pointer.is_file():
        return None
    folder = root / json.loads(pointer.read_text())["dir"]
    weights = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)
    extra = torch.load(folder / "optimizer.pt", weights_only=True)  # tensors and plain values only: no code
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    random.setstate(extra["python_rng"])
    state: dict[str, Any] = json.loads((folder / "state.json").read_text())
    return state



def save_adapter(model: Any, out: Path, hub_id: str) -> None:
    """Write the adapter files FLock takes, atomically, naming the Hub id as the base model."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out))
    try:
        model.save_pretrained(str(staging))
        config_path = staging / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = hub_id
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
        for name in ADAPTER_FILES:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["ADAPTER_FILES", "load_checkpoint", "save_adapter", "save_checkpoint"]
