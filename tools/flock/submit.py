"""The submit step (FLOCK_API.md section 7): check the base model against the task, publish the adapter, submit it
once. It joins the FedLedger client and the submission ledger with a publisher (tools/publish.py), which knows
nothing of FLock's API, so the simulator can use the publisher without reaching back into the client side."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tools.flock.client import FedLedgerClient
from tools.flock.errors import BaseModelRejectedError
from tools.flock.ledger import SubmissionLedger, SubmissionReceipt, submit_once
from tools.flock.schemas import FlockTask
from tools.publish import ADAPTER_CONFIG, Publisher, PublishError, read_adapter_config


class BaseModelCheck(BaseModel):
    """A base model accepted for a task: its FLock template name (submitted as ``base_model``) and size."""

    model_config = ConfigDict(frozen=True)

    hub_id: str
    template: str
    params: int
    accepted_by_flock_validators: bool
    """In FLock's validators' ``SUPPORTED_BASE_MODELS``: only then do real validators score its adapters."""


def check_base_model(task: FlockTask, hub_id: str, *, real_validators: bool = False) -> BaseModelCheck:
    """Refuse a base model the task would score 999.0 or fail, before any training is spent on it.

    Checks that FLock has a template for it, that its parameter count is within ``data.max_params`` (the
    validator's rule, FLOCK_API.md 9.2 step 6), when the task lists supported models that it is one, and with
    ``real_validators`` (a live task) that it is in FLock's validators' supported list (10.2): they mark any
    other adapter failed. The simulator scores such a base all the same, and says it is not accepted.
    """
    from tools.models import BASE_MODELS, accepted_by_flock_validators, param_count, template_for

    try:
        template = template_for(hub_id)
        params = param_count(hub_id)
    except KeyError:
        raise BaseModelRejectedError(
            f"base model {hub_id!r} has no FLock template; known models: {', '.join(sorted(BASE_MODELS))}"
        ) from None
    limit = task.data.max_params
    if limit is not None and params > limit:
        fitting = sorted(h for h, info in BASE_MODELS.items() if info.params <= limit)
        raise BaseModelRejectedError(
            f"base model {hub_id!r} has {params:,} parameters, over task {task.id}'s data.max_params {limit:,}; "
            f"models within the limit: {', '.join(fitting) or 'none known'}")
    supported = task.data.supported_base_models
    if supported and hub_id not in supported:
        raise BaseModelRejectedError(
            f"base model {hub_id!r} is not among task {task.id}'s supported base models: {', '.join(supported)}")
    accepted = accepted_by_flock_validators(hub_id)
    if real_validators and not accepted:
        examples = [h for h, info in BASE_MODELS.items() if info.flock_whitelisted and h.endswith("-Instruct")
                    and (limit is None or info.params <= limit)][:3]
        raise BaseModelRejectedError(
            f"base model {hub_id!r} is not in FLock's validators' supported list, so real validators would mark "
            f"every submission failed; use one that is (e.g. {', '.join(examples) or 'none within max_params'}), "
            "or base_model 'auto' to pick one for this task and machine")
    return BaseModelCheck(hub_id=hub_id, template=template, params=params, accepted_by_flock_validators=accepted)


def publish_and_submit(client: FedLedgerClient, ledger: SubmissionLedger, publisher: Publisher, task: FlockTask,
                       adapter_dir: str | os.PathLike[str], hub_id: str, repo_id: str, *,
                       gpu_type: str | None = None, real_validators: bool = False) -> SubmissionReceipt:
    """The submit step: check the base model, publish the adapter, submit it once (FLOCK_API.md section 7).

    ``base_model`` is submitted as FLock's template name for ``hub_id``; the adapter must name ``hub_id`` in its
    ``adapter_config.json``, since that is what validators load. ``real_validators``: the task is scored by
    FLock's validators (a live task), so a base model outside their supported list is refused.
    """
    check = check_base_model(task, hub_id, real_validators=real_validators)
    named = read_adapter_config(adapter_dir, require_hub_id=False)["base_model_name_or_path"]
    if named != hub_id:
        raise PublishError(f"{Path(adapter_dir) / ADAPTER_CONFIG}: field base_model_name_or_path is {named!r}, "
                           f"but the submission is for {hub_id!r}")
    published = publisher.publish(adapter_dir, repo_id)
    return submit_once(client, ledger, task.id, published.repo_id, check.template, gpu_type or detect_gpu_type(),
                       published.revision)


def detect_gpu_type() -> str:
    """What FLock's reference node submits as ``gpu_type``: the CUDA device name (or "CPU")."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception as exc:  # as QS does: report the failure, do not crash the submit
        return f"Error retrieving GPU type: {exc}"
    return "CPU"


__all__ = ["BaseModelCheck", "check_base_model", "detect_gpu_type", "publish_and_submit"]
