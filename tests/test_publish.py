"""Publishing adapters (local store and Hub) and the base-model check done before training."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from tools.flock.errors import BaseModelRejectedError
from tools.flock.schemas import FlockTask, TaskData
from tools.flock.simulator.testing import make_lora_adapter
from tools.flock.submit import check_base_model
from tools.publish import (
    ADAPTER_FILES,
    HubPublisher,
    LocalPublisher,
    Publisher,
    PublishError,
    read_adapter_config,
    repo_name,
)

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REPO = "alice/task-7-HuggingFaceTB-SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return (make_lora_adapter(tiny_model_dir, root / "a", seed=0, base_model_name_or_path=SMOL),
            make_lora_adapter(tiny_model_dir, root / "b", seed=1, base_model_name_or_path=SMOL))


def test_repo_name_follows_the_reference_node():
    assert repo_name("alice", 7, "Qwen/Qwen2.5-0.5B-Instruct") == "alice/task-7-Qwen-Qwen2.5-0.5B-Instruct"
    with pytest.raises(PublishError, match="not of the form 'owner/name'"):
        repo_name("../etc", 7, "x/y")


def test_local_revisions_are_content_hashes(adapters, tmp_path):
    store = LocalPublisher(tmp_path / "store")
    assert isinstance(store, Publisher)
    first = store.publish(adapters[0], REPO)
    again = store.publish(adapters[0], REPO)
    other = store.publish(adapters[1], REPO)
    assert len(first.revision) == 40 and int(first.revision, 16) >= 0
    assert first == again and other.revision != first.revision
    assert first.files == ["adapter_config.json", "adapter_model.safetensors", "README.md"]
    assert store.revisions(REPO) == sorted([first.revision, other.revision])
    assert store.resolve(REPO) == other.revision  # "main" is the latest published
    assert not any(p.name.startswith(".publish-") for p in (tmp_path / "store" / REPO).iterdir())


def test_local_revisions_are_read_only_and_verified_on_fetch(adapters, tmp_path):
    store = LocalPublisher(tmp_path / "store")
    published = store.publish(adapters[0], REPO)
    stored = tmp_path / "store" / REPO / published.revision / "adapter_model.safetensors"
    assert not stored.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    fetched = store.fetch(REPO, published.revision, tmp_path / "fetched")
    assert (fetched / "adapter_model.safetensors").read_bytes() == \
        (adapters[0] / "adapter_model.safetensors").read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(b"tampered")
    with pytest.raises(PublishError, match="does not match its recorded hash"):
        store.fetch(REPO, published.revision, tmp_path / "again")


@pytest.mark.parametrize(("repo", "revision", "message"), [
    ("alice/none", "main", "no such repo"),
    (REPO, "f" * 40, "not in the local store"),
    (REPO, "../../x", "not a 40-hex commit id"),
])
def test_fetch_errors_name_the_repo(adapters, tmp_path, repo, revision, message):
    store = LocalPublisher(tmp_path / "store")
    store.publish(adapters[0], REPO)
    with pytest.raises(PublishError, match=message):
        store.fetch(repo, revision, tmp_path / "out")


def _broken(adapters, tmp_path, change) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(adapters[0], folder)
    change(folder)
    return folder


def _set_base(folder: Path, value) -> None:
    config = json.loads((folder / "adapter_config.json").read_text())
    if value is None:
        config.pop("base_model_name_or_path")
    else:
        config["base_model_name_or_path"] = value
    (folder / "adapter_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: (f / "adapter_config.json").unlink(), "adapter_config.json: missing; not a LoRA adapter folder"),
    (lambda f: (f / "adapter_config.json").write_text("{oops"), "adapter_config.json: not valid JSON"),
    (lambda f: _set_base(f, None), "field base_model_name_or_path is missing or empty"),
    (lambda f: (f / "adapter_model.safetensors").rename(f / "adapter_model.bin"),
     "adapter_model.safetensors: missing (adapter_model.bin is refused"),
])
def test_bad_adapter_folders_are_refused_with_file_and_field(adapters, tmp_path, change, message):
    folder = _broken(adapters, tmp_path, change)
    with pytest.raises(PublishError) as info:
        LocalPublisher(tmp_path / "store").publish(folder, REPO)
    assert message in str(info.value) and str(folder) in str(info.value)
    assert not (tmp_path / "store").exists()  # checked before anything is written


def test_hub_publisher_needs_a_hub_id_base(adapters, tmp_path, tiny_model_dir):
    folder = _broken(adapters, tmp_path, lambda f: _set_base(f, str(tiny_model_dir)))
    read_adapter_config(folder, require_hub_id=False)  # fine for the local store
    with pytest.raises(PublishError, match="not a Hugging Face Hub id"):
        HubPublisher(token="t", username="alice", api=SimpleNamespace()).publish(folder, REPO)


def test_hub_publisher_needs_credentials_and_hides_the_token(adapters, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_USERNAME", raising=False)
    publisher = HubPublisher(api=SimpleNamespace())
    with pytest.raises(PublishError, match="set HF_USERNAME"):
        publisher.repo_name(7, SMOL)
    with pytest.raises(PublishError, match="set HF_TOKEN"):
        publisher.publish(adapters[0], REPO)
    secret = HubPublisher(token="hf_secret_abc", username="alice", api=SimpleNamespace())
    assert "hf_secret_abc" not in repr(secret)
    assert secret.repo_name(7, SMOL) == REPO


class RecordingHub:
    """Records HfApi calls: the Hub is out of reach offline, so the test checks what would be sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, *args, **kwargs):
        self.calls.append(("upload_folder", args, kwargs))
        return SimpleNamespace(oid="c" * 40)


