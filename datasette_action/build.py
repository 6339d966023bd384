"""Build stage: Config -> SQLite databases (+ Datasette's inspect data) in the build directory.

All databases are built in a scratch directory first and moved into place only when every one of
them succeeded: a failed build leaves the previous build as it was, and no partial database.
Output databases use journal_mode DELETE (a WAL database fails on Lambda's read-only code
directory) and are reproducible: the same inputs give the same bytes. Every connection is the
bundled SQLite's (`datasette_action.sqlite`), the one the site runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.db import AlterError

from datasette_action.coltypes import Kind
from datasette_action.config import Config, DatabaseConfig, ForeignKey, TableConfig
from datasette_action.errors import BuildError, Location, SourceError, disk_space_checked
from datasette_action.loader import StagedTable, StageResult, stage_tables
from datasette_action.sources import SourceFile, find_sources
from datasette_action.sqlite import check_extensions_off, sqlite3
from datasette_action.stage_db import STAGE_TABLE, quote, rowid_name

INSPECT_DATA = "inspect-data.json"
SQLITE_HEADER = b"SQLite format 3\x00"
MAX_WORKERS = 4
PYTHON_TYPES = {Kind.EMPTY: str, Kind.INTEGER: int, Kind.FLOAT: float, Kind.TEXT: str}

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuiltTable:
    name: str
    rows: int
    columns: tuple[tuple[str, str], ...]  # (name, declared SQL type)
    hidden: bool  # full-text search index tables, which Datasette hides


@dataclass(frozen=True)
class BuiltDatabase:
    name: str
    path: Path
    sha256: str
    size: int
    tables: tuple[BuiltTable, ...]
    views: tuple[str, ...]


@dataclass(frozen=True)
class BuildResult:
    databases: tuple[BuiltDatabase, ...]
    inspect_data: Path
    warnings: tuple[str, ...]


def build(config: Config, log: Log = lambda message: None) -> BuildResult:
    """Every database of the config, built in scratch under build_dir and moved into place
    once all are built: a failure (a full disk too) leaves the previous ones as they were."""
    with disk_space_checked(config.databases_dir, "the databases"):
        return _build(config, log)


def _build(config: Config, log: Log) -> BuildResult:
    check_extensions_off(os.environ, Location(config.path))
    # Find every source first: a missing file fails the build before anything is loaded.
    display_root = config.path.parent
    sources = {
        (db.name, table.name): find_sources(table, config.root, display_root, config.not_sources)
        for db in config.databases
        for table in db.tables
    }
    out_dir = config.databases_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in out_dir.glob(".building-*"):  # from a build that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=out_dir))
    warnings: list[str] = []
    try:
        for db in config.databases:
            log(f"building {db.name}")
            target = scratch / f"{db.name}.db"
            if db.file is not None:
                _copy_database(db, target)
            else:
                _build_tables(db, {t.name: sources[(db.name, t.name)] for t in db.tables}, target, warnings)
            if db.sql:
                _run_sql_steps(db, target)
            _finish(target, db, warnings)
        built = tuple(_describe(scratch / f"{db.name}.db", db.name) for db in config.databases)
        inspect_data = {
            b.name: {
                "hash": b.sha256,
                "size": b.size,
                "file": b.path.name,
                "tables": {t.name: {"count": t.rows} for t in b.tables},
            }
            for b in built
        }
        (scratch / INSPECT_DATA).write_text(json.dumps(inspect_data, indent=2, sort_keys=True) + "\n")
        # Every database built: move them into place, then drop what an earlier build left.
        result = []
        for database in built:
            final = out_dir / database.path.name
            os.replace(database.path, final)
            result.append(dataclasses.replace(database, path=final))
        os.replace(scratch / INSPECT_DATA, out_dir / INSPECT_DATA)
        keep = {f"{db.name}.db" for db in config.databases}
        for stale in out_dir.glob("*.db"):
            if stale.name not in keep:
                stale.unlink()
        return BuildResult(tuple(result), out_dir / INSPECT_DATA, tuple(warnings))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # The scratch file is thrown away on failure, so the build needs no journal or fsyncs.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA temp_store = FILE")  # staging tables on disk: memory stays bounded
    conn.execute("PRAGMA cache_size = -65536")  # 64 MB
    return conn


def _copy_database(db: DatabaseConfig, target: Path) -> None:
    assert db.file is not None
    where = db.location
    try:
        with db.file.open("rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise SourceError(f"cannot read database file {db.file}: {exc.strerror}", where) from None
    if not header.startswith(SQLITE_HEADER):
        raise SourceError(f"{db.file} is not a SQLite database (its header is wrong)", where)
    wal = header[18] == 2 or Path(f"{db.file}-wal").exists()
    if not wal:
        shutil.copyfile(db.file, target)  # published as it is, byte for byte
        _check_integrity(db, target)
        return
    # A WAL database (or one with un-checkpointed changes beside it) is copied through SQLite's
    # backup API, which reads the WAL too, and switched to journal_mode DELETE.
    try:
        source = sqlite3.connect(f"file:{db.file}?mode=ro", uri=True)
        dest = sqlite3.connect(target)
        source.backup(dest)
        dest.execute("PRAGMA journal_mode = DELETE")
        dest.close()
        source.close()
    except sqlite3.Error as exc:
        raise SourceError(f"cannot read database file {db.file}: {exc}", where) from None
    _check_integrity(db, target)


def _check_integrity(db: DatabaseConfig, copy: Path) -> None:
    """A damaged `file:` database fails here, naming it, not deep in the build or on the site.
    `copy`: the build's copy of it (a WAL database's changes included)."""
    problem = None
    try:
        conn = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
        try:
            rows = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
        if rows != ["ok"]:
            problem = "; ".join(str(row) for row in rows[:3])
    except sqlite3.Error as exc:
        if "file is not a database" in str(exc):
            return  # not a damaged database but none at all: reported where it is opened
        problem = str(exc)
    if problem is not None:
        raise BuildError(
            f"database file {db.file} is damaged (PRAGMA quick_check: {problem}); restore it from a good copy",
            db.location,
        )


def _build_tables(
    db: DatabaseConfig, sources: dict[str, tuple[SourceFile, ...]], target: Path, warnings: list[str]
) -> None:
    staged = {
        table.config.name: table
        for table in stage_tables(
            [(table, sources[table.name]) for table in db.tables], target.parent, db.name, _workers()
        )
    }
    conn = _connect(target)
    try:
        database = sqlite_utils.Database(conn)
        for table in _creation_order(db):
            _create_table(database, staged[table.name], staged)
        for table in db.tables:
            _add_search_and_indexes(database, staged[table.name])
        _check_foreign_keys(conn, db, warnings)
    finally:
        conn.close()
        for staged_table in staged.values():
            for stage in staged_table.stages:
                stage.job.database.unlink(missing_ok=True)


def _workers() -> int:
    """Worker processes for loading: the CPUs this process may run on, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))  # a container or `taskset` may allow fewer than all
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def _creation_order(db: DatabaseConfig) -> list[TableConfig]:
    """Tables ordered so that each comes after the tables its foreign keys point at."""
    by_name = {t.name: t for t in db.tables}
    ordered: list[TableConfig] = []
    visiting: set[str] = set()

    def visit(table: TableConfig) -> None:
        if table in ordered:
            return
        if table.name in visiting:
            raise BuildError(
                f"foreign keys of table '{table.name}' form a cycle; SQLite tables here are"
                " created in order, so remove one of the foreign keys",
                table.location("foreign_keys"),
            )
        visiting.add(table.name)
        for fk in table.foreign_keys:
            other = by_name.get(fk.other_table)
            if other is None:
                raise BuildError(
                    f"foreign_keys: column '{fk.column}' refers to table '{fk.other_table}',"
                    f" which is not a table of database '{db.name}'; tables:"
                    f" {', '.join(by_name)}",
                    table.location("foreign_keys"),
                )
            if other is not table:
                visit(other)
        visiting.discard(table.name)
        ordered.append(table)

    for table in db.tables:
        visit(table)
    return ordered


