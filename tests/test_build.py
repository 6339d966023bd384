"""Tests for the build stage: config + CSV/TSV/JSON/SQLite sources -> SQLite databases.

Every test writes a real project (config and data files) under tmp_path, builds it with
`build(load_config(...))` or the CLI, and opens the resulting databases with sqlite3. Nothing is
mocked; the parallel CSV path is exercised by lowering `loader.PART_BYTES`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from datasette_action import build as build_module
from datasette_action import coltypes, loader
from datasette_action.build import BuildResult, build
from datasette_action.coltypes import Kind
from datasette_action.config import load_config
from datasette_action.errors import BuildError, SourceError, UserError
from datasette_action.loader import StageJob, run_stage_job
from datasette_action.sources import MisalignedSplit, SourcePart, find_sources, split_csv
from datasette_action.sqlite import PINS, carried_sqlite
from datasette_action.sqlite import sqlite3 as bundled

CONFIG = "datasette-lambda.yml"
DATABASES = Path(".datasette-lambda") / "databases"


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, made the working directory: messages name files relative
    to it ("data/x.csv:3: ...") because the config is loaded by its relative path."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


def write(root: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)


def configure(root: Path, databases: str) -> Path:
    """Write a config whose `databases:` section is `databases` (YAML, written unindented)."""
    text = "stack: s\ndatabases:\n" + textwrap.indent(textwrap.dedent(databases).lstrip("\n"), "  ")
    (root / CONFIG).write_text(text, encoding="utf-8")
    return Path(os.path.relpath(root / CONFIG))


def run_build(root: Path, databases: str, files: Mapping[str, str | bytes] | None = None) -> BuildResult:
    write(root, files or {})
    return build(load_config(configure(root, databases)))


def one_table(root: Path, files: Mapping[str, str | bytes], table: str = "t: data/x.csv") -> BuildResult:
    """Build database `d` with the tables given as YAML (by default one, `t`, from data/x.csv)."""
    return run_build(root, "d:\n  tables:\n" + textwrap.indent(textwrap.dedent(table), "    "), files)


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def db_path(result: BuildResult, name: str = "d") -> Path:
    return next(d.path for d in result.databases if d.name == name)


def rows(result: BuildResult, table: str = "t", db: str = "d") -> list[tuple[Any, ...]]:
    return query(db_path(result, db), f'SELECT * FROM "{table}" ORDER BY rowid')


def column_types(result: BuildResult, table: str = "t", db: str = "d") -> dict[str, str]:
    return {row[1]: row[2] for row in query(db_path(result, db), f'PRAGMA table_info("{table}")')}


def value_types(result: BuildResult, column: str, table: str = "t", db: str = "d") -> list[str]:
    sql = f'SELECT typeof("{column}") FROM "{table}" ORDER BY rowid'
    return [t for (t,) in query(db_path(result, db), sql)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry of the databases directory and its hash (directories: '<dir>')."""
    directory = root / DATABASES
    if not directory.exists():
        return {}
    return {p.name: sha256(p) if p.is_file() else "<dir>" for p in directory.iterdir()}


# Bad-input tests first build database `keep` alone, then `keep` (from changed data) plus the
# bad database `d`, whose YAML starts on line 6 of the config: the failed build must leave the
# first build exactly as it was.
KEEP = """\
keep:
  tables:
    k: keep/k.csv
"""


def build_error(
    root: Path, bad: str, files: Mapping[str, str | bytes], error: type[UserError] = SourceError
) -> str:
    write(root, {"keep/k.csv": "k\n1\n"})
    first = build(load_config(configure(root, KEEP)))
    before = snapshot(root)
    assert set(before) == {"keep.db", "inspect-data.json"}
    write(root, {"keep/k.csv": "k\n1\n2\n", **files})
    config = load_config(configure(root, KEEP + textwrap.dedent(bad).lstrip("\n")))
    with pytest.raises(UserError) as info:
        build(config)
    assert type(info.value) is error, info.value
    assert snapshot(root) == before  # no new database, no scratch files, keep.db unchanged
    assert query(db_path(first, "keep"), "SELECT k FROM k") == [(1,)]
    return str(info.value)


# -- column types -----------------------------------------------------------------------------

TYPES_CSV = """\
int,float,text,gaps,zip,neg,late_float,late_text,big,big18,empty,spaced
1,1.5,a,1,01001,-1,1,1,123456789012345678,123456789012345678,, 5
2,-2.25,b,,02002,-20,2,2,1234567890123456789,-123456789012345678,,6
3,3,c,3,10001,5,3,3,5,0,,7
0,1e3,d,,00501,-0,4.5,x,6,9,,8
"""


def test_types_are_detected_from_every_value(project: Path) -> None:
    result = one_table(project, {"data/x.csv": TYPES_CSV})
    assert column_types(result) == {
        "int": "INTEGER",
        "float": "REAL",
        "text": "TEXT",
        "gaps": "INTEGER",
        "zip": "TEXT",
        "neg": "INTEGER",
        "late_float": "REAL",
        "late_text": "TEXT",
        "big": "TEXT",
        "big18": "INTEGER",
        "empty": "TEXT",
        "spaced": "TEXT",
    }
    assert rows(result) == [
        (1, 1.5, "a", 1, "01001", -1, 1.0, "1", "123456789012345678", 123456789012345678, None, " 5"),
        (2, -2.25, "b", None, "02002", -20, 2.0, "2", "1234567890123456789", -123456789012345678, None, "6"),
        (3, 3.0, "c", 3, "10001", 5, 3.0, "3", "5", 0, None, "7"),
        (0, 1000.0, "d", None, "00501", 0, 4.5, "x", "6", 9, None, "8"),
    ]
    assert value_types(result, "gaps") == ["integer", "null", "integer", "null"]
    assert value_types(result, "late_float") == ["real"] * 4
    assert value_types(result, "big") == ["text"] * 4  # digits kept exactly, not rounded to a float
    assert value_types(result, "empty") == ["null"] * 4


@pytest.mark.parametrize(
    ("head", "late", "declared", "first", "last"),
    [
        ("1", "7.25", "REAL", 1.0, 7.25),
        ("1", "1e3", "REAL", 1.0, 1000.0),
        ("1", "seven", "TEXT", "1", "seven"),
        ("1", "007", "TEXT", "1", "007"),
        ("1", "12345678901234567890", "TEXT", "1", "12345678901234567890"),
        ("1", "-7", "INTEGER", 1, -7),
        ("0.5", "7", "REAL", 0.5, 7.0),
        ("0.5", "1234567890123456789", "TEXT", "0.5", "1234567890123456789"),
        ("0.5", "-1.5e-3", "REAL", 0.5, -0.0015),
    ],
)
def test_a_value_in_a_later_batch_widens_the_column(
    project: Path, head: str, late: str, declared: str, first: object, last: object
) -> None:
    count = loader.BATCH_ROWS + 10  # the last value is read in the second batch
    lines = ["n", head, *(str(i + 2) for i in range(count - 2)), late]
    result = one_table(project, {"data/x.csv": "\n".join(lines) + "\n"})
    assert column_types(result) == {"n": declared}
    values = rows(result)
    assert len(values) == count
    assert values[0] == (first,)
    assert values[-1] == (last,)


def test_declared_types_override_detection(project: Path) -> None:
    result = one_table(
        project,
        {
            "data/x.csv": "id,amount,nothing,code\n1,10,,7\n2,20,,8\n",
            "data/y.json": '[{"n": "5", "m": 1}, {"n": "-6", "m": 2}]',
        },
        """\
        t:
          source: data/x.csv
          types: {id: text, amount: float, nothing: integer, CODE: text}
        j:
          source: data/y.json
          types: {n: integer, m: text}
        """,
    )
    assert column_types(result) == {"id": "TEXT", "amount": "REAL", "nothing": "INTEGER", "code": "TEXT"}
    assert rows(result) == [("1", 10.0, None, "7"), ("2", 20.0, None, "8")]
    assert value_types(result, "id") == ["text", "text"]
    assert column_types(result, "j") == {"n": "INTEGER", "m": "TEXT"}
    assert rows(result, "j") == [(5, "1"), (-6, "2")]
    assert value_types(result, "n", "j") == ["integer", "integer"]


# -- keys, search, indexes, foreign keys, sql steps ------------------------------------------


def test_single_and_compound_primary_keys(project: Path) -> None:
    result = one_table(
        project,
        {"data/x.csv": "id,v\n2,b\n1,a\n", "data/y.csv": "year,code,v\n2020,a,1\n2020,b,2\n2021,a,3\n"},
        """\
        t:
          source: data/x.csv
          pk: ID
        c:
          source: data/y.csv
          pk: [year, code]
        """,
    )
    assert query(db_path(result), "SELECT name, pk FROM pragma_table_info('t')") == [("id", 1), ("v", 0)]
    assert rows(result) == [(1, "a"), (2, "b")]  # an INTEGER PRIMARY KEY is the rowid
    assert query(db_path(result), "SELECT name, pk FROM pragma_table_info('c')") == [
        ("year", 1),
        ("code", 2),
        ("v", 0),
    ]
    assert rows(result, "c") == [(2020, "a", 1), (2020, "b", 2), (2021, "a", 3)]


