"""The FLock data layer: record validation, streaming loader, strict/lenient modes, datasets round trip, splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.data import (
    DataValidationError,
    FlockRecord,
    SplitFractions,
    from_dataset,
    iter_jsonl,
    load_jsonl,
    stratified_split,
    to_dataset,
    write_jsonl,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tools" / "demo_tasks"
#: FLock's own sample files stay outside the project; they are read where ../shared holds them.
SAMPLES = ROOT.parent / "shared" / "flock" / "samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/flock/samples is not present")

GOOD = {"system": "S", "conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
FC = {
    "conversations": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "function_call", "content": json.dumps({"name": "weather", "arguments": {"city": "Oslo"}})},
        {"role": "observation", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "It is 3 degrees."},
    ],
    "tools": json.dumps([{"name": "weather", "description": "d", "parameters": {"type": "object", "properties": {}}}]),
}


def write_lines(path: Path, lines: list[bytes | str]) -> Path:
    with path.open("wb") as handle:
        for line in lines:
            handle.write(line if isinstance(line, bytes) else line.encode("utf-8"))
            handle.write(b"\n")
    return path


def bad(obj: dict) -> str:
    return json.dumps(obj)


# One line per defect class, with the field the error must name and the reason code.
DEFECTS: list[tuple[str, bytes | str, str, str]] = [
    ("broken json", '{"conversations": [', "", "bad_json"),
    ("unknown role", bad({"conversations": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}),
     "conversations[0].role", "unknown_role"),
    ("no assistant", bad({"conversations": [{"role": "user", "content": "x"}]}), "conversations", "no_assistant_turn"),
    ("non-json function_call", bad({"conversations": [{"role": "user", "content": "x"},
                                                       {"role": "function_call", "content": "call weather"},
                                                       {"role": "assistant", "content": "y"}]}),
     "conversations[1]", "bad_function_call"),
    ("tools not a list", bad({**GOOD, "tools": '{"name": "x"}'}), "tools", "bad_tools"),
    ("tools not json", bad({**GOOD, "tools": "[{"}), "tools", "bad_tools"),
    ("empty content", bad({"conversations": [{"role": "user", "content": "  "},
                                             {"role": "assistant", "content": "y"}]}),
     "conversations[0].content", "empty_content"),
    ("non-utf8", b'{"conversations": [{"role": "user", "content": "caf\xe9"}]}', "", "not_utf8"),
    ("not an object", "[1, 2]", "", "not_object"),
    ("null system", bad({**GOOD, "system": None}), "system", "invalid_field"),
    ("deep nesting", '{"x": ' + "[" * 5000 + "]" * 5000 + "}", "", "too_deep"),
]


@pytest.mark.parametrize(("name", "line", "field", "code"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_each_defect_is_reported_with_file_line_and_field(tmp_path: Path, name: str, line: bytes | str,
                                                           field: str, code: str) -> None:
    path = write_lines(tmp_path / "data.jsonl", [bad(GOOD), line, bad(GOOD)])
    with pytest.raises(DataValidationError) as info:
        load_jsonl(path, strict=True)
    issue = info.value.issues[0]
    assert (issue.file, issue.line, issue.code) == (str(path), 2, code)
    assert issue.field == field
    assert str(issue).startswith(f"{path}:2: ")


def test_ten_megabyte_line_is_refused_without_parsing(tmp_path: Path) -> None:
    huge = '{"conversations": [{"role": "user", "content": "' + "a" * (10 * 1024 * 1024) + '"}]}'
    path = write_lines(tmp_path / "big.jsonl", [bad(GOOD), huge, bad(FC)])
    with pytest.raises(DataValidationError, match=r"big.jsonl:2: line is \d+ bytes, over the"):
        load_jsonl(path)
    report = load_jsonl(path, strict=False)
    assert len(report.records) == 2
    assert [i.code for i in report.issues] == ["line_too_long"]
    assert report.line_numbers == [1, 3]


def test_lenient_mode_skips_exactly_the_bad_lines(tmp_path: Path) -> None:
    lines: list[bytes | str] = [bad(GOOD)]
    for _, line, _, _ in DEFECTS:
        lines.extend([line, bad(FC)])
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    report = load_jsonl(path, strict=False)
    assert len(report.records) == 1 + len(DEFECTS)
    assert sorted({i.line for i in report.issues}) == [2 + 2 * k for k in range(len(DEFECTS))]
    assert report.skipped == len(DEFECTS)
    assert report.line_numbers == [1] + [3 + 2 * k for k in range(len(DEFECTS))]


def test_blank_lines_are_ignored_and_empty_files_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "blank.jsonl", ["", bad(GOOD), "   ", ""])
    assert len(load_jsonl(path).records) == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"empty\.jsonl: file holds no records"):
        load_jsonl(empty)
    with pytest.raises(DataValidationError, match="file not found"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_lenient_mode_with_no_good_line_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "allbad.jsonl", ["{", "nope"])
    with pytest.raises(DataValidationError) as info:
        load_jsonl(path, strict=False)
    assert len(info.value.issues) == 2


def test_iter_jsonl_streams(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [bad(GOOD)] * 3)
    stream = iter_jsonl(path)
    assert next(stream)[0] == 1
    assert [n for n, _ in stream] == [2, 3]


def test_record_round_trip_keeps_flock_shape(tmp_path: Path) -> None:
    no_system = {"conversations": GOOD["conversations"]}
    records = [FlockRecord.model_validate(o) for o in (GOOD, FC, no_system)]
    path = tmp_path / "out.jsonl"
    digest = write_jsonl(records, path)
    assert len(digest) == 64
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [GOOD, FC, no_system]
    assert "system" not in lines[2] and isinstance(lines[1]["tools"], str)
    assert records[1].function_calls() == [{"name": "weather", "arguments": {"city": "Oslo"}}]
    assert load_jsonl(path).records == records


def test_record_id_is_content_hash() -> None:
    a = FlockRecord.model_validate(GOOD)
    b = FlockRecord.model_validate(json.loads(json.dumps(GOOD)))
    c = FlockRecord.model_validate({**GOOD, "system": "T"})
    assert a.record_id == b.record_id != c.record_id


def test_dataset_round_trip() -> None:
    records = [FlockRecord.model_validate(o) for o in (GOOD, FC, {"conversations": GOOD["conversations"]})]
    dataset = to_dataset(records, category=["a", "b", "a"])
    assert dataset.column_names == ["system", "conversations", "tools", "record_id", "category"]
    assert from_dataset(dataset) == records
    with pytest.raises(ValueError, match="column 'category' has 1 values for 3 records"):
        to_dataset(records, category=["a"])


def _items(n_per_cat: dict[str, int]) -> list[tuple[str, str]]:
    return [(cat, f"{cat}-{i}") for cat, n in n_per_cat.items() for i in range(n)]


def test_stratified_split_is_seeded_stable_and_balanced() -> None:
    items = _items({"join": 40, "nested": 20, "filter": 3})
    split = stratified_split(items, category=lambda it: it[0], key=lambda it: it[1], seed=7)
    again = stratified_split(list(reversed(items)), category=lambda it: it[0], key=lambda it: it[1], seed=7)
    assert sorted(split.train) == sorted(again.train) and sorted(split.dev) == sorted(again.dev)
    assert split.sizes()["train"] + split.sizes()["dev"] + split.sizes()["test"] == len(items)
    for cat in ("join", "nested", "filter"):
        assert any(c == cat for c, _ in split.dev) and any(c == cat for c, _ in split.test)
    assert sum(1 for c, _ in split.dev if c == "join") == 4
    other_seed = stratified_split(items, category=lambda it: it[0], key=lambda it: it[1], seed=8)
    assert sorted(other_seed.dev) != sorted(split.dev)
    # Adding items to one category leaves the other categories' assignment untouched.
    grown = stratified_split(items + _items({"join": 45})[40:], category=lambda it: it[0],
                             key=lambda it: it[1], seed=7)
    assert [x for x in grown.dev if x[0] == "nested"] == [x for x in split.dev if x[0] == "nested"]


def test_split_fractions_are_checked() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        SplitFractions(0.5, 0.1, 0.1)


@pytest.mark.parametrize(
    ("path", "task_type", "count"),
    [pytest.param(SAMPLES / "quickstart_demo_data.jsonl", "chat", 8, marks=needs_samples),
     pytest.param(SAMPLES / "quickstart_function_calling_demo.jsonl", "function_calling", 299, marks=needs_samples),
     pytest.param(SAMPLES / "validator_dummy_data.jsonl", "chat", 10, marks=needs_samples),
     (DEMO / "text2sql" / "training_set.jsonl", "text2sql", 298),
     (DEMO / "text2sql" / "validation_set.jsonl", "text2sql", 74),
     (DEMO / "function_calling" / "training_set.jsonl", "function_calling", 167),
     (DEMO / "function_calling" / "validation_set.jsonl", "function_calling", 42)],
    ids=lambda value: f"{value.parent.name}/{value.name}" if isinstance(value, Path) else None,
)
def test_real_flock_samples_load_strictly_and_are_detected(path: Path, task_type: str, count: int) -> None:
    from tools.tasks import detect_plugin

    report = load_jsonl(path, strict=True)
    assert len(report.records) == count and not report.issues
    assert detect_plugin(report.records).name == task_type
