"""FLock JSONL data: typed records, a streaming validating loader, dataset conversion and stable splits.

A FLock record is one JSON object per line (FLOCK_API.md section 8.1)::

    {"system": str (optional), "conversations": [{"role": ..., "content": str}, ...], "tools": "<JSON list>"}

The loader reads bytes line by line, so a huge or binary file never sits in memory at once, and every problem is
reported with its file, line number and field.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

Role = Literal["user", "assistant", "function_call", "observation"]
ROLES: tuple[str, ...] = ("user", "assistant", "function_call", "observation")

#: A line longer than this is refused without being parsed (FLock records are a few KB; 10 MB is an attack).
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
#: JSON nested deeper than this is refused before ``json.loads`` can exhaust the stack.
MAX_JSON_DEPTH = 64
#: An overlong line is skipped (lenient loading) only this far: past it the input is no JSONL file at all (an
#: endless stream such as /dev/zero never ends its first line).
MAX_SKIPPED_LINE_BYTES = 64 * 1024 * 1024


def json_error_text(exc: json.JSONDecodeError, position: Literal["column", "char"] = "column") -> str:
    """A JSON parser error as one phrase: "Expecting ',' delimiter at column 12". The parser's own messages for
    strings end in "starting at" and take the position as their object."""
    where = f"{position} {exc.colno if position == 'column' else exc.pos}"
    return f"{exc.msg} {where}" if exc.msg.endswith(" at") else f"{exc.msg} at {where}"


class Turn(BaseModel):
    """One conversation turn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content is empty")
        return value

    @model_validator(mode="after")
    def _function_call_is_json(self) -> Turn:
        if self.role == "function_call":
            parse_function_call(self.content)
        return self


class FlockRecord(BaseModel):
    """One training or validation example in FLock's format."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    system: str | None = None
    conversations: list[Turn]
    tools: str | None = None

    @field_validator("conversations")
    @classmethod
    def _has_assistant_turn(cls, turns: list[Turn]) -> list[Turn]:
        if not turns:
            raise ValueError("conversations is empty")
        if not any(t.role == "assistant" for t in turns):
            raise ValueError("no assistant turn: FLock trains and scores only assistant turns")
        return turns

    @field_validator("tools")
    @classmethod
    def _tools_is_json_list(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tools is not valid JSON ({json_error_text(exc, 'char')})") from None
        if not isinstance(parsed, list):
            raise ValueError(f"tools must be a JSON list, got {type(parsed).__name__}")
        for i, tool in enumerate(parsed):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise ValueError(f"tools[{i}] must be an object with a string 'name'")
        return value

    # ----- derived views -------------------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        """The record as FLock writes it: keys present only when set, ``tools`` kept as a JSON string."""
        out: dict[str, Any] = {}
        if self.system is not None:
            out["system"] = self.system
        out["conversations"] = [{"role": t.role, "content": t.content} for t in self.conversations]
        if self.tools is not None:
            out["tools"] = self.tools
        return out

    def to_json_line(self) -> str:
        return json.dumps(self.to_json_dict(), ensure_ascii=False)

    @property
    def record_id(self) -> str:
        """Content hash: equal records have equal ids, whatever file or line they came from."""
        canonical = json.dumps(self.to_json_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def tool_list(self) -> list[dict[str, Any]]:
        return list(json.loads(self.tools)) if self.tools else []

    def first_user_text(self) -> str:
        return next((t.content for t in self.conversations if t.role == "user"), "")

    def assistant_texts(self) -> list[str]:
        return [t.content for t in self.conversations if t.role == "assistant"]

    def function_calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        for turn in self.conversations:
            if turn.role == "function_call":
                calls.extend(parse_function_call(turn.content))
        return calls


def parse_function_call(content: str) -> list[dict[str, Any]]:
    """Parse a function_call turn: a JSON ``{"name", "arguments"}`` object or a list of them."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"function_call content is not JSON ({json_error_text(exc, 'char')})") from None
    calls = value if isinstance(value, list) else [value]
    for call in calls:
        if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
            raise ValueError("function_call content must be {'name': ..., 'arguments': {...}} or a list of them")
    return calls


# ----- problems and errors -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataIssue:
    """One problem found in a data file, located precisely."""

    file: str
    line: int
    field: str
    message: str
    code: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class DataValidationError(ValueError):
    """A data file failed validation; ``issues`` lists every problem found (one in strict mode)."""

    def __init__(self, issues: Sequence[DataIssue]):
        self.issues = list(issues)
        first = str(self.issues[0]) if self.issues else "invalid data"
        more = f" (and {len(self.issues) - 1} more problems)" if len(self.issues) > 1 else ""
        super().__init__(first + more)