def test_full_text_search_without_triggers(project: Path) -> None:
    result = one_table(
        project,
        {"data/x.csv": "id,name,seat\n1,Los Angeles County,Los Angeles\n2,Cook County,Chicago\n"},
        """\
        t:
          source: data/x.csv
          pk: id
          fts: [name, seat]
        """,
    )
    path = db_path(result)
    assert query(path, "SELECT name FROM sqlite_master WHERE name = 't_fts'") == [("t_fts",)]
    assert "USING FTS5" in query(path, "SELECT sql FROM sqlite_master WHERE name = 't_fts'")[0][0]
    assert query(path, "SELECT rowid, name FROM t_fts WHERE t_fts MATCH 'chicago'") == [(2, "Cook County")]
    matched = "SELECT t.id FROM t JOIN t_fts ON t.rowid = t_fts.rowid WHERE t_fts MATCH ? ORDER BY t.id"
    assert query(path, matched, ("county",)) == [(1,), (2,)]
    assert query(path, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'") == [(0,)]
    tables = {t.name: t for t in result.databases[0].tables}
    assert not tables["t"].hidden
    assert tables["t_fts"].hidden and tables["t_fts_data"].hidden


def test_indexes(project: Path) -> None:
    result = one_table(
        project,
        {"data/x.csv": "id,state,population,a_b,a,b\n1,AL,5,1,2,3\n"},
        """\
        t:
          source: data/x.csv
          indexes: [state, [STATE, population], a_b, [a, b]]
        """,
    )
    path = db_path(result)
    indexes = {name: origin for _, name, _, origin, _ in query(path, "PRAGMA index_list(t)")}
    assert set(indexes.values()) == {"c"}
    columns = {
        tuple(c for _, _, c in query(path, "SELECT * FROM pragma_index_info(?)", (name,))) for name in indexes
    }
    assert columns == {("state",), ("state", "population"), ("a_b",), ("a", "b")}


def test_foreign_keys_and_dangling_references(project: Path) -> None:
    result = one_table(
        project,
        {
            "data/states.csv": "code,name\nAL,Alabama\nCA,California\n",
            "data/counties.csv": "fips,state\n01001,AL\n06037,CA\n99999,ZZ\n88888,\n",
            "data/cities.csv": "name,state,county\nLA,CA,06037\nNowhere,QQ,77777\n",
        },
        """\
        counties:
          source: data/counties.csv
          pk: fips
          foreign_keys: {state: states.code}
        states:
          source: data/states.csv
          pk: code
        cities:
          source: data/cities.csv
          foreign_keys: {state: states, COUNTY: counties}
        """,
    )
    path = db_path(result)
    fks = 'SELECT "table", "from", "to" FROM pragma_foreign_key_list(?) ORDER BY "from"'
    assert query(path, fks, ("counties",)) == [("states", "state", "code")]
    assert query(path, fks, ("cities",)) == [("counties", "county", "fips"), ("states", "state", "code")]
    assert result.warnings == (
        "database 'd': 1 row(s) of table 'cities' refer to rows missing from 'counties'",
        "database 'd': 1 row(s) of table 'cities' refer to rows missing from 'states'",
        "database 'd': 1 row(s) of table 'counties' refer to rows missing from 'states'",
    )


def test_foreign_key_to_its_own_table(project: Path) -> None:
    result = one_table(
        project,
        {"data/x.csv": "id,parent\n1,\n2,1\n3,2\n"},
        """\
        t:
          source: data/x.csv
          pk: id
          foreign_keys: {parent: t}
        """,
    )
    fks = query(db_path(result), 'SELECT "table", "from", "to" FROM pragma_foreign_key_list(\'t\')')
    assert fks == [("t", "parent", "id")]
    assert result.warnings == ()


def test_sql_steps_run_after_the_tables(project: Path) -> None:
    result = run_build(
        project,
        """\
        d:
          tables:
            t: data/x.csv
          sql:
            - create view big as select * from t where n > 1
            - |
              create table summary as
                select count(*) as c from t;
              create index t_n on t (n);
        """,
        {"data/x.csv": "n\n1\n2\n3\n"},
    )
    path = db_path(result)
    assert query(path, "SELECT n FROM big ORDER BY n") == [(2,), (3,)]
    assert query(path, "SELECT c FROM summary") == [(3,)]
    assert [i[1] for i in query(path, "PRAGMA index_list(t)")] == ["t_n"]
    database = result.databases[0]
    assert database.views == ("big",)
    assert {t.name: t.rows for t in database.tables} == {"summary": 1, "t": 3}


def test_names_with_spaces_unicode_and_keywords(project: Path) -> None:
    result = one_table(
        project,
        {
            "data/x.csv": 'naïve name,order,group,"we""ird"\nk1,alpha beta,1,zeta\nk2,gamma,2,eta\n',
            "data/y.csv": "from,ref col\n1,k1\n2,k9\n",
        },
        """\
        select:
          source: data/x.csv
          pk: naïve name
          fts: [order, 'we"ird']
          indexes: [[order, group]]
        my table:
          source: data/y.csv
          pk: from
          foreign_keys: {ref col: select}
        """,
    )
    assert column_types(result, "select") == {
        "naïve name": "TEXT",
        "order": "TEXT",
        "group": "INTEGER",
        'we"ird': "TEXT",
    }
    path = db_path(result)
    assert rows(result, "select") == [("k1", "alpha beta", 1, "zeta"), ("k2", "gamma", 2, "eta")]
    assert query(path, 'SELECT "order" FROM select_fts WHERE select_fts MATCH ?', ("eta",)) == [("gamma",)]
    assert [i[1] for i in query(path, "PRAGMA index_list('select')") if i[3] == "c"] == [
        "idx_select_order_group"
    ]
    assert query(path, 'SELECT "table", "from", "to" FROM pragma_foreign_key_list(\'my table\')') == [
        ("select", "ref col", "naïve name")
    ]
    assert rows(result, "my table") == [(1, "k1"), (2, "k9")]
    assert result.warnings == (
        "database 'd': 1 row(s) of table 'my table' refer to rows missing from 'select'",
    )


def test_a_column_named_rowid_keeps_the_source_order(project: Path) -> None:
    # Datasette's CSV exports have a "rowid" column; it hides the stage table's own rowid.
    result = one_table(project, {"data/x.csv": "rowid,name\n10,a\n9,b\n100,c\n"})
    assert column_types(result) == {"rowid": "INTEGER", "name": "TEXT"}
    assert query(db_path(result), "SELECT _rowid_, rowid, name FROM t ORDER BY _rowid_") == [
        (1, 10, "a"),
        (2, 9, "b"),
        (3, 100, "c"),
    ]


# -- source formats ----------------------------------------------------------------------------


def test_tsv(project: Path) -> None:
    result = one_table(
        project,
        {"data/x.tsv": 'a\tb, c\td\n1\tx, y\t\n2\t"q"\t2.5\n', "data/y.tab": "k\n1\n"},
        "t: data/x.tsv\nu: data/y.tab\n",
    )
    assert column_types(result) == {"a": "INTEGER", "b, c": "TEXT", "d": "REAL"}
    assert rows(result) == [(1, "x, y", None), (2, "q", 2.5)]
    assert rows(result, "u") == [(1,)]


def test_custom_delimiter(project: Path) -> None:
    result = one_table(
        project,
        {"data/x.txt": 'a;b\n1,5;"x;y"\n'},
        "t:\n  source: data/x.txt\n  format: csv\n  delimiter: ';'\n",
    )
    assert rows(result) == [("1,5", "x;y")]


def test_json_array(project: Path) -> None:
    result = one_table(
        project,
        {
            "data/x.json": json.dumps(
                [
                    {"id": 1, "name": "a", "tags": ["x", "ü"], "loc": {"lat": 1.5}, "ok": True},
                    {"id": 2, "name": None, "score": 2.5, "ok": False, "big": 2**70},
                ],
                ensure_ascii=False,
            )
        },
        "t: data/x.json",
    )
    assert column_types(result) == {
        "id": "INTEGER",
        "name": "TEXT",
        "tags": "TEXT",
        "loc": "TEXT",
        "ok": "INTEGER",
        "score": "REAL",
        "big": "TEXT",
    }
    assert rows(result) == [
        (1, "a", '["x", "ü"]', '{"lat": 1.5}', 1, None, None),
        (2, None, None, None, 0, 2.5, str(2**70)),
    ]
    assert json.loads(rows(result)[0][2]) == ["x", "ü"]


@pytest.mark.parametrize("extension", ["jsonl", "ndjson"])
def test_json_lines_with_differing_keys(project: Path, extension: str) -> None:
    records = [
        '{"id": 1, "name": "a", "nested": {"k": [1, 2]}}',
        "",
        '{"id": 2, "extra": "only here", "NAME": "b"}',
        '{"nested": [], "id": 3.5}',
    ]
    result = one_table(project, {f"data/x.{extension}": "\n".join(records) + "\n"}, f"t: data/x.{extension}")
    assert column_types(result) == {"id": "REAL", "name": "TEXT", "nested": "TEXT", "extra": "TEXT"}
    assert rows(result) == [
        (1.0, "a", '{"k": [1, 2]}', None),
        (2.0, "b", None, "only here"),
        (3.5, None, "[]", None),
    ]


def test_glob_source_loads_files_in_sorted_order_with_a_union_of_columns(project: Path) -> None:
    result = one_table(
        project,
        {
            "data/parts/2021.csv": "b,a\n3,4\n",
            "data/parts/2020.csv": "a,b\n1,2\n",
            "data/parts/2022.csv": "c,A\n5.5,6\n",
            "data/parts/notes.txt": "not a source",
        },
        "t: data/parts/*.csv",
    )
    assert column_types(result) == {"a": "INTEGER", "b": "INTEGER", "c": "REAL"}
    assert rows(result) == [(1, 2, None), (4, 3, None), (6, None, 5.5)]


def test_a_glob_does_not_match_the_build_output(project: Path) -> None:
    write(project, {"data/x.json": '[{"a": 1}]', "data/x.csv": "b\n2\n"})
    (project / CONFIG).write_text(
        "stack: s\nbuild_dir: out\ndatabases:\n  d:\n    tables:\n      j: '**/*.json'\n      x: '**/*.csv'\n"
    )
    first = build(load_config(Path(CONFIG)))
    assert (project / "out" / "databases" / "inspect-data.json").exists()
    second = build(load_config(Path(CONFIG)))  # out/databases/inspect-data.json is no source
    assert rows(second, "j") == [(1,)]
    assert second.databases[0].sha256 == first.databases[0].sha256


def test_encoding_latin_1(project: Path) -> None:
    result = one_table(
        project,
        {"data/x.csv": "name,prix\ncafé,2\nnaïve,3\n".encode("latin-1")},
        "t:\n  source: data/x.csv\n  encoding: latin-1\n",
    )
    assert rows(result) == [("café", 2), ("naïve", 3)]


def test_utf8_byte_order_mark_is_not_part_of_the_first_column_name(project: Path) -> None:
    result = one_table(
        project, {"data/x.csv": "\ufeffid,v\n1,a\n".encode()}, "t:\n  source: data/x.csv\n  pk: id\n"
    )
    assert column_types(result) == {"id": "INTEGER", "v": "TEXT"}
    assert rows(result) == [(1, "a")]


def test_header_only_csv_builds_an_empty_table(project: Path) -> None:
    # A CSV with a header and no rows is a valid, empty table: columns TEXT (nothing to detect).
    result = one_table(project, {"data/x.csv": "id,name\n"}, "t:\n  source: data/x.csv\n  pk: id\n")
    assert column_types(result) == {"id": "TEXT", "name": "TEXT"}
    assert rows(result) == []
    assert json.loads(result.inspect_data.read_text())["d"]["tables"] == {"t": {"count": 0}}


def test_the_example_project_builds(example_project: Path) -> None:
    result = build(load_config(example_project / CONFIG))
    [census] = result.databases
    counts = {t.name: t.rows for t in census.tables if not t.hidden}
    assert counts == {"counties": 9, "landmarks": 5, "states": 7}
    assert census.views == ("big_counties",)
    assert result.warnings == ()


# -- file: databases ---------------------------------------------------------------------------


def test_file_database_is_copied_byte_for_byte(project: Path) -> None:
    (project / "data").mkdir()
    source = project / "data" / "plain.db"
    conn = sqlite3.connect(source)
    conn.executescript("CREATE TABLE a (x); INSERT INTO a VALUES (1), (2); DELETE FROM a WHERE x = 2;")
    conn.close()
    result = run_build(project, "plain:\n  file: data/plain.db\n")
    [database] = result.databases
    assert database.path.read_bytes() == source.read_bytes()
    assert database.sha256 == sha256(source)
    assert query(database.path, "SELECT x FROM a") == [(1,)]


def test_wal_file_database_is_converted_to_journal_mode_delete(project: Path) -> None:
    (project / "data").mkdir()
    source = project / "data" / "wal.db"
    writer = sqlite3.connect(source)
    try:
        assert writer.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
        writer.execute("CREATE TABLE b (y)")
        writer.execute("INSERT INTO b VALUES ('only in the WAL')")
        writer.commit()
        assert (project / "data" / "wal.db-wal").exists()
        result = run_build(project, "w:\n  file: data/wal.db\n")
    finally:
        writer.close()
    [database] = result.databases
    header = database.path.read_bytes()[:100]
    assert (header[18], header[19]) == (1, 1)
    assert query(database.path, "PRAGMA journal_mode") == [("delete",)]
    assert query(database.path, "SELECT y FROM b") == [("only in the WAL",)]
    assert database.sha256 == sha256(database.path)


# -- output: journal mode, reproducibility, inspect data, stale files -------------------------

RICH_DATABASES = """\
census:
  tables:
    states:
      source: data/states.csv
      pk: code
    counties:
      source: data/counties.csv
      pk: fips
      fts: [name]
      indexes: [state]
      foreign_keys: {state: states}
    events:
      source: data/events.jsonl
  sql:
    - create view al as select * from counties where state = 'AL'
other:
  tables:
    t: data/x.json
"""
RICH_FILES = {
    "data/states.csv": "code,name\nAL,Alabama\nCA,California\n",
    "data/counties.csv": "fips,name,state,population\n01001,Autauga,AL,58805\n06037,Los Angeles,CA,10014009\n",
    "data/events.jsonl": '{"when": "2020-01-01", "what": {"a": 1}}\n{"when": "2021", "n": 2}\n',
    "data/x.json": '[{"a": 1}, {"b": "two"}]',
}


def test_outputs_use_journal_mode_delete(project: Path) -> None:
    (project / "data").mkdir()
    conn = sqlite3.connect(project / "data" / "wal.db")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE w (x)")
    conn.close()  # cleanly closed: no -wal file, but the header still says WAL
    assert (project / "data" / "wal.db").read_bytes()[18:20] == b"\x02\x02"
    result = run_build(project, RICH_DATABASES + "walfile:\n  file: data/wal.db\n", RICH_FILES)
    assert [d.name for d in result.databases] == ["census", "other", "walfile"]
    for database in result.databases:
        assert database.path.read_bytes()[18:20] == b"\x01\x01", database.name  # not WAL (2, 2)
        assert query(database.path, "PRAGMA journal_mode") == [("delete",)]
    assert sorted(p.name for p in (project / DATABASES).iterdir()) == [
        "census.db",
        "inspect-data.json",
        "other.db",
        "walfile.db",
    ]


def test_builds_are_reproducible(tmp_path: Path) -> None:
    hashes = []
    for name in ("first", "second"):
        root = tmp_path / name
        root.mkdir()
        result = run_build(root, RICH_DATABASES, RICH_FILES)
        hashes.append({d.name: d.sha256 for d in result.databases})
        # and a rebuild over an existing build gives the same bytes again
        again = run_build(root, RICH_DATABASES)
        assert {d.name: d.sha256 for d in again.databases} == hashes[-1]
    assert hashes[0] == hashes[1]
    for name in ("census", "other"):
        first = (tmp_path / "first" / DATABASES / f"{name}.db").read_bytes()
        assert first == (tmp_path / "second" / DATABASES / f"{name}.db").read_bytes()


def test_inspect_data_matches_datasettes_format(project: Path) -> None:
    result = run_build(project, RICH_DATABASES, RICH_FILES)
    assert result.inspect_data == project / DATABASES / "inspect-data.json"
    data = json.loads(result.inspect_data.read_text())
    assert set(data) == {"census", "other"}
    for database in result.databases:
        entry = data[database.name]
        assert set(entry) == {"hash", "size", "file", "tables"}
        assert entry["hash"] == sha256(database.path) == database.sha256
        assert entry["size"] == database.path.stat().st_size == database.size
        assert entry["file"] == f"{database.name}.db"
        assert entry["tables"] == {t.name: {"count": t.rows} for t in database.tables}
    census = data["census"]["tables"]
    assert {k: census[k] for k in ("states", "counties", "events")} == {
        "states": {"count": 2},
        "counties": {"count": 2},
        "events": {"count": 2},
    }
    assert "counties_fts" in census  # Datasette counts every table, search tables included
    assert data["other"]["tables"] == {"t": {"count": 2}}


def test_inspect_data_equals_datasette_inspect(project: Path) -> None:
    pytest.importorskip("datasette")
    result = run_build(project, RICH_DATABASES, RICH_FILES)
    out = subprocess.run(
        [sys.executable, "-m", "datasette", "inspect", "census.db", "other.db"],
        cwd=project / DATABASES,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.inspect_data.read_text()) == json.loads(out.stdout)


def test_a_removed_database_disappears_on_the_next_build(project: Path) -> None:
    run_build(project, RICH_DATABASES, RICH_FILES)
    assert (project / DATABASES / "other.db").exists()
    result = run_build(project, RICH_DATABASES.split("other:")[0])
    assert [d.name for d in result.databases] == ["census"]
    assert sorted(p.name for p in (project / DATABASES).iterdir()) == ["census.db", "inspect-data.json"]
    assert set(json.loads(result.inspect_data.read_text())) == {"census"}


# -- the parallel CSV path -------------------------------------------------------------------


def csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def generated_csv(count: int, *, stray_quote_at: int | None = None, extra_field_at: int | None = None) -> str:
    """Rows with quoted fields holding commas, doubled quotes and newlines; the `amount` column
    turns float only near the end and `code` turns text in the last row, so the type of each
    is decided by the last part."""
    rng = random.Random(7)
    lines = [csv_line(["id", "name", "amount", "code", "note", "maybe"])]
    for i in range(count):
        note = rng.choice(["plain", "with, comma", 'doubled "quotes"', "multi\nline, text", "", "é ü"])
        row = [
            str(i),
            f"name {i}",
            f"{i}.5" if i > count - 5 else str(i),
            "X1" if i == count - 1 else str(i),
            note,
            "" if i % 5 == 0 else str(-i),
        ]
        if i == extra_field_at:
            row.append("extra")
        if i == stray_quote_at:  # a quote inside an unquoted field: csv reads it as text
            lines.append(f'{i},5"x,{i},{i},plain,{-i}\n')
        else:
            lines.append(csv_line(row))
    return "".join(lines)


def parts_of(config_path: Path, part_bytes: int) -> tuple[SourcePart, ...]:
    config = load_config(config_path)
    [source] = find_sources(config.databases[0].tables[0], config.root, config.path.parent)
    return split_csv(source, part_bytes)


def test_generated_csv_is_what_it_claims() -> None:
    text = generated_csv(50, stray_quote_at=3)
    records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert len(records) == 51 and {len(r) for r in records} == {6}
    assert records[4][:2] == ["3", '5"x']
    assert any("\n" in r[4] for r in records) and any("," in r[4] for r in records)
    assert '"doubled ""quotes"""' in text


def test_split_csv_loads_the_same_as_one_part(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"data/x.csv": generated_csv(3000)}
    table = "t:\n  source: data/x.csv\n  pk: id\n  fts: note\n"
    whole = one_table(project, files, table)
    assert len(parts_of(Path(CONFIG), loader.PART_BYTES)) == 1
    expected_rows, expected_types = rows(whole), column_types(whole)
    assert len(expected_rows) == 3000
    assert expected_types == {
        "id": "INTEGER",
        "name": "TEXT",
        "amount": "REAL",
        "code": "TEXT",
        "note": "TEXT",
        "maybe": "INTEGER",
    }
    assert expected_rows[1] == (1, "name 1", 1.0, "1", expected_rows[1][4], -1)
    assert expected_rows[-1][2:4] == (2999.5, "X1")

    monkeypatch.setattr(loader, "PART_BYTES", 2048)
    assert len(parts_of(Path(CONFIG), 2048)) > 10
    hashes = set()
    for workers in (1, 2):
        monkeypatch.setattr(build_module, "MAX_WORKERS", workers)
        split = one_table(project, {}, table)
        assert rows(split) == expected_rows
        assert column_types(split) == expected_types
        for column in expected_types:
            assert value_types(split, column) == value_types(whole, column), column
        hashes.add(split.databases[0].sha256)
    assert len(hashes) == 1


def test_a_stray_quote_before_a_split_point_loads_the_file_whole(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"data/x.csv": generated_csv(2000, stray_quote_at=10)}
    whole = one_table(project, files)
    assert rows(whole)[10] == (10, '5"x', 10.0, "10", "plain", -10)

    monkeypatch.setattr(loader, "PART_BYTES", 2048)
    monkeypatch.setattr(build_module, "MAX_WORKERS", 2)
    parts = parts_of(Path(CONFIG), 2048)
    assert len(parts) > 2
    # the stray quote really makes a part end inside a quoted field
    outcomes = [run_stage_job(StageJob(part, project / f"probe.{i}.db", {})) for i, part in enumerate(parts)]
    assert any(isinstance(o, MisalignedSplit) for o in outcomes)
    for i in range(len(parts)):
        (project / f"probe.{i}.db").unlink(missing_ok=True)

    split = one_table(project, {})
    assert rows(split) == rows(whole)
    assert column_types(split) == column_types(whole)


@pytest.mark.parametrize("workers", [1, 2])
def test_errors_in_a_later_part_name_the_absolute_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    text = generated_csv(3000, extra_field_at=2500)
    bad_line = next(i for i, line in enumerate(text.split("\n"), start=1) if line.startswith("2500,"))
    monkeypatch.setattr(loader, "PART_BYTES", 2048)
    monkeypatch.setattr(build_module, "MAX_WORKERS", workers)
    write(project, {"data/x.csv": text})
    configure(project, "d:\n  tables:\n    t: data/x.csv\n")
    parts = parts_of(Path(CONFIG), 2048)
    assert parts[1].first_line < bad_line  # not in the first part
    with pytest.raises(SourceError) as info:
        build(load_config(Path(CONFIG)))
    assert str(info.value) == (
        f"data/x.csv:{bad_line}: expected 6 fields, as in the header, but found 7; check for a"
        " missing or extra delimiter or an unclosed quote"
    )


@pytest.mark.parametrize("problem", ["duplicate", "empty", "undecodable"])
def test_key_and_encoding_errors_in_a_later_part_name_the_absolute_line(
    project: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    records = ["id,note"] + [f'{i},"note\n{i}"' if i % 3 == 0 else f"{i},n{i}" for i in range(2000)]
    index = 1502  # id 1501, well past the first part
    records[index] = {"duplicate": "7,n", "empty": ",n", "undecodable": "1501,\udcff"}[problem]
    data = ("\n".join(records) + "\n").encode("utf-8", "surrogateescape")
    bad_line = "\n".join(records[:index]).count("\n") + 2
    bad_byte = data.index(b"\xff") if problem == "undecodable" else -1
    monkeypatch.setattr(loader, "PART_BYTES", 2048)
    write(project, {"data/x.csv": data})
    configure(project, "d:\n  tables:\n    t:\n      source: data/x.csv\n      pk: id\n")
    parts = parts_of(Path(CONFIG), 2048)
    assert len(parts) > 3 and parts[1].first_line < bad_line
    with pytest.raises(SourceError) as info:
        build(load_config(Path(CONFIG)))
    expected = {
        "duplicate": "duplicate primary key in table 't': id = '7' appears more than once;"
        " primary keys must be unique",
        "empty": "table 't': a row has no value for primary key id; every row needs one",
        "undecodable": f"byte 0xff at offset {bad_byte} cannot be decoded as utf-8;"
        " set encoding: (for example latin-1 or cp1252) on this table",
    }[problem]
    assert str(info.value) == f"data/x.csv:{bad_line}: {expected}"


# -- types that change after the first rows: segments, conversions, text put back -------------


def widening_csv(count: int) -> str:
    """Columns whose type changes late, each in a way the loader must handle exactly."""
    lines = ["plain,f2t,i2t,i2f,e2i,note"]
    for i in range(count):
        last = i == count - 1
        lines.append(
            ",".join(
                [
                    str(i),
                    "x" if last else "1.50",  # floats, then text: the text "1.50" must survive
                    "y" if last else ("-0" if i == 3 else str(i)),  # "-0" must survive too
                    "2.5" if last else str(i),  # integers, then a float
                    "" if i < count // 2 else str(i),  # empty for the first batches
                    "" if i % 7 else "n",
                ]
            )
        )
    return "\n".join(lines) + "\n"


def expected_widening_rows(count: int) -> list[tuple[Any, ...]]:
    return [
        (
            i,
            "x" if i == count - 1 else "1.50",
            "y" if i == count - 1 else ("-0" if i == 3 else str(i)),
            2.5 if i == count - 1 else float(i),
            None if i < count // 2 else i,
            None if i % 7 else "n",
        )
        for i in range(count)
    ]


def test_late_widenings_load_exactly_whole_and_in_parts(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 3 * loader.BATCH_ROWS
    files = {
        "data/x.csv": widening_csv(count),
        # a second table from several files: jobs of all tables share one pool
        "data/j/a.jsonl": "".join(f'{{"v": {i}}}\n' for i in range(loader.BATCH_ROWS + 5)),
        # floats and integers, then text: 2 must become "2", not "2.0"
        "data/j/b.jsonl": '{"v": 1.5}\n{"v": 2}\n' * (loader.BATCH_ROWS // 2) + '{"v": "text", "w": true}\n',
    }
    tables = "t: data/x.csv\nj: data/j/*.jsonl\n"
    expected_types = {
        "plain": "INTEGER",
        "f2t": "TEXT",
        "i2t": "TEXT",
        "i2f": "REAL",
        "e2i": "INTEGER",
        "note": "TEXT",
    }
    expected_j = [(str(i), None) for i in range(loader.BATCH_ROWS + 5)]
    expected_j += [("1.5", None), ("2", None)] * (loader.BATCH_ROWS // 2) + [("text", 1)]
    restored: list[loader.RestoreJob] = []
    real_restore = loader.run_restore_job

    def spy(job: loader.RestoreJob) -> Any:
        restored.append(job)
        return real_restore(job)

    monkeypatch.setattr(loader, "run_restore_job", spy)
    whole = one_table(project, files, tables)
    assert len(parts_of(Path(CONFIG), loader.PART_BYTES)) == 1
    assert restored == []  # one part: its own segments had the text put back

    whole_bytes = without_change_counter(db_path(whole).read_bytes())
    hashes = set()
    monkeypatch.setattr(loader, "PART_BYTES", 4096)
    assert len(parts_of(Path(CONFIG), 4096)) > 20
    for workers in (1, 2):
        monkeypatch.setattr(build_module, "MAX_WORKERS", workers)
        if workers > 1:  # jobs go to worker processes by name: the spy cannot follow them
            monkeypatch.setattr(loader, "run_restore_job", real_restore)
        restored.clear()
        result = one_table(project, {}, tables)
        assert column_types(result) == expected_types
        assert rows(result) == expected_widening_rows(count)
        assert value_types(result, "i2t")[:5] == ["text"] * 5
        assert column_types(result, "j") == {"v": "TEXT", "w": "INTEGER"}
        assert rows(result, "j") == expected_j
        if workers == 1:  # every part of x.csv but the last, whose "x" made f2t text at once
            assert len(restored) == len(parts_of(Path(CONFIG), 4096)) - 1
            assert {job.stage.columns[i] for job in restored for i in job.restore} == {"f2t", "i2t"}
        hashes.add(result.databases[0].sha256)
        # the same pages as loading the file whole; only SQLite's count of commits differs
        assert without_change_counter(db_path(result).read_bytes()) == whole_bytes
    assert len(hashes) == 1  # the same bytes on any number of cores


def without_change_counter(database: bytes) -> bytes:
    """A database file without the two header fields that count its write transactions."""
    return database[:24] + database[28:92] + database[96:]


def test_late_text_beside_a_column_named_rowid(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kept texts are matched to rows by rowid, which a column named "rowid" hides.
    count = 2 * loader.BATCH_ROWS
    lines = ["rowid,v", *(f"{count - i},{i}.50" for i in range(count - 1)), "0,text"]
    expected = [(count - i, f"{i}.50") for i in range(count - 1)] + [(0, "text")]
    write(project, {"data/x.csv": "\n".join(lines) + "\n"})
    for part_bytes in (loader.PART_BYTES, 4096):  # one part (segments), then many (restore jobs)
        monkeypatch.setattr(loader, "PART_BYTES", part_bytes)
        result = one_table(project, {})
        assert column_types(result) == {"rowid": "INTEGER", "v": "TEXT"}
        assert query(db_path(result), "SELECT rowid, v FROM t ORDER BY _rowid_") == expected


def test_a_column_empty_in_the_first_batch_is_typed_by_its_later_values(project: Path) -> None:
    count = loader.BATCH_ROWS + 3
    lines = ["a,b", *(f"{i}," for i in range(count - 3)), "1,7", "2,", "3,-8"]
    result = one_table(project, {"data/x.csv": "\n".join(lines) + "\n"})
    assert column_types(result) == {"a": "INTEGER", "b": "INTEGER"}
    assert rows(result)[-3:] == [(1, 7), (2, None), (3, -8)]
    assert value_types(result, "b")[-3:] == ["integer", "null", "integer"]


def test_stage_tables_are_copied_record_for_record(project: Path) -> None:
    """When a stage's types are the final table's, SQLite's transfer optimization copies its
    records as they are (EXPLAIN shows RowData): the stage and the final table (made by
    sqlite-utils) must agree on every column's affinity."""
    write(project, {"data/x.csv": "i,f,t,e\n1,1.5,a,\n2,2,b,\n"})
    configure(project, T_FROM_X_CSV)
    [source] = find_sources(load_config(Path(CONFIG)).databases[0].tables[0], project.resolve(), Path("."))
    stage = run_stage_job(StageJob(SourcePart(source), project / "s.db", {}))
    assert isinstance(stage, loader.StageResult)
    assert [k.kind.name for k in stage.kinds] == ["INTEGER", "FLOAT", "TEXT", "EMPTY"]
    conn = sqlite3.connect(project / "final.db")
    columns = {name: build_module.PYTHON_TYPES[kind.kind] for name, kind in zip(stage.columns, stage.kinds)}
    sqlite_utils.Database(conn)["t"].create(columns)  # type: ignore[union-attr]
    conn.execute("ATTACH DATABASE ? AS stage", (str(project / "s.db"),))
    program = [row[1] for row in conn.execute("EXPLAIN INSERT INTO main.t SELECT * FROM stage.stage")]
    assert "RowData" in program and "Column" not in program
    conn.execute("INSERT INTO main.t SELECT * FROM stage.stage")
    assert conn.execute("SELECT * FROM t").fetchall() == [(1, 1.5, "a", None), (2, 2.0, "b", None)]
    conn.close()


def test_json_records_without_keys(project: Path) -> None:
    result = one_table(project, {"data/x.json": '[{}, {"a": 1}, {}]'}, "t: data/x.json")
    assert rows(result) == [(None,), (1,), (None,)]
    count = loader.BATCH_ROWS + 2  # a first batch with no key at all
    result = one_table(project, {"data/x.jsonl": "{}\n" * (count - 1) + '{"a": "z"}\n'}, "t: data/x.jsonl")
    assert len(rows(result)) == count and rows(result)[-2:] == [(None,), ("z",)]
    message = build_error(project, "d:\n  tables:\n    t: data/x.json\n", {"data/x.json": "[{}, {}]"})
    assert (
        message
        == "data/x.json: no record has a key, so the table would have no columns; give the records keys"
    )


def test_batch_checks_accept_only_what_the_cell_checks_accept() -> None:
    """The whole-batch regular expressions (possessive, fast) never accept a value that the
    per-cell ones reject; they reject only long floats, which are then checked cell by cell."""
    rng = random.Random(7)
    values = ["", "0", "-0", "00", "7", "-7", "+7", "1.5", ".5", "5.", "1e5", "1E-5", "1e", "-", ".", "e5"]
    values += ["1e400", "-0.0", "-.0", "1e-400", "0.0", "1" + "0" * 400 + ".5"]
    values += ["123456789012345678", "1234567890123456789", "1234567890123456789.5", " 5", "5 ", "0x1"]
    values += [
        "".join(rng.choice("0123456789-+.eE x") for _ in range(rng.randint(1, 22))) for _ in range(5000)
    ]
    for value in values:
        kind = coltypes.cell_kind(value)
        assert coltypes.all_integers(value) == (kind <= Kind.INTEGER), value
        assert coltypes.has_signed_zero(value) == (value == "-0"), value
        long_whole_part = len(value.lstrip("-").split(".")[0].split("e")[0].split("E")[0]) > 18
        if kind <= Kind.FLOAT and not long_whole_part:
            assert coltypes.all_floats(value), value
        if coltypes.all_exact_floats(value):
            assert kind <= Kind.FLOAT, value
    for _ in range(300):  # a batch passes only if every value would
        batch = rng.sample(values, 20)
        joined = "\n".join(batch)
        assert coltypes.all_integers(joined) == all(coltypes.all_integers(v) for v in batch)
        assert coltypes.has_signed_zero(joined) == ("-0" in batch)
        assert coltypes.all_floats(joined) == all(coltypes.all_floats(v) for v in batch)
        if coltypes.all_exact_floats(joined):
            assert all(coltypes.cell_kind(v) <= Kind.FLOAT for v in batch), batch


# -- bad input: a UserError naming the file and line, and the previous build left alone -------


def test_missing_source_file(project: Path) -> None:
    message = build_error(project, "d:\n  tables:\n    t: data/missing.csv\n", {})
    assert message == (
        f"datasette-lambda.yml:8: source 'data/missing.csv' (table 't'): file not found (looked in {project.resolve()})"
    )


def test_glob_matching_nothing(project: Path) -> None:
    message = build_error(project, "d:\n  tables:\n    t: data/*.csv\n", {"data/x.txt": "a\n1\n"})
    assert message == (
        f"datasette-lambda.yml:8: source 'data/*.csv' (table 't') matched no files (looked in {project.resolve()})"
    )


def test_source_symlink_resolving_outside_the_config_directory(project: Path) -> None:
    outside = project.parent / "outside.csv"
    outside.write_text("a\n1\n")
    (project / "data").mkdir()
    (project / "data" / "link.csv").symlink_to(outside)
    message = build_error(project, "d:\n  tables:\n    t: data/link.csv\n", {})
    assert message == (
        f"datasette-lambda.yml:8: source 'data/link.csv' (table 't'): data/link.csv resolves to"
        f" {outside.resolve()}, outside the config file's directory ({project.resolve()}); copy the"
        " data inside it"
    )


T_FROM_X_CSV = "d:\n  tables:\n    t: data/x.csv\n"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.csv", "a,b\n1,2\n3\n4,5\n", "data/x.csv:3: expected 2 fields, as in the header, but found 1"),
        (
            "x.csv",
            'a,b\n1,"two\nlines"\n\n3,4,5\n',
            "data/x.csv:5: expected 2 fields, as in the header, but found 3",
        ),
        ("x.csv", 'a,b\n1,"x"y\n', "data/x.csv:2: invalid CSV: ',' expected after '\"'"),
        ("x.csv", 'a,b\n1,"never closed\n2,3\n', "data/x.csv:3: invalid CSV: unexpected end of data"),
        (
            "x.json",
            '[\n  {"a": 1},\n  {"a": 2,}\n]\n',
            "data/x.json:3: invalid JSON: Expecting property name enclosed in double quotes",
        ),
        ("x.json", '[{"a": 1}]\n[{"a": 2}]\n', "data/x.json:2: invalid JSON: extra data after the closing ]"),
        ("x.json", '[{"a": 1},\n', "data/x.json:2: invalid JSON: the file ends before the array is closed"),
        (
            "x.jsonl",
            '{"a": 1}\n{"a": 2\n',
            "data/x.jsonl:2: invalid JSON: Expecting ',' delimiter (column 8)",
        ),
        (
            "x.json",
            '{"a": 1}',
            "data/x.json:1: expected a JSON array of objects ([{...}, ...]), found an object; for one"
            " object per line name the file .jsonl",
        ),
        (
            "x.json",
            '[{"a": 1},\n 5]',
            "data/x.json:2: expected a JSON array of objects, but record 2 is a number",
        ),
        (
            "x.jsonl",
            '{"a": 1}\n\n["a"]\n',
            "data/x.jsonl:3: expected a JSON object on each line, found a list",
        ),
        ("x.json", "[]", "data/x.json: the JSON array is empty: no records, so no columns"),
        ("x.jsonl", "\n\n", "data/x.jsonl: the file holds no records (only blank lines)"),
        ("x.json", '[{"": 1}]', "data/x.json:1: a record has an empty key; every key needs a name"),
        ("x.csv", "", "data/x.csv: the file is empty; give it a header row and data"),
        ("x.json", "", "data/x.json: the file is empty; give it a JSON array of objects"),
        ("x.jsonl", "", "data/x.jsonl: the file is empty; give it one JSON object per line"),
        ("x.csv", "\n1\n", "data/x.csv:1: the first row must be a header naming the columns"),
        (
            "x.csv",
            "a,,c\n1,2,3\n",
            "data/x.csv:1: column 2 of the header has no name; give every column a name",
        ),
        (
            "x.csv",
            "Name,id,NAME\nx,1,y\n",
            "data/x.csv:1: column 'NAME' appears twice (as 'Name' and 'NAME'; column names are not"
            " case-sensitive); rename one",
        ),
        (
            "x.jsonl",
            '{"a": 1}\n{"b": 2, "B": 3}\n',
            "data/x.jsonl:2: column 'B' appears twice (as 'b' and 'B'; column names are not"
            " case-sensitive); rename one",
        ),
    ],
)
def test_unreadable_sources(project: Path, name: str, content: str, expected: str) -> None:
    message = build_error(project, T_FROM_X_CSV.replace("x.csv", name), {f"data/{name}": content})
    assert message.startswith(expected)


def test_undecodable_byte(project: Path) -> None:
    message = build_error(project, T_FROM_X_CSV, {"data/x.csv": b"a,b\n1,ok\n2,caf\xe9\n"})
    assert message == (
        "data/x.csv:3: byte 0xe9 at offset 14 cannot be decoded as utf-8; set encoding: (for"
        " example latin-1 or cp1252) on this table"
    )


def test_undecodable_byte_in_json(project: Path) -> None:
    message = build_error(project, T_FROM_X_CSV.replace("csv", "jsonl"), {"data/x.jsonl": b'{"a": "\xff"}\n'})
    assert message.startswith("data/x.jsonl:1: byte 0xff at offset 7 cannot be decoded as utf-8;")


WITH_PK = """\
d:
  tables:
    t:
      source: data/x.csv
      pk: {pk}
"""


@pytest.mark.parametrize(
    ("pk", "content", "expected"),
    [
        (
            "id",
            "id,v\n1,a\n2,b\n1,c\n",
            "data/x.csv:4: duplicate primary key in table 't': id = '1' appears more than once;"
            " primary keys must be unique",
        ),
        (
            "id",
            'v,id\n"multi\nline",1\nb,2\nc,2\n',
            "data/x.csv:5: duplicate primary key in table 't': id = '2' appears more than once;"
            " primary keys must be unique",
        ),
        (
            "[year, code]",
            "year,code\n2020,a\n2020,b\n2021,a\n2020,b\n",
            "data/x.csv:5: duplicate primary key in table 't': year = '2020', code = 'b' appears more"
            " than once; primary keys must be unique",
        ),
        (  # the same number written two ways is the same key
            "v",
            "v\n1.5\n2.25\n1.50\n",
            "data/x.csv:4: duplicate primary key in table 't': v = '1.5' appears more than once;"
            " primary keys must be unique",
        ),
        (
            "id",
            "id,v\n1,a\n,b\n",
            "data/x.csv:3: table 't': a row has no value for primary key id; every row needs one",
        ),
        (
            "[id, k]",
            "id,k\n1,a\n2,\n",
            "data/x.csv:3: table 't': a row has no value for primary key id, k; every row needs one",
        ),
    ],
)
def test_bad_primary_keys(project: Path, pk: str, content: str, expected: str) -> None:
    assert build_error(project, WITH_PK.format(pk=pk), {"data/x.csv": content}) == expected


def test_bad_primary_key_beside_a_column_named_rowid(project: Path) -> None:
    message = build_error(
        project, WITH_PK.format(pk="name"), {"data/x.csv": "rowid,name\n10,a\n9,b\n100,a\n"}
    )
    assert message == (
        "data/x.csv:4: duplicate primary key in table 't': name = 'a' appears more than once;"
        " primary keys must be unique"
    )


def test_bad_primary_keys_in_json(project: Path) -> None:
    bad = WITH_PK.format(pk="id").replace("x.csv", "x.jsonl")
    message = build_error(project, bad, {"data/x.jsonl": '{"id": 1}\n{"id": 2}\n{"v": 3}\n'})
    assert message == "data/x.jsonl:3: table 't': a row has no value for primary key id; every row needs one"


def test_duplicate_primary_key_across_glob_files(project: Path) -> None:
    bad = WITH_PK.format(pk="id").replace("x.csv", "*.csv")
    message = build_error(
        project, bad, {"data/a.csv": "id,v\n1,a\n2,b\n", "data/b.csv": "v,id\nx,3\n\ny,2\n"}
    )
    assert message == (
        "data/b.csv:4: duplicate primary key in table 't': id = '2' appears more than once;"
        " primary keys must be unique"
    )


def test_failing_sql_step(project: Path) -> None:
    bad = """\
    d:
      tables:
        t: data/x.csv
      sql:
        - create view v as select * from t
        - |
          insert into nope
            values (1)
    """
    message = build_error(project, bad, {"data/x.csv": "a\n1\n"}, BuildError)
    assert message == (
        "datasette-lambda.yml:11: sql step failed: no such table: nope; the statement was:"
        " insert into nope values (1)"
    )


@pytest.mark.parametrize(
    ("key", "line"),
    [
        ("pk: zz", 10),
        ("fts: [a, zz]", 10),
        ("indexes: [a, [b, zz]]", 10),
        ("types: {zz: integer}", 10),
        ("foreign_keys: {zz: t}", 10),
        ("foreign_keys: {a: u.zz}", 10),
    ],
)
def test_a_column_named_in_the_config_that_does_not_exist(project: Path, key: str, line: int) -> None:
    bad = f"""\
    d:
      tables:
        t:
          source: data/x.csv
          {key}
        u:
          source: data/x.csv
          pk: a
    """
    message = build_error(project, bad, {"data/x.csv": "a,b,C d\n1,2,3\n"}, BuildError)
    table = "u" if "u.zz" in key else "t"
    assert message == (
        f"datasette-lambda.yml:{line}: {key.split(':')[0]}: column 'zz' is not in table '{table}';"
        " its columns are: a, b, C d"
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "pk: [a, A]",
            "pk: column 'A' is listed twice (as 'a' and 'A'; column names are not case-sensitive)",
        ),
        (
            "fts: [a, A]",
            "fts: column 'A' is listed twice (as 'a' and 'A'; column names are not case-sensitive)",
        ),
        ("indexes: [a, b, A]", "indexes: the index on (A) is listed twice"),
    ],
)
def test_a_column_named_twice_in_the_config(project: Path, key: str, expected: str) -> None:
    bad = f"d:\n  tables:\n    t:\n      source: data/x.csv\n      {key}\n"
    message = build_error(project, bad, {"data/x.csv": "a,b\n1,2\n"}, BuildError)
    assert message == f"datasette-lambda.yml:10: {expected}"


@pytest.mark.parametrize(
    ("declared", "content", "expected"),
    [
        (
            "integer",
            "a,b\n1,2\n3,4.5\n5,x\n",
            "data/x.csv:3: column 'b' is declared integer (types: at"
            " datasette-lambda.yml:10) but holds '4.5'",
        ),
        (
            "float",
            "a,b\n1,2\n3,4.5\n5,x\n",
            "data/x.csv:4: column 'b' is declared float (types: at datasette-lambda.yml:10) but holds 'x'",
        ),
        (
            "integer",
            "a,b\n1,0123\n",
            "data/x.csv:2: column 'b' is declared integer (types: at"
            " datasette-lambda.yml:10) but holds '0123'",
        ),
    ],
)
def test_declared_type_contradicted_by_a_value(
    project: Path, declared: str, content: str, expected: str
) -> None:
    bad = f"d:\n  tables:\n    t:\n      source: data/x.csv\n      types: {{b: {declared}}}\n"
    message = build_error(project, bad, {"data/x.csv": content})
    assert message == expected + "; fix the value or change the declared type"


def test_declared_type_contradicted_in_json(project: Path) -> None:
    bad = "d:\n  tables:\n    t:\n      source: data/x.jsonl\n      types: {b: integer}\n"
    message = build_error(project, bad, {"data/x.jsonl": '{"b": 1}\n{"b": "2"}\n{"b": 2.5}\n'})
    assert message.startswith("data/x.jsonl:3: column 'b' is declared integer (types: at")
    assert "but holds '2.5'" in message


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            "t:\n  source: data/x.csv\n  foreign_keys: {a: nope}\n",
            "datasette-lambda.yml:10: foreign_keys: column 'a' refers to table 'nope', which is not a"
            " table of database 'd'; tables: t",
        ),
        (
            "t:\n  source: data/x.csv\n  foreign_keys: {a: u}\nu: data/x.csv\n",
            "datasette-lambda.yml:10: foreign_keys: column 'a' refers to table 'u', but a foreign key must"
            " refer to the single-column primary key (pk:) of its table, and it has none; set pk: on"
            " table 'u'",
        ),
        (
            "t:\n  source: data/x.csv\n  foreign_keys: {a: u.b}\nu:\n  source: data/x.csv\n  pk: a\n",
            "datasette-lambda.yml:10: foreign_keys: column 'a' refers to 'u.b', but a foreign key must"
            " refer to the single-column primary key (pk:) of its table, and its primary key is (a);"
            " set pk: on table 'u' to that column",
        ),
        (
            "t:\n  source: data/x.csv\n  foreign_keys: {a: u}\nu:\n  source: data/x.csv\n  pk: [a, b]\n",
            "datasette-lambda.yml:10: foreign_keys: column 'a' refers to table 'u', but a foreign key must"
            " refer to the single-column primary key (pk:) of its table, and its primary key is (a, b);"
            " set pk: on table 'u'",
        ),
        (
            "t:\n  source: data/x.csv\n  pk: a\n  foreign_keys: {b: u}\n"
            "u:\n  source: data/x.csv\n  pk: a\n  foreign_keys: {b: t}\n",
            "datasette-lambda.yml:11: foreign keys of table 't' form a cycle; SQLite tables here are"
            " created in order, so remove one of the foreign keys",
        ),
    ],
)
def test_bad_foreign_keys(project: Path, tables: str, expected: str) -> None:
    bad = "d:\n  tables:\n" + textwrap.indent(tables, "    ")
    assert build_error(project, bad, {"data/x.csv": "a,b\n1,2\n"}, BuildError) == expected


