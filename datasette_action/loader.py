"""Load one table's sources into staging databases and detect its column types.

Each source (or, for a large CSV, each slice of it) is a *stage job*: its rows go, as text (JSON
values as they are), into a table `stage` with no column affinity in a database file of its own,
while each column's type is tracked. Jobs run in worker processes when there is more than one
and the data is large (the machines this runs on have two or more cores; parsing CSV in Python
is the bottleneck). Only when every row has been seen is the final, typed table created and
filled from the stage files with `INSERT ... SELECT`, which SQLite's column affinity converts in C.

sqlite-utils stays the tool for schema work (create, FTS, indexes, foreign keys), but its row
insert path (`insert_all`) spends ~10 s on a million rows converting values in Python; rows are
loaded here with `executemany` instead.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from datasette_action.coltypes import DECLARED, ColumnKind, Kind, Widening
from datasette_action.config import TableConfig
from datasette_action.errors import BuildError, SourceError, UserError
from datasette_action.sources import (
    BATCH_ROWS,
    CsvReader,
    MisalignedSplit,
    SourceFile,
    SourcePart,
    iter_json_records,
    record_line,
    split_csv,
)

# CSV files are cut into parts of about this size, loaded side by side by worker processes;
# a file under twice this size loads in one piece, in this process (a pool costs ~0.1-0.3 s).
PART_BYTES = 8 << 20


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


@dataclass(frozen=True)
class StageJob:
    part: SourcePart
    database: Path  # the stage database file this job writes
    declared: frozenset[str]  # lower-case names of columns with a declared type


@dataclass(frozen=True)
class StageResult:
    job: StageJob
    columns: tuple[str, ...]
    kinds: tuple[ColumnKind, ...]
    has_empty: frozenset[str]  # CSV columns with an empty cell (NULL)
    rows: int


@dataclass(frozen=True)
class StagedTable:
    config: TableConfig
    columns: tuple[Column, ...]
    stages: tuple[StageResult, ...]  # in source order
    empty_is_null: frozenset[str] = field(default_factory=frozenset)

    @property
    def rows(self) -> int:
        return sum(stage.rows for stage in self.stages)

    def locate(self, row: int) -> tuple[SourceFile, int]:
        """Source file and line of the 0-based row number across all sources."""
        within_source = 0
        previous: SourceFile | None = None
        for stage in self.stages:
            source = stage.job.part.source
            if source != previous:
                within_source, previous = 0, source
            if row < stage.rows:
                return source, record_line(SourcePart(source), within_source + row)
            row -= stage.rows
            within_source += stage.rows
        raise IndexError(row)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stage_table(
    table: TableConfig, sources: tuple[SourceFile, ...], scratch: Path, prefix: str, workers: int
) -> StagedTable:
    declared = {name.lower(): DECLARED[kind] for name, kind in table.types.items()}
    parts: list[SourcePart] = []
    for source in sources:
        if source.format in ("csv", "tsv"):
            parts.extend(split_csv(source, PART_BYTES))
        else:
            parts.append(SourcePart(source))
    jobs = [
        StageJob(part, scratch / f"{prefix}.{index}.stage.db", frozenset(declared))
        for index, part in enumerate(parts)
    ]
    split = any(part.end is not None for part in parts)  # only large files are split
    results = _run_jobs(jobs, workers if split else 1)
    return _merge(table, results, declared)


def _run_jobs(jobs: list[StageJob], workers: int) -> list[StageResult]:
    if workers <= 1 or len(jobs) <= 1:
        outcomes = [run_stage_job(job) for job in jobs]
    else:
        # fork is the cheapest start, but unsafe once the process has threads.
        method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
        with ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context(method)
        ) as pool:
            outcomes = list(pool.map(run_stage_job, jobs))
    # A file whose split fell inside a quoted field is loaded again in one piece; errors
    # its misaligned parts reported are not real.
    misaligned = {j.part.source for j, o in zip(jobs, outcomes) if isinstance(o, MisalignedSplit)}
    results: list[StageResult] = []
    for job, outcome in zip(jobs, outcomes):
        source = job.part.source
        if source in misaligned:
            if job.part.start == 0:
                whole = run_stage_job(StageJob(SourcePart(source), job.database, job.declared))
                if not isinstance(whole, StageResult):
                    raise whole
                results.append(whole)
            continue
        if not isinstance(outcome, StageResult):
            raise outcome
        results.append(outcome)
    return results


def run_stage_job(job: StageJob) -> StageResult | UserError | MisalignedSplit:
    """Load one part into its stage database. Runs in a worker process: errors are returned."""
    try:
        with _collector_paused():
            if job.part.source.format in ("csv", "tsv"):
                return _load_csv(job)
            return _load_json(job)
    except (UserError, MisalignedSplit) as error:
        return error


class _Stage:
    """A stage database's table, growing columns as JSON records bring new ones."""

    def __init__(self, job: StageJob) -> None:
        job.database.unlink(missing_ok=True)
        self.conn = sqlite3.connect(job.database, isolation_level=None)
        self.conn.execute("PRAGMA page_size = 65536")  # fewer, larger pages: ~10% faster inserts
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("BEGIN")
        self.job = job
        self.columns: list[str] = []
        self.folded: dict[str, int] = {}  # lower-case name -> position: SQLite ignores case
        self.kinds: list[ColumnKind] = []
        self.has_empty: set[str] = set()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.conn.close()
            self.closed = True

    def add_columns(self, names: Sequence[str], line: int) -> list[int]:
        """Positions of `names` in the stage, adding the new ones."""
        positions = []
        seen: dict[str, str] = {}
        for name in names:
            folded = name.lower()
            if folded in seen:
                raise SourceError(
                    f"column '{name}' appears twice (as '{seen[folded]}' and '{name}'; column"
                    " names are not case-sensitive); rename one",
                    self.job.part.source.at(line),
                )
            seen[folded] = name
            if folded not in self.folded:
                if self.columns:
                    self.conn.execute(f"ALTER TABLE stage ADD COLUMN {quote(name)}")
                else:
                    self.conn.execute(f"CREATE TABLE stage ({quote(name)})")
                self.folded[folded] = len(self.columns)
                self.columns.append(name)
                self.kinds.append(ColumnKind())
            positions.append(self.folded[folded])
        return positions

    def insert_sql(self, positions: Sequence[int]) -> str:
        names = ", ".join(quote(self.columns[p]) for p in positions)
        return f"INSERT INTO stage ({names}) VALUES ({', '.join('?' for _ in positions)})"

    def finish(self, rows: int) -> StageResult:
        self.conn.execute("COMMIT")
        self.close()
        return StageResult(self.job, tuple(self.columns), tuple(self.kinds), frozenset(self.has_empty), rows)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while rows stream through.

    Rows are lists and tuples without cycles, freed by reference counting; but each batch keeps
    ten thousand of them alive, and the collector's repeated passes over them cost about a
    quarter of the load time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_csv(job: StageJob) -> StageResult:
    reader = CsvReader(job.part)
    stage = _Stage(job)
    try:
        positions = stage.add_columns(reader.header, job.part.first_line)
        sql = stage.insert_sql(positions)
        watched = [(stage.kinds[p], stage.columns[p]) for p in positions]
        rows = 0
        for batch in reader.batches():
            stage.conn.executemany(sql, batch)
            # one transposition touches each row once: much faster than a pass per column
            for (kind, name), values in zip(watched, zip(*batch)):
                if kind.kind == Kind.TEXT and name in stage.has_empty:
                    continue  # nothing left to learn about this column
                kind.observe_text(values, rows)
                if name not in stage.has_empty and "" in values:
                    stage.has_empty.add(name)
            rows += len(batch)
        return stage.finish(rows)
    finally:
        reader.close()
        stage.close()