@dataclass
class LoadReport:
    """What a load produced: the good records (with their line numbers) and every skipped line's problem."""

    path: str
    records: list[FlockRecord] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)
    issues: list[DataIssue] = field(default_factory=list)
    lines_read: int = 0
    sha256: str = ""

    @property
    def skipped(self) -> int:
        return len({i.line for i in self.issues})


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issue_code(error_type: str, message: str) -> str:
    if error_type == "literal_error":
        return "unknown_role"
    if "function_call" in message:
        return "bad_function_call"
    if "no assistant turn" in message:
        return "no_assistant_turn"
    if "content is empty" in message or "conversations is empty" in message:
        return "empty_content"
    if "tools" in message:
        return "bad_tools"
    if error_type == "missing":
        return "missing_field"
    return "invalid_field"


def _json_depth_exceeds(text: str, limit: int) -> bool:
    """Cheap bracket-depth scan (ignoring brackets inside strings) so deep nesting is refused, not crashed on."""
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def validate_line(raw: bytes, *, file: str, line: int) -> tuple[FlockRecord | None, list[DataIssue]]:
    """Validate one raw JSONL line. Returns the record, or None and the problems found."""

    def issue(field_name: str, message: str, code: str) -> tuple[None, list[DataIssue]]:
        return None, [DataIssue(file, line, field_name, message, code)]

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return issue("", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", "not_utf8")
    if _json_depth_exceeds(text, MAX_JSON_DEPTH):
        return issue("", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "too_deep")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return issue("", f"bad JSON: {json_error_text(exc)}", "bad_json")
    if not isinstance(obj, dict):
        return issue("", f"a record must be a JSON object, got {type(obj).__name__}", "not_object")
    if "system" in obj and not isinstance(obj["system"], str):
        # FLock's loaders call .strip() on it: null would crash the validator.
        return issue("system", f"system must be a string when present, got {type(obj['system']).__name__}",
                     "invalid_field")
    try:
        return FlockRecord.model_validate(obj), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "literal_error" and err["loc"][-1] == "role":
                message = f"unknown role {err.get('input')!r}; expected one of {', '.join(ROLES)}"
            problems.append(
                DataIssue(file, line, _format_loc(tuple(err["loc"])), message, _issue_code(err["type"], message))
            )
        return None, problems


def iter_jsonl(
    path: str | Path,
    *,
    strict: bool = True,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_issue: Callable[[DataIssue], None] | None = None,
    digest: Any = None,
) -> Iterator[tuple[int, FlockRecord]]:
    """Stream ``(line_number, record)`` pairs from a FLock JSONL file.

    strict: the first problem raises :class:`DataValidationError`. Lenient: bad lines are skipped and passed to
    ``on_issue``. Blank lines are ignored. A line longer than ``max_line_bytes`` is skipped unread; one that does not
    end within :data:`MAX_SKIPPED_LINE_BYTES` stops the load in both modes. ``digest`` (a hashlib object), when
    given, is fed every byte read, so the file is read once even when it cannot be read twice (a pipe).
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise DataValidationError([DataIssue(name, 0, "", "file not found", "not_found")])
    if path.is_dir():
        raise DataValidationError([DataIssue(name, 0, "", "is a directory, expected a JSONL file", "not_file")])

    def report(problems: list[DataIssue]) -> None:
        if strict:
            raise DataValidationError(problems)
        for problem in problems:
            if on_issue is not None:
                on_issue(problem)

    def read(limit: int) -> bytes:
        raw = handle.readline(limit)
        if digest is not None:
            digest.update(raw)
        return raw

    with path.open("rb") as handle:
        line_no = 0
        while True:
            raw = read(max_line_bytes + 1)
            if not raw:
                break
            line_no += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                size = len(raw)
                while raw and not raw.endswith(b"\n"):  # skip the rest of the overlong line in bounded chunks
                    if size > MAX_SKIPPED_LINE_BYTES:
                        raise DataValidationError([DataIssue(
                            name, line_no, "", f"line has no end after {MAX_SKIPPED_LINE_BYTES // 2**20} MiB: not a "
                            "JSONL file", "line_too_long")])
                    raw = read(1 << 20)
                    size += len(raw)
                report([DataIssue(name, line_no, "", f"line is {size} bytes, over the {max_line_bytes}-byte limit",
                                  "line_too_long")])
                continue
            if not raw.strip():
                continue
            record, problems = validate_line(raw.rstrip(b"\r\n"), file=name, line=line_no)
            if record is None:
                report(problems)
            else:
                yield line_no, record


def load_jsonl(
    path: str | Path, *, strict: bool = True, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> LoadReport:
    """Load a whole FLock JSONL file. An empty file (no records and no problems) is an error in both modes."""
    report = LoadReport(path=str(path))
    digest = hashlib.sha256()
    for line_no, record in iter_jsonl(path, strict=strict, max_line_bytes=max_line_bytes,
                                      on_issue=report.issues.append, digest=digest):
        report.records.append(record)
        report.line_numbers.append(line_no)
    report.sha256 = digest.hexdigest()
    report.lines_read = max(report.line_numbers + [i.line for i in report.issues], default=0)
    if not report.records and not report.issues:
        raise DataValidationError([DataIssue(str(path), 0, "", "file holds no records", "empty_file")])
    if not report.records and not strict:
        raise DataValidationError(report.issues)
    return report


def write_jsonl(records: Iterable[FlockRecord], path: str | Path) -> str:
    """Write records atomically (temp file + rename) and return the file's sha256."""
    from tools.fileio import atomic_write_bytes

    data = "".join(record.to_json_line() + "\n" for record in records).encode("utf-8")
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


# ----- datasets.Dataset --------------------------------------------------------------------------------------
def to_dataset(records: Sequence[FlockRecord], **extra_columns: Sequence[Any]) -> Any:
    """Records as a ``datasets.Dataset`` with columns system, conversations, tools (+ any extra columns)."""
    from datasets import Dataset

    columns: dict[str, list[Any]] = {
        "system": [r.system for r in records],
        "conversations": [[{"role": t.role, "content": t.content} for t in r.conversations] for r in records],
        "tools": [r.tools for r in records],
        "record_id": [r.record_id for r in records],
    }
    for name, values in extra_columns.items():
        if len(values) != len(records):
            raise ValueError(f"column {name!r} has {len(values)} values for {len(records)} records")
        columns[name] = list(values)
    return Dataset.from_dict(columns)


def from_dataset(dataset: Any) -> list[FlockRecord]:
    """Records back from a ``datasets.Dataset`` made by :func:`to_dataset` (or any with the same columns)."""
    out = []
    for row in dataset:
        obj: dict[str, Any] = {"conversations": row["conversations"]}
        if row.get("system") is not None:
            obj["system"] = row["system"]
        if row.get("tools") is not None:
            obj["tools"] = row["tools"]
        out.append(FlockRecord.model_validate(obj))
    return out


# ----- splits ------------------------------------------------------------------------------------------------
T = TypeVar("T")


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.8
    dev: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        if min(self.train, self.dev, self.test) < 0 or abs(self.train + self.dev + self.test - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self}")


@dataclass
class Splits(Generic[T]):
    train: list[T]
    dev: list[T]
    test: list[T]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}