def test_search_table_name_taken(project: Path) -> None:
    bad = "d:\n  tables:\n    t:\n      source: data/x.csv\n      fts: b\n    t_fts: data/x.csv\n"
    message = build_error(project, bad, {"data/x.csv": "a,b\n1,2\n"}, BuildError)
    assert message == (
        "datasette-lambda.yml:10: fts: cannot create the search table 't_fts': table \"t_fts\" already exists"
    )


def test_file_that_is_not_a_sqlite_database(project: Path) -> None:
    message = build_error(project, "d:\n  file: data/x.db\n", {"data/x.db": "id,name\n1,not sqlite\n"})
    assert message == (
        f"datasette-lambda.yml:6: {project.resolve() / 'data' / 'x.db'} is not a SQLite database (its"
        " header is wrong)"
    )


def test_file_with_a_sqlite_header_but_no_database(project: Path) -> None:
    content = b"SQLite format 3\x00" + bytes(200)
    message = build_error(project, "d:\n  file: data/x.db\n", {"data/x.db": content})
    assert message == "datasette-lambda.yml:6: database 'd' cannot be read: file is not a database"


# -- the command line ------------------------------------------------------------------------


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datasette_action", "build", "-c", CONFIG, *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_build_json(project: Path) -> None:
    write(project, RICH_FILES)
    configure(project, RICH_DATABASES)
    done = cli(project, "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    output = json.loads(done.stdout)
    by_name = {d["name"]: d for d in output["databases"]}
    assert set(by_name) == {"census", "other"}
    for name, database in by_name.items():
        assert database["sha256"] == sha256(project / DATABASES / f"{name}.db")
    census = {t["name"]: t for t in by_name["census"]["tables"]}
    assert census["counties"]["rows"] == 2
    assert census["counties"]["columns"] == {
        "fips": "TEXT",
        "name": "TEXT",
        "state": "TEXT",
        "population": "INTEGER",
    }
    assert census["counties_fts"]["hidden"] is True
    assert by_name["census"]["views"] == ["al"]
    assert [t["rows"] for t in by_name["other"]["tables"]] == [2]
    assert output["warnings"] == []
    assert output["inspect_data"] == str(project.resolve() / DATABASES / "inspect-data.json")
    assert "Built 2 database(s)" in done.stderr


def test_cli_prints_warnings(project: Path) -> None:
    write(project, {"data/s.csv": "code\nAL\n", "data/c.csv": "name,state\nx,AL\ny,ZZ\n"})
    configure(
        project,
        "d:\n  tables:\n    s:\n      source: data/s.csv\n      pk: code\n"
        "    c:\n      source: data/c.csv\n      foreign_keys: {state: s}\n",
    )
    done = cli(project)
    assert done.returncode == 0, done.stderr
    assert "Warning: database 'd': 1 row(s) of table 'c' refer to rows missing from 's'" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("tables", "files", "expected"),
    [
        (
            "t: data/x.csv",
            {"data/x.csv": "a,b\n1,2\n3\n"},
            "data/x.csv:3: expected 2 fields, as in the header, but found 1; check for a missing or"
            " extra delimiter or an unclosed quote",
        ),
        (
            "t:\n  source: data/x.csv\n  foreign_keys: {a: u}\nu: data/x.csv",
            {"data/x.csv": "a,b\n1,2\n"},
            "datasette-lambda.yml:7: foreign_keys: column 'a' refers to table 'u', but a foreign key"
            " must refer to the single-column primary key (pk:) of its table, and it has none; set"
            " pk: on table 'u'",
        ),
        (
            "t: data/missing.csv",
            {},
            "datasette-lambda.yml:5: source 'data/missing.csv' (table 't'): file not found (looked in <root>)",
        ),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_cli_errors(project: Path, tables: str, files: dict[str, str], expected: str, as_json: bool) -> None:
    write(project, files)
    configure(project, "d:\n  tables:\n" + textwrap.indent(tables, "    ") + "\n")
    done = cli(project, *(["--json"] if as_json else []))
    expected = expected.replace("<root>", str(project.resolve()))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: {expected}"]
    assert not (project / DATABASES / "d.db").exists()
    if as_json:
        file, line, message = expected.split(":", 2)
        assert json.loads(done.stdout) == {"error": message.strip(), "file": file, "line": int(line)}
    else:
        assert done.stdout == ""


def test_single_column_csv_keeps_empty_cells_as_null(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("name\nA\n\nB\n")
    (tmp_path / "datasette-lambda.yml").write_text(
        "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        source: one.csv\n"
    )
    result = build(load_config(tmp_path / "datasette-lambda.yml"))
    conn = sqlite3.connect(result.databases[0].path)
    assert conn.execute("SELECT name FROM t ORDER BY rowid").fetchall() == [("A",), (None,), ("B",)]


def test_a_broken_view_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "datasette-lambda.yml").write_text(
        "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        source: a.csv\n"
        "    sql:\n      - create view v as select nope from t\n"
    )
    with pytest.raises(BuildError) as caught:
        build(load_config(tmp_path / "datasette-lambda.yml"))
    assert str(caught.value) == (
        f"{tmp_path / 'datasette-lambda.yml'}:8: view 'v' in database 'd' cannot be queried:"
        " no such column: nope"
    )
    assert not list((tmp_path / ".datasette-lambda" / "databases").glob("*.db"))


def test_a_killed_build_leaves_nothing_behind_for_the_next(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "datasette-lambda.yml").write_text(
        "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        source: a.csv\n"
    )
    leftover = tmp_path / ".datasette-lambda" / "databases" / ".building-old"
    leftover.mkdir(parents=True)
    (leftover / "d.db").write_bytes(b"partial")
    build(load_config(tmp_path / "datasette-lambda.yml"))
    assert not leftover.exists()


# -- the SQLite the site runs ---------------------------------------------------------------------


def test_the_build_runs_the_bundled_sqlite_so_sql_newer_than_this_machines_works(project: Path) -> None:
    """The build's SQLite is the layer's (sqlean.py): a view and a `sql:` step using SQL newer than
    many systems' own SQLite (concat_ws and string_agg: 3.44; jsonb: 3.45) build and read back."""
    result = run_build(
        project,
        """\
        d:
          tables:
            t: data/x.jsonl
          sql:
            - create view labels as select concat_ws(':', name, tags ->> '$[0]') as label, json(jsonb(tags)) as tags from t
            - create table names as select string_agg(name, '+') as names from t
        """,
        {"data/x.jsonl": '{"name": "a", "tags": ["x", "y"]}\n{"name": "b", "tags": ["z"]}\n'},
    )
    assert result.databases[0].views == ("labels",)
    conn = bundled.connect(f"file:{db_path(result)}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT * FROM labels ORDER BY label").fetchall() == [
            ("a:x", '["x","y"]'),
            ("b:z", '["z"]'),
        ]
        assert conn.execute("SELECT names FROM names").fetchall() == [("a+b",)]
        assert conn.execute("SELECT sqlite_version()").fetchone() == (carried_sqlite(PINS["3.13"]),)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "create view middle as select median(n) as m from t",
            "view 'middle' in database 'd' cannot be queried: no such function: median",
        ),
        (
            "select regexp_like('ab', 'a')",
            "sql step failed: no such function: regexp_like; the statement was: select regexp_like('ab', 'a')",
        ),
    ],
)
def test_sql_the_bundled_sqlite_cannot_run_fails_the_build_on_its_line(
    project: Path, step: str, message: str
) -> None:
    """sqlean.py's own extension functions (median, regexp_like, ...) are off in Lambda, and so in
    the build: a step or view calling one is a build error, not a broken page."""
    bad = f"""\
        d:
          tables:
            t: data/x.csv
          sql:
            - "{step}"
        """
    assert build_error(project, bad, {"data/x.csv": "n\n1\n2\n3\n"}, BuildError) == (
        f"datasette-lambda.yml:10: {message}"
    )


