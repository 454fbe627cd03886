"""Typed SQLite schemas parsed from CREATE TABLE statements.

A text-to-SQL prompt carries its schema as CREATE TABLE text. :func:`parse_schema` turns that text into a
:class:`Schema`: tables, columns with their declared types and a coarse value kind, primary keys, and foreign keys,
both declared (``REFERENCES``) and inferred from names (``orders.customer_id`` -> ``customers.id``), because many
task schemas omit REFERENCES and joins still follow those names.

Each statement is parsed by sqlglot and also executed in a scratch SQLite database, since sqlglot accepts some text
SQLite refuses; a statement that fails either check raises :class:`SchemaError` naming the statement.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol, TypeVar

import sqlglot
from sqlglot import exp

ValueKind = Literal["integer", "real", "text", "date", "datetime", "boolean", "blob"]

_INT_TYPES = {
    exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT,
    exp.DataType.Type.MEDIUMINT, exp.DataType.Type.UINT, exp.DataType.Type.UBIGINT,
}
_REAL_TYPES = {
    exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT, exp.DataType.Type.DECIMAL, exp.DataType.Type.MONEY,
    exp.DataType.Type.SMALLMONEY, exp.DataType.Type.UDECIMAL,
}
_DATE_TYPES = {exp.DataType.Type.DATE}
_DATETIME_TYPES = {
    exp.DataType.Type.DATETIME, exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.TIMESTAMPLTZ, exp.DataType.Type.DATETIME64, exp.DataType.Type.TIME,
}
_BLOB_TYPES = {exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY, exp.DataType.Type.BLOB}


class SchemaError(ValueError):
    """A schema statement could not be parsed or was refused by SQLite."""

    def __init__(self, index: int, statement: str, reason: str):
        self.index = index
        self.statement = statement
        self.reason = reason
        shown = statement if len(statement) <= 120 else statement[:117] + "..."
        super().__init__(f"schema statement {index + 1} ({shown!r}): {reason}")


@dataclass(frozen=True)
class Column:
    """One column: its name, its declared type as written (normalized by sqlglot) and the kind of its values."""

    name: str
    declared_type: str
    kind: ValueKind
    primary_key: bool = False
    not_null: bool = False
    unique: bool = False


@dataclass(frozen=True)
class ForeignKey:
    """``table.column`` refers to ``ref_table.ref_column``; ``declared`` is False for one inferred from names."""

    table: str
    column: str
    ref_table: str
    ref_column: str
    declared: bool = True


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_NamedT = TypeVar("_NamedT", bound=_Named)


def _by_name(items: Iterable[_NamedT], name: str) -> _NamedT | None:
    """The item called ``name``; SQLite names are case-insensitive."""
    lowered = name.lower()
    return next((item for item in items if item.name.lower() == lowered), None)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    create_sql: str

    def column(self, name: str) -> Column | None:
        return _by_name(self.columns, name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True)
class Schema:
    """A database schema: its tables (in statement order) and every foreign key, declared or inferred."""

    tables: tuple[Table, ...]
    foreign_keys: tuple[ForeignKey, ...]
    text: str

    def table(self, name: str) -> Table | None:
        return _by_name(self.tables, name)

    def require_table(self, name: str) -> Table:
        table = self.table(name)
        if table is None:
            raise KeyError(f"no table {name!r} in the schema (tables: {', '.join(self.table_names)})")
        return table

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def foreign_keys_of(self, table: str) -> tuple[ForeignKey, ...]:
        """Foreign keys whose referring column lives in ``table``."""
        lowered = table.lower()
        return tuple(fk for fk in self.foreign_keys if fk.table.lower() == lowered)

    def fill_order(self) -> tuple[Table, ...]:
        """Tables ordered parents first, so rows can point at existing parent rows (cycles keep statement order)."""
        remaining = list(self.tables)
        ordered: list[Table] = []
        placed: set[str] = set()
        while remaining:
            for table in remaining:
                parents = {
                    fk.ref_table.lower() for fk in self.foreign_keys_of(table.name)
                    if fk.ref_table.lower() != table.name.lower()
                }
                if parents <= placed or not (parents & {t.name.lower() for t in remaining}):
                    break
            else:
                table = remaining[0]
            remaining.remove(table)
            ordered.append(table)
            placed.add(table.name.lower())
        return tuple(ordered)


def split_statements(text: str) -> list[str]:
    """Split SQL text on semicolons outside quotes and comments; blank statements are dropped."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"`[":
            quote = "]" if ch == "[" else ch
            current.append(ch)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def _value_kind(kind: exp.DataType | None) -> ValueKind:
    if kind is None:
        return "text"
    dtype = kind.this
    if dtype == exp.DataType.Type.BOOLEAN:
        return "boolean"
    if dtype in _INT_TYPES:
        return "integer"
    if dtype in _REAL_TYPES:
        return "real"
    if dtype in _DATE_TYPES:
        return "date"
    if dtype in _DATETIME_TYPES:
        return "datetime"
    if dtype in _BLOB_TYPES:
        return "blob"
    return "text"


def _identifier_names(node: exp.Expression) -> list[str]:
    return [e.name for e in node.expressions if isinstance(e, (exp.Identifier, exp.Column))]


def _reference_target(reference: exp.Reference) -> tuple[str, list[str]]:
    target = reference.this
    if isinstance(target, exp.Schema):
        return target.this.name, _identifier_names(target)
    return target.name, []


def _parse_table(index: int, statement: str) -> tuple[Table, list[tuple[str, str, list[str]]]]:
    """One CREATE TABLE statement -> its Table and its declared references (column, ref table, ref columns)."""
    try:
        tree = sqlglot.parse_one(statement, read="sqlite")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as exc:
        raise SchemaError(index, statement, f"does not parse: {str(exc).splitlines()[0]}") from None
    if not isinstance(tree, exp.Create) or str(tree.args.get("kind", "")).upper() != "TABLE":
        raise SchemaError(index, statement, "not a CREATE TABLE statement")
    body = tree.this
    if not isinstance(body, exp.Schema) or not isinstance(body.this, exp.Table):
        raise SchemaError(index, statement, "CREATE TABLE without a column list (CREATE TABLE ... AS is not a schema)")
    name = body.this.name
    columns: list[Column] = []
    primary: list[str] = []
    references: list[tuple[str, str, list[str]]] = []
    uniques: set[str] = set()
    not_nulls: set[str] = set()
    for item in body.expressions:
        if isinstance(item, exp.Identifier):
            columns.append(Column(name=item.name, declared_type="", kind="text"))
            continue
        if isinstance(item, exp.ColumnDef):
            kind = item.args.get("kind")
            is_pk = False
            for constraint in item.args.get("constraints") or []:
                ckind = constraint.args.get("kind")
                if isinstance(ckind, exp.PrimaryKeyColumnConstraint):
                    is_pk = True
                elif isinstance(ckind, exp.NotNullColumnConstraint) and not ckind.args.get("allow_null"):
                    not_nulls.add(item.name)
                elif isinstance(ckind, exp.UniqueColumnConstraint):
                    uniques.add(item.name)
                elif isinstance(ckind, exp.Reference):
                    ref_table, ref_columns = _reference_target(ckind)
                    references.append((item.name, ref_table, ref_columns))
            if is_pk:
                primary.append(item.name)
            columns.append(
                Column(
                    name=item.name,
                    declared_type=kind.sql() if isinstance(kind, exp.DataType) else "",
                    kind=_value_kind(kind if isinstance(kind, exp.DataType) else None),
                )
            )
            continue
        constraints = item.expressions if isinstance(item, exp.Constraint) else [item]
        for constraint in constraints:
            if isinstance(constraint, exp.PrimaryKey):
                primary.extend(_identifier_names(constraint))
            elif isinstance(constraint, exp.ForeignKey):
                reference = constraint.args.get("reference")
                if isinstance(reference, exp.Reference):
                    ref_table, ref_columns = _reference_target(reference)
                    for pos, column in enumerate(_identifier_names(constraint)):
                        ref_cols = [ref_columns[pos]] if pos < len(ref_columns) else []
                        references.append((column, ref_table, ref_cols))
            elif isinstance(constraint, exp.UniqueColumnConstraint):
                this = constraint.this
                names = _identifier_names(this) if isinstance(this, exp.Schema) else []
                if len(names) == 1:
                    uniques.add(names[0])
    if not columns:
        raise SchemaError(index, statement, f"table {name!r} has no columns")
    pk_lower = {p.lower() for p in primary}
    final = tuple(
        Column(
            name=c.name,
            declared_type=c.declared_type,
            kind=c.kind,
            primary_key=c.name.lower() in pk_lower,
            not_null=c.name in not_nulls or c.name.lower() in pk_lower,
            unique=c.name in uniques or (c.name.lower() in pk_lower and len(pk_lower) == 1),
        )
        for c in columns
    )
    return Table(name=name, columns=final, primary_key=tuple(primary), create_sql=statement), references


def _singular_forms(word: str) -> set[str]:
    """The forms a table name may take for the stem of an ``<stem>_id`` column (customer -> customers, ...)."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("s"):
        forms.add(word)
    return forms


def _infer_foreign_keys(tables: tuple[Table, ...], declared: list[ForeignKey]) -> list[ForeignKey]:
    """Foreign keys suggested by names: ``x_id`` -> table ``x``/``xs`` by its key, or a column that is another
    table's single-column primary key under the same name."""
    by_name = {t.name.lower(): t for t in tables}
    seen = {(fk.table.lower(), fk.column.lower()) for fk in declared}
    inferred: list[ForeignKey] = []
    single_pks = {t.primary_key[0].lower(): t for t in tables if len(t.primary_key) == 1}
    for table in tables:
        own_pk = {p.lower() for p in table.primary_key}
        for column in table.columns:
            lowered = column.name.lower()
            if (table.name.lower(), lowered) in seen:
                continue
            if own_pk == {lowered}:
                continue
            target: Table | None = None
            ref_column: str | None = None
            owner = single_pks.get(lowered)
            if owner is not None and owner is not table and lowered != "id":
                target, ref_column = owner, owner.primary_key[0]
            else:
                match = re.fullmatch(r"(.+?)_?id", lowered)
                if match and lowered != "id":
                    stem = match.group(1).rstrip("_")
                    for form in sorted(_singular_forms(stem)):
                        candidate = by_name.get(form)
                        if candidate is not None and candidate is not table:
                            key = _key_column(candidate, stem)
                            if key is not None:
                                target, ref_column = candidate, key
                                break
            if target is not None and ref_column is not None:
                inferred.append(ForeignKey(table.name, column.name, target.name, ref_column, declared=False))
                seen.add((table.name.lower(), lowered))
    return inferred


def _key_column(table: Table, stem: str) -> str | None:
    if len(table.primary_key) == 1:
        return table.primary_key[0]
    for name in ("id", f"{stem}_id", f"{stem}id"):
        column = table.column(name)
        if column is not None:
            return column.name
    return None


def _sqlite_check(statements: list[str]) -> None:
    conn = sqlite3.connect(":memory:")
    try:
        for index, statement in enumerate(statements):
            try:
                conn.execute(statement)
            except sqlite3.Error as exc:
                raise SchemaError(index, statement, f"SQLite refuses it: {exc}") from None
    finally:
        conn.close()


@lru_cache(maxsize=1024)
def parse_schema(text: str) -> Schema:
    """Parse CREATE TABLE statements (separated by semicolons) into a :class:`Schema`.

    Raises :class:`SchemaError` naming the first statement that does not parse, is not a CREATE TABLE, or that
    SQLite refuses; an empty text raises too.
    """
    statements = split_statements(text)
    if not statements:
        raise SchemaError(0, text, "no CREATE TABLE statement found")
    parsed = [_parse_table(i, s) for i, s in enumerate(statements)]
    tables = tuple(t for t, _ in parsed)
    names = [t.name.lower() for t in tables]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise SchemaError(index, statements[index], f"table {tables[index].name!r} is defined twice")
    _sqlite_check(statements)
    by_name = {t.name.lower(): t for t in tables}
    declared: list[ForeignKey] = []
    for table, references in parsed:
        for column, ref_table, ref_columns in references:
            parent = by_name.get(ref_table.lower())
            if parent is None:
                continue  # a reference to a table outside the schema cannot be joined; SQLite allows it too
            if ref_columns:
                ref_column = ref_columns[0]
            elif len(parent.primary_key) == 1:
                ref_column = parent.primary_key[0]
            else:
                continue
            resolved = parent.column(ref_column)
            declared.append(ForeignKey(table.name, column, parent.name, resolved.name if resolved else ref_column))
    return Schema(tables=tables, foreign_keys=tuple(declared + _infer_foreign_keys(tables, declared)), text=text)