def _require_columns(
    staged: StagedTable, names: tuple[str, ...], key: str, where: Location | None = None
) -> None:
    """Every name is a column of the table, once; `where` is where the names were written."""
    present = {c.name.lower() for c in staged.columns}
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() not in present:
            raise BuildError(
                f"{key}: column '{name}' is not in table '{staged.config.name}'; its columns"
                f" are: {', '.join(c.name for c in staged.columns)}",
                where or staged.config.location(key),
            )
        if name.lower() in seen:
            raise BuildError(
                f"{key}: column '{name}' is listed twice (as '{seen[name.lower()]}' and '{name}';"
                " column names are not case-sensitive)",
                where or staged.config.location(key),
            )
        seen[name.lower()] = name


def _create_table(
    database: sqlite_utils.Database, staged: StagedTable, all_staged: dict[str, StagedTable]
) -> None:
    table = staged.config
    _require_columns(staged, table.pk, "pk")
    _require_columns(staged, tuple(fk.column for fk in table.foreign_keys), "foreign_keys")
    columns = {c.name: PYTHON_TYPES[c.kind] for c in staged.columns}
    pk = _canonical(staged, table.pk)
    foreign_keys: list[Any] = []
    for fk in table.foreign_keys:
        column = _canonical(staged, (fk.column,))[0]
        foreign_keys.append((column, fk.other_table, _foreign_key_target(table, fk, all_staged)))
    try:
        database[table.name].create(  # type: ignore[union-attr]
            columns,
            pk=(pk[0] if len(pk) == 1 else pk) if pk else None,
            foreign_keys=foreign_keys or None,
        )
    except AlterError as exc:
        raise BuildError(f"foreign_keys: {exc}", table.location("foreign_keys")) from None
    for stage in staged.stages:
        _copy_stage(database.conn, staged, stage, pk)


