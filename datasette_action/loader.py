"""Load tables' sources into stage databases, detecting each column's type on the way.

Each source (or, for a large CSV, each slice of it) is a *stage job*: it reads its rows in
batches, tracks each column's type over every value (coltypes) and writes the rows into a stage
database of its own, typed as the rows seen so far (stage_db). Jobs of all the tables of a
database run side by side in worker processes when there is enough data: parsing CSV in Python is
the bottleneck, and the machines this runs on have two or more cores. The build then fills each
final table from its stages, in source order.

A column's type is only certain after its last value. A stage whose types are narrower than the
final ones is converted as it is copied, exactly; where a stage's numbers cannot become their
text again (a float column that is text after all), a second job puts back the text it kept.

sqlite-utils stays the tool for schema work (create, FTS, indexes, foreign keys), but its row
insert path (`insert_all`) spends ~10 s on a million rows converting values in Python; rows are
loaded here with `executemany` instead.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from datasette_action.coltypes import DECLARED, ColumnKind, Kind, Widening
from datasette_action.config import TableConfig
from datasette_action.errors import BuildError, SourceError, UserError, disk_full, is_out_of_space
from datasette_action.sources import (
    BATCH_ROWS,
    CsvReader,
    MisalignedSplit,
    NumberText,
    SourceFile,
    SourcePart,
    iter_json_records,
    record_line,
    split_csv,
)
from datasette_action.stage_db import Affinity, StageWriter, converts_exactly, restore_text

# CSV files are cut into parts of about this size, loaded side by side by worker processes;
# small parts keep the workers evenly loaded to the end. Sources smaller than twice this size
# in all load in this process (starting a pool costs ~0.05-0.3 s).
PART_BYTES = 2 << 20

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind


@dataclass(frozen=True)
class StageJob:
    part: SourcePart
    database: Path  # the stage database file this job writes
    declared: Mapping[str, Kind]  # lower-case name -> the type given in `types:`


@dataclass(frozen=True)
class StageResult:
    job: StageJob
    columns: tuple[str, ...]
    kinds: tuple[ColumnKind, ...]
    stored: tuple[Affinity, ...]  # how each column of the stage table stores its values
    rows: int


@dataclass(frozen=True)
class StagedTable:
    config: TableConfig
    columns: tuple[Column, ...]
    stages: tuple[StageResult, ...]  # in source order

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


def stage_tables(
    tables: Sequence[tuple[TableConfig, tuple[SourceFile, ...]]], scratch: Path, prefix: str, workers: int
) -> list[StagedTable]:
    """Load every table's sources into stage databases under `scratch`, one pool for them all."""
    size = sum(source.path.stat().st_size for _, sources in tables for source in sources)
    planned = [
        _plan_jobs(table, sources, scratch, f"{prefix}.{index}")
        for index, (table, sources) in enumerate(tables)
    ]
    with _Runner(workers if size >= 2 * PART_BYTES else 1) as runner:
        outcomes = iter(runner.run([job for table_jobs in planned for job in table_jobs]))
        staged = [
            _merge(table, [r for r in (next(outcomes) for _ in table_jobs) if r is not None])
            for (table, _), table_jobs in zip(tables, planned)
        ]
        # Stages with numbers where the final table has text: their text put back.
        restorations = [
            (t, s, RestoreJob(stage, frozenset(restore)))
            for t, table in enumerate(staged)
            for s, stage in enumerate(table.stages)
            if (restore := _to_restore(stage, table.columns))
        ]
        for (t, s, _), result in zip(
            restorations, runner.map(run_restore_job, [j for _, _, j in restorations])
        ):
            stages = list(staged[t].stages)
            stages[s] = result
            staged[t] = replace(staged[t], stages=tuple(stages))
    return staged


def _declared(table: TableConfig) -> dict[str, Kind]:
    """Lower-case column name -> the type `types:` gives it."""
    return {name.lower(): DECLARED[kind] for name, kind in table.types.items()}


def _plan_jobs(
    table: TableConfig, sources: tuple[SourceFile, ...], scratch: Path, prefix: str
) -> list[StageJob]:
    declared = _declared(table)
    parts: list[SourcePart] = []
    for source in sources:
        if source.format in ("csv", "tsv"):
            parts.extend(split_csv(source, PART_BYTES))
        else:
            parts.append(SourcePart(source))
    return [
        StageJob(part, scratch / f"{prefix}.{index}.stage.db", declared) for index, part in enumerate(parts)
    ]


def _to_restore(stage: StageResult, final: tuple[Column, ...]) -> set[int]:
    """Positions of the stage's columns whose stored numbers cannot become the final text."""
    kinds = {column.name.lower(): column.kind for column in final}
    return {
        position
        for position, (name, kind, stored) in enumerate(zip(stage.columns, stage.kinds, stage.stored))
        if not converts_exactly(stored, kind.signed_zero, kinds[name.lower()])
    }


@dataclass(frozen=True)
class RestoreJob:
    stage: StageResult
    restore: frozenset[int]  # positions of the columns to give their text back


def run_restore_job(job: RestoreJob) -> StageResult:
    """Put the kept text back into a stage's columns. Runs in a worker process."""
    stage = job.stage
    stored = restore_text(
        stage.job.database, stage.columns, stage.stored, set(job.restore), stage.job.part.source
    )
    return replace(stage, stored=stored)