def stratified_split(
    items: Sequence[T],
    *,
    category: Callable[[T], Hashable],
    key: Callable[[T], str],
    fractions: SplitFractions | None = None,
    seed: int = 0,
) -> Splits[T]:
    """Split items into train/dev/test per category, seeded and stable.

    Within a category items are ordered by ``sha256(seed, key(item))``, so the assignment depends only on the
    items' keys and the seed: reordering the input changes nothing, and adding items moves few others. Each
    category with at least 3 items puts at least one in dev and one in test.
    """
    fractions = fractions or SplitFractions()
    groups: dict[Hashable, list[T]] = defaultdict(list)
    for item in items:
        groups[category(item)].append(item)
    splits: Splits[T] = Splits([], [], [])
    for cat in sorted(groups, key=str):
        members = sorted(groups[cat], key=lambda it: hashlib.sha256(f"{seed}:{key(it)}".encode()).hexdigest())
        n = len(members)
        n_dev = round(n * fractions.dev)
        n_test = round(n * fractions.test)
        if n >= 3:
            n_dev = max(n_dev, 1 if fractions.dev > 0 else 0)
            n_test = max(n_test, 1 if fractions.test > 0 else 0)
        n_dev = min(n_dev, n)
        n_test = min(n_test, n - n_dev)
        splits.dev.extend(members[:n_dev])
        splits.test.extend(members[n_dev:n_dev + n_test])
        splits.train.extend(members[n_dev + n_test:])
    return splits
