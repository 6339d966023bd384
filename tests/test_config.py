"""Tests for the config loader: `load_config(path)` -> `Config`, or a `ConfigError` whose text is
"<file>:<line>: <message>". Every test writes real files under tmp_path; nothing is mocked."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from datasette_action.config import (
    DATASETTE_SETTINGS,
    Config,
    DatabaseConfig,
    DatasetteConfig,
    ForeignKey,
    LambdaConfig,
    SqlStep,
    StaticMount,
    load_config,
)
from datasette_action.errors import ConfigError, Location

EXAMPLE = Path(__file__).resolve().parent.parent / "example"
CONFIG_NAME = "datasette-lambda.yml"

# A valid config to splice sections into; `databases` is on lines 2-5.
BASE = """\
stack: s
databases:
  d:
    tables:
      t: data/t.csv
"""


def write(tmp_path: Path, text: str, name: str = CONFIG_NAME) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def with_base(extra: str) -> str:
    """BASE plus more top-level sections, written indented like the rest of a test."""
    return BASE + textwrap.dedent(extra)


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def fails(tmp_path: Path, text: str) -> tuple[Path, str]:
    """Write a config that must be rejected; return its path and the error's full text."""
    path = write(tmp_path, text)
    return path, error_of(path)


def table(config: Config, database: str = "d", name: str = "t"):
    db = next(db for db in config.databases if db.name == database)
    return next(t for t in db.tables if t.name == name)


# -- the happy path ---------------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> Path:
    root = tmp_path / "example"
    shutil.copytree(EXAMPLE, root)
    return root


def test_example_config_loads(example: Path) -> None:
    path = example / CONFIG_NAME
    config = load_config(path)
    root = example.resolve()

    assert config.path == path
    assert config.root == root
    assert config.stack == "example-datasette"
    assert config.region == "us-east-1"
    assert config.build_dir == root / ".datasette-lambda"
    assert config.databases_dir == root / ".datasette-lambda" / "databases"

    [census] = config.databases
    assert isinstance(census, DatabaseConfig)
    assert census.name == "census"
    assert census.file is None
    assert census.location == Location(path, 5)
    assert [t.name for t in census.tables] == ["states", "counties", "landmarks"]
    states, counties, landmarks = census.tables

    assert states.source == "data/states.csv"
    assert states.pk == ("code",)
    assert states.fts == ()
    assert states.indexes == ()
    assert states.foreign_keys == ()
    assert (states.format, states.encoding, states.delimiter, dict(states.types)) == (
        None,
        "utf-8",
        None,
        {},
    )

    assert counties.source == "data/counties.csv"
    assert counties.pk == ("fips",)
    assert counties.fts == ("name", "seat")
    assert counties.indexes == (("state",), ("state", "population"))
    assert counties.foreign_keys == (ForeignKey("state", "states", "code"),)

    assert landmarks.source == "data/landmarks.jsonl"
    assert landmarks.pk == ("id",)
    assert landmarks.foreign_keys == (ForeignKey("county", "counties", "fips"),)

    assert census.sql == (
        SqlStep(
            "create view big_counties as select * from counties where population > 1000000",
            Location(path, 21),
        ),
    )

    assert config.metadata_file == root / "metadata.yml"
    assert config.metadata == yaml.safe_load((example / "metadata.yml").read_text(encoding="utf-8"))
    assert config.metadata is not None
    assert config.metadata["title"] == "Example US data"
    assert config.metadata["databases"]["census"]["tables"]["counties"]["description"].startswith(
        "Selected US counties"
    )

    assert config.datasette == DatasetteConfig(
        version=None,
        settings={"sql_time_limit_ms": 3000, "default_page_size": 50},
        plugins=(),
        static=(),
        templates=None,
        plugins_dir=None,
    )
    assert config.lambda_ == LambdaConfig(python="3.13", architecture="arm64", memory=1024)
    assert (config.lambda_.timeout, config.lambda_.ephemeral_storage) == (30, 512)
    assert config.lambda_.reserved_concurrency is None


def test_example_table_locations_point_at_their_keys(example: Path) -> None:
    path = example / CONFIG_NAME
    counties = table(load_config(path), "census", "counties")
    assert counties.location("table") == Location(path, 10)
    assert counties.location("source") == Location(path, 11)
    assert counties.location("fts") == Location(path, 13)
    assert counties.location("foreign_keys") == Location(path, 15)
    # A key the table does not set falls back to the table's own line.
    assert counties.location("encoding") == Location(path, 10)