def _foreign_key_target(table: TableConfig, fk: ForeignKey, all_staged: dict[str, StagedTable]) -> str:
    """The column a foreign key refers to: SQLite requires it to be its table's primary key.

    Resolved here, from the config, rather than guessed by sqlite-utils: the other table may
    be this one, not created yet.
    """
    where = table.location("foreign_keys")
    other = all_staged[fk.other_table]  # created before this table (or this table): pk checked
    other_pk = _canonical(other, other.config.pk)
    if fk.other_column:
        _require_columns(other, (fk.other_column,), "foreign_keys", where)
        if len(other_pk) == 1 and _canonical(other, (fk.other_column,)) == other_pk:
            return other_pk[0]
        target = f"'{fk.other_table}.{fk.other_column}'"
    elif len(other_pk) == 1:
        return other_pk[0]
    else:
        target = f"table '{fk.other_table}'"
    has = f"its primary key is ({', '.join(other_pk)})" if other_pk else "it has none"
    raise BuildError(
        f"foreign_keys: column '{fk.column}' refers to {target}, but a foreign key must refer to"
        f" the single-column primary key (pk:) of its table, and {has}; set pk: on table"
        f" '{fk.other_table}'" + (" to that column" if fk.other_column else ""),
        where,
    )


def _canonical(staged: StagedTable, names: tuple[str, ...]) -> tuple[str, ...]:
    """Column names as the data spells them (config names are matched without case)."""
    by_folded = {c.name.lower(): c.name for c in staged.columns}
    return tuple(by_folded[n.lower()] for n in names)


