"""Build stage: Config -> SQLite databases (+ Datasette's inspect data) in the build directory.

All databases are built in a scratch directory first and moved into place only when every one of
them succeeded: a failed build leaves the previous build as it was, and no partial database.
Output databases use journal_mode DELETE (a WAL database fails on Lambda's read-only code
directory) and are reproducible: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from sqlite_utils.db import AlterError

from datasette_action.coltypes import Kind
from datasette_action.config import Config, DatabaseConfig, TableConfig
from datasette_action.errors import BuildError, SourceError
from datasette_action.loader import StagedTable, quote, stage_table
from datasette_action.sources import SourceFile, find_sources

INSPECT_DATA = "inspect-data.json"
SQLITE_HEADER = b"SQLite format 3\x00"
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
    # Find every source first: a missing file fails the build before anything is loaded.
    display_root = config.path.parent
    sources = {
        (db.name, table.name): find_sources(table, config.root, display_root)
        for db in config.databases
        for table in db.tables
    }
    out_dir = config.databases_dir
    out_dir.mkdir(parents=True, exist_ok=True)
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
            result.append(_moved(database, final))
        os.replace(scratch / INSPECT_DATA, out_dir / INSPECT_DATA)
        keep = {f"{db.name}.db" for db in config.databases}
        for stale in out_dir.glob("*.db"):
            if stale.name not in keep:
                stale.unlink()
        return BuildResult(tuple(result), out_dir / INSPECT_DATA, tuple(warnings))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _moved(database: BuiltDatabase, path: Path) -> BuiltDatabase:
    return BuiltDatabase(database.name, path, database.sha256, database.size, database.tables, database.views)


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


def _build_tables(
    db: DatabaseConfig, sources: dict[str, tuple[SourceFile, ...]], target: Path, warnings: list[str]
) -> None:
    conn = _connect(target)
    try:
        staged = {}
        for index, table in enumerate(db.tables):
            conn.execute("BEGIN")
            staged[table.name] = stage_table(conn, table, sources[table.name], f"stage_{index}")
            conn.execute("COMMIT")
        database = sqlite_utils.Database(conn)
        for table in _creation_order(db):
            _create_table(database, staged[table.name], {t.name: staged[t.name] for t in db.tables})
        for table in db.tables:
            _add_search_and_indexes(database, staged[table.name])
        for table in db.tables:
            conn.execute(f"DROP TABLE temp.{quote(staged[table.name].stage)}")
        _check_foreign_keys(conn, db, warnings)
    finally:
        conn.close()


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


def _require_columns(staged: StagedTable, names: tuple[str, ...], key: str) -> None:
    present = {c.name.lower() for c in staged.columns}
    for name in names:
        if name.lower() not in present:
            raise BuildError(
                f"{key}: column '{name}' is not in table '{staged.config.name}'; its columns"
                f" are: {', '.join(c.name for c in staged.columns)}",
                staged.config.location(key),
            )


def _create_table(database: sqlite_utils.Database, staged: StagedTable, all_staged: dict[str, StagedTable]) -> None:
    table = staged.config
    _require_columns(staged, table.pk, "pk")
    _require_columns(staged, tuple(fk.column for fk in table.foreign_keys), "foreign_keys")
    for fk in table.foreign_keys:
        if fk.other_column:
            _require_columns(all_staged[fk.other_table], (fk.other_column,), "foreign_keys")
    columns = {c.name: PYTHON_TYPES[c.kind] for c in staged.columns}
    pk = _canonical(staged, table.pk)
    try:
        database[table.name].create(  # type: ignore[union-attr]
            columns,
            pk=(pk[0] if len(pk) == 1 else pk) if pk else None,
            foreign_keys=[
                (
                    _canonical(staged, (fk.column,))[0],
                    fk.other_table,
                    _canonical(all_staged[fk.other_table], (fk.other_column,))[0] if fk.other_column else None,
                )
                for fk in table.foreign_keys
            ]
            or None,
        )
    except AlterError as exc:
        raise BuildError(f"foreign_keys: {exc}", table.location("foreign_keys")) from None
    if pk:
        _check_primary_key(database.conn, staged, pk)
    names = ", ".join(quote(c.name) for c in staged.columns)
    database.conn.execute("BEGIN")
    database.conn.execute(
        f"INSERT INTO main.{quote(table.name)} ({names}) SELECT {names}"
        f" FROM temp.{quote(staged.stage)} ORDER BY rowid"
    )
    database.conn.execute("COMMIT")


def _canonical(staged: StagedTable, names: tuple[str, ...]) -> tuple[str, ...]:
    """Column names as the data spells them (config names are matched without case)."""
    by_folded = {c.name.lower(): c.name for c in staged.columns}
    return tuple(by_folded[n.lower()] for n in names)


def _check_primary_key(conn: sqlite3.Connection, staged: StagedTable, pk: tuple[str, ...]) -> None:
    stage = f"temp.{quote(staged.stage)}"
    missing = conn.execute(
        f"SELECT rowid FROM {stage} WHERE {' OR '.join(f'{quote(c)} IS NULL' for c in pk)} LIMIT 1"
    ).fetchone()
    if missing:
        source, line = staged.locate(missing[0] - 1)
        raise SourceError(
            f"table '{staged.config.name}': a row has no value for primary key"
            f" {', '.join(pk)}; every row needs one",
            source.at(line),
        )
    columns = ", ".join(quote(c) for c in pk)
    duplicate = conn.execute(
        f"SELECT min(rowid), {columns} FROM {stage} GROUP BY {columns} HAVING count(*) > 1"
        " ORDER BY min(rowid) LIMIT 1"
    ).fetchone()
    if not duplicate:
        return
    first, values = duplicate[0], duplicate[1:]
    where = " AND ".join(f"{quote(c)} = ?" for c in pk)
    second = conn.execute(
        f"SELECT rowid FROM {stage} WHERE {where} AND rowid > ? ORDER BY rowid LIMIT 1",
        (*values, first),
    ).fetchone()[0]
    first_source, first_line = staged.locate(first - 1)
    source, line = staged.locate(second - 1)
    key = ", ".join(f"{c} = {v!r}" for c, v in zip(pk, values))
    seen = f"line {first_line}" if first_source == source else f"{first_source.at(first_line)}"
    raise SourceError(
        f"duplicate primary key in table '{staged.config.name}': {key} (first seen at {seen})",
        source.at(line),
    )


def _add_search_and_indexes(database: sqlite_utils.Database, staged: StagedTable) -> None:
    table = staged.config
    db_table = database[table.name]
    if table.fts:
        _require_columns(staged, table.fts, "fts")
        # No triggers: the published database is read-only, so the index never needs updating.
        db_table.enable_fts(list(_canonical(staged, table.fts)), fts_version="FTS5", create_triggers=False)  # type: ignore[union-attr]
        db_table.optimize()  # type: ignore[union-attr]
    for columns in table.indexes:
        _require_columns(staged, columns, "indexes")
        db_table.create_index(list(_canonical(staged, columns)))  # type: ignore[union-attr]


def _run_sql_steps(db: DatabaseConfig, target: Path) -> None:
    conn = _connect(target)
    try:
        for step in db.sql:
            try:
                conn.executescript(step.sql)
            except sqlite3.Error as exc:
                statement = " ".join(step.sql.split())
                raise BuildError(
                    f"sql step failed: {exc}; the statement was: {statement}", step.location
                ) from None
    finally:
        conn.close()


def _check_foreign_keys(conn: sqlite3.Connection, db: DatabaseConfig, warnings: list[str]) -> None:
    violations: dict[tuple[str, str], int] = {}
    for table, _rowid, parent, _fk in conn.execute("PRAGMA foreign_key_check"):
        violations[(table, parent)] = violations.get((table, parent), 0) + 1
    for (table, parent), count in sorted(violations.items()):
        warnings.append(
            f"database '{db.name}': {count} row(s) of table '{table}' refer to rows missing from '{parent}'"
        )


def _finish(target: Path, db: DatabaseConfig, warnings: list[str]) -> None:
    conn = sqlite3.connect(target, isolation_level=None)
    try:
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