def test_config_is_frozen(example: Path) -> None:
    config = load_config(example / CONFIG_NAME)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.stack = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.databases[0].tables[0].pk = ("x",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lambda_.memory = 1  # type: ignore[misc]


def test_defaults_and_table_shorthand(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        stack: minimal
        databases:
          d:
            tables:
              t: data/t.csv
        """,
    )
    config = load_config(path)
    root = tmp_path.resolve()
    assert config.region is None
    assert config.metadata is None
    assert config.metadata_file is None
    assert config.build_dir == root / ".datasette-lambda"
    assert config.lambda_ == LambdaConfig()
    assert (config.lambda_.python, config.lambda_.architecture, config.lambda_.memory) == (
        "3.13",
        "x86_64",
        1024,
    )
    assert config.datasette == DatasetteConfig(None, {}, (), (), None, None)

    [db] = config.databases
    assert (db.name, db.file, db.sql) == ("d", None, ())
    [t] = db.tables
    assert t.name == "t"
    assert t.source == "data/t.csv"
    assert (t.format, t.encoding, t.delimiter) == (None, "utf-8", None)
    assert (t.pk, t.fts, t.indexes, t.foreign_keys, dict(t.types)) == ((), (), (), (), {})
    # The shorthand's source is located on the table's line.
    assert t.location("source") == Location(path, 5)
    assert t.location("table") == Location(path, 5)


def test_every_table_option(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                source: "data/*.txt"
                format: tsv
                encoding: latin-1
                delimiter: "|"
                pk: [state, county]
                types: {population: integer, area: float, fips: text}
                fts: body
                indexes: [state, [state, county]]
                foreign_keys: {state: states, county: counties.fips}
              states: data/states.csv
              counties: data/counties.csv
        """,
    )
    t = table(config)
    assert t.source == "data/*.txt"
    assert t.format == "tsv"
    assert t.encoding == "latin-1"
    assert t.delimiter == "|"
    assert t.pk == ("state", "county")
    assert dict(t.types) == {"population": "integer", "area": "float", "fips": "text"}
    assert t.fts == ("body",)
    assert t.indexes == (("state",), ("state", "county"))
    assert t.foreign_keys == (
        ForeignKey("state", "states", None),
        ForeignKey("county", "counties", "fips"),
    )
    assert [t.name for t in config.databases[0].tables] == ["t", "states", "counties"]


def test_pk_as_string_or_list(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              one: {source: a.csv, pk: id}
              two: {source: b.csv, pk: [state, county]}
              single: {source: c.csv, pk: [id]}
        """,
    )
    assert table(config, name="one").pk == ("id",)
    assert table(config, name="two").pk == ("state", "county")
    assert table(config, name="single").pk == ("id",)


def test_tab_delimiter_and_formats(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              a: {source: a.tsv, delimiter: "\\t"}
              b: {source: b.json, format: json}
              c: {source: c.jsonl, format: jsonl}
              e: {source: e.csv, format: csv, encoding: cp1252}
        """,
    )
    assert table(config, name="a").delimiter == "\t"
    assert table(config, name="b").format == "json"
    assert table(config, name="c").format == "jsonl"
    assert table(config, name="e").encoding == "cp1252"


def test_sql_as_string_or_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        stack: s
        databases:
          one:
            tables: {t: a.csv}
            sql: create view v as select 1
          two:
            tables: {t: a.csv}
            sql:
              - create view v as select 1
              - create view w as select 2
        """,
    )
    one, two = load_config(path).databases
    assert one.sql == (SqlStep("create view v as select 1", Location(path, 5)),)
    assert two.sql == (
        SqlStep("create view v as select 1", Location(path, 9)),
        SqlStep("create view w as select 2", Location(path, 10)),
    )


def test_file_database(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "legacy.db").write_bytes(b"")
    config = load(
        tmp_path,
        """\
        stack: s
        databases:
          legacy:
            file: data/legacy.db
            sql: [create index i on t(a)]
        """,
    )
    [db] = config.databases
    assert db.file == tmp_path.resolve() / "data" / "legacy.db"
    assert db.tables == ()
    assert [step.sql for step in db.sql] == ["create index i on t(a)"]


def test_inline_metadata_and_json_metadata_file(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + "metadata: {title: Inline, license: CC0}\n")
    assert config.metadata == {"title": "Inline", "license": "CC0"}
    assert config.metadata_file is None

    (tmp_path / "meta.json").write_text('{"title": "From JSON"}', encoding="utf-8")
    config = load(tmp_path, BASE + "metadata: meta.json\n")
    assert config.metadata == {"title": "From JSON"}
    assert config.metadata_file == tmp_path.resolve() / "meta.json"


def test_datasette_section(tmp_path: Path) -> None:
    for name in ("static-files", "templates", "plugins"):
        (tmp_path / name).mkdir()
    config = load(
        tmp_path,
        with_base(
            """\
            datasette:
              version: "==0.65.1"
              settings:
                default_page_size: 50
                allow_download: false
                base_url: /data/
              plugins: [datasette-cluster-map, datasette-vega==0.6.2]
              static: {/assets/: static-files}
              templates: templates
              plugins_dir: plugins
            """
        ),
    )
    root = tmp_path.resolve()
    assert config.datasette == DatasetteConfig(
        version="==0.65.1",
        settings={"default_page_size": 50, "allow_download": False, "base_url": "/data/"},
        plugins=("datasette-cluster-map", "datasette-vega==0.6.2"),
        static=(StaticMount("assets", root / "static-files"),),
        templates=root / "templates",
        plugins_dir=root / "plugins",
    )


def test_datasette_shorthands(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    config = load(
        tmp_path,
        with_base(
            """\
            datasette:
              version: 0.65
              plugins: datasette-cluster-map
              static: static
            """
        ),
    )
    assert config.datasette.version == "0.65"
    assert config.datasette.plugins == ("datasette-cluster-map",)
    assert config.datasette.static == (StaticMount("static", tmp_path.resolve() / "static"),)


def test_lambda_section(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        with_base(
            """\
            lambda:
              python: "3.12"
              architecture: arm64
              memory: 10240
              timeout: 900
              ephemeral_storage: 10240
              reserved_concurrency: 0
            """
        ),
    )
    assert config.lambda_ == LambdaConfig("3.12", "arm64", 10240, 900, 10240, 0)

    config = load(tmp_path, BASE + "lambda: {memory: 128, timeout: 1, reserved_concurrency: null}\n")
    assert (config.lambda_.memory, config.lambda_.timeout) == (128, 1)
    assert config.lambda_.reserved_concurrency is None


@pytest.mark.parametrize("written", ["3.13", "3.12", "3.14"])
def test_lambda_python_unquoted_float_is_accepted(tmp_path: Path, written: str) -> None:
    config = load(tmp_path, BASE + f"lambda:\n  python: {written}\n")
    assert config.lambda_.python == written


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-central-2", "ap-southeast-4", "us-gov-west-1", "cn-north-1"]
)
def test_valid_regions(tmp_path: Path, region: str) -> None:
    assert load(tmp_path, BASE + f"region: {region}\n").region == region


def test_region_null_means_none(tmp_path: Path) -> None:
    assert load(tmp_path, BASE + "region: null\n").region is None


def test_stack_name_limits(tmp_path: Path) -> None:
    assert load(tmp_path, BASE.replace("stack: s", "stack: A" + "-b" * 63 + "c")).stack == (
        "A" + "-b" * 63 + "c"
    )  # 128 characters
    path, message = fails(tmp_path, BASE.replace("stack: s", "stack: " + "a" * 129))
    assert message.startswith(f"{path}:1: stack: '{'a' * 129}' is not a valid CloudFormation stack name")


def test_build_dir_setting(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + "build_dir: out/build\n")
    assert config.build_dir == tmp_path.resolve() / "out" / "build"
    assert config.databases_dir == tmp_path.resolve() / "out" / "build" / "databases"


def test_config_in_a_subdirectory_resolves_paths_there(tmp_path: Path) -> None:
    sub = tmp_path / "site"
    (sub / "data").mkdir(parents=True)
    (sub / "data" / "x.db").write_bytes(b"")
    path = write(sub, "stack: s\ndatabases:\n  x:\n    file: data/x.db\n")
    config = load_config(path)
    assert config.root == sub.resolve()
    assert config.databases[0].file == sub.resolve() / "data" / "x.db"
    assert config.build_dir == sub.resolve() / ".datasette-lambda"


def test_yaml_merge_keys_can_be_overridden(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              states: &csv
                source: data/states.csv
                encoding: latin-1
                pk: code
              counties:
                <<: *csv
                source: data/counties.csv
                pk: fips
        """,
    )
    counties = table(config, name="counties")
    assert (counties.source, counties.encoding, counties.pk) == ("data/counties.csv", "latin-1", ("fips",))
    assert table(config, name="states").pk == ("code",)


