"""The two bundled demo FLock tasks in tools/demo_tasks: text2sql and function_calling.

Offline and fast. Files are read with plain ``json`` so the checks do not depend on the project's own loader;
where the project's task plugins exist, their categories are also compared with the rules implemented here.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections import Counter
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlglot
from sqlglot import exp

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tools" / "demo_tasks"
T2S_DIR = DEMO / "text2sql"
FC_DIR = DEMO / "function_calling"
SPLITS = ("training_set.jsonl", "validation_set.jsonl")

T2S_SYSTEM = (
    "You are a text-to-SQL assistant. Given a SQLite schema and a question, answer with one SQLite query and "
    "nothing else."
)
SQL_CATEGORIES = ("set_operation", "nested", "group_by", "join", "aggregation", "order_limit", "filter")
CALL_PATTERNS = ("no_tools", "no_call", "single_call", "multi_call")
ROLES = {"user", "assistant", "function_call", "observation"}
USER_TURN = re.compile(r"\ASchema:\n(?P<schema>.+?)\n\nQuestion: (?P<question>[^\n]+)\Z", re.DOTALL)


@cache
def read_jsonl(path: Path) -> tuple[dict[str, Any], ...]:
    with path.open(encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle if line.strip())


def read_split(task_dir: Path) -> dict[str, tuple[dict[str, Any], ...]]:
    return {name: read_jsonl(task_dir / name) for name in SPLITS}


def check_task_json(task_dir: Path, task_id: int) -> None:
    task = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
    assert task["id"] == task_id
    assert task["task_type"] == "training"
    assert task["status"] == "submission_phase"
    assert isinstance(task["title"], str) and task["title"]
    assert isinstance(task["description"], str) and task["description"]
    assert isinstance(task["duration_in_seconds"], int) and task["duration_in_seconds"] > 0
    assert not {"initialized_at", "submission_phase_ends_at", "final_validation_ends_at"} & set(task)
    data = task["data"]
    assert data["training_set_key"] == "training_set.jsonl"
    assert data["validation_set_key"] == "validation_set.jsonl"
    assert data["context_length"] == 1024
    assert isinstance(data["max_params"], int) and data["max_params"] > 0
    assert isinstance(data["recommended_vram"], str)
    assert data["supported_base_models"] and all("/" in m for m in data["supported_base_models"])
    for key in ("training_set_key", "validation_set_key"):
        assert (task_dir / data[key]).is_file()
    assert (task_dir / "README.md").is_file()


def check_common_shape(record: dict[str, Any]) -> None:
    assert isinstance(record.get("system"), str) and record["system"].strip()
    conversations = record["conversations"]
    assert isinstance(conversations, list) and conversations
    for turn in conversations:
        assert set(turn) == {"role", "content"}
        assert turn["role"] in ROLES
        assert isinstance(turn["content"], str) and turn["content"].strip()
        assert turn["content"] == turn["content"].strip()
    assert conversations[0]["role"] == "user"
    assert conversations[-1]["role"] == "assistant"


# ===================================================================================================== text2sql
def sql_category(sql: str) -> str:
    """Primary category: the first rule that matches, in SQL_CATEGORIES order."""
    tree = sqlglot.parse_one(sql, read="sqlite")
    if tree.find(exp.Union, exp.Intersect, exp.Except) is not None:
        return "set_operation"
    if tree.find(exp.Subquery, exp.Exists) is not None or sum(1 for _ in tree.find_all(exp.Select)) > 1:
        return "nested"
    if tree.find(exp.Group) is not None:
        return "group_by"
    if tree.find(exp.Join) is not None:
        return "join"
    if tree.find(exp.AggFunc) is not None:
        return "aggregation"
    if tree.find(exp.Order) is not None or tree.args.get("limit") is not None:
        return "order_limit"
    return "filter"


def t2s_parts(record: dict[str, Any]) -> tuple[str, str, str]:
    """(schema, question, gold sql) of a text2sql record."""
    match = USER_TURN.match(record["conversations"][0]["content"])
    assert match, record["conversations"][0]["content"][:200]
    return match["schema"], match["question"], record["conversations"][1]["content"]


@lru_cache(maxsize=1)
def t2s_domains() -> dict[str, dict[str, str]]:
    return json.loads((T2S_DIR / "domains.json").read_text(encoding="utf-8"))


def t2s_records() -> list[tuple[str, dict[str, Any]]]:
    return [(split, record) for split, records in read_split(T2S_DIR).items() for record in records]


def sample_database(schema: str, rows: int = 6) -> sqlite3.Connection:
    """An in-memory database of ``schema`` with ``rows`` deterministic rows per table.

    Values follow the declared type (integer primary keys 1..rows, TEXT ``column_i``, REAL multiples of 1.5);
    a REFERENCES column takes the referenced column's values, so every join finds matching rows. Parent tables
    must be declared before their children (a self-reference points at the table's first row).
    """
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.executescript(schema)
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
    filled: dict[str, dict[str, list[Any]]] = {}
    for table in tables:
        columns = [(name, ctype.upper()) for _, name, ctype, *_ in conn.execute(f'PRAGMA table_info("{table}")')]
        references = {row[3]: (row[2], row[4]) for row in conn.execute(f'PRAGMA foreign_key_list("{table}")')}
        values: dict[str, list[Any]] = {}
        for name, ctype in columns:
            if name in references:
                continue
            if "INT" in ctype:
                values[name] = [i + 1 for i in range(rows)]
            elif "REAL" in ctype or "NUM" in ctype:
                values[name] = [round((i + 1) * 1.5, 2) for i in range(rows)]
            else:
                values[name] = [f"{name}_{i + 1}" for i in range(rows)]
        for name, (parent, parent_column) in references.items():
            if parent == table:
                values[name] = [values[parent_column][0]] * rows
            else:
                assert parent in filled, f"{table}.{name} references {parent}, which is declared later or missing"
                source = filled[parent][parent_column]
                values[name] = [source[i % len(source)] for i in range(rows)]
        filled[table] = values
        names = [name for name, _ in columns]
        placeholders = ", ".join("?" for _ in names)
        conn.executemany(
            f'INSERT INTO "{table}" VALUES ({placeholders})',
            [tuple(values[name][i] for name in names) for i in range(rows)],
        )
    return conn


def test_text2sql_task_json():
    check_task_json(T2S_DIR, 1)


def test_text2sql_record_shape():
    for _, record in t2s_records():
        assert set(record) == {"system", "conversations"}
        check_common_shape(record)
        assert record["system"] == T2S_SYSTEM
        assert [t["role"] for t in record["conversations"]] == ["user", "assistant"]
        _, question, sql = t2s_parts(record)
        assert question == question.strip() and question[-1] in ".?"
        assert "\n" not in sql and not sql.endswith(";") and "```" not in sql
        assert sql.upper().startswith("SELECT ")
        # A user turn stays short: the demo trains on CPU (about 4 characters per token).
        assert len(record["conversations"][0]["content"]) < 1000


def test_text2sql_domains():
    domains = t2s_domains()
    assert len(domains) >= 8
    for name, domain in domains.items():
        assert set(domain) == {"schema", "description"}, name
        assert domain["description"].strip() and "\n" not in domain["description"]
        statements = domain["schema"].split("\n")
        assert len(statements) >= 3, name
        assert all(s.startswith("CREATE TABLE ") and s.endswith(");") for s in statements), name
        assert "REFERENCES" in domain["schema"], name
        conn = sqlite3.connect(":memory:")
        conn.executescript(domain["schema"])
        assert len(conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()) >= 3, name
    # Every record uses exactly one domain's schema, and every domain is used in both splits.
    by_schema = {d["schema"]: name for name, d in domains.items()}
    used: dict[str, set[str]] = {split: set() for split in SPLITS}
    for split, record in t2s_records():
        schema, _, _ = t2s_parts(record)
        assert schema in by_schema
        used[split].add(by_schema[schema])
    for split in SPLITS:
        assert used[split] == set(domains), split


def test_text2sql_gold_sql_parses_and_executes():
    databases = {d["schema"]: sample_database(d["schema"]) for d in t2s_domains().values()}
    for _, record in t2s_records():
        schema, question, sql = t2s_parts(record)
        tree = sqlglot.parse_one(sql, read="sqlite")
        assert tree is not None, sql
        try:
            databases[schema].execute(sql).fetchall()
        except sqlite3.Error as error:  # pragma: no cover - reported with the failing query
            pytest.fail(f"{question}\n{sql}\n{error}")


def test_text2sql_sample_database_honours_references():
    for domain in t2s_domains().values():
        conn = sample_database(domain["schema"])
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_text2sql_literals_appear_in_question():
    for _, record in t2s_records():
        _, question, sql = t2s_parts(record)
        for literal in sqlglot.parse_one(sql, read="sqlite").find_all(exp.Literal):
            if literal.is_string:
                text = literal.this.strip("%")
                assert text in question, f"{text!r} not in {question!r}"
            elif literal.this not in ("0", "1"):
                assert re.search(rf"(?<![\d.]){re.escape(literal.this)}(?!\d)", question), (literal.this, question)


def test_text2sql_categories_balanced():
    overall: Counter[str] = Counter()
    per_split: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    per_domain: dict[str, set[str]] = {}
    by_schema = {d["schema"]: name for name, d in t2s_domains().items()}
    for split, record in t2s_records():
        schema, _, sql = t2s_parts(record)
        category = sql_category(sql)
        overall[category] += 1
        per_split[split][category] += 1
        per_domain.setdefault(by_schema[schema], set()).add(category)
    assert sum(overall.values()) >= 340
    for category in SQL_CATEGORIES:
        assert overall[category] >= 30, (category, overall)
        for split in SPLITS:
            assert per_split[split][category] >= 1, (split, category)
    for domain, categories in per_domain.items():
        assert len(categories) >= 5, (domain, categories)
    train, val = (sum(per_split[s].values()) for s in SPLITS)
    assert 0.15 <= val / (train + val) <= 0.25


def test_text2sql_category_rule_examples():
    assert sql_category("SELECT a FROM t UNION SELECT a FROM u") == "set_operation"
    assert sql_category("SELECT a FROM t WHERE b IN (SELECT b FROM u)") == "nested"
    assert sql_category("SELECT a FROM t AS x WHERE EXISTS (SELECT 1 FROM u WHERE u.b = x.b)") == "nested"
    assert sql_category("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM t GROUP BY a)") == "nested"
    assert sql_category("SELECT a, COUNT(*) FROM t JOIN u ON t.id = u.t_id GROUP BY a") == "group_by"
    assert sql_category("SELECT COUNT(*) FROM t JOIN u ON t.id = u.t_id ORDER BY 1") == "join"
    assert sql_category("SELECT AVG(a) FROM t WHERE b > 2") == "aggregation"
    assert sql_category("SELECT a FROM t ORDER BY a DESC LIMIT 3") == "order_limit"
    assert sql_category("SELECT a FROM t LIMIT 3") == "order_limit"
    assert sql_category("SELECT DISTINCT a FROM t WHERE b IS NULL") == "filter"


def test_text2sql_questions_unique_and_splits_disjoint():
    questions = {split: [t2s_parts(r)[1] for r in records] for split, records in read_split(T2S_DIR).items()}
    for split, items in questions.items():
        duplicates = [q for q, n in Counter(items).items() if n > 1]
        assert not duplicates, (split, duplicates)
    assert not set(questions[SPLITS[0]]) & set(questions[SPLITS[1]])
    lowered = [q.lower().rstrip("?.") for items in questions.values() for q in items]
    assert len(lowered) == len(set(lowered))


def test_text2sql_agrees_with_task_plugin():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = pytest.importorskip("tools.tasks.text2sql")
    categorize_sql = module.categorize_sql
    for _, record in t2s_records():
        sql = t2s_parts(record)[2]
        primary, tags = categorize_sql(sql)
        assert primary == sql_category(sql), sql
        assert primary in tags


# ============================================================================================= function_calling
def fc_records() -> list[tuple[str, dict[str, Any]]]:
    return [(split, record) for split, records in read_split(FC_DIR).items() for record in records]


def tools_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    tools = json.loads(record["tools"])
    assert isinstance(tools, list)
    return tools


def call_pattern(record: dict[str, Any]) -> str:
    calls = sum(1 for t in record["conversations"] if t["role"] == "function_call")
    if calls >= 2:
        return "multi_call"
    if calls == 1:
        return "single_call"
    return "no_call" if tools_of(record) else "no_tools"


def leaf_values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaf_values(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaf_values(v)]
    return [] if value is None or isinstance(value, bool) else [value]


def mentions(text: str, value: Any) -> bool:
    """Whether an answer repeats an observation value (numbers also with thousands separators)."""
    text = text.lower()
    if isinstance(value, str):
        return value.lower() in text or all(part.lower() in text for part in value.split())
    return str(value) in text or f"{value:,}" in text


def test_function_calling_task_json():
    check_task_json(FC_DIR, 2)


def test_function_calling_record_shape_and_tools():
    definitions: dict[str, str] = {}
    for _, record in fc_records():
        assert set(record) == {"system", "conversations", "tools"}
        check_common_shape(record)
        assert isinstance(record["tools"], str)
        tools = tools_of(record)
        assert len(tools) <= 2
        names = [tool["name"] for tool in tools]
        assert len(names) == len(set(names))
        for tool in tools:
            assert set(tool) == {"name", "description", "parameters"}
            assert re.fullmatch(r"[a-z_]+", tool["name"]) and tool["description"]
            parameters = tool["parameters"]
            assert parameters["type"] == "object"
            assert set(parameters["required"]) <= set(parameters["properties"])
            for prop in parameters["properties"].values():
                assert prop["type"] in {"string", "number", "integer", "boolean", "array", "object"}
                assert prop.get("description")
            jsonschema.Draft202012Validator.check_schema(parameters)
            canonical = json.dumps(tool, sort_keys=True)
            assert definitions.setdefault(tool["name"], canonical) == canonical, f"{tool['name']} defined twice"
    assert 10 <= len(definitions) <= 12


def test_function_calling_calls_validate_and_answers_use_observations():
    for _, record in fc_records():
        offered = {tool["name"]: tool for tool in tools_of(record)}
        conversations = record["conversations"]
        block: list[Any] = []
        for i, turn in enumerate(conversations):
            role = turn["role"]
            previous = conversations[i - 1]["role"] if i else None
            if role == "function_call":
                assert previous in ("user", "observation"), conversations
                call = json.loads(turn["content"])
                assert isinstance(call, dict) and set(call) == {"name", "arguments"}, turn["content"]
                assert call["name"] in offered, (call["name"], list(offered))
                assert isinstance(call["arguments"], dict)
                jsonschema.validate(call["arguments"], offered[call["name"]]["parameters"])
                assert conversations[i + 1]["role"] == "observation"
            elif role == "observation":
                assert previous == "function_call"
                block.append(json.loads(turn["content"]))
            elif role == "assistant":
                if previous == "observation":
                    values = leaf_values(block)
                    assert not values or any(mentions(turn["content"], v) for v in values), turn["content"]
                block = []
            else:
                assert previous in (None, "assistant"), conversations
                block = []


def test_function_calling_patterns():
    counts: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for split, record in fc_records():
        pattern = call_pattern(record)
        counts[split][pattern] += 1
        if pattern == "no_tools":
            assert record["tools"] == "[]"
        else:
            assert 1 <= len(tools_of(record)) <= 2
    train, val = counts[SPLITS[0]], counts[SPLITS[1]]
    assert sum(train.values()) >= 160
    assert sum(val.values()) >= 36
    for pattern in CALL_PATTERNS:
        assert train[pattern] >= 25, (pattern, train)
        assert val[pattern] >= 6, (pattern, val)


def test_function_calling_records_are_short():
    for _, record in fc_records():
        characters = len(record["system"]) + sum(len(t["content"]) for t in record["conversations"])
        assert characters <= 1400, record["conversations"][0]["content"]  # about 350 tokens


def test_function_calling_user_requests_unique():
    seen: dict[str, str] = {}
    firsts: dict[str, set[str]] = {split: set() for split in SPLITS}
    for split, record in fc_records():
        user_turns = [t["content"] for t in record["conversations"] if t["role"] == "user"]
        firsts[split].add(user_turns[0])
        for text in user_turns:
            key = text.lower().strip(" ?.!")
            assert key not in seen, f"duplicate user request: {text!r}"
            seen[key] = split
    assert not firsts[SPLITS[0]] & firsts[SPLITS[1]]


def test_function_calling_agrees_with_task_plugin():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    data = pytest.importorskip("tools.data")
    plugin = pytest.importorskip("tools.tasks.function_calling")
    for name in SPLITS:
        report = data.load_jsonl(FC_DIR / name)
        assert not report.issues
        plain = read_jsonl(FC_DIR / name)
        assert len(report.records) == len(plain)
        for record, raw in zip(report.records, plain, strict=True):
            assert plugin.call_pattern(record) == call_pattern(raw)