def _load_json(job: StageJob) -> StageResult:
    source = job.part.source
    records = iter_json_records(source)
    stage = _Stage(job)
    try:
        rows = 0
        while batch := list(islice(records, BATCH_ROWS)):
            names: dict[str, None] = {}
            for record, _ in batch:
                names.update(dict.fromkeys(record))
            if "" in names:
                line = next(line for record, line in batch if "" in record)
                raise SourceError("a record has an empty key; every key needs a name", source.at(line))
            if len({name.lower() for name in names}) < len(names):
                batch = _fold_keys(batch, stage, source)
                names = {name: None for record, _ in batch for name in record}
            positions = stage.add_columns(list(names), batch[0][1])
            kinds = [stage.kinds[p] for p in positions]
            parse_text = [name.lower() in job.declared for name in names]
            values = []
            for offset, (record, _) in enumerate(batch):
                row = [_sql_value(record.get(name)) for name in names]
                for kind, value, parse in zip(kinds, row, parse_text):
                    kind.observe_value(value, rows + offset, parse)
                values.append(row)
            stage.conn.executemany(stage.insert_sql(positions), values)
            rows += len(batch)
        return stage.finish(rows)
    finally:
        stage.close()


def _fold_keys(
    batch: list[tuple[dict[str, Any], int]], stage: _Stage, source: SourceFile
) -> list[tuple[dict[str, Any], int]]:
    """Records with keys that differ only in case ("name", "NAME") spelled one way, the first
    seen: they are one column, as they are across batches and files (SQLite ignores case)."""
    spelling = {name.lower(): name for name in stage.columns}
    folded = []
    for record, line in batch:
        seen: dict[str, str] = {}
        for key in record:
            if key.lower() in seen:
                raise SourceError(
                    f"column '{key}' appears twice (as '{seen[key.lower()]}' and '{key}'; column"
                    " names are not case-sensitive); rename one",
                    source.at(line),
                )
            seen[key.lower()] = key
            spelling.setdefault(key.lower(), key)
        folded.append(({spelling[key.lower()]: value for key, value in record.items()}, line))
    return folded


