"""A stage database: one job's rows, in tables typed as the rows seen so far.

Rows go into a *segment* table whose column affinities are the types found so far, so SQLite
converts the text as it inserts (in C, in the job's process). A batch that widens a column opens
a new segment with the wider affinity; at the end the segments are joined into one table,
`stage`, with the job's types. SQLite copies a stage's records into a final table with the same
affinities as they are (its transfer optimization), about four times cheaper than converting
them.

Converting a stored value into a wider type gives exactly what converting its source text would
(an integer as text or as a float is unambiguous), except a CSV number stored as REAL ("1.50"
became 1.5), or "-0" stored as an integer, for a column that ends up text. For those the text of
each batch is kept beside the rows, in a table `texts`, and put back (`restore_text`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from datasette_action.coltypes import ColumnKind, Kind
from datasette_action.errors import SourceError
from datasette_action.sources import SourceFile
from datasette_action.sqlite import sqlite3  # the bundled SQLite: stages are made by the one that serves

STAGE_TABLE = "stage"


class Affinity(Enum):
    """How a stage column stores values: the SQL type it is declared with."""

    TEXT = "TEXT"
    INTEGER = "INTEGER"
    REAL = "REAL"
    # As bound: JSON numbers keep ints and floats apart, so they convert to text as they would
    # have directly (REAL affinity would make 5 into 5.0, and then "5.0")
    NONE = "BLOB"


def final_affinity(kind: Kind) -> Affinity:
    """The affinity of a final table's column (sqlite-utils: INTEGER, REAL or TEXT)."""
    return {Kind.INTEGER: Affinity.INTEGER, Kind.FLOAT: Affinity.REAL}.get(kind, Affinity.TEXT)


def converts_exactly(stored: Affinity, signed_zero: bool, final: Kind) -> bool:
    """Whether a value stored with `stored` affinity becomes, in a column of type `final`, what
    its source would have become. `signed_zero`: the column held a "-0"."""
    if final != Kind.TEXT or stored in (Affinity.TEXT, Affinity.NONE):
        return True  # to a number: a number converts as its text would; text keeps all
    if stored == Affinity.INTEGER:
        return not signed_zero  # canonical integers print back as they were written
    return False  # a float's text ("1.50", "1e3") is gone: see `texts`


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rowid_alias(columns: Sequence[str]) -> str | None:
    """A name of a table's rowid that none of its columns hides: a source may have a column
    named "rowid" (Datasette's CSV exports do), which SQLite then reads instead."""
    taken = {name.lower() for name in columns}
    return next((alias for alias in ("rowid", "_rowid_", "oid") if alias not in taken), None)


def rowid_name(columns: Sequence[str], source: SourceFile) -> str:
    """rowid_alias, where the table's rows must be told apart: an error if none is left."""
    alias = rowid_alias(columns)
    if alias is None:
        raise SourceError(
            "columns named rowid, _rowid_ and oid hide SQLite's row numbers; rename one of them",
            source.at(1),
        )
    return alias


def max_columns(conn: sqlite3.Connection) -> int:
    """SQLite's SQLITE_MAX_COLUMN: the binding has no getlimit(), so its compile options say."""
    for (option,) in conn.execute("PRAGMA compile_options"):
        if option.startswith("MAX_COLUMN="):
            return int(option.split("=", 1)[1])
    return 2000  # SQLite's default


