"""The task-plugin interface: every registered plugin offers what the stages ask of it, and one count of categories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.data import FlockRecord, load_jsonl
from tools.metrics import available_metrics, load_metric
from tools.quality import DedupGate, TaskValidityGate
from tools.tasks import PLUGINS, get_plugin, strategy_class
from tools.tasks.base import TaskMetric
from tools.tasks.function_calling import function_call_probes
from tools.tasks.text2sql.strategy import Text2SQLStrategy

DEMO = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks"
SCHEMA = "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, year INTEGER);"


def sql_record(question: str, sql: str) -> FlockRecord:
    return FlockRecord.model_validate({"conversations": [
        {"role": "user", "content": f"{SCHEMA}\nQuestion: {question}"}, {"role": "assistant", "content": sql}]})


@pytest.fixture(scope="module")
def demo_records() -> dict[str, list[FlockRecord]]:
    return {"text2sql": load_jsonl(DEMO / "text2sql" / "training_set.jsonl").records,
            "function_calling": load_jsonl(DEMO / "function_calling" / "training_set.jsonl").records}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_every_plugin_offers_strategies_metrics_and_a_headline(name: str) -> None:
    plugin = get_plugin(name)
    assert plugin.name == name
    names = plugin.strategy_names()
    assert names and len(set(names)) == len(names)
    assert plugin.strategy_class() is plugin.strategies[0]
    assert all(plugin.strategy_class(n).name == n for n in names)
    with pytest.raises(ValueError, match=f"task type '{name}' has no generation strategy 'nope'; known: {names[0]}"):
        plugin.strategy_class("nope")
    metric_names = [m.name for m in plugin.metrics]
    assert plugin.headline_metric in metric_names
    assert set(metric_names) <= set(available_metrics())
    assert plugin.metric("bleu") == next((m for m in plugin.metrics if m.name == "bleu"), TaskMetric("bleu"))


def test_the_registry_resolves_a_task_types_default_strategy() -> None:
    assert strategy_class("text2sql") is Text2SQLStrategy
    assert strategy_class("text2sql", "sql_first") is Text2SQLStrategy


@pytest.mark.parametrize(("task", "plugin_name"), [("text2sql", "text2sql"), ("function_calling", "function_calling"),
                                                   ("function_calling", "chat")])
def test_plugins_make_their_default_strategy_on_real_seeds(demo_records: dict[str, list[FlockRecord]], task: str,
                                                           plugin_name: str) -> None:
    seeds = demo_records[task][:80]
    plugin = get_plugin(plugin_name).fit(seeds)
    strategy = plugin.make_strategy(seeds)
    assert type(strategy) is plugin.strategy_class()
    assert strategy.plugin is plugin and strategy.seeds == seeds


@pytest.mark.parametrize("task", ["text2sql", "function_calling"])
def test_categories_are_counted_one_way(demo_records: dict[str, list[FlockRecord]], task: str) -> None:
    plugin = get_plugin(task).fit(demo_records[task])
    records = demo_records[task]
    counts = plugin.category_counts(records)
    assert list(counts) == sorted(counts) and all(counts.values())
    assert sum(counts.values()) == len(records)
    everything = plugin.primary_counts(records)
    assert list(everything)[:len(plugin.categories())] == list(plugin.categories())
    assert {c: n for c, n in everything.items() if n} == counts
    assert plugin.category_counts([]) == {} and set(plugin.primary_counts([]).values()) == {0}


def test_text2sql_content_text_and_metric_references_leave_out_or_carry_the_schema() -> None:
    plugin = get_plugin("text2sql")
    record = sql_record("Titles after 2000?", "SELECT title FROM books WHERE year > 2000;")
    assert plugin.content_text(record) == "Titles after 2000?\nSELECT title FROM books WHERE year > 2000"
    gold = record.assistant_texts()[-1]
    assert plugin.metric_references("sql_execution", [record], [gold]) == [{"sql": gold, "schema": SCHEMA}]
    assert plugin.metric_references("exact_match", [record], [gold]) == [gold]
    assert plugin.metric("sql_execution").key == "execution_accuracy"
    # Other task types compare every turn and score the gold answers themselves.
    chat = get_plugin("chat")
    assert chat.content_text(record) == record.first_user_text() + "\n" + gold
    assert chat.metric_references("token_f1", [record], [gold]) == [gold]


def test_only_function_calling_probes_records() -> None:
    record = FlockRecord.model_validate({"tools": json.dumps([{"name": "search", "parameters": {}}]), "conversations": [
        {"role": "user", "content": "Rice recipes?"},
        {"role": "function_call", "content": json.dumps({"name": "search", "arguments": {"q": "rice"}})},
        {"role": "observation", "content": "{}"}, {"role": "assistant", "content": "None found."}]})
    plugin = get_plugin("function_calling")
    assert plugin.probes(record) == function_call_probes(record) and len(plugin.probes(record)) == 1
    assert [m.name for m in plugin.metrics if m.on_probes] == ["function_call_accuracy"]
    assert get_plugin("text2sql").probes(record) == [] == get_plugin("chat").probes(record)


def test_gates_take_a_plugin_or_its_name() -> None:
    plugin = get_plugin("text2sql")
    bad = sql_record("Prices?", "SELECT price FROM books")
    assert TaskValidityGate(plugin).check(bad, "filter") == TaskValidityGate("text2sql").check(bad, "filter")
    assert not TaskValidityGate(plugin).check(bad, "filter").passed
    gate = DedupGate(plugin, existing=[bad])
    assert gate.check(bad, "filter").reason == "duplicate"
    with pytest.raises(ValueError, match="unknown task type 'vision'"):
        DedupGate("vision")


def test_task_metric_modules_load_from_their_plugin_package() -> None:
    module = load_metric("sql_exact_match")
    result = module.compute(predictions=["select title from books"], references=["SELECT title FROM books;"])
    assert result["sql_exact_match"] == 1.0