def test_yaml_merge_of_a_list_of_mappings_prefers_the_first(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              a: &a {source: a.csv, encoding: latin-1}
              b: &b {source: b.csv, encoding: cp1252, pk: id}
              c:
                <<: [*a, *b]
        """,
    )
    c = table(config, name="c")
    assert (c.source, c.encoding, c.pk) == ("a.csv", "latin-1", ("id",))


# -- unknown, missing and duplicate keys ------------------------------------------------------


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          census:
            tabels:
              states: data/states.csv
        """,
    )
    assert message == f"{path}:4: unknown key 'tabels' in databases.census; did you mean 'tables'?"


def test_unknown_key_at_the_top_level(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "regoin: us-east-1\n")
    assert message == f"{path}:6: unknown key 'regoin' at the top level; did you mean 'region'?"


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "colour: blue\n")
    assert message == (
        f"{path}:6: unknown key 'colour' at the top level; allowed keys:"
        " build_dir, databases, datasette, deploy, lambda, metadata, region, stack"
    )


def test_unknown_table_key_without_a_close_match(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                source: a.csv
                colour: blue
        """,
    )
    assert message == (
        f"{path}:7: unknown key 'colour' in databases.d.tables.t; allowed keys:"
        " delimiter, encoding, foreign_keys, format, fts, indexes, pk, source, types"
    )


def test_unknown_lambda_key_with_suggestion(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "lambda:\n  memroy: 512\n")
    assert message == f"{path}:7: unknown key 'memroy' in lambda; did you mean 'memory'?"


def test_missing_stack(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        # a comment first, so the top level starts on line 2
        databases:
          d:
            tables: {t: a.csv}
        """,
    )
    assert message == f"{path}:2: missing required key 'stack' at the top level"


