"""``synthgen flock-sim``: run the local FLock simulator."""

from __future__ import annotations

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


@app.callback()
def _group() -> None:
    """A local FLock FedLedger simulator with real validator scoring."""


@app.command()
def serve(
    task_dir: Annotated[list[Path] | None, typer.Option(
        "--task-dir", help="Task folder (task.json + its JSONL files); repeat for several. Default: the demo task"
    )] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one)")] = 0,
    state: Annotated[Path | None, typer.Option(
        help="SQLite state file, kept across restarts (default: a temporary one)")] = None,
    publisher_root: Annotated[Path | None, typer.Option(
        help="Local adapter store the validator reads (default: 'publisher' next to --state)")] = None,
    validate_every: Annotated[float, typer.Option(
        help="Seconds between the built-in validator's rounds (0: never)")] = 10.0,
    assignment_interval: Annotated[float, typer.Option(
        help="Minimum seconds between one validator's assignments (FLock: 180)")] = 180.0,
    link_ttl: Annotated[float, typer.Option(help="Lifetime of download links in seconds (S3: 3600)")] = 3600.0,
    base_model: Annotated[list[str] | None, typer.Option(
        "--base-model", help="HUB_ID=PATH: score adapters of HUB_ID with weights from a local folder or GGUF"
    )] = None,
) -> None:
    """Serve the FedLedger API on loopback and print its URL and a test API key; Ctrl-C stops it."""
    from tools.flock.simulator.server import SimulatorServer

    if publisher_root is None and state is not None:
        publisher_root = state.parent / "publisher"
    config = SimulatorConfig(assignment_interval_s=assignment_interval, link_ttl_s=link_ttl)
    weights: dict[str, str | Path] = {}
    for item in base_model or []:
        hub_id, sep, path = item.partition("=")
        if not sep or not hub_id or not path:
            raise fail(f"--base-model {item!r}: expected HUB_ID=PATH")
        weights[hub_id] = Path(path)
    try:
        server = SimulatorServer(task_dir or [DEMO_TASK_DIR], state_path=state, publisher_root=publisher_root,
                                 config=config, port=port, validate_every_s=validate_every or None,
                                 base_model_paths=weights)
        server.start()
    except (TaskFolderError, OSError, RuntimeError) as exc:
        raise fail(str(exc)) from None
    console.print(f"FLock simulator at [bold]{server.base_url}[/] (tasks {', '.join(map(str, server.task_ids))})")
    console.print(f"node API key:      {server.node_api_key}")
    console.print(f"validator API key: {server.validator_api_key}")
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