def _copy_stage(
    conn: sqlite3.Connection, staged: StagedTable, stage: StageResult, pk: tuple[str, ...]
) -> None:
    """Append one stage database's rows to the final table.

    When the stage has the final table's columns in order, `INSERT ... SELECT *` lets SQLite
    copy the records as they are where the types match too (its transfer optimization, which
    takes neither a column list nor an ORDER BY; a table scan is in rowid order), and convert
    them where they do not.
    """
    conn.execute("ATTACH DATABASE ? AS stage", (str(stage.job.database),))
    try:
        present = {name.lower(): name for name in stage.columns}
        if pk:
            _check_primary_key_present(conn, staged, stage, present, pk)
        table = f"main.{quote(staged.config.name)}"
        booleans = _numeric_booleans(staged, stage)
        if not booleans and [c.name.lower() for c in staged.columns] == [n.lower() for n in stage.columns]:
            sql = f"INSERT INTO {table} SELECT * FROM stage.{STAGE_TABLE}"
        else:  # a source with fewer columns, or in another order, than the table; or booleans
            names = [present[c.name.lower()] for c in staged.columns if c.name.lower() in present]
            values = ", ".join(
                f"CASE {quote(n)} WHEN 'true' THEN 1 WHEN 'false' THEN 0 ELSE {quote(n)} END"
                if n.lower() in booleans
                else quote(n)
                for n in names
            )
            sql = (
                f"INSERT INTO {table} ({', '.join(map(quote, names))}) SELECT {values}"
                f" FROM stage.{STAGE_TABLE} ORDER BY {_rowid(stage)}"
            )
        conn.execute("BEGIN")
        try:
            conn.execute(sql)
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            _report_duplicate_key(conn, staged, stage, pk)
            raise BuildError(
                f"table '{staged.config.name}' cannot be filled: {exc}", staged.config.location("pk")
            ) from None
        conn.execute("COMMIT")
    finally:
        conn.execute("DETACH DATABASE stage")


def _numeric_booleans(staged: StagedTable, stage: StageResult) -> set[str]:
    """Lower-case names of the stage's columns that hold JSON booleans (stored as 'true' and
    'false', see loader._sql_value) and are numbers in the final table: they become 1 and 0.
    Such a column held only numbers and booleans, so no string 'true' is turned into 1."""
    final = {c.name.lower(): c.kind for c in staged.columns}
    return {
        name.lower()
        for name, kind in zip(stage.columns, stage.kinds)
        if kind.booleans and final[name.lower()] != Kind.TEXT
    }


def _rowid(stage: StageResult) -> str:
    return rowid_name(stage.columns, stage.job.part.source)


def _stage_row(staged: StagedTable, stage: StageResult, rowid: int) -> int:
    """The 0-based row across the table's sources of a stage table's rowid."""
    before = 0
    for other in staged.stages:
        if other is stage:
            return before + rowid - 1
        before += other.rows
    raise ValueError(stage)


def _check_primary_key_present(
    conn: sqlite3.Connection,
    staged: StagedTable,
    stage: StageResult,
    present: dict[str, str],
    pk: tuple[str, ...],
) -> None:
    missing_columns = [c for c in pk if c.lower() not in present]
    if missing_columns:
        raise SourceError(
            f"table '{staged.config.name}': primary key column '{missing_columns[0]}' is missing"
            " from this file",
            stage.job.part.source.at(1),
        )
    test = " OR ".join(f"{quote(present[c.lower()])} IS NULL OR {quote(present[c.lower()])} = ''" for c in pk)
    rowid = _rowid(stage)
    missing = conn.execute(
        f"SELECT {rowid} FROM stage.{STAGE_TABLE} WHERE {test} ORDER BY {rowid} LIMIT 1"
    ).fetchone()
    if missing:
        source, line = staged.locate(_stage_row(staged, stage, missing[0]))
        raise SourceError(
            f"table '{staged.config.name}': a row has no value for primary key"
            f" {', '.join(pk)}; every row needs one",
            source.at(line),
        )