def test_hub_publish_uploads_adapter_files_and_returns_the_commit(adapters):
    hub = RecordingHub()
    published = HubPublisher(token="t", username="alice", api=hub).publish(adapters[0], REPO)
    assert published.revision == "c" * 40 and published.repo_id == REPO
    (_, create_args, create_kwargs), (_, _, upload_kwargs) = hub.calls
    assert create_args == (REPO,) and create_kwargs["exist_ok"] is True and create_kwargs["repo_type"] == "model"
    assert upload_kwargs["repo_id"] == REPO and upload_kwargs["allow_patterns"] == list(ADAPTER_FILES)


# ----- base model checks -----------------------------------------------------------------------------------------
def _task(max_params: int, supported: list[str] | None = None) -> FlockTask:
    return FlockTask(id=7, data=TaskData(max_params=max_params, context_length=1024,
                                         supported_base_models=supported))


def test_check_base_model_maps_the_template():
    check = check_base_model(_task(1_000_000_000), SMOL)
    assert (check.template, check.params, check.accepted_by_flock_validators) == ("qwen1.5", 134_515_008, False)
    qwen = check_base_model(_task(1_000_000_000), "Qwen/Qwen2.5-0.5B-Instruct", real_validators=True)
    assert qwen.accepted_by_flock_validators is True


def test_a_base_real_validators_reject_is_refused_for_a_live_task():
    with pytest.raises(BaseModelRejectedError, match="not in FLock's validators' supported list") as info:
        check_base_model(_task(8_000_000_000), SMOL, real_validators=True)
    message = str(info.value)
    assert "Qwen/Qwen2.5-0.5B-Instruct" in message and "'auto'" in message and len(message) < 400


def test_models_over_max_params_are_refused_before_training():
    with pytest.raises(BaseModelRejectedError, match=r"134,515,008 parameters, over task 7's data.max_params "
                                                     r"100,000,000") as info:
        check_base_model(_task(100_000_000), SMOL)
    assert "models within the limit" in str(info.value)


def test_unknown_and_unsupported_models_are_refused():
    with pytest.raises(BaseModelRejectedError, match="has no FLock template"):
        check_base_model(_task(10**10), "someone/unknown-model")
    with pytest.raises(BaseModelRejectedError, match="not among task 7's supported base models"):
        check_base_model(_task(10**10, ["Qwen/Qwen2.5-0.5B-Instruct"]), SMOL)