def test_the_views_of_a_file_database_are_checked_too(project: Path) -> None:
    """A `file:` database is published as it is, but served by the bundled SQLite: a view that
    SQLite cannot query fails the build (here one calling a function it does not have)."""
    conn = sqlite3.connect(project / "old.db")
    conn.executescript(
        "create table t (n); insert into t values (1); create view v as select median(n) from t;"
    )
    conn.close()
    message = build_error(project, "d:\n  file: old.db\n", {}, BuildError)
    assert (
        message
        == "datasette-lambda.yml:6: view 'v' in database 'd' cannot be queried: no such function: median"
    )


def test_sqlean_extensions_switched_on_by_the_environment_stop_the_build(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLEAN_ENABLE_FILEIO", "1")
    with pytest.raises(BuildError) as caught:
        one_table(project, {"data/x.csv": "n\n1\n"})
    assert str(caught.value) == (
        "datasette-lambda.yml: SQLEAN_ENABLE_FILEIO is set in the environment: it turns on sqlean.py's"
        " extension functions for the build, which the site never has (its entry point turns them off),"
        " so a `sql:` step using them would build and then fail in Lambda; unset it"
    )


# -- hardening (issue 11) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("x.csv", ",".join(f"c{i}" for i in range(2001)) + "\n" + ",".join(["1"] * 2001) + "\n", 1),
        ("x.json", json.dumps([{f"c{i}": 1 for i in range(2001)}], indent=0), 2),
    ],
)
def test_more_columns_than_sqlite_allows(project: Path, name: str, content: str, line: int) -> None:
    message = build_error(project, f"d:\n  tables:\n    t: data/{name}\n", {f"data/{name}": content})
    assert message == (
        f"data/{name}:{line}: {name} has 2001 columns, more than SQLite allows in a table"
        " (2000, SQLITE_MAX_COLUMN); split it into tables"
    )