def _report_duplicate_key(
    conn: sqlite3.Connection, staged: StagedTable, stage: StageResult, pk: tuple[str, ...]
) -> None:
    """Raise the error for the first row of `stage` whose key is already taken."""
    present = {name.lower(): name for name in stage.columns}
    key_columns = [present[c.lower()] for c in pk]
    table = f"main.{quote(staged.config.name)}"
    # Only on this error path: an index makes the search below linear, not quadratic.
    conn.execute(
        f"CREATE INDEX stage.duplicate_search ON {STAGE_TABLE} ({', '.join(quote(k) for k in key_columns)})"
    )
    match = " AND ".join(f"t.{quote(c)} = s.{quote(k)}" for c, k in zip(pk, key_columns))
    earlier = f"EXISTS (SELECT 1 FROM {table} t WHERE {match})"
    same = " AND ".join(f"o.{quote(k)} = s.{quote(k)}" for k in key_columns)
    rowid = _rowid(stage)
    within = f"EXISTS (SELECT 1 FROM stage.{STAGE_TABLE} o WHERE {same} AND o.{rowid} < s.{rowid})"
    keys = ", ".join(f"CAST(s.{quote(k)} AS TEXT)" for k in key_columns)  # '7', not 7
    found = conn.execute(
        f"SELECT s.{rowid}, {keys} FROM stage.{STAGE_TABLE} s WHERE {earlier} OR {within} ORDER BY s.{rowid} LIMIT 1"
    ).fetchone()
    if found is None:
        return  # not a key clash after all: the caller re-raises SQLite's error
    source, line = staged.locate(_stage_row(staged, stage, found[0]))
    key = ", ".join(f"{c} = {v!r}" for c, v in zip(pk, found[1:]))
    raise SourceError(
        f"duplicate primary key in table '{staged.config.name}': {key} appears more than once;"
        " primary keys must be unique",
        source.at(line),
    )


def _add_search_and_indexes(database: sqlite_utils.Database, staged: StagedTable) -> None:
    table = staged.config
    db_table = database[table.name]
    if table.fts:
        _require_columns(staged, table.fts, "fts")
        fts_columns = list(_canonical(staged, table.fts))
        try:
            # No triggers: the published database is read-only, so the index never needs updating.
            db_table.enable_fts(fts_columns, fts_version="FTS5", create_triggers=False)  # type: ignore[union-attr]
        except sqlite3.OperationalError as exc:  # e.g. another table is already named <table>_fts
            raise BuildError(
                f"fts: cannot create the search table '{table.name}_fts': {exc}", table.location("fts")
            ) from None
        db_table.optimize()  # type: ignore[union-attr]
    indexed: set[tuple[str, ...]] = set()
    for columns in table.indexes:
        _require_columns(staged, columns, "indexes")
        canonical = _canonical(staged, columns)
        if canonical in indexed:
            raise BuildError(
                f"indexes: the index on ({', '.join(columns)}) is listed twice", table.location("indexes")
            )
        indexed.add(canonical)
        name = _index_name(database, table.name, canonical)
        db_table.create_index(list(canonical), index_name=name)  # type: ignore[union-attr]


def _index_name(database: sqlite_utils.Database, table: str, columns: tuple[str, ...]) -> str:
    """sqlite-utils' name for an index, idx_<table>_<columns>, with _2, _3, ... when it is taken (the
    indexes on (a_b) and (a, b) would both be idx_<table>_a_b). Not its find_unique_name: that
    catches sqlite-utils' own sqlite3 module's error, which need not be the bundled binding's."""
    base = f"idx_{table.replace(' ', '_')}_{'_'.join(columns)}"
    taken = {str(name).lower() for (name,) in database.conn.execute("SELECT name FROM sqlite_master")}
    name, suffix = base, 1
    while name.lower() in taken:  # SQLite's names ignore case
        suffix += 1
        name = f"{base}_{suffix}"
    return name