def connect(database: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")  # a stage is thrown away if anything fails
    conn.execute("PRAGMA synchronous = OFF")
    return conn


class StageWriter:
    """A stage database being written: its columns (growing as JSON records bring new ones),
    their types, the segment tables the rows went into and the texts kept for them."""

    def __init__(
        self, database: Path, fixed: Mapping[str, Kind], source: SourceFile, typed_values: bool
    ) -> None:
        """`fixed`: lower-case name -> the type a column has from the first row (declared).
        `typed_values`: rows hold JSON values, not CSV text."""
        database.unlink(missing_ok=True)
        self.conn = connect(database)
        self.conn.execute("PRAGMA page_size = 65536")  # fewer, larger pages: ~10% faster inserts
        self.conn.execute("BEGIN")
        self.max_columns = max_columns(self.conn)
        self.fixed = fixed
        self.source = source
        self.typed_values = typed_values
        self.columns: list[str] = []
        self.folded: dict[str, int] = {}  # lower-case name -> position: SQLite ignores case
        self.kinds: list[ColumnKind] = []
        self.segments: list[tuple[Affinity, ...]] = []  # each segment table's column affinities
        self.segment_rows: list[int] = []
        self.inserts: dict[tuple[int, ...], str] = {}  # by positions, into the last segment
        self.rows = 0  # written so far
        self.keyless_rows = 0  # JSON records before the first that has a key, not yet written
        self.keeps_texts = False
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
                    self.source.at(line),
                )
            seen[folded] = name
            if folded not in self.folded:
                self.folded[folded] = len(self.columns)
                self.columns.append(name)
                self.kinds.append(ColumnKind())
            positions.append(self.folded[folded])
        if len(self.columns) > self.max_columns:
            raise SourceError(
                f"{self.source.path.name} has {len(self.columns)} columns, more than SQLite allows"
                f" in a table ({self.max_columns}, SQLITE_MAX_COLUMN); split it into tables",
                self.source.at(line),
            )
        return positions

    def affinities(self) -> tuple[Affinity, ...]:
        """Each column's affinity for the rows seen so far: its fixed type, or the type found."""
        kinds = (self.fixed.get(name.lower(), kind.kind) for name, kind in zip(self.columns, self.kinds))
        if self.typed_values:
            return tuple(Affinity.NONE if kind == Kind.FLOAT else final_affinity(kind) for kind in kinds)
        return tuple(final_affinity(kind) for kind in kinds)

    def write(
        self,
        positions: Sequence[int],
        rows: Sequence[Sequence[Any]],
        texts: Mapping[int, str] | None = None,
    ) -> None:
        """Insert rows (values for the columns at `positions`) once their types are observed.

        CSV rows come with `texts`: position -> the batch's cells of that column joined by
        newlines, for the columns not yet known to be text; an empty cell becomes NULL.
        """
        self.rows += len(rows)
        if not self.columns:
            self.keyless_rows += len(rows)
            return
        affinities = self.affinities()
        self._segment_for(affinities)
        if texts:
            self._keep_texts(affinities, texts, first_row=self.rows - len(rows))
        if not positions:  # JSON records without keys: rows of NULLs
            positions, rows = [0], [(None,)] * len(rows)
        key = tuple(positions)
        sql = self.inserts.get(key)
        if sql is None:
            names = ", ".join(quote(self.columns[p]) for p in positions)
            if not self.typed_values:  # CASE is cheaper than nullif()
                values = [
                    f"CASE WHEN ?{n} = '' THEN NULL ELSE ?{n} END" for n in range(1, len(positions) + 1)
                ]
            else:
                values = ["?"] * len(positions)
            sql = f"INSERT INTO {self._segment_name()} ({names}) VALUES ({', '.join(values)})"
            self.inserts[key] = sql
        self.conn.executemany(sql, rows)
        self.segment_rows[-1] += len(rows)

    def _keep_texts(self, affinities: Sequence[Affinity], texts: Mapping[int, str], first_row: int) -> None:
        """The text of the cells this batch stores where it could not be recovered from."""
        kept = [
            (first_row, position, joined)
            for position, joined in texts.items()
            if not converts_exactly(affinities[position], self.kinds[position].signed_zero, Kind.TEXT)
            and self.columns[position].lower() not in self.fixed  # declared: never widened
        ]
        if kept:
            if not self.keeps_texts:
                self.conn.execute("CREATE TABLE texts (first_row INTEGER, position INTEGER, joined TEXT)")
                self.keeps_texts = True
            self.conn.executemany("INSERT INTO texts VALUES (?, ?, ?)", kept)

    def _segment_name(self, index: int | None = None) -> str:
        return f"segment_{len(self.segments) - 1 if index is None else index}"

    def _segment_for(self, wanted: tuple[Affinity, ...]) -> None:
        """Make the last segment table one whose affinities are `wanted`."""
        current = self.segments[-1] if self.segments else None
        if current is not None and wanted[: len(current)] == current:
            for position in range(len(current), len(wanted)):  # new JSON keys: new columns
                self.conn.execute(
                    f"ALTER TABLE {self._segment_name()} ADD COLUMN"
                    f" {quote(self.columns[position])} {wanted[position].value}"
                )
            self.segments[-1] = wanted
            return
        self.segments.append(wanted)
        self.segment_rows.append(0)
        self.inserts.clear()
        self.conn.execute(f"CREATE TABLE {self._segment_name()} ({_definitions(self.columns, wanted)})")
        if self.keyless_rows:
            self.conn.executemany(
                f"INSERT INTO {self._segment_name()} ({quote(self.columns[0])}) VALUES (NULL)",
                [()] * self.keyless_rows,
            )
            self.segment_rows[-1], self.keyless_rows = self.keyless_rows, 0

    def finish(self) -> tuple[Affinity, ...]:
        """Join the segments into the `stage` table, commit; its column affinities."""
        if not self.columns:
            raise SourceError(
                "no record has a key, so the table would have no columns; give the records keys",
                self.source.at(),
            )
        final = self.affinities()
        if not self.segments:  # a CSV file with a header and no rows
            self._segment_for(final)
        if len(self.segments) == 1 and self.segments[0] == final:
            self.conn.execute(f"ALTER TABLE {self._segment_name(0)} RENAME TO {STAGE_TABLE}")
        else:
            restore = {
                position
                for segment in self.segments
                for position, (stored, kind, target) in enumerate(zip(segment, self.kinds, final))
                if target == Affinity.TEXT and not converts_exactly(stored, kind.signed_zero, Kind.TEXT)
            }
            sources = [
                (self._segment_name(index), self.columns[: len(segment)], sum(self.segment_rows[:index]))
                for index, segment in enumerate(self.segments)
            ]
            _join(self.conn, self.columns, final, sources, restore, self.source)
        self.conn.execute("COMMIT")
        self.close()
        return final


