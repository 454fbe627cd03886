"""Property-based tests (issue 9 item 3): the JSONL parser never crashes on any bytes and locates every problem;
templates and masking label exactly the assistant tokens and never exceed the context length; the SQL validity
gate never crashes and never lets a write through."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tools.data import ROLES, DataValidationError, FlockRecord, Turn, load_jsonl, validate_line
from tools.quality import PrivacyGate, TaskValidityGate
from tools.templates import TEMPLATES, SFTCollator, tokenize_record

DEMO = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "text2sql" / "training_set.jsonl"

# ----- the JSONL parser ------------------------------------------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
_turn = st.fixed_dictionaries({"role": st.sampled_from([*ROLES, "system", "tool", "", "ASSISTANT"]),
                               "content": st.one_of(_text, st.integers(), st.none())})
_record = st.fixed_dictionaries(
    {"conversations": st.one_of(st.lists(_turn, max_size=4), _text, st.none())},
    optional={"system": st.one_of(_text, st.none(), st.integers()),
              "tools": st.one_of(_text, st.just('[{"name": "f"}]'), st.just("[1]"), st.none()),
              "extra": st.recursive(st.none() | st.booleans() | _text, lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(_text, inner, max_size=3), max_leaves=8)})


_VALID_LINES = [line for line in DEMO.read_bytes().splitlines()[:30] if line.strip()]


@st.composite
def _line(draw: st.DrawFn) -> bytes:
    """One line of a would-be JSONL file: a JSON record (often valid), damaged or not, or raw bytes."""
    kind = draw(st.sampled_from(["valid", "valid", "record", "damaged", "bytes", "nested", "scalar"]))
    if kind == "valid":
        return draw(st.sampled_from(_VALID_LINES))
    if kind == "bytes":
        return draw(st.binary(max_size=120)).replace(b"\n", b" ")
    if kind == "nested":
        depth = draw(st.integers(1, 200))
        return b'{"conversations": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "scalar":
        return json.dumps(draw(st.one_of(st.integers(), _text, st.lists(st.integers(), max_size=3)))).encode()
    data = json.dumps(draw(_record), ensure_ascii=draw(st.booleans())).encode()
    if kind == "damaged":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=4)).replace(b"\n", b"") + data[cut + 1:]
    return data


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.binary(max_size=300), _line()), line=st.integers(1, 10**6))
def test_any_line_gives_a_record_or_located_problems(raw: bytes, line: int) -> None:
    record, problems = validate_line(raw, file="train.jsonl", line=line)
    assert (record is None) == bool(problems)
    for problem in problems:
        assert (problem.file, problem.line) == ("train.jsonl", line)
        assert problem.message and problem.code
        assert str(problem).startswith(f"train.jsonl:{line}: ")
    if record is not None:
        assert any(turn.role == "assistant" for turn in record.conversations)


def _loads(segment: bytes) -> bool:
    """Whether one line of a file is a usable record."""
    return validate_line(segment.rstrip(b"\r"), file="f", line=1)[0] is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(_line(), st.just(b""), st.just(b"  \r")), max_size=12),
       newline=st.sampled_from([b"\n", b"\r\n"]), trailing=st.booleans(), max_line=st.integers(8, 400))
def test_any_file_loads_or_fails_with_every_bad_line_located(lines: list[bytes], newline: bytes, trailing: bool,
                                                              max_line: int) -> None:
    data = newline.join(lines) + (newline if trailing and lines else b"")
    segments = data.split(b"\n")
    if segments and segments[-1] == b"":
        segments.pop()
    counted = {n for n, seg in enumerate(segments, start=1) if seg.strip() or len(seg) > max_line}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.jsonl"
        path.write_bytes(data)
        if not any(_loads(seg) for seg in segments if len(seg) <= max_line):
            with pytest.raises(DataValidationError) as nothing_usable:  # every problem listed, with its line
                load_jsonl(path, strict=False, max_line_bytes=max_line)
            issues = nothing_usable.value.issues
            assert {i.line for i in issues} == counted or (not counted and issues[0].code == "empty_file")
            return
        report = load_jsonl(path, strict=False, max_line_bytes=max_line)
        assert set(report.line_numbers).isdisjoint({i.line for i in report.issues})
        assert set(report.line_numbers) | {i.line for i in report.issues} == counted
        assert all(i.file == str(path) for i in report.issues)
        if report.issues:
            with pytest.raises(DataValidationError) as first_problem:
                load_jsonl(path, strict=True, max_line_bytes=max_line)
            assert first_problem.value.issues[0].line == min(i.line for i in report.issues)
        else:
            assert load_jsonl(path, strict=True, max_line_bytes=max_line).records == report.records


# ----- templates and masking -------------------------------------------------------------------------------------
_content = st.text(st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="<>|"), min_size=1,
                   max_size=30).filter(lambda s: s.strip() != "")


@st.composite
def _conversation(draw: st.DrawFn) -> FlockRecord:
    turns = []
    for _ in range(draw(st.integers(1, 3))):
        turns.append(Turn(role="user", content=draw(_content)))
        if draw(st.booleans()):
            turns.append(Turn(role="observation", content=draw(_content)))
        turns.append(Turn(role="assistant", content=draw(_content)))
    if draw(st.booleans()):
        turns.append(Turn(role="user", content=draw(_content)))  # text after the last answer is dropped
    return FlockRecord(system=draw(st.one_of(st.none(), _content)), conversations=turns)


@pytest.fixture(scope="module")
def tokenizer(smol_tokenizer):
    return smol_tokenizer


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=_conversation(), template=st.sampled_from(sorted(TEMPLATES)), context=st.integers(1, 400))
def test_labels_cover_exactly_the_assistant_tokens_within_the_context(tokenizer: Any, record: FlockRecord,
                                                                      template: str, context: int) -> None:
    full = tokenize_record(record, tokenizer, template, context_length=100_000)
    cut = tokenize_record(record, tokenizer, template, context_length=context)
    assert len(cut.input_ids) == len(cut.target_mask) <= context
    assert cut.input_ids == full.input_ids[:context] and cut.target_mask == full.target_mask[:context]
    t = TEMPLATES[template]
    answers = [turn.content.strip() for turn in record.conversations if turn.role == "assistant"]
    expected = [tid for answer in answers for tid in tokenizer(
        t.assistant_format.format(content=answer, stop_token=tokenizer.eos_token), add_special_tokens=False
    )["input_ids"]]
    assert [tid for tid, m in zip(full.input_ids, full.target_mask, strict=True) if m] == expected
    batch = SFTCollator(pad_token_id=tokenizer.pad_token_id, max_seq_length=context)([cut, full])
    labels, ids = batch["labels"].tolist(), batch["input_ids"].tolist()
    assert len(ids[0]) <= context
    for row, example in zip(range(2), (cut, full), strict=True):
        mask = (example.target_mask + [0] * len(ids[row]))[:len(ids[row])]
        assert labels[row] == [i if m else -100 for i, m in zip(ids[row], mask, strict=True)]


# ----- the SQL validity gate -------------------------------------------------------------------------------------
_SEED = load_jsonl(DEMO).records[0]
_SQL_WORDS = ["SELECT", "FROM", "WHERE", "*", ",", "(", ")", "'x'", "1", ";", "JOIN", "ON", "=", "GROUP BY",
              "DROP TABLE", "DELETE FROM", "INSERT INTO", "ATTACH", "PRAGMA", "UPDATE", "SET", "WITH", "RECURSIVE",
              "--", "/*", "*/", "\"", "VALUES", "UNION ALL", "load_extension('x')", "```sql", "```"]
_WRITE_WORDS = ("DROP", "DELETE", "INSERT", "ATTACH", "PRAGMA", "UPDATE", "REPLACE", "CREATE", "ALTER", "VACUUM")


def _with_answer(answer: str) -> FlockRecord:
    turns = [*_SEED.conversations[:-1], Turn(role="assistant", content=answer)]
    return FlockRecord(system=_SEED.system, conversations=turns, tools=_SEED.tools)


@settings(max_examples=150, deadline=None)
@given(answer=st.one_of(st.lists(st.sampled_from([*_SQL_WORDS, "teams", "name", "id"]), min_size=1, max_size=12)
                        .map(" ".join), _content))
def test_sql_gate_never_crashes_and_never_passes_a_write(answer: str) -> None:
    gate = TaskValidityGate("text2sql")
    verdict = gate.check(_with_answer(answer), "filter")
    assert verdict.passed or verdict.reason.startswith("sql_")
    first_word = answer.strip().lstrip("(`").split(" ")[0].upper() if answer.strip() else ""
    if first_word in _WRITE_WORDS:
        assert not verdict.passed


@settings(max_examples=150, deadline=None)
@given(text=_content, email_user=st.from_regex(r"[a-z]{3,8}", fullmatch=True))
def test_privacy_scrub_never_crashes_and_keeps_a_valid_record(text: str, email_user: str) -> None:
    answer = f"{text} contact {email_user}@gmail.com"
    assume(answer.strip())
    verdict = PrivacyGate().check(_with_answer(answer), "filter")
    record = verdict.record or _with_answer(answer)
    FlockRecord.model_validate(record.to_json_dict())
    if verdict.passed and verdict.record is not None:
        assert f"{email_user}@gmail.com" not in verdict.record.to_json_line()