def test_a_damaged_file_database_is_refused(project: Path) -> None:
    good = project / "good.db"
    conn = sqlite3.connect(good)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    conn.commit()
    conn.close()
    content = bytearray(good.read_bytes())
    good.unlink()
    content[2 * 4096 : 2 * 4096 + 8] = b"\x0d\xff\xff\xff\xff\xff\xff\xff"  # garble page 3's header
    message = build_error(project, "d:\n  file: data/x.db\n", {"data/x.db": bytes(content)}, BuildError)
    assert message == (
        f"{CONFIG}:6: database file {project.resolve() / 'data' / 'x.db'} is damaged (PRAGMA"
        " quick_check: database disk image is malformed); restore it from a good copy"
    )


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "ATTACH DATABASE '/tmp/elsewhere-x.db' AS x",
            "sql steps may not attach or write other database files (ATTACH or VACUUM INTO"
            " '/tmp/elsewhere-x.db'); the build writes only its own databases",
        ),
        (
            "VACUUM INTO '/tmp/elsewhere-y.db'",
            "sql steps may not attach or write other database files (ATTACH or VACUUM INTO"
            " '/tmp/elsewhere-y.db'); the build writes only its own databases",
        ),
        (
            "SELECT load_extension('x')",
            "sql steps may not call load_extension(); SQLite extensions cannot be loaded",
        ),
    ],
)
def test_sql_steps_cannot_write_or_load_files(project: Path, statement: str, message: str) -> None:
    bad = f'd:\n  tables:\n    t: data/x.csv\n  sql:\n    - "{statement}"\n'
    got = build_error(project, bad, {"data/x.csv": "n\n1\n"}, BuildError)
    assert got == f"{CONFIG}:10: {message}"
    assert not Path("/tmp/elsewhere-x.db").exists() and not Path("/tmp/elsewhere-y.db").exists()