def restore_text(
    database: Path, columns: Sequence[str], stored: Sequence[Affinity], restore: set[int], source: SourceFile
) -> tuple[Affinity, ...]:
    """Give the columns at `restore` of a finished stage their source text back, as TEXT."""
    affinities = tuple(Affinity.TEXT if i in restore else a for i, a in enumerate(stored))
    conn = connect(database)
    try:
        conn.execute("BEGIN")
        conn.execute(f"ALTER TABLE {STAGE_TABLE} RENAME TO unrestored")
        _join(conn, columns, affinities, [("unrestored", columns, 0)], restore, source)
        conn.execute("DROP TABLE unrestored")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return affinities


def _definitions(columns: Sequence[str], affinities: Sequence[Affinity]) -> str:
    return ", ".join(f"{quote(name)} {affinity.value}" for name, affinity in zip(columns, affinities))


def _join(
    conn: sqlite3.Connection,
    columns: Sequence[str],
    affinities: Sequence[Affinity],
    sources: Sequence[tuple[str, Sequence[str], int]],
    restore: set[int],
    source: SourceFile,
) -> None:
    """Fill a new `stage` table from tables (name, their columns, the row their first row is),
    in order; the columns at `restore` take their text from `texts` where it was kept."""
    conn.execute(f"CREATE TABLE {STAGE_TABLE} ({_definitions(columns, affinities)})")
    order = rowid_alias(columns)
    if restore:
        order = rowid_name(columns, source)  # kept texts are matched to rows by rowid
        _load_kept_texts(conn, sorted(restore))
    for table, names, first_row in sources:
        values = [
            f"coalesce(nullif({_kept(i)}.text, ''), s.{quote(name)})" if i in restore else f"s.{quote(name)}"
            for i, name in enumerate(names)
        ]
        joins = "".join(
            f" LEFT JOIN {_kept(i)} ON {_kept(i)}.row = s.{order} + {first_row - 1}"
            for i in sorted(restore)
            if i < len(names)
        )
        conn.execute(
            f"INSERT INTO {STAGE_TABLE} ({', '.join(quote(n) for n in names)})"
            f" SELECT {', '.join(values)} FROM {table} s{joins}" + (f" ORDER BY s.{order}" if order else "")
            # without an alias, a scan is in rowid order anyway
        )


def _kept(position: int) -> str:
    return f"kept_{position}"


def _load_kept_texts(conn: sqlite3.Connection, positions: list[int]) -> None:
    """For each of these columns a table kept_<position> (row, text) of the texts kept for it,
    one row per source row of the batches that kept it."""
    for position in positions:
        conn.execute(f"CREATE TABLE {_kept(position)} (row INTEGER PRIMARY KEY, text TEXT)")
    kept = conn.execute(  # one batch at a time: memory stays bounded
        f"SELECT first_row, position, joined FROM texts WHERE position IN ({', '.join('?' * len(positions))})",
        positions,
    )
    for first_row, position, joined in kept:
        # SQLite cuts the JSON list into rows, in C: faster than an executemany of them
        conn.execute(
            f"INSERT INTO {_kept(position)} SELECT ? + key, value FROM json_each(?)",
            (first_row, json.dumps(joined.split("\n"))),
        )
