"""Downloads from a hostile or broken FLock (issue 9 item 4c): size cap, content type and JSONL checks, atomic
writes, and no path built from a server-supplied string. The server is a small HTTP server on loopback that
plays FedLedger's /tasks/get and the storage host."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent.runner import Runner
from memory.runs import RunStore
from tests.agent_helpers import mini_task_dir, tiny_config
from tests.reliability_helpers import FAST_CLIENT, FakeFlock, leftover_temp_files
from tools.flock.client import FedLedgerClient
from tools.flock.errors import FlockDownloadError
from tools.flock.simulator.testing import FAST_RETRY
from tools.publish import LocalPublisher, PublishError

TRAVERSAL = "../../../../escape"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_task_dir(tmp_path_factory.mktemp("task"))


def serve_file(content: bytes, content_type: str = "application/octet-stream",
               extra_headers: dict[str, str] | None = None, length: int | None = None) -> Any:
    def storage(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        if length is not None:
            handler.send_header("Content-Length", str(length))
        for name, value in (extra_headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        for start in range(0, len(content), 1 << 16):
            handler.wfile.write(content[start:start + (1 << 16)])
            handler.server.body_bytes_sent += min(1 << 16, len(content) - start)

    return storage


def task_json(task_dir: Path, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = json.loads((task_dir / "task.json").read_text())
    task.update(fields)
    return task


@pytest.mark.parametrize(
    ("storage", "cap", "says"),
    [
        (serve_file(b"<html><body>Please log in</body></html>", "text/html"), None,
         "content type 'text/html' is not a JSONL dataset"),
        (serve_file(b'{"a": 1}\n' * 20_000), 64 * 1024, "more than the 65536-byte download cap"),  # no length
        (serve_file(b'{"a": 1}\n' * 10, length=10 * 1024**3), None, "10737418240 bytes is over the"),
        (serve_file(b'<?xml version="1.0"?><Error>NoSuchKey</Error>\n'), None, "line 1 is not a JSON object"),
    ],
    ids=["html-page", "stream-past-the-cap", "10-GB-claim", "xml-error-as-data"],
)
def test_refused_downloads_leave_nothing_behind(storage: Any, cap: int | None, says: str, task_dir: Path,
                                                tmp_path: Path) -> None:
    dest = tmp_path / "run" / "task" / "training_set.jsonl"
    dest.parent.mkdir(parents=True)
    dest.write_text("previous\n")
    with FakeFlock(task_json(task_dir), storage) as server, \
            FedLedgerClient(server.url + "/api/v1", "key", retry=FAST_RETRY,
                            **({"max_download_bytes": cap} if cap else {})) as client, \
            pytest.raises(FlockDownloadError, match=re.escape(says)):
        client.download_training_set(1, dest)
    assert dest.read_text() == "previous\n"  # the old file, untouched
    assert leftover_temp_files(dest.parent) == []
    assert sorted(p.name for p in dest.parent.iterdir()) == ["training_set.jsonl"]


def test_a_body_cut_at_a_lying_length_is_kept_once_and_its_broken_line_named(task_dir: Path, tmp_path: Path) -> None:
    """HTTP stops reading at the length the server claims. A body of exactly that length is the file as the server
    declared it: it is not fetched again (a retry gets the same bytes), and the loader refuses its cut last line,
    naming the file and the line (``--skip-bad-lines`` would skip it and say so)."""
    from tools.data import DataValidationError, load_jsonl

    dest = tmp_path / "run" / "task" / "training_set.jsonl"
    dest.parent.mkdir(parents=True)
    body = (task_dir / "training_set.jsonl").read_bytes()
    first, second = body.splitlines(keepends=True)[:2]
    claimed = len(first) + len(second) // 2  # the second line is cut
    with FakeFlock(task_json(task_dir), serve_file(body, length=claimed)) as server, \
            FedLedgerClient(server.url + "/api/v1", "key", retry=FAST_RETRY, max_download_bytes=64 * 1024) as client:
        client.download_training_set(1, dest)
        downloads = [path for path in server.requests if path.startswith("/storage/")]
    assert dest.read_bytes() == body[:claimed] and len(downloads) == 1
    assert leftover_temp_files(dest.parent) == []
    with pytest.raises(DataValidationError, match=re.escape(f"{dest}:2")):
        load_jsonl(dest)


def test_server_supplied_names_never_become_paths(task_dir: Path, tmp_path: Path, tiny_model_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A task whose title, description, link and Content-Disposition all say ``../..`` is downloaded into the
    run folder under a name the agent chose, and nothing is written anywhere else."""
    training = (task_dir / "training_set.jsonl").read_bytes()
    storage = serve_file(training, extra_headers={"Content-Disposition": f'attachment; filename="{TRAVERSAL}.jsonl"'})
    hostile = task_json(task_dir, title=TRAVERSAL, description=f"<p>{TRAVERSAL}/x</p>")
    hostile["data"] = {**hostile["data"], "training_set_key": f"{TRAVERSAL}.jsonl"}
    before = set(tmp_path.rglob("*"))
    with FakeFlock(hostile, storage, link_path=f"/storage/{TRAVERSAL.replace('/', '%2F')}.jsonl") as server:
        # A live task takes only a base model FLock's validators accept (the tiny weights stand in for it).
        config = tiny_config(tmp_path, task_dir, tiny_model_dir, overrides={
            "task": {"kind": "flock", "task_id": 1, "api_base_url": server.url + "/api/v1", **FAST_CLIENT},
            "base_model": "Qwen/Qwen2.5-0.5B-Instruct"})
        monkeypatch.setenv("FLOCK_API_KEY", "node-key-for-the-fake-api")
        monkeypatch.setenv("HF_TOKEN", "hf_unused_the_run_stops_before_publishing")
        monkeypatch.setenv("HF_USERNAME", "someone")

        def stop(node: str, update: dict[str, Any]) -> None:
            if node == "bootstrap":
                raise KeyboardInterrupt

        outcome = Runner(RunStore(config.runs_dir), on_step=stop).start(config, run_id="hostile")
    assert outcome.state["task"]["title"] == TRAVERSAL  # kept as data
    run_root = outcome.paths.root
    written = set(tmp_path.rglob("*")) - before
    outside = [p for p in written if p != config.runs_dir and not p.is_relative_to(config.runs_dir)]
    assert outside == []
    assert not [p for p in written if "escape" in p.name]
    downloaded = run_root / "task" / "training_set.jsonl"
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == hashlib.sha256(training).hexdigest()


@pytest.mark.parametrize("repo_id", ["../../evil", "me/../../evil", "/abs/path", "me/..", "me/x/y"])
def test_publisher_paths_come_only_from_checked_names(repo_id: str, tmp_path: Path) -> None:
    store = LocalPublisher(tmp_path / "store")
    with pytest.raises(PublishError):
        store.resolve(repo_id)
    with pytest.raises(PublishError):
        store.fetch("me/model", "../../" + "a" * 34, tmp_path / "dest")
    assert not (tmp_path / "evil").exists()