def test_missing_databases(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "stack: s\nregion: us-east-1\n")
    assert message == f"{path}:1: missing required key 'databases' at the top level"


def test_missing_table_source(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                pk: id
        """,
    )
    assert message == f"{path}:5: missing required key 'source' in databases.d.tables.t"


def test_empty_config_file(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "# nothing yet\n")
    assert message == (
        f"{path}:1: the top level: expected a mapping of keys"
        " (stack, region, databases, metadata, datasette, lambda, build_dir, deploy), got nothing"
    )


def test_config_that_is_a_list(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "- stack: s\n")
    assert message == (
        f"{path}:1: the top level: expected a mapping of keys"
        " (stack, region, databases, metadata, datasette, lambda, build_dir, deploy), got a list"
    )


def test_table_defined_twice(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              states: data/states.csv
              counties: data/counties.csv
              states: data/other.csv
        """,
    )
    assert message == f"{path}:7: duplicate key 'states' in databases.d.tables (first defined at line 5)"


def test_duplicate_key_at_the_top_level(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "stack: t\n")
    assert message == f"{path}:6: duplicate key 'stack' at the top level (first defined at line 1)"


def test_tables_differing_only_in_case(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              States: data/states.csv
              states: data/other.csv
        """,
    )
    assert message == (
        f"{path}:6: databases.d.tables.states: table 'states' has the same name as 'States'"
        " (SQLite table names are not case-sensitive); rename one"
    )


def test_databases_differing_only_in_case(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          Census: {tables: {t: a.csv}}
          census: {tables: {t: a.csv}}
        """,
    )
    assert message == (
        f"{path}:4: databases.census: database 'census' has the same name as 'Census'"
        " (names are not case-sensitive on every file system); rename one"
    )


def test_bad_database_name(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          "my data": {tables: {t: a.csv}}
        """,
    )
    assert message == (
        f"{path}:3: databases.my data: 'my data' is not a usable database name; use letters,"
        " digits, '_', '-' and '.', starting with a letter or digit"
    )


def test_databases_must_not_be_empty(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "stack: s\ndatabases: {}\n")
    assert message == f"{path}:2: databases: expected a mapping of database names, got a mapping"


def test_key_that_is_not_text(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "1: one\n")
    assert message == f"{path}:6: key '1' at the top level must be text; put it in quotes"


# -- YAML syntax ------------------------------------------------------------------------------


def test_invalid_yaml_syntax(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "stack: s\ndatabases: d: x\n")
    assert message == f"{path}:2: invalid YAML: mapping values are not allowed here"


def test_invalid_yaml_tab_indentation(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text("stack: s\ndatabases:\n\td: x\n", encoding="utf-8")
    assert error_of(path) == f"{path}:3: invalid YAML: found character '\\t' that cannot start any token"


def test_invalid_yaml_unclosed_flow_mapping(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables: {t: a.csv
        lambda: {}
        """,
    )
    assert message == f"{path}:5: invalid YAML: expected ',' or '}}', but got ':'"


def test_two_yaml_documents(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "---\nstack: t\n")
    assert message == (
        f"{path}:6: invalid YAML: expected a single document in the stream, but found another document"
    )


def test_unknown_yaml_tag(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "region: !aws us-east-1\n")
    assert message == f"{path}:6: invalid YAML: could not determine a constructor for the tag '!aws'"


def test_python_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "region: !!python/object/apply:os.system [echo hi]\n")
    assert message == (
        f"{path}:6: invalid YAML: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/object/apply:os.system'"
    )