def test_sql_steps_may_attach_memory(project: Path) -> None:
    result = one_table(project, {"data/x.csv": "n\n1\n"})
    assert rows(result) == [(1,)]
    result = run_build(
        project, "d:\n  tables:\n    t: data/x.csv\n  sql:\n    - \"ATTACH ':memory:' AS m; DETACH m\"\n"
    )
    assert rows(result) == [(1,)]


def test_a_newline_in_a_table_name_stays_on_one_line_of_text_output(project: Path) -> None:
    from datasette_action.output import build_text
    from datasette_action.pipeline import Built

    result = one_table(project, {"data/x.csv": "n\n1\n"}, '"a\\nb": data/x.csv\n')
    text = build_text(Built("s", result, 0.0))
    assert text.splitlines()[-1].split() == ["a\\nb", "1", "rows"], text


def test_names_in_the_markdown_summary_cannot_break_its_table(project: Path) -> None:
    from datasette_action.output import build_markdown
    from datasette_action.pipeline import Built

    result = one_table(project, {"data/x.csv": "n\n1\n"}, '"a|b\\n*c*": data/x.csv\n')
    markdown = build_markdown(Built("s", result, 0.0))
    assert "| d | a\\|b\\\\n\\*c\\* | 1 |" in markdown.splitlines(), markdown


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("x.jsonl", '{"a": 1}\n{"a": ' + "[" * 10_000 + "]" * 10_000 + "}\n", 2),
        ("x.json", '[{"a": 1},\n{"a": ' + "[" * 10_000 + "]" * 10_000 + "}]\n", 2),
    ],
)
def test_json_nested_too_deeply(project: Path, name: str, content: str, line: int) -> None:
    message = build_error(project, f"d:\n  tables:\n    t: data/{name}\n", {f"data/{name}": content})
    assert message == (
        f"data/{name}:{line}: a record nests lists or objects too deeply to be read (Python's"
        " recursion limit); flatten it"
    )


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("x.jsonl", '{"a": "ok"}\n{"a": "\\ud800"}\n', "a string"),
        ("x.json", '[{"a": "ok"},\n{"a": {"b": "\\ud800"}}]\n', "a string"),
        ("x.jsonl", '{"a": "ok"}\n{"\\ud800": 1}\n', "a key"),
        ("x.json", '[{"a": "ok"},\n{"b\\udfff": 2}]\n', "a key"),
        ("x.json", '[{"a": "ok"},\n{"a": {"\\ud800": 2}}]\n', "a string"),  # a key inside a value
    ],
)
def test_json_lone_surrogate(project: Path, name: str, content: str, what: str) -> None:
    message = build_error(project, f"d:\n  tables:\n    t: data/{name}\n", {f"data/{name}": content})
    assert message == (
        f"data/{name}:2: {what} holds a lone surrogate (such as \\ud800), which is not valid"
        " Unicode and cannot be stored as text; fix the escape"
    )