class _StepGuard:
    """An authorizer for `sql:` steps: a config (a pull request's, say) must not make SQLite write
    or load files. ATTACH of another file and VACUUM INTO (which SQLite authorizes as an ATTACH of
    its target) are denied, and so is load_extension(); ATTACH ':memory:' (or '', a temporary
    database) is allowed."""

    def __init__(self) -> None:
        self.denied: str | None = None

    def __call__(self, action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_ATTACH and arg1 not in ("", ":memory:", None):
            self.denied = (
                f"sql steps may not attach or write other database files (ATTACH or VACUUM INTO"
                f" '{arg1}'); the build writes only its own databases"
            )
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
            self.denied = "sql steps may not call load_extension(); SQLite extensions cannot be loaded"
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK


def _run_sql_steps(db: DatabaseConfig, target: Path) -> None:
    conn = _connect(target)
    guard = _StepGuard()
    conn.set_authorizer(guard)
    try:
        for step in db.sql:
            try:
                guard.denied = None
                conn.executescript(step.sql)
            except sqlite3.Error as exc:
                if guard.denied is not None:
                    raise BuildError(guard.denied, step.location) from None
                statement = " ".join(step.sql.split())
                raise BuildError(
                    f"sql step failed: {exc}; the statement was: {statement}", step.location
                ) from None
    finally:
        conn.close()


def _check_views(conn: sqlite3.Connection, db: DatabaseConfig) -> None:
    """Query each view once: SQLite accepts a view over missing columns, or calling a function it
    lacks, and fails only when it is queried; so a broken view fails the build, not the site. (The
    views of a `file:` database too: it is served by the bundled SQLite, not the one that made it.)"""
    views = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")]
    for view in views:
        try:
            conn.execute(f"SELECT * FROM {quote(view)} LIMIT 0").fetchall()
        except sqlite3.Error as exc:
            raise BuildError(
                f"view '{view}' in database '{db.name}' cannot be queried: {exc}",
                db.sql[-1].location if db.sql else db.location,
            ) from None


def _check_foreign_keys(conn: sqlite3.Connection, db: DatabaseConfig, warnings: list[str]) -> None:
    """One warning per foreign key with dangling references, counting rows (a row that dangles
    through two keys counts once for each). A table with several keys to the same table names
    each key's columns."""
    rows: dict[tuple[str, str, int], set[int]] = {}
    for table, rowid, parent, fk in conn.execute("PRAGMA foreign_key_check"):
        rows.setdefault((table, parent, fk), set()).add(rowid)
    for (table, parent, fk), dangling in sorted(rows.items()):
        keys = conn.execute(f"PRAGMA foreign_key_list({quote(table)})").fetchall()
        through = [key for key in keys if key[0] == fk]
        several = len({key[0] for key in keys if key[2] == parent}) > 1
        columns = f" (through {', '.join(key[3] for key in through)})" if several else ""
        warnings.append(
            f"database '{db.name}': {len(dangling)} row(s) of table '{table}' refer to rows missing"
            f" from '{parent}'{columns}"
        )


def _finish(target: Path, db: DatabaseConfig, warnings: list[str]) -> None:
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        _check_views(conn, db)
        if db.file is None or db.sql:
            # Space freed by sql: steps would otherwise ship as empty pages.
            if conn.execute("PRAGMA freelist_count").fetchone()[0]:
                conn.execute("VACUUM")
        mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        if mode != "delete":
            raise BuildError(f"could not switch {db.name} to journal_mode DELETE (got {mode})", db.location)
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"database '{db.name}' cannot be read: {exc}", db.location) from None
    finally:
        conn.close()


def _describe(path: Path, name: str) -> BuiltDatabase:
    """Hash, size, tables and row counts of a finished database (Datasette's inspect data)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        tables = []
        entries = conn.execute(
            "SELECT name, type, sql FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
        ).fetchall()
        search = [n for n, _, sql in entries if sql and sql.upper().startswith("CREATE VIRTUAL TABLE")]
        views = tuple(n for n, kind, _ in entries if kind == "view")
        for table, kind, _sql in entries:
            if kind != "table":
                continue
            rows = conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]
            columns = tuple(
                (column[1], column[2]) for column in conn.execute(f"PRAGMA table_info({quote(table)})")
            )
            hidden = any(table == s or table.startswith(f"{s}_") for s in search)
            tables.append(BuiltTable(table, rows, columns, hidden))
    finally:
        conn.close()
    return BuiltDatabase(name, path, digest.hexdigest(), path.stat().st_size, tuple(tables), views)