def _sql_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value)  # SQLite integers are 64-bit; keep the digits as text
    return value


def _merge(table: TableConfig, results: list[StageResult], declared: dict[str, Kind]) -> StagedTable:
    """One column list and one type per column across all stage jobs, in source order."""
    names: dict[str, str] = {}  # lower-case -> first spelling
    merged: dict[str, ColumnKind] = {}
    offset = 0
    for result in results:
        for name, kind in zip(result.columns, result.kinds):
            folded = name.lower()
            names.setdefault(folded, name)
            merged.setdefault(folded, ColumnKind()).absorb(kind, offset)
        offset += result.rows
    staged = StagedTable(
        config=table,
        columns=tuple(Column(names[f], merged[f].kind) for f in names),
        stages=tuple(results),
        empty_is_null=frozenset(n for r in results for n in r.has_empty),
    )
    return StagedTable(
        table, _apply_declared_types(staged, merged, declared), staged.stages, staged.empty_is_null
    )


def _apply_declared_types(
    staged: StagedTable, kinds: dict[str, ColumnKind], declared: dict[str, Kind]
) -> tuple[Column, ...]:
    table = staged.config
    for name in table.types:
        if name.lower() not in kinds:
            raise BuildError(
                f"types: column '{name}' is not in table '{table.name}'; its columns are:"
                f" {', '.join(c.name for c in staged.columns)}",
                table.location("types"),
            )
    columns = []
    for column in staged.columns:
        want = declared.get(column.name.lower())
        if want is None:
            columns.append(column)
            continue
        breaking: Widening | None = (
            kinds[column.name.lower()].first_breaking(want) if want < Kind.TEXT else None
        )
        if breaking is not None:
            source, line = staged.locate(breaking.row)
            raise SourceError(
                f"column '{column.name}' is declared {want.name.lower()} (types: at"
                f" {table.location('types')}) but holds {breaking.value!r}; fix the value or"
                " change the declared type",
                source.at(line),
            )
        columns.append(Column(column.name, want))
    return tuple(columns)