# -- numbers a REAL cannot hold as written, JSON booleans -------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # a column with a number that overflows, underflows or is a negative zero stays text, as written
        ("a\n1.5\n1e400\n", [("1.5", "text"), ("1e400", "text")]),
        ("a\n-1E+999\n2\n", [("-1E+999", "text"), ("2", "text")]),
        ("a\n1e-400\n0.5\n", [("1e-400", "text"), ("0.5", "text")]),
        ("a\n-0.0\n2.5\n", [("-0.0", "text"), ("2.5", "text")]),
        ("a\n3\n-.0\n", [("3", "text"), ("-.0", "text")]),
        ("a\n1\n-0e5\n", [("1", "text"), ("-0e5", "text")]),
        ("a\n1\n1" + "0" * 400 + ".5\n", [("1", "text"), ("1" + "0" * 400 + ".5", "text")]),
        # what a REAL holds exactly enough stays a number
        (
            "a\n0.0\n0e5\n1e308\n-2.5e-300\n",
            [(0.0, "real"), (0.0, "real"), (1e308, "real"), (-2.5e-300, "real")],
        ),
        ("a\n-0\n1\n", [(0, "integer"), (1, "integer")]),  # an integer has no negative zero
        ("a\nNaN\ninf\n", [("NaN", "text"), ("inf", "text")]),
    ],
)
def test_csv_numbers_a_real_cannot_hold_keep_their_text(
    project: Path, content: str, expected: list[tuple[Any, str]]
) -> None:
    result = one_table(project, {"data/x.csv": content})
    assert query(db_path(result), "SELECT a, typeof(a) FROM t ORDER BY rowid") == expected