class _Runner:
    """Runs stage jobs: in worker processes (one pool, kept for a second round), or here."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def map(self, function: Callable[[T], R], items: list[T]) -> list[R]:
        """function(item) for each item, in worker processes when there are several."""
        if self.workers <= 1 or len(items) <= 1:
            return [function(item) for item in items]
        if self.pool is None:
            # fork is the cheapest start, but unsafe once the process has threads.
            method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
            self.pool = ProcessPoolExecutor(
                max_workers=min(self.workers, len(items)), mp_context=multiprocessing.get_context(method)
            )
        return list(self.pool.map(function, items))

    def run(self, jobs: list[StageJob]) -> list[StageResult | None]:
        """Each job's result, in order; the first job's error (in job order) is raised.

        A file whose split fell inside a quoted field is loaded again in one piece: its first
        part's result is the whole file's, its other parts' None.
        """
        outcomes = self.map(run_stage_job, jobs)
        # Errors that the parts of a misaligned file reported are not real.
        misaligned = {j.part.source for j, o in zip(jobs, outcomes) if isinstance(o, MisalignedSplit)}
        results: list[StageResult | None] = []
        for job, outcome in zip(jobs, outcomes):
            source = job.part.source
            if source in misaligned:
                if job.part.start != 0:
                    results.append(None)
                    continue
                outcome = run_stage_job(replace(job, part=SourcePart(source)))
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
    except Exception as error:
        if is_out_of_space(error):
            # the stage is in the build's scratch directory, inside the databases directory
            return disk_full(job.database.parent.parent, "the databases", error)
        raise


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while rows stream through.

    Rows are lists and tuples without cycles, freed by reference counting; but each batch keeps
    thousands of them alive, and the collector's repeated passes over them cost about a
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
    stage = StageWriter(job.database, job.declared, job.part.source, typed_values=False)
    try:
        positions = stage.add_columns(reader.header, 1)  # the header is the file's first line
        kinds = [stage.kinds[p] for p in positions]
        for batch in reader.batches():
            stage.write(positions, batch, _observe_csv_batch(kinds, batch, stage.rows))
        return _result(job, stage)
    finally:
        reader.close()
        stage.close()


def _observe_csv_batch(kinds: list[ColumnKind], batch: list[list[str]], first_row: int) -> dict[int, str]:
    """Type-check the batch's columns that are not text yet (text is as wide as it gets);
    their cells joined by newlines, by position (see ColumnKind.observe_text)."""
    open_columns = [i for i, kind in enumerate(kinds) if kind.kind != Kind.TEXT]
    columns: Iterable[Sequence[str]]
    if len(open_columns) == 1:
        columns = [list(map(itemgetter(open_columns[0]), batch))]
    elif open_columns:
        # one transposition of just these columns touches each row once, in C
        columns = zip(*map(itemgetter(*open_columns), batch))
    else:
        return {}
    texts = {}
    for i, values in zip(open_columns, columns):
        joined = kinds[i].observe_text(values, first_row)
        if joined is not None:
            texts[i] = joined
    return texts


def _load_json(job: StageJob) -> StageResult:
    source = job.part.source
    records = iter_json_records(source)
    stage = StageWriter(job.database, job.declared, source, typed_values=True)
    try:
        while batch := list(islice(records, BATCH_ROWS)):
            names: dict[str, None] = {}
            for record, _ in batch:
                names.update(dict.fromkeys(record))
            if "" in names:
                line = next(line for record, line in batch if "" in record)
                raise SourceError("a record has an empty key; every key needs a name", source.at(line))
            if not _encodable(list(names)):
                line = next(line for record, line in batch if not _encodable(list(record)))
                raise SourceError(_LONE_SURROGATE.format(what="a key"), source.at(line))
            if len({name.lower() for name in names}) < len(names):
                batch = _fold_keys(batch, stage, source)
                names = {name: None for record, _ in batch for name in record}
            positions = stage.add_columns(list(names), batch[0][1])
            kinds = [stage.kinds[p] for p in positions]
            parse_text = [name.lower() in job.declared for name in names]
            values = []
            for offset, (record, _) in enumerate(batch):
                row = [record.get(name) for name in names]
                for kind, value, parse in zip(kinds, row, parse_text):
                    kind.observe_value(value, stage.rows + offset, parse)
                values.append([_sql_value(value) for value in row])
            try:
                stage.write(positions, values)
            except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no text SQLite can store
                line = next(line for (_, line), row in zip(batch, values) if not _encodable(row))
                raise SourceError(_LONE_SURROGATE.format(what="a string"), source.at(line)) from None
        return _result(job, stage)
    finally:
        stage.close()


_LONE_SURROGATE = (
    "{what} holds a lone surrogate (such as \\ud800), which is not valid Unicode and cannot be"
    " stored as text; fix the escape"
)


def _result(job: StageJob, stage: StageWriter) -> StageResult:
    stored = stage.finish()
    return StageResult(job, tuple(stage.columns), tuple(stage.kinds), stored, stage.rows)


def _fold_keys(
    batch: list[tuple[dict[str, Any], int]], stage: StageWriter, source: SourceFile
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


def _encodable(row: list[Any]) -> bool:
    try:
        for value in row:
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sql_value(value: Any) -> Any:
    """A JSON value as the stage stores it. Booleans are stored as their JSON text: a column
    that ends up a number turns them into 1 and 0 when it is copied (build._copy_stage), one
    that ends up text keeps 'true', not '1' (which would be the string "1")."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except TypeError:  # it holds a NumberText
            return _exact_json(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value)  # SQLite integers are 64-bit; keep the digits as text
    if isinstance(value, NumberText):
        return value.text
    return value


def _exact_json(value: Any) -> str:
    """json.dumps's text of a nested value, with its NumberTexts written as the numbers they are."""
    if isinstance(value, NumberText):
        return value.text
    if isinstance(value, dict):
        items = (f"{json.dumps(key, ensure_ascii=False)}: {_exact_json(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_exact_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _merge(table: TableConfig, results: list[StageResult]) -> StagedTable:
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
    )
    return replace(staged, columns=_apply_declared_types(staged, merged, _declared(table)))


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
