"""``synthgen flock-sim``: run the local FLock simulator (``serve``) and put adapters into its store (``publish``)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import console, fail
from tools.flock.simulator.store import SimulatorConfig
from tools.flock.simulator.tasks import DEMO_TASK_DIR, TaskFolderError

app = typer.Typer(name="flock-sim", help="A local FLock FedLedger simulator with real validator scoring.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

PublisherRoot = Annotated[Path | None, typer.Option(
    metavar="DIR", help="Local adapter store the validator reads (default: 'publisher' next to --state)")]
State = Annotated[Path | None, typer.Option(metavar="FILE", help="SQLite state file, kept across restarts (default: "
                                                                 "a temporary one)")]


@app.callback()
def _group() -> None:
    """A local FLock FedLedger simulator with real validator scoring."""


def _publisher_root(publisher_root: Path | None, state: Path | None) -> Path | None:
    return state.parent / "publisher" if publisher_root is None and state is not None else publisher_root


@app.command()
def serve(
    task_dir: Annotated[list[Path] | None, typer.Option(
        "--task-dir", help="Task folder (task.json + its JSONL files, see above); repeat for several. Default: the "
                           "bundled demo task"
    )] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one)")] = 0,
    state: State = None,
    publisher_root: PublisherRoot = None,
    validate_every: Annotated[float, typer.Option(
        help="Seconds between the built-in validator's rounds; 0: no built-in validator, every submission waits "
             "for an outside validator")] = 10.0,
    validations: Annotated[int, typer.Option(
        min=1, help="Validator results that make a submission's score (2: the built-in and an outside validator both "
             "score each submission)")] = 1,
    assignment_interval: Annotated[float, typer.Option(
        help="Minimum seconds between one validator's assignments (FLock: 180)")] = 180.0,
    link_ttl: Annotated[float, typer.Option(help="Lifetime of download links in seconds (S3: 3600)")] = 3600.0,
    base_model: Annotated[list[str] | None, typer.Option(
        "--base-model", help="HUB_ID=PATH: score adapters of HUB_ID with weights from a local folder or GGUF"
    )] = None,
) -> None:
    """Serve the FedLedger API on loopback and print its URL and keys; Ctrl-C stops it.

    Keys printed: a node key (staked as a training node on every task) and a validator key for a validator you
    run yourself (FLock's llm-loss-validator, for one). The built-in validator has a key of its own, but it takes
    submissions too: with --validate-every 0 it never runs and every submission is left to outside validators;
    with --validations 2 both score each one.

    Admin routes (header x-admin-token: the printed admin token): POST /admin/api-keys with
    {"role": "node" or "validator", "task_ids": [...]} makes another staked key; GET /admin/submissions lists every
    submission; GET, POST and DELETE /admin/faults inspect, inject and clear faults.

    A task folder holds task.json, FLock's task object without the server-made fields: "id", "title",
    "description", "task_type", and "data" with "context_length", "max_params", optional
    "supported_base_models", and the file names "training_set_key" and "validation_set_key" (optional
    "final_validation_set_key") of FLock JSONL files in the same folder.

    Put an adapter into the store the validator reads with `synthgen flock-sim publish`.
    """
    from tools.flock.simulator.server import SimulatorServer

    config = SimulatorConfig(assignment_interval_s=assignment_interval, link_ttl_s=link_ttl,
                             validations_per_submission=validations)
    weights: dict[str, str | Path] = {}
    for item in base_model or []:
        hub_id, sep, path = item.partition("=")
        if not sep or not hub_id or not path:
            raise fail(f"--base-model {item!r}: expected HUB_ID=PATH")
        weights[hub_id] = Path(path)
    try:
        server = SimulatorServer(task_dir or [DEMO_TASK_DIR], state_path=state,
                                 publisher_root=_publisher_root(publisher_root, state), config=config, port=port,
                                 validate_every_s=validate_every or None, base_model_paths=weights)
        server.start()
    except (TaskFolderError, OSError, RuntimeError) as exc:
        raise fail(str(exc)) from None
    builtin = f"every {validate_every:g} s" if validate_every else "off (--validate-every 0)"
    console.print(f"FLock simulator at [bold]{server.base_url}[/] (tasks {', '.join(map(str, server.task_ids))})")
    console.print(f"node API key:      {server.node_api_key}")
    console.print(f"validator API key: {server.validator_api_key} (for an outside validator)")
    console.print(f"built-in validator: {builtin}")
    console.print(f"admin token:       {server.admin_token}")
    console.print(f"adapter store:     {server.publisher.root}")
    console.print(f"state:             {server.state_path}")
    console.print(f"\nexport FLOCK_API_BASE_URL={server.base_url}\nexport FLOCK_API_KEY={server.node_api_key}",
                  soft_wrap=True)
    # SIGTERM stops as cleanly as Ctrl-C (temporary state is removed, the socket closed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        server.stop()


@app.command()
def publish(
    adapter_dir: Annotated[Path, typer.Argument(metavar="ADAPTER_DIR", help="LoRA adapter folder "
                                                     "(adapter_config.json + adapter_model.safetensors)")],
    repo_id: Annotated[str, typer.Option(metavar="OWNER/NAME", help="Repo id to publish under (what a submission "
                                                                    "names as hg_repo_id)")],
    state: State = None,
    publisher_root: PublisherRoot = None,
    task_id: Annotated[int, typer.Option(metavar="N", help="Task id for the printed submission body")] = 1,
) -> None:
    """Put an adapter into the simulator's local store (as a new revision) and print what to submit.

    Use the same --state or --publisher-root as `flock-sim serve`; the store may be written while the simulator
    runs. Publishing the same files again gives the same revision.
    """
    from tools.models import template_for
    from tools.publish import LocalPublisher, PublishError, read_adapter_config

    root = _publisher_root(publisher_root, state)
    if root is None:
        raise fail("name the simulator's store: --state (the serve command's state file) or --publisher-root")
    try:
        base = read_adapter_config(adapter_dir, require_hub_id=False)["base_model_name_or_path"]
        published = LocalPublisher(root).publish(adapter_dir, repo_id)
    except PublishError as exc:
        raise fail(str(exc)) from None
    try:
        template = template_for(base)
    except KeyError:
        raise fail(f"published {repo_id}@{published.revision}, but its base model {base!r} has no FLock template "
                   "to submit as base_model") from None
    body = {"task_id": task_id, "data": {"hg_repo_id": published.repo_id, "base_model": template,
                                         "gpu_type": "CPU", "revision": published.revision}}
    console.print(f"published {published.repo_id}@{published.revision} ({', '.join(published.files)}) "
                  f"in {root}", soft_wrap=True)
    console.print("submit it: POST $FLOCK_API_BASE_URL/tasks/submit-result with header flock-api-key and body",
                  soft_wrap=True)
    console.print(json.dumps(body), soft_wrap=True, markup=False)
