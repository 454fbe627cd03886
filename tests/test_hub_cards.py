"""Hub artifacts: the model card published with an adapter (read back with huggingface_hub's ModelCard, adapter files
and what peft loads unchanged), and the synthetic data as a dataset with its card, published to a local folder store
and read back with ``datasets`` (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tools.data import FlockRecord
from tools.flock.simulator.testing import make_lora_adapter
from tools.hub_cards import (
    AdapterCard,
    CardScore,
    DatasetCardInfo,
    TrainingSummary,
    write_dataset_folder,
    write_model_card,
)
from tools.publish import ADAPTER_CONFIG, ADAPTER_WEIGHTS, DatasetPublisher, HubPublisher, LocalPublisher, PublishError
from tools.tasks import get_plugin
from tools.versions import software_versions

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REPO = "alice/task-7-HuggingFaceTB-SmolLM2-135M-Instruct"


def _card(**changes) -> AdapterCard:
    card = AdapterCard(
        base_model=SMOL, template="qwen1.5", task_id=7, task_title="Text to SQL", task_type="text2sql",
        task_tags=list(get_plugin("text2sql").hub_tags), context_length=1024, max_params=1_000_000_000,
        run_id="20260101-000000-abcd", adapter_id="a1-1234abcd",
        repo_id=REPO, accepted_by_flock_validators=False,
        scores=[CardScore(split="dev", metric="bpc", value=0.25, base_value=0.85, source="this run (dev split)"),
                CardScore(split="dev", metric="sql_execution", value=0.1, base_value=0.0, source="this run")],
        training=TrainingSummary(dataset_version="iter1-abc", original_per_category={"join": 10, "nested": 4},
                                 synthetic_per_category={"nested": 6}, real_tokens=12_345, steps=8,
                                 epochs_completed=1.0, settings={"lora_r": 16}),
        versions=software_versions())
    return card.model_copy(update=changes)


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory) -> Path:
    return make_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "a", base_model_name_or_path=SMOL)


def test_a_published_adapter_carries_a_model_card(adapter, tiny_model_dir, tmp_path):
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    plain = tmp_path / "plain"
    store = LocalPublisher(tmp_path / "store")
    before = {name: (adapter / name).read_bytes() for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS)}
    (adapter / "README.md").unlink(missing_ok=True)  # peft's own template card: replaced by ours
    without = store.publish(adapter, REPO)
    store.fetch(REPO, without.revision, plain)
    write_model_card(adapter, _card())
    published = store.publish(adapter, REPO)
    assert published.files == [ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md"]
    fetched = store.fetch(REPO, published.revision, tmp_path / "fetched")

    card = ModelCard.load(fetched / "README.md")
    assert card.data.base_model == SMOL and card.data.library_name == "peft"
    assert card.data.tags == ["lora", "peft", "flock", "synthgen", "text-to-sql"]  # the plugin's tags last
    assert {(r.dataset_split, r.metric_type, r.metric_value) for r in card.data.eval_results} == \
        {("dev", "bpc", 0.25), ("dev", "sql_execution", 0.1)}
    for needed in ("FLock.io AI Arena task\n7", "Not accepted by FLock's validators", "| dev | bpc | 0.2500 | 0.8500",
                   "| nested | 4 | 6 |", "12,345 real tokens", "Run `20260101-000000-abcd`", "transformers"):
        assert needed in card.text or needed in card.content, needed
    # What validators download is unchanged: the same adapter files, loading to the same model.
    assert {name: (fetched / name).read_bytes() for name in before} == before
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    inputs = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        with_card = PeftModel.from_pretrained(base, str(fetched))(inputs).logits
        with_card_model = with_card.clone()
        base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
        without_card = PeftModel.from_pretrained(base, str(plain))(inputs).logits
    assert torch.equal(with_card_model, without_card)


def test_the_card_is_the_same_bytes_for_the_same_inputs(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = write_model_card(tmp_path / "one", _card()), write_model_card(tmp_path / "two", _card())
    assert first.read_bytes() == second.read_bytes()  # no clock in it: a re-published card is the same revision
    accepted = write_model_card(tmp_path / "one", _card(base_model="Qwen/Qwen2.5-0.5B-Instruct",
                                                         accepted_by_flock_validators=True))
    assert "FLock's validators accept this base model" in accepted.read_text()


def test_with_scores_replaces_a_measurement_of_the_same_split():
    card = _card().with_scores(CardScore(split="dev", metric="bpc", value=0.2),
                               CardScore(split="validation", metric="bpc", value=0.3, source="simulator"))
    assert [(s.split, s.metric, s.value) for s in card.scores] == \
        [("dev", "sql_execution", 0.1), ("dev", "bpc", 0.2), ("validation", "bpc", 0.3)]


RECORDS = [FlockRecord.model_validate({"system": "schema", "conversations": [
    {"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"SELECT {i}"}]})
    for i in range(5)]
PROVENANCE = [{"category": "nested" if i % 2 else "join", "strategy": "sql_first", "writer": "renderer",
               "model": "", "iteration": 1, "gates": [{"gate": "format", "passed": True}]} for i in range(5)]


def test_a_pushed_dataset_has_a_card_and_loads_with_datasets(tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    info = DatasetCardInfo(pretty_name="SynthGen synthetic data for FLock task 7", run_id="r1", task_id=7,
                           task_title="Text to SQL", task_type="text2sql", license="apache-2.0",
                           generator="local: HuggingFaceTB/SmolLM2-135M-Instruct", base_model=SMOL,
                           dataset_version="iter1-abc", original_per_category={"join": 10, "nested": 4},
                           rejected_per_reason={"duplicate": 3}, gate_pass_rates={"format": 0.9})
    folder = write_dataset_folder(tmp_path / "dataset", RECORDS, PROVENANCE, info)
    store = LocalPublisher(tmp_path / "store")
    assert isinstance(store, DatasetPublisher)
    published = store.publish_dataset(folder, "alice/task-7-synthgen-r1")
    assert published == store.publish_dataset(folder, "alice/task-7-synthgen-r1")  # same files, same revision
    fetched = store.fetch_dataset("alice/task-7-synthgen-r1", published.revision, tmp_path / "fetched")

    card = DatasetCard.load(fetched / "README.md")
    assert card.data.license == "apache-2.0" and card.data.pretty_name == info.pretty_name
    assert card.data.configs[0]["data_files"][0]["path"] == "data/train-00000-of-00001.parquet"
    for needed in ("| join | 3 | 10 |", "| nested | 2 | 4 |", "| format | 90.0% |", "| duplicate | 3 |",
                   "Generator: local: HuggingFaceTB/SmolLM2-135M-Instruct", "renderer (5)", "sql_first (5)",
                   "Run `r1`, dataset version `iter1-abc`"):
        assert needed in card.text, needed
    rows = datasets.load_dataset(str(fetched), split="train")
    assert rows.num_rows == 5
    assert [FlockRecord.model_validate({k: r[k] for k in ("system", "conversations", "tools")}) for r in rows] \
        == RECORDS
    assert rows[1]["category"] == "nested" and json.loads(rows[0]["gates"]) == [{"gate": "format", "passed": True}]


def test_a_dataset_without_its_card_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.parquet").write_bytes(b"x")
    with pytest.raises(PublishError, match="README.md: missing; a dataset is published with its card"):
        LocalPublisher(tmp_path / "store").publish_dataset(tmp_path, "alice/d")


class RecordingHub:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", {"args": args, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return SimpleNamespace(oid="d" * 40)

    def upload_file(self, **kwargs):
        self.calls.append(("upload_file", kwargs))
        return SimpleNamespace(oid="e" * 40)


def test_hub_publisher_sends_the_dataset_and_the_updated_card(tmp_path):
    folder = write_dataset_folder(tmp_path / "dataset", RECORDS, PROVENANCE,
                                  DatasetCardInfo(pretty_name="x", run_id="r", task_id=7))
    hub = RecordingHub()
    publisher = HubPublisher(token="t", username="alice", api=hub)
    published = publisher.publish_dataset(folder, "alice/task-7-synthgen-r")
    assert published.revision == "d" * 40
    (_, create), (_, upload) = hub.calls
    assert create["repo_type"] == "dataset" and upload["repo_type"] == "dataset"
    assert upload["allow_patterns"] == ["README.md", "data/train-00000-of-00001.parquet"]
    card = write_model_card(tmp_path, _card())
    assert publisher.update_model_card(REPO, card) == "e" * 40
    assert hub.calls[-1][1]["path_in_repo"] == "README.md" and hub.calls[-1][1]["repo_type"] == "model"