def test_impossible_date(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  version: 2024-02-30\n")
    assert message == (
        f"{path}:7: invalid YAML: '2024-02-30' is not a valid timestamp (day is out of range for"
        " month); put it in quotes if it is text"
    )


def test_control_character(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text("stack: s\ndatabases:\n  d: \x07\n", encoding="utf-8")
    assert error_of(path) == (
        f"{path}:3: invalid YAML: unacceptable character #x0007: special characters are not allowed"
    )


def test_undefined_and_duplicate_anchors(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "region: *nowhere\n")
    assert message == f"{path}:6: invalid YAML: found undefined alias 'nowhere'"
    path, message = fails(tmp_path, "stack: &a s\nregion: &a us-east-1\n")
    assert message == f"{path}:2: invalid YAML: found duplicate anchor 'a' (first defined at line 1)"


def test_recursive_alias(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  plugins: &p [a, *p]\n")
    assert message == (
        f"{path}:7: invalid YAML: datasette.plugins[1] is an alias of a value that contains it;"
        " an anchor's value cannot refer to itself"
    )


def test_tagged_collection_is_rejected(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  plugins: !!set {datasette-vega: null}\n")
    assert message == (
        f"{path}:7: invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:set'"
    )


def test_merge_into_itself(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "lambda: &l\n  <<: *l\n")
    assert message == f"{path}:7: invalid YAML: '<<' (merge) in lambda merges a mapping into itself"


def test_key_that_is_a_list(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "? [a, b]\n: x\n")
    assert message == f"{path}:6: a key at the top level is a list; keys must be text"


def test_error_carries_message_and_location_separately(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "region: nowhere\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message == "region: 'nowhere' is not an AWS region name such as us-east-1"
    assert info.value.location == Location(path, 6)


def test_merge_of_a_scalar(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "lambda:\n  <<: 5\n")
    assert message == (
        f"{path}:7: invalid YAML: '<<' (merge) in lambda needs an alias of a mapping or a list of"
        " them, such as <<: *defaults"
    )


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yml"
    assert error_of(path) == f"{path}: config file not found; create it (see the README) or pass -c PATH"


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    assert error_of(tmp_path) == f"{tmp_path}: is a directory; pass the config file itself"


def test_config_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_bytes(b"stack: caf\xe9\n")
    assert error_of(path) == f"{path}: is not UTF-8 text (byte 10); save it as UTF-8"


# -- stack and region -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["my_stack", "1stack", "-stack", "my.stack"])
def test_bad_stack_name(tmp_path: Path, stack: str) -> None:
    path, message = fails(tmp_path, BASE.replace("stack: s", f"stack: '{stack}'"))
    assert message == (
        f"{path}:1: stack: '{stack}' is not a valid CloudFormation stack name; use letters, digits"
        " and hyphens, starting with a letter, at most 128 characters"
    )


def test_stack_that_is_not_text(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE.replace("stack: s", "stack: 123"))
    assert message == f"{path}:1: stack: expected a stack name, got 123"
    path, message = fails(tmp_path, BASE.replace("stack: s", "stack:"))
    assert message == f"{path}:1: stack: expected a stack name, got nothing"


@pytest.mark.parametrize("region", ["us-east", "US-EAST-1", "useast1", "us-east-1a"])
def test_bad_region(tmp_path: Path, region: str) -> None:
    path, message = fails(tmp_path, BASE + f"region: {region}\n")
    assert message == f"{path}:6: region: '{region}' is not an AWS region name such as us-east-1"


# -- databases and tables ---------------------------------------------------------------------


def test_wrong_column_type(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                source: a.csv
                types:
                  name: text
                  population: int
        """,
    )
    assert message == (
        f"{path}:9: databases.d.tables.t.types.population: 'int' is not allowed;"
        " choose one of: integer, float, text"
    )


def test_types_must_be_a_mapping(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t: {source: a.csv, types: [integer]}
        """,
    )
    assert message == f"{path}:5: databases.d.tables.t.types: expected a mapping of column: type, got a list"


def test_bad_format(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                source: a.xlsx
                format: excel
        """,
    )
    assert message == (
        f"{path}:7: databases.d.tables.t.format: 'excel' is not allowed; choose one of: csv, tsv, json, jsonl"
    )


def test_file_and_tables_both_given(tmp_path: Path) -> None:
    (tmp_path / "x.db").write_bytes(b"")
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            file: x.db
            tables:
              t: a.csv
        """,
    )
    assert message == (
        f"{path}:3: databases.d: give either 'file' (an existing SQLite database) or 'tables'"
        " (built from CSV/JSON sources), not both or neither"
    )


def test_neither_file_nor_tables(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "stack: s\ndatabases:\n  d:\n    sql: select 1\n")
    assert message == (
        f"{path}:3: databases.d: give either 'file' (an existing SQLite database) or 'tables'"
        " (built from CSV/JSON sources), not both or neither"
    )


def test_file_database_that_does_not_exist(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "stack: s\ndatabases:\n  d:\n    file: data/missing.db\n")
    assert message == (
        f"{path}:4: databases.d.file: file 'data/missing.db' not found (looked in {tmp_path.resolve()})"
    )


def test_file_database_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    path, message = fails(tmp_path, "stack: s\ndatabases:\n  d:\n    file: data\n")
    assert message == f"{path}:4: databases.d.file: file 'data' not found (looked in {tmp_path.resolve()})"


@pytest.mark.parametrize("source", ["../outside.csv", "data/../../outside.csv", "../*.csv"])
def test_source_outside_the_config_directory(tmp_path: Path, source: str) -> None:
    path, message = fails(tmp_path, f"stack: s\ndatabases:\n  d:\n    tables:\n      t: {source}\n")
    assert message == (
        f"{path}:5: databases.d.tables.t.source: '{source}' is outside the config file's directory"
        f" ({tmp_path.resolve()}); use a path inside it"
    )


def test_absolute_source_path(tmp_path: Path) -> None:
    source = str(tmp_path / "data" / "a.csv")  # inside, but absolute: configs must stay portable
    path, message = fails(
        tmp_path,
        f"stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        source: {source}\n",
    )
    assert message == (
        f"{path}:6: databases.d.tables.t.source: '{source}' is outside the config file's directory"
        f" ({tmp_path.resolve()}); use a path inside it"
    )


def test_file_database_outside_the_config_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    path, message = fails(project, "stack: s\ndatabases:\n  d:\n    file: ../x.db\n")
    assert message == (
        f"{path}:4: databases.d.file: '../x.db' is outside the config file's directory"
        f" ({project.resolve()}); use a path inside it"
    )


def test_symlink_leading_out_of_the_config_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.db").write_bytes(b"")
    project.mkdir()
    (project / "link").symlink_to(elsewhere, target_is_directory=True)
    path, message = fails(project, "stack: s\ndatabases:\n  d:\n    file: link/x.db\n")
    assert message == (
        f"{path}:4: databases.d.file: 'link/x.db' resolves to {elsewhere.resolve() / 'x.db'}, outside"
        f" the config file's directory ({project.resolve()}); use a path inside it"
    )


def test_build_dir_outside_the_config_directory(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "build_dir: ../build\n")
    assert message == (
        f"{path}:6: build_dir: '../build' is outside the config file's directory ({tmp_path.resolve()});"
        " use a path inside it"
    )


def test_bad_encoding(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        source: a.csv\n        encoding: klingon\n",
    )
    assert message == (
        f"{path}:7: databases.d.tables.t.encoding: unknown encoding 'klingon'; use a Python codec"
        " name such as utf-8, latin-1 or cp1252"
    )


@pytest.mark.parametrize("codec", ["hex", "rot13", "base64"])
def test_codec_that_is_not_a_text_encoding(tmp_path: Path, codec: str) -> None:
    path, message = fails(
        tmp_path,
        f"stack: s\ndatabases:\n  d:\n    tables:\n      t: {{source: a.csv, encoding: {codec}}}\n",
    )
    assert message == (
        f"{path}:5: databases.d.tables.t.encoding: unknown encoding '{codec}'; use a Python codec"
        " name such as utf-8, latin-1 or cp1252"
    )


@pytest.mark.parametrize(("written", "shown"), [("';;'", "';;'"), ("''", "''"), ("1", "1")])
def test_delimiter_must_be_one_character(tmp_path: Path, written: str, shown: str) -> None:
    path, message = fails(
        tmp_path,
        f"stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        source: a.csv\n        delimiter: {written}\n",
    )
    assert message == f"{path}:7: databases.d.tables.t.delimiter: expected one character, got {shown}"


def test_pk_listed_twice(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                source: a.csv
                pk:
                  - id
                  - id
        """,
    )
    assert message == f"{path}:9: databases.d.tables.t.pk[1]: 'id' is listed twice"


def test_pk_must_not_be_empty(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        "stack: s\ndatabases:\n  d:\n    tables:\n      t: {source: a.csv, pk: []}\n",
    )
    assert (
        message == f"{path}:5: databases.d.tables.t.pk: expected a column name or a list of them, got a list"
    )


def test_index_column_that_is_not_text(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                source: a.csv
                indexes:
                  - [state]
                  - [state, 3]
        """,
    )
    assert message == f"{path}:9: databases.d.tables.t.indexes[1][1]: expected a column name, got 3"


def test_sql_must_be_statements(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "    sql: 5\n")
    assert message == f"{path}:6: databases.d.sql: expected a list of SQL statements, got 5"


def test_table_body_must_be_a_mapping(tmp_path: Path) -> None:
    path, message = fails(tmp_path, "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n")
    assert message == (
        f"{path}:5: databases.d.tables.t: expected a mapping of keys (source, format, encoding,"
        " delimiter, pk, types, fts, indexes, foreign_keys), got nothing"
    )


# -- metadata ---------------------------------------------------------------------------------


def test_metadata_file_that_does_not_exist(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "metadata: meta/missing.yml\n")
    assert message == (
        f"{path}:6: metadata: file 'meta/missing.yml' not found (looked in {tmp_path.resolve()})"
    )


def test_invalid_metadata_yaml_names_the_metadata_file(tmp_path: Path) -> None:
    metadata = write(
        tmp_path,
        """\
        title: Example
        description: [unclosed
        license: CC0
        """,
        name="metadata.yml",
    )
    path, message = fails(tmp_path, BASE + "metadata: metadata.yml\n")
    assert message == f"{metadata.resolve()}:3: invalid YAML: expected ',' or ']', but got ':'"
    assert str(path) not in message


def test_metadata_yaml_with_a_duplicate_key(tmp_path: Path) -> None:
    metadata = write(tmp_path, "title: One\nlicense: CC0\ntitle: Two\n", name="metadata.yml")
    _, message = fails(tmp_path, BASE + "metadata: metadata.yml\n")
    assert (
        message == f"{metadata.resolve()}:3: duplicate key 'title' at the top level (first defined at line 1)"
    )


def test_metadata_yaml_with_an_impossible_date(tmp_path: Path) -> None:
    metadata = write(tmp_path, "title: x\nupdated: 2024-02-30\n", name="metadata.yml")
    _, message = fails(tmp_path, BASE + "metadata: metadata.yml\n")
    assert message == (
        f"{metadata.resolve()}:2: invalid YAML: '2024-02-30' is not a valid timestamp (day is out of"
        " range for month); put it in quotes if it is text"
    )


def test_invalid_metadata_json(tmp_path: Path) -> None:
    metadata = write(tmp_path, '{\n  "title": "x",\n}\n', name="metadata.json")
    _, message = fails(tmp_path, BASE + "metadata: metadata.json\n")
    assert (
        message == f"{metadata.resolve()}:3: invalid JSON: Expecting property name enclosed in double quotes"
    )


@pytest.mark.parametrize(
    ("text", "shown"), [("- a\n- b\n", "a list"), ("", "nothing"), ("hello\n", "'hello'")]
)
def test_metadata_must_be_a_mapping(tmp_path: Path, text: str, shown: str) -> None:
    metadata = write(tmp_path, text, name="metadata.yml")
    _, message = fails(tmp_path, BASE + "metadata: metadata.yml\n")
    assert message == f"{metadata.resolve()}:1: metadata must be a mapping, got {shown}"


def test_metadata_outside_the_config_directory(tmp_path: Path) -> None:
    path, message = fails(tmp_path / "project", BASE + "metadata: ../metadata.yml\n")
    assert message == (
        f"{path}:6: metadata: '../metadata.yml' is outside the config file's directory"
        f" ({(tmp_path / 'project').resolve()}); use a path inside it"
    )


# -- datasette --------------------------------------------------------------------------------


def test_unknown_datasette_setting(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  settings:\n    sql_time_limit: 3000\n")
    assert message == (
        f"{path}:8: unknown key 'sql_time_limit' in datasette.settings; did you mean 'sql_time_limit_ms'?"
    )


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("default_page_size", '"50"', "expected a whole number, got '50'"),
        ("default_page_size", "true", "expected a whole number, got true"),
        ("sql_time_limit_ms", "1.5", "expected a whole number, got 1.5"),
        ("allow_download", "1", "expected true or false, got 1"),
        ("allow_download", '"no"', "expected true or false, got 'no'"),
        ("base_url", "5", "expected text, got 5"),
        ("base_url", "", "expected text, got nothing"),
    ],
)
def test_wrong_setting_value_type(tmp_path: Path, setting: str, value: str, problem: str) -> None:
    path, message = fails(tmp_path, BASE + f"datasette:\n  settings:\n    {setting}: {value}\n")
    assert message == f"{path}:8: datasette.settings.{setting}: {problem}"


def test_bad_plugin_requirement(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        with_base(
            """\
            datasette:
              plugins:
                - datasette-cluster-map
                - "datasette vega!"
            """
        ),
    )
    assert message == (
        f"{path}:9: datasette.plugins[1]: 'datasette vega!' is not a package name or pip requirement"
        " such as datasette-cluster-map or datasette-vega==0.6.2"
    )


def test_plugin_listed_twice(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  plugins: [datasette-vega, datasette-vega]\n")
    assert message == f"{path}:7: datasette.plugins[1]: 'datasette-vega' is listed twice"


def test_static_directory_missing(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  static:\n    assets: static-files\n")
    assert message == (
        f"{path}:8: datasette.static.assets: directory 'static-files' not found"
        f" (looked in {tmp_path.resolve()})"
    )


def test_static_shorthand_directory_missing(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  static: static\n")
    assert message == (
        f"{path}:7: datasette.static.static: directory 'static' not found (looked in {tmp_path.resolve()})"
    )


def test_templates_directory_missing(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  templates: templates\n")
    assert message == (
        f"{path}:7: datasette.templates: directory 'templates' not found (looked in {tmp_path.resolve()})"
    )


def test_templates_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "templates").write_text("not a directory", encoding="utf-8")
    path, message = fails(tmp_path, BASE + "datasette:\n  templates: templates\n")
    assert message == (
        f"{path}:7: datasette.templates: directory 'templates' not found (looked in {tmp_path.resolve()})"
    )


def test_plugins_dir_missing(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "datasette:\n  plugins_dir: plugins\n")
    assert message == (
        f"{path}:7: datasette.plugins_dir: directory 'plugins' not found (looked in {tmp_path.resolve()})"
    )


@pytest.mark.parametrize(
    ("section", "allowed"),
    [
        ("datasette", "version, settings, plugins, static, templates, plugins_dir, version_note"),
        ("lambda", "python, architecture, memory, timeout, ephemeral_storage, reserved_concurrency"),
    ],
)
@pytest.mark.parametrize(("value", "shown"), [("false", "false"), ("[]", "a list"), ("''", "''")])
def test_sections_must_be_mappings(
    tmp_path: Path, section: str, allowed: str, value: str, shown: str
) -> None:
    path, message = fails(tmp_path, BASE + f"{section}: {value}\n")
    assert message == f"{path}:6: {section}: expected a mapping of keys ({allowed}), got {shown}"


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + "datasette:\nlambda:\n")
    assert config.datasette == DatasetteConfig(None, {}, (), (), None, None)
    assert config.lambda_ == LambdaConfig()


def test_datasette_settings_match_datasette() -> None:
    import datasette.app

    expected = {setting.name: type(setting.default) for setting in datasette.app.SETTINGS}
    assert dict(DATASETTE_SETTINGS) == expected
    assert list(DATASETTE_SETTINGS) == list(expected)


# -- lambda -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "shown"), [('"3.9"', "'3.9'"), ("3.9", "'3.9'"), ("3", "3"), ('"3.10"', "'3.10'")]
)
def test_lambda_python_not_allowed(tmp_path: Path, written: str, shown: str) -> None:
    path, message = fails(tmp_path, BASE + f"lambda:\n  python: {written}\n")
    assert (
        message == f"{path}:7: lambda.python: {shown} is not allowed; choose one of: 3.11, 3.12, 3.13, 3.14"
    )


def test_lambda_architecture_not_allowed(tmp_path: Path) -> None:
    path, message = fails(tmp_path, BASE + "lambda:\n  architecture: arm\n")
    assert message == f"{path}:7: lambda.architecture: 'arm' is not allowed; choose one of: x86_64, arm64"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("memory", "64", "expected a whole number from 128 to 10240, got 64"),
        ("memory", "10241", "expected a whole number from 128 to 10240, got 10241"),
        ("memory", "yes", "expected a whole number from 128 to 10240, got true"),
        ("memory", "true", "expected a whole number from 128 to 10240, got true"),
        ("memory", '"1024"', "expected a whole number from 128 to 10240, got '1024'"),
        ("memory", "1024.0", "expected a whole number from 128 to 10240, got 1024.0"),
        ("timeout", "901", "expected a whole number from 1 to 900, got 901"),
        ("timeout", "0", "expected a whole number from 1 to 900, got 0"),
        ("ephemeral_storage", "511", "expected a whole number from 512 to 10240, got 511"),
        ("reserved_concurrency", "-1", "expected a whole number from 0 to 1000, got -1"),
    ],
)
def test_lambda_numbers_out_of_range(tmp_path: Path, key: str, value: str, problem: str) -> None:
    path, message = fails(tmp_path, BASE + f"lambda:\n  {key}: {value}\n")
    assert message == f"{path}:7: lambda.{key}: {problem}"


# -- the command line -------------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datasette_action", "build", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


TABELS = """\
stack: s
databases:
  census:
    tabels:
      states: data/states.csv
"""
TABELS_MESSAGE = "unknown key 'tabels' in databases.census; did you mean 'tables'?"


def test_cli_config_error(tmp_path: Path) -> None:
    write(tmp_path, TABELS)
    result = run_cli(tmp_path, "-c", CONFIG_NAME)
    assert result.returncode == 1
    assert result.stderr == f"Error: {CONFIG_NAME}:4: {TABELS_MESSAGE}\n"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_config_error_as_json(tmp_path: Path) -> None:
    write(tmp_path, TABELS)
    result = run_cli(tmp_path, "-c", CONFIG_NAME, "--json")
    assert result.returncode == 1
    assert result.stderr == f"Error: {CONFIG_NAME}:4: {TABELS_MESSAGE}\n"
    assert json.loads(result.stdout) == {"error": TABELS_MESSAGE, "file": CONFIG_NAME, "line": 4}


def test_cli_yaml_that_used_to_crash(tmp_path: Path) -> None:
    """Errors raised while PyYAML constructs values are config errors, not tracebacks."""
    write(tmp_path, BASE + "region: !aws us-east-1\n")
    result = run_cli(tmp_path, "-c", CONFIG_NAME, "--json")
    message = "invalid YAML: could not determine a constructor for the tag '!aws'"
    assert result.returncode == 1
    assert result.stderr == f"Error: {CONFIG_NAME}:6: {message}\n"
    assert json.loads(result.stdout) == {"error": message, "file": CONFIG_NAME, "line": 6}


def test_cli_missing_config_file(tmp_path: Path) -> None:
    message = "config file not found; create it (see the README) or pass -c PATH"
    result = run_cli(tmp_path, "-c", "missing.yml", "--json")
    assert result.returncode == 1
    assert result.stderr == f"Error: missing.yml: {message}\n"
    assert json.loads(result.stdout) == {"error": message, "file": "missing.yml", "line": None}

    result = run_cli(tmp_path)  # the default name, datasette-lambda.yml, is not there either
    assert result.returncode == 1
    assert result.stderr == f"Error: {CONFIG_NAME}: {message}\n"
    assert "Traceback" not in result.stderr


def test_types_naming_one_column_twice_in_different_case(tmp_path: Path) -> None:
    path, message = fails(
        tmp_path,
        """\
        stack: s
        databases:
          d:
            tables:
              t:
                source: a.csv
                types: {code: text, Code: integer}
        """,
    )
    assert message == (
        f"{path}:7: databases.d.tables.t.types.Code: 'Code' and 'code' name the same column"
        " (column names are not case-sensitive); keep one"
    )