def test_an_inexact_float_in_a_later_batch_makes_the_column_text(project: Path) -> None:
    """The batch-column check (one regular expression) must send such a batch to the cell checks."""
    floats = [f"{i}.25" for i in range(loader.BATCH_ROWS + 10)]
    content = "a\n" + "\n".join([*floats, "1e400", "-0.0"]) + "\n"
    result = one_table(project, {"data/x.csv": content})
    assert column_types(result) == {"a": "TEXT"}
    got = query(db_path(result), "SELECT a FROM t ORDER BY rowid")
    assert [a for (a,) in got] == [*floats, "1e400", "-0.0"]


def test_a_declared_float_that_a_real_cannot_hold_is_an_error(project: Path) -> None:
    message = build_error(
        project,
        "d:\n  tables:\n    t:\n      source: data/x.csv\n      types: {a: float}\n",
        {"data/x.csv": "a\n1.5\n1e400\n"},
    )
    assert message == (
        "data/x.csv:3: column 'a' is declared float (types: at datasette-lambda.yml:10) but holds"
        " '1e400'; fix the value or change the declared type"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"a": 1.5}, {"a": 1e400}]', [("1.5", "text"), ("1e400", "text")]),
        ('[{"a": -0.0}, {"a": 2}]', [("-0.0", "text"), ("2", "text")]),
        ('[{"a": 1E-400}, {"a": 0.0}]', [("1E-400", "text"), ("0.0", "text")]),
        ('[{"a": 0.0}, {"a": -2.5}]', [(0.0, "real"), (-2.5, "real")]),
        # nested values keep their numbers as written, not as strings
        ('[{"a": [1e400, -0.0, {"b": 1e-400}, 2.5]}]', [('[1e400, -0.0, {"b": 1e-400}, 2.5]', "text")]),
    ],
)
def test_json_numbers_a_real_cannot_hold_keep_their_text(
    project: Path, content: str, expected: list[tuple[Any, str]]
) -> None:
    result = one_table(project, {"data/x.json": content}, "t: data/x.json")
    assert query(db_path(result), "SELECT a, typeof(a) FROM t ORDER BY rowid") == expected


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    ("name", "template", "line"),
    [("x.jsonl", '{"a": 1}\n{"a": %s}\n', 2), ("x.json", '[{"a": 1},\n {"a": [1, %s]}]\n', 2)],
)
def test_json_nan_and_infinity_are_refused(
    project: Path, constant: str, name: str, template: str, line: int
) -> None:
    message = build_error(
        project, f"d:\n  tables:\n    t: data/{name}\n", {f"data/{name}": template % constant}
    )
    name_in_message = constant.lstrip("-") if constant != "-Infinity" else "-Infinity"
    assert message == (
        f"data/{name}:{line}: invalid JSON: {name_in_message} is not a JSON value (JSON has no NaN or"
        f' Infinity); write null, or "{name_in_message}" as a string'
    )


@pytest.mark.parametrize(
    ("content", "types", "expected", "column_type"),
    [
        # mixed with other types: JSON's own text, never '1' (which is the string "1")
        (
            '[{"a": true}, {"a": "1"}, {"a": 2}, {"a": false}]',
            "",
            [("true", "text"), ("1", "text"), ("2", "text"), ("false", "text")],
            "TEXT",
        ),
        ('[{"a": true}, {"a": [1]}]', "", [("true", "text"), ("[1]", "text")], "TEXT"),
        # booleans alone, or with numbers: numbers, as sqlite-utils stores them
        (
            '[{"a": true}, {"a": false}, {"a": null}]',
            "",
            [(1, "integer"), (0, "integer"), (None, "null")],
            "INTEGER",
        ),
        ('[{"a": true}, {"a": 5}]', "", [(1, "integer"), (5, "integer")], "INTEGER"),
        ('[{"a": true}, {"a": 2.5}]', "", [(1.0, "real"), (2.5, "real")], "REAL"),
        (
            '[{"a": true}, {"a": false}]',
            "\n  types: {a: text}",
            [("true", "text"), ("false", "text")],
            "TEXT",
        ),
    ],
)
def test_json_booleans(
    project: Path, content: str, types: str, expected: list[tuple[Any, str]], column_type: str
) -> None:
    result = one_table(project, {"data/x.json": content}, f"t:\n  source: data/x.json{types}")
    assert query(db_path(result), "SELECT a, typeof(a) FROM t ORDER BY rowid") == expected
    assert column_types(result) == {"a": column_type}


def test_json_booleans_across_glob_files(project: Path) -> None:
    """One file's booleans, another's text: the table's column is text, so 'true' in every file."""
    files = {"data/1.jsonl": '{"a": true, "n": true}\n', "data/2.jsonl": '{"a": "x", "n": 3}\n'}
    result = one_table(project, files, "t: data/*.jsonl")
    assert query(db_path(result), "SELECT a, n FROM t ORDER BY rowid") == [("true", 1), ("x", 3)]
    assert column_types(result) == {"a": "TEXT", "n": "INTEGER"}


# -- what a glob may load --------------------------------------------------------------------


def test_a_glob_never_loads_the_config_the_metadata_or_the_build_output(project: Path) -> None:
    write(project, {"data/x.csv": "a\n1\n", "meta.json": "{}"})
    (project / CONFIG).write_text(
        "stack: s\nmetadata: meta.json\ndatabases:\n  d:\n    tables:\n"
        "      t:\n        source: '**/*'\n        format: csv\n"
    )
    for _ in range(2):  # the second build also sees the first one's output
        result = build(load_config(Path(CONFIG)))
        assert rows(result) == [(1,)]


def test_a_glob_that_matches_only_files_the_build_uses_says_so(project: Path) -> None:
    write(project, {"data/x.csv": "a\n1\n"})
    (project / CONFIG).write_text("stack: s\ndatabases:\n  d:\n    tables:\n      t: '*.yml'\n")
    with pytest.raises(SourceError) as info:
        build(load_config(Path(CONFIG)))
    assert str(info.value) == (
        f"{CONFIG}:5: source '*.yml' (table 't') matched no files other than the config file, the"
        f" metadata file and built output (looked in {project.resolve()})"
    )


@pytest.mark.parametrize("build_dir", ["data", "data/", "./data", "data/../data"])
def test_build_dir_may_be_a_data_folder(project: Path, build_dir: str) -> None:
    write(project, {"data/x.csv": "a\n1\n", "data/y.csv": "a\n2\n"})
    (project / CONFIG).write_text(
        f"stack: s\nbuild_dir: {build_dir}\ndatabases:\n  d:\n    tables:\n      t: data/*.csv\n"
    )
    for _ in range(2):
        result = build(load_config(Path(CONFIG)))
        assert rows(result) == [(1,), (2,)]
        assert result.databases[0].path == project.resolve() / "data" / "databases" / "d.db"


@pytest.mark.parametrize(
    ("database", "line"),
    [("file: out/databases/old.db", 5), ("tables:\n      t: out/package/x.csv", 6)],
)
def test_a_source_named_in_the_build_output_is_a_config_error(
    project: Path, database: str, line: int
) -> None:
    from datasette_action.errors import ConfigError

    write(project, {"out/databases/old.db": b"", "out/package/x.csv": "a\n1\n"})
    sqlite3.connect(project / "out" / "databases" / "old.db").execute("CREATE TABLE t (a)").connection.close()
    (project / CONFIG).write_text(f"stack: s\nbuild_dir: out\ndatabases:\n  d:\n    {database}\n")
    with pytest.raises(ConfigError) as info:
        load_config(Path(CONFIG))
    shown = database.split(": ")[-1]
    assert str(info.value) == (
        f"{CONFIG}:{line}: database 'd': {shown} is under build_dir (out), in the output each build"
        " rewrites; keep sources outside it, or set build_dir to a directory of its own"
    )


# -- a disk with no room -----------------------------------------------------------------------


def _with_file_size_limit(limit: int) -> Any:
    """A real write failure (EFBIG, and SQLite's "disk I/O error") for files over `limit` bytes,
    as on a full disk; worker processes inherit it. Restored afterwards."""
    import contextlib
    import resource
    import signal

    @contextlib.contextmanager
    def limited() -> Any:
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)

    return limited()


def test_a_full_disk_fails_the_build_cleanly_and_keeps_the_last_build(project: Path) -> None:
    from datasette_action.errors import DiskFullError

    big = "a,b\n" + "".join(f"{i},{'x' * 200}\n" for i in range(2000))
    first = one_table(project, {"data/x.csv": "a,b\n1,2\n"})
    before = snapshot(project)
    write(project, {"data/x.csv": big})
    with _with_file_size_limit(100_000), pytest.raises(DiskFullError) as info:
        build(load_config(Path(CONFIG)))
    assert str(info.value) == (
        f"could not write the databases in {project.resolve() / DATABASES} (disk I/O error); free"
        " some space there (or check that it is writable), or set build_dir to a disk with room."
        " The earlier output there is as it was."
    )
    assert snapshot(project) == before  # no scratch left, the last build intact
    assert rows(first) == [(1, 2)]


def test_running_out_of_space_is_recognised() -> None:
    import errno

    from datasette_action.errors import is_out_of_space

    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_out_of_space(OSError(errno.ENOENT, "No such file or directory"))
    assert not is_out_of_space(ValueError("database or disk is full"))
    conn = bundled.connect(":memory:")
    with pytest.raises(bundled.OperationalError) as info:
        conn.execute("SELECT * FROM nowhere")
    assert not is_out_of_space(info.value)


def test_two_foreign_keys_to_one_table_warn_once_each(project: Path) -> None:
    files = {
        "data/places.csv": "id,name\n1,a\n2,b\n",
        "data/trips.csv": "id,origin,destination\n1,1,9\n2,8,9\n3,1,2\n",
    }
    tables = """\
        places: {source: data/places.csv, pk: id}
        trips:
          source: data/trips.csv
          foreign_keys: {origin: places.id, destination: places.id}
        """
    result = one_table(project, files, tables)
    assert sorted(result.warnings) == [
        "database 'd': 1 row(s) of table 'trips' refer to rows missing from 'places' (through origin)",
        "database 'd': 2 row(s) of table 'trips' refer to rows missing from 'places' (through destination)",
    ]
