"""Load one table's sources into a staging table and detect its column types.

Rows go, as text (JSON values as they are), into a TEMP table with no column affinity, while each
column's type is tracked. Only when every row has been seen is the final, typed table created and
filled with one `INSERT ... SELECT` that SQLite's column affinity converts in C.

sqlite-utils stays the tool for schema work (create, FTS, indexes, foreign keys), but its row
insert path (`insert_all`) spends ~10 s on a million rows converting values in Python; rows are
loaded here with `executemany` on the same connection instead.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from datasette_action.coltypes import DECLARED, ColumnKind, Kind, Widening
from datasette_action.config import TableConfig
from datasette_action.errors import BuildError, SourceError
from datasette_action.sources import (
    BATCH_ROWS,
    CsvReader,
    SourceFile,
    iter_json_records,
    record_line,
)


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


@dataclass(frozen=True)
class StagedTable:
    config: TableConfig
    stage: str  # the TEMP table's name
    columns: tuple[Column, ...]
    sources: tuple[SourceFile, ...]
    rows_per_source: tuple[int, ...]

    @property
    def rows(self) -> int:
        return sum(self.rows_per_source)

    def locate(self, row: int) -> tuple[SourceFile, int]:
        """Source file and line of the 0-based row number across all sources."""
        for source, count in zip(self.sources, self.rows_per_source):
            if row < count:
                return source, record_line(source, row)
            row -= count
        raise IndexError(row)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Stage:
    """The TEMP table rows are loaded into, growing columns as sources bring new ones."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.conn = conn
        self.name = name
        self.columns: list[str] = []
        self.folded: dict[str, str] = {}  # lower-case name -> name: SQLite columns ignore case
        self.kinds: list[ColumnKind] = []

    def add_columns(self, names: Sequence[str], source: SourceFile) -> list[int]:
        """Positions of `names` in the stage, adding the new ones."""
        positions = []
        seen: dict[str, str] = {}
        for name in names:
            folded = name.lower()
            if folded in seen:
                raise SourceError(
                    f"column '{name}' appears twice (as '{seen[folded]}' and '{name}'; column"
                    " names are not case-sensitive); rename one",
                    source.at(1),
                )
            seen[folded] = name
            if folded not in self.folded:
                if self.columns:
                    self.conn.execute(f"ALTER TABLE temp.{quote(self.name)} ADD COLUMN {quote(name)}")
                else:
                    self.conn.execute(f"CREATE TEMP TABLE {quote(self.name)} ({quote(name)})")
                self.folded[folded] = name
                self.columns.append(name)
                self.kinds.append(ColumnKind())
            positions.append(self.columns.index(self.folded[folded]))
        return positions

    def insert_sql(self, positions: Sequence[int], *, empty_is_null: bool) -> str:
        names = ", ".join(quote(self.columns[p]) for p in positions)
        marks = ", ".join("nullif(?, '')" if empty_is_null else "?" for _ in positions)
        return f"INSERT INTO temp.{quote(self.name)} ({names}) VALUES ({marks})"


def stage_table(
    conn: sqlite3.Connection, table: TableConfig, sources: tuple[SourceFile, ...], stage_name: str
) -> StagedTable:
    stage = _Stage(conn, stage_name)
    declared = {name.lower(): DECLARED[kind] for name, kind in table.types.items()}
    counts = []
    row = 0
    for source in sources:
        if source.format in ("csv", "tsv"):
            loaded = _load_csv(stage, source, row)
        else:
            loaded = _load_json(stage, source, row, declared)
        counts.append(loaded)
        row += loaded
    staged = StagedTable(
        config=table,
        stage=stage_name,
        columns=tuple(Column(n, k.kind) for n, k in zip(stage.columns, stage.kinds)),
        sources=sources,
        rows_per_source=tuple(counts),
    )
    columns = _apply_declared_types(staged, stage.kinds, declared)
    return StagedTable(table, stage_name, columns, sources, tuple(counts))


def _load_csv(stage: _Stage, source: SourceFile, first_row: int) -> int:
    reader = CsvReader(source)
    try:
        positions = stage.add_columns(reader.header, source)
        sql = stage.insert_sql(positions, empty_is_null=True)
        kinds = [stage.kinds[p] for p in positions]
        row = first_row
        for batch in reader.batches():
            stage.conn.executemany(sql, batch)
            for kind, values in zip(kinds, zip(*batch)):
                kind.observe_text(values, row)
            row += len(batch)
        return row - first_row
    finally:
        reader.close()


def _load_json(stage: _Stage, source: SourceFile, first_row: int, declared: dict[str, Kind]) -> int:
    records = iter_json_records(source)
    row = first_row
    while batch := list(islice(records, BATCH_ROWS)):
        names: dict[str, None] = {}
        for record, _ in batch:
            names.update(dict.fromkeys(record))
        for name in names:
            if name == "":
                raise SourceError("a record has a key that is an empty string; every key needs a name", source.at(batch[0][1]))
        positions = stage.add_columns(list(names), source)
        kinds = [stage.kinds[p] for p in positions]
        parse_text = [name.lower() in declared for name in names]
        rows = []
        for offset, (record, _) in enumerate(batch):
            values = [_sql_value(record.get(name)) for name in names]
            for kind, value, parse in zip(kinds, values, parse_text):
                kind.observe_value(value, row + offset, parse)
            rows.append(values)
        stage.conn.executemany(stage.insert_sql(positions, empty_is_null=False), rows)
        row += len(batch)
    return row - first_row


def _sql_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value)  # SQLite integers are 64-bit; keep the digits as text
    return value


def _apply_declared_types(
    staged: StagedTable, kinds: list[ColumnKind], declared: dict[str, Kind]
) -> tuple[Column, ...]:
    table = staged.config
    by_name = {c.name.lower(): (c, k) for c, k in zip(staged.columns, kinds)}
    for name in table.types:
        if name.lower() not in by_name:
            raise BuildError(
                f"types: column '{name}' is not in table '{table.name}'; its columns are:"
                f" {', '.join(c.name for c in staged.columns)}",
                table.location("types"),
            )
    columns = []
    for column, kind in zip(staged.columns, kinds):
        want = declared.get(column.name.lower())
        if want is None:
            columns.append(column)
            continue
        breaking: Widening | None = kind.first_breaking(want) if want < Kind.TEXT else None
        if breaking is not None:
            source, line = staged.locate(breaking.row)
            raise SourceError(
                f"column '{column.name}' is declared {want.name.lower()} (types: in"
                f" {table.location('types')}) but holds {breaking.value!r}; fix the value or"
                " change the declared type",
                source.at(line),
            )
        columns.append(Column(column.name, want))
    return tuple(columns)
