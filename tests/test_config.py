"""Tests for the config loader: `load_config(path)` -> `Config`, or a `ConfigError` whose text is
"<file>:<line>: <message>". Every test writes real files under tmp_path; nothing is mocked.

The errors are tables (one per part of the config) of a config text, the line the error must name
and its exact message; `test_config_error` runs them all."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from datasette_action.config import (
    DATABASE_KEYS,
    DATASETTE_KEYS,
    DATASETTE_SETTINGS,
    DEPLOY_KEYS,
    ENV_NAME_PATTERN,
    FUNCTION_URL_UNSUPPORTED,
    FUNCTION_URL_UNSUPPORTED_CLOUDFORMATION,
    FUNCTION_URL_UNSUPPORTED_DOCUMENTED,
    LAMBDA_KEYS,
    MEMORY_MAX,
    MEMORY_MIN,
    SECTIONS,
    TABLE_KEYS,
    TOP_KEYS,
    Config,
    DatabaseConfig,
    DatasetteConfig,
    DeployConfig,
    ForeignKey,
    LambdaConfig,
    SqlStep,
    StaticMount,
    TableConfig,
    frontend_problem,
    load_config,
    region_problem,
    stack_name_problem,
)
from datasette_action.errors import ConfigError, Location

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


def table(config: Config, database: str = "d", name: str = "t") -> TableConfig:
    db = next(db for db in config.databases if db.name == database)
    return next(t for t in db.tables if t.name == name)


# -- the happy path ---------------------------------------------------------------------------


def test_example_config_loads(example_project: Path) -> None:
    path = example_project / CONFIG_NAME
    config = load_config(path)
    root = example_project.resolve()

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
    assert config.metadata == yaml.safe_load((example_project / "metadata.yml").read_text(encoding="utf-8"))
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
    assert config.lambda_ == LambdaConfig(python="3.13", architecture="x86_64", memory=1024)
    assert not config.lambda_.architecture_written  # commented out: serve previews this machine's CPU
    assert (config.lambda_.timeout, config.lambda_.ephemeral_storage) == (30, 512)
    assert config.lambda_.reserved_concurrency is None


def test_example_table_locations_point_at_their_keys(example_project: Path) -> None:
    path = example_project / CONFIG_NAME
    counties = table(load_config(path), "census", "counties")
    assert counties.location("table") == Location(path, 10)
    assert counties.location("source") == Location(path, 11)
    assert counties.location("fts") == Location(path, 13)
    assert counties.location("foreign_keys") == Location(path, 15)
    # A key the table does not set falls back to the table's own line.
    assert counties.location("encoding") == Location(path, 10)


def test_config_is_frozen(example_project: Path) -> None:
    config = load_config(example_project / CONFIG_NAME)
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
              reserved_concurrency: 1
            """
        ),
    )
    assert config.lambda_ == LambdaConfig("3.12", "arm64", 10240, 900, 10240, 1)

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
    front = "http_api" if region in FUNCTION_URL_UNSUPPORTED else "function_url"
    assert load(tmp_path, BASE + f"region: {region}\ndeploy:\n  frontend: {front}\n").region == region


def test_function_url_regions_match_cloudformation_in_cfn_lint() -> None:
    """The regions without function URLs: every region whose CloudFormation registry (cfn-lint's
    vendored provider schemas) lacks AWS::Lambda::Url is listed, and the documented ones that
    have it there are exactly the known disagreement (eu-south-2). A new cfn-lint that changes
    either fails here: re-read the Lambda guide and update config.FUNCTION_URL_UNSUPPORTED_*."""
    from cfnlint.helpers import REGIONS
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    without = {r for r in REGIONS if "AWS::Lambda::Url" not in PROVIDER_SCHEMA_MANAGER.get_resource_types(r)}
    assert without == set(FUNCTION_URL_UNSUPPORTED) - {"eu-south-2"}
    assert set(FUNCTION_URL_UNSUPPORTED_CLOUDFORMATION) <= without
    assert set(FUNCTION_URL_UNSUPPORTED_DOCUMENTED) - without == {"eu-south-2"}
    assert set(FUNCTION_URL_UNSUPPORTED) <= set(REGIONS)  # every name is a region cfn-lint knows


def test_secret_names_follow_lambdas_own_pattern() -> None:
    """ENV_NAME_PATTERN is the key pattern of Environment.Variables in the AWS::Lambda::Function
    schema cfn-lint vendors (AWS's resource schema)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::Lambda::Function").schema
    variables = schema["definitions"]["Environment"]["properties"]["Variables"]
    assert list(variables["patternProperties"]) == [ENV_NAME_PATTERN]


def test_region_null_means_none(tmp_path: Path) -> None:
    assert load(tmp_path, BASE + "region: null\n").region is None


def test_a_stack_name_of_128_characters(tmp_path: Path) -> None:
    stack = "A" + "-b" * 63 + "c"
    assert load(tmp_path, BASE.replace("stack: s", f"stack: {stack}")).stack == stack


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


def test_deploy_section(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        with_base(
            """\
            deploy:
              frontend: http_api
              bucket: my-artifacts.example
              log_retention_days: 365
              tags: {team: data, cost-centre: 42, "owner name": "Jo Bloggs"}
              secrets: [MAPBOX_TOKEN, DATASETTE_SECRET]
              health_check: false
            """
        ),
    )
    assert config.deploy == DeployConfig(
        frontend="http_api",
        bucket="my-artifacts.example",
        log_retention_days=365,
        tags={"team": "data", "cost-centre": "42", "owner name": "Jo Bloggs"},
        secrets=("MAPBOX_TOKEN", "DATASETTE_SECRET"),
        health_check=False,
    )
    assert load(tmp_path, BASE + "deploy: {secrets: MAPBOX_TOKEN}\n").deploy.secrets == ("MAPBOX_TOKEN",)


def test_the_most_tags_there_is_room_for(tmp_path: Path) -> None:
    tags = "".join(f"    t{i}: {'v' * 256}\n" for i in range(48))
    assert len(load(tmp_path, BASE + "deploy:\n  tags:\n" + tags).deploy.tags) == 48


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, BASE + "datasette:\nlambda:\ndeploy:\n")
    assert config.datasette == DatasetteConfig(None, {}, (), (), None, None)
    assert config.lambda_ == LambdaConfig()
    assert config.deploy == DeployConfig()
    config = load(tmp_path, BASE + "region:\nmetadata:\ndeploy: {bucket: null, tags: null}\n")
    assert (config.region, config.metadata, config.deploy) == (None, None, DeployConfig())


def test_datasette_settings_match_datasette() -> None:
    import datasette.app

    expected = {setting.name: type(setting.default) for setting in datasette.app.SETTINGS}
    assert dict(DATASETTE_SETTINGS) == expected
    assert list(DATASETTE_SETTINGS) == list(expected)


# -- the table of keys and the shared checks ----------------------------------------------------


def fields_of(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_the_key_table_fills_every_field_of_the_dataclasses() -> None:
    def filled(keys: tuple[Any, ...]) -> set[str]:
        return {key.field or key.name for key in keys}

    assert filled(LAMBDA_KEYS) | {"architecture_written"} == fields_of(LambdaConfig)
    assert filled(DEPLOY_KEYS) == fields_of(DeployConfig)
    assert filled(DATASETTE_KEYS) == fields_of(DatasetteConfig)
    assert filled(TABLE_KEYS) | {"name", "locations"} == fields_of(TableConfig)
    assert filled(DATABASE_KEYS) | {"name", "location"} == fields_of(DatabaseConfig)
    assert filled(TOP_KEYS) | {"path", "root", "metadata_file"} == fields_of(Config)
    assert list(SECTIONS.values()) == [
        TOP_KEYS,
        DATABASE_KEYS,
        TABLE_KEYS,
        DATASETTE_KEYS,
        LAMBDA_KEYS,
        DEPLOY_KEYS,
    ]


def test_the_key_table_defaults_are_the_dataclass_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, BASE)
    assert config.lambda_ == LambdaConfig()
    assert config.deploy == DeployConfig()
    assert config.build_dir == tmp_path.resolve() / Config.build_dir


def test_the_shared_checks_for_the_front_doors() -> None:
    assert stack_name_problem("my-site") is None
    assert stack_name_problem("my_site") == (
        "'my_site' is not a valid CloudFormation stack name; use letters, digits and hyphens,"
        " starting with a letter, at most 128 characters"
    )
    assert region_problem("eu-west-1") is None
    assert region_problem("europe") == "'europe' is not an AWS region; use a region name such as us-east-1"
    assert region_problem("us-easst-1") == "'us-easst-1' is not an AWS region; did you mean 'us-east-1'?"
    # newer than this botocore: a known region's words with a new number pass
    assert region_problem("us-east-9") is None
    assert region_problem("eusc-de-east-1") is None
    assert frontend_problem("function_url", "us-east-1") is None
    assert frontend_problem("http_api", "il-central-1") is None
    assert frontend_problem("function_url", "il-central-1") == NO_FUNCTION_URL.format(region="il-central-1")
    assert (MEMORY_MIN, MEMORY_MAX) == (128, 10240)


# -- errors: a config, the line its error names, the exact message ------------------------------


@dataclasses.dataclass(frozen=True)
class Bad:
    """A config that must be rejected. `{root}` in the text or the message stands for the config's
    directory (resolved)."""

    text: str
    line: int
    message: str  # what follows "<file>:<line>: "
    files: Mapping[str, str] = dataclasses.field(default_factory=dict)  # written first; "x/": a directory
    at: str | None = None  # the file the error names, relative to the config's directory; None: the config
    project: str = ""  # a subdirectory of tmp_path to put the config in


def bad(id: str, text: str, line: int, message: str, **more: Any) -> Any:
    return pytest.param(Bad(text, line, message, **more), id=id)


# Nine levels of nine aliases: 9**9 values (a 24 GB load before the expansion was bounded).
BILLION_LAUGHS = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


KEYS = [
    bad(
        "unknown-key-with-a-suggestion",
        "stack: s\ndatabases:\n  census:\n    tabels:\n      states: data/states.csv\n",
        4,
        "unknown key 'tabels' in databases.census; did you mean 'tables'?",
    ),
    bad(
        "unknown-top-level-key",
        BASE + "regoin: us-east-1\n",
        6,
        "unknown key 'regoin' at the top level; did you mean 'region'?",
    ),
    bad(
        "unknown-key-lists-the-allowed-keys",
        BASE + "colour: blue\n",
        6,
        "unknown key 'colour' at the top level; allowed keys:"
        " build_dir, databases, datasette, deploy, lambda, metadata, region, stack",
    ),
    bad(
        "unknown-table-key",
        "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        source: a.csv\n        colour: blue\n",
        7,
        "unknown key 'colour' in databases.d.tables.t; allowed keys:"
        " delimiter, encoding, foreign_keys, format, fts, indexes, pk, source, types",
    ),
    bad(
        "unknown-lambda-key",
        BASE + "lambda:\n  memroy: 512\n",
        7,
        "unknown key 'memroy' in lambda; did you mean 'memory'?",
    ),
    bad(
        "unknown-deploy-key",
        BASE + "deploy:\n  frontned: http_api\n",
        7,
        "unknown key 'frontned' in deploy; did you mean 'frontend'?",
    ),
    bad(
        "missing-stack",
        "# a comment first, so the top level starts on line 2\ndatabases:\n  d:\n    tables: {t: a.csv}\n",
        2,
        "missing required key 'stack' at the top level",
    ),
    bad(
        "missing-databases",
        "stack: s\nregion: us-east-1\n",
        1,
        "missing required key 'databases' at the top level",
    ),
    bad(
        "missing-table-source",
        "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n        pk: id\n",
        5,
        "missing required key 'source' in databases.d.tables.t",
    ),
    bad(
        "empty-config-file",
        "# nothing yet\n",
        1,
        "the top level: expected a mapping of keys"
        " (stack, region, databases, metadata, datasette, lambda, build_dir, deploy), got nothing",
    ),
    bad(
        "config-that-is-a-list",
        "- stack: s\n",
        1,
        "the top level: expected a mapping of keys"
        " (stack, region, databases, metadata, datasette, lambda, build_dir, deploy), got a list",
    ),
    bad(
        "table-defined-twice",
        "stack: s\ndatabases:\n  d:\n    tables:\n      states: data/states.csv\n"
        "      counties: data/counties.csv\n      states: data/other.csv\n",
        7,
        "duplicate key 'states' in databases.d.tables (first defined at line 5)",
    ),
    bad(
        "duplicate-top-level-key",
        BASE + "stack: t\n",
        6,
        "duplicate key 'stack' at the top level (first defined at line 1)",
    ),
    bad(
        "tables-differing-only-in-case",
        "stack: s\ndatabases:\n  d:\n    tables:\n      States: data/states.csv\n      states: data/other.csv\n",
        6,
        "databases.d.tables.states: table 'states' has the same name as 'States'"
        " (SQLite table names are not case-sensitive); rename one",
    ),
    bad(
        "databases-differing-only-in-case",
        "stack: s\ndatabases:\n  Census: {tables: {t: a.csv}}\n  census: {tables: {t: a.csv}}\n",
        4,
        "databases.census: database 'census' has the same name as 'Census'"
        " (names are not case-sensitive on every file system); rename one",
    ),
    bad(
        "bad-database-name",
        'stack: s\ndatabases:\n  "my data": {tables: {t: a.csv}}\n',
        3,
        "databases.my data: 'my data' is not a usable database name; use letters,"
        " digits, '_', '-' and '.', starting with a letter or digit",
    ),
    bad(
        "databases-must-not-be-empty",
        "stack: s\ndatabases: {}\n",
        2,
        "databases: expected a mapping of database names, got an empty mapping",
    ),
    bad(
        "key-that-is-not-text",
        BASE + "1: one\n",
        6,
        "key '1' at the top level must be text; put it in quotes",
    ),
    *(
        bad(
            f"{section}-section-is-{shown.replace(' ', '-')}",
            BASE + f"{section}: {value}\n",
            6,
            f"{section}: expected a mapping of keys ({allowed}), got {shown}",
        )
        for section, allowed in [
            ("datasette", "version, settings, plugins, static, templates, plugins_dir, version_note"),
            ("lambda", "python, architecture, memory, timeout, ephemeral_storage, reserved_concurrency"),
            ("deploy", "frontend, bucket, log_retention_days, tags, secrets, health_check"),
        ]
        for value, shown in [("false", "false"), ("[]", "a list"), ("''", "''")]
    ),
]

YAML = [
    bad("syntax", "stack: s\ndatabases: d: x\n", 2, "invalid YAML: mapping values are not allowed here"),
    bad(
        "tab-indentation",
        "stack: s\ndatabases:\n\td: x\n",
        3,
        "invalid YAML: found character '\\t' that cannot start any token",
    ),
    bad(
        "unclosed-flow-mapping",
        "stack: s\ndatabases:\n  d:\n    tables: {t: a.csv\nlambda: {}\n",
        5,
        "invalid YAML: expected ',' or '}', but got ':'",
    ),
    bad(
        "two-documents",
        BASE + "---\nstack: t\n",
        6,
        "invalid YAML: expected a single document in the stream, but found another document",
    ),
    bad(
        "unknown-tag",
        BASE + "region: !aws us-east-1\n",
        6,
        "invalid YAML: could not determine a constructor for the tag '!aws'",
    ),
    bad(
        "python-tags-are-not-executed",
        BASE + "region: !!python/object/apply:os.system [echo hi]\n",
        6,
        "invalid YAML: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    bad(
        "impossible-date",
        BASE + "datasette:\n  version: 2024-02-30\n",
        7,
        "invalid YAML: '2024-02-30' is not a valid timestamp (day is out of range for"
        " month); put it in quotes if it is text",
    ),
    bad(
        "control-character",
        "stack: s\ndatabases:\n  d: \x07\n",
        3,
        "invalid YAML: unacceptable character #x0007: special characters are not allowed",
    ),
    bad("undefined-alias", BASE + "region: *nowhere\n", 6, "invalid YAML: found undefined alias 'nowhere'"),
    bad(
        "duplicate-anchor",
        "stack: &a s\nregion: &a us-east-1\n",
        2,
        "invalid YAML: found duplicate anchor 'a' (first defined at line 1)",
    ),
    bad(
        "recursive-alias",
        BASE + "datasette:\n  plugins: &p [a, *p]\n",
        7,
        "invalid YAML: datasette.plugins[1] is an alias of a value that contains it;"
        " an anchor's value cannot refer to itself",
    ),
    bad(
        "tagged-collection",
        BASE + "datasette:\n  plugins: !!set {datasette-vega: null}\n",
        7,
        "invalid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:set'",
    ),
    bad(
        "merge-into-itself",
        BASE + "lambda: &l\n  <<: *l\n",
        7,
        "invalid YAML: '<<' (merge) in lambda merges a mapping into itself",
    ),
    bad(
        "merge-of-a-scalar",
        BASE + "lambda:\n  <<: 5\n",
        7,
        "invalid YAML: '<<' (merge) in lambda needs an alias of a mapping or a list of"
        " them, such as <<: *defaults",
    ),
    bad(
        "key-that-is-a-list",
        BASE + "? [a, b]\n: x\n",
        6,
        "a key at the top level is a list; keys must be text",
    ),
    bad(
        "alias-bomb",
        BILLION_LAUGHS,
        5,
        "invalid YAML: aliases expand a4[0][8][3][8] past 15,220 values, the most a file of 522"
        " characters may load into (anchors nested in anchors, a 'billion laughs'); write the"
        " values out instead of aliases of aliases",
    ),
    bad(
        "alias-bomb-of-merges",
        "".join(f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}\n" if i else "a0: &a0 {}\n" for i in range(30)),
        1,
        "invalid YAML: aliases expand a13 past 18,140 values, the most a file of 814 characters"
        " may load into (anchors nested in anchors, a 'billion laughs'); write the values out"
        " instead of aliases of aliases",
    ),
    bad(
        "alias-bomb-in-the-metadata-file",
        BASE + "metadata: meta.yml\n",
        5,
        "invalid YAML: aliases expand a4[0][8][3][8] past 15,220 values, the most a file of 522"
        " characters may load into (anchors nested in anchors, a 'billion laughs'); write the"
        " values out instead of aliases of aliases",
        files={"meta.yml": BILLION_LAUGHS},
        at="meta.yml",
    ),
]

NO_FUNCTION_URL = (
    "AWS offers no Lambda function URLs in {region}, and deploy.frontend is function_url (the"
    " default); use `deploy.frontend: http_api` there (an API Gateway HTTP API in front of the"
    " function)"
)


STACK_AND_REGION = [
    *(
        bad(
            f"stack-{stack}",
            BASE.replace("stack: s", f"stack: '{stack}'"),
            1,
            f"stack: '{stack}' is not a valid CloudFormation stack name; use letters, digits"
            " and hyphens, starting with a letter, at most 128 characters",
        )
        for stack in ["my_stack", "1stack", "-stack", "my.stack", "a" * 129]
    ),
    bad(
        "stack-that-is-a-number",
        BASE.replace("stack: s", "stack: 123"),
        1,
        "stack: expected a stack name, got 123",
    ),
    bad(
        "stack-that-is-empty",
        BASE.replace("stack: s", "stack:"),
        1,
        "stack: expected a stack name, got nothing",
    ),
    *(
        bad(
            f"region-{region}",
            BASE + f"region: {region}\n",
            6,
            f"region: '{region}' is not an AWS region; did you mean '{suggested}'?",
        )
        for region, suggested in [
            ("us-easst-1", "us-east-1"),
            ("us-east", "us-east-2"),
            ("US-EAST-1", "us-east-1"),
            ("useast1", "us-east-1"),
            ("us-east-1a", "us-east-1"),
            ("xx-north-1", "eu-north-1"),  # well formed, but no region's words
        ]
    ),
    bad(
        "region-nothing-like-one",
        BASE + "region: mars\n",
        6,
        "region: 'mars' is not an AWS region; use a region name such as us-east-1",
    ),
    # a function URL (the default front) where AWS offers none: at the line of region, or of
    # deploy.frontend when it is written
    *(
        bad(
            f"function-url-in-{region}",
            BASE + f"region: {region}\n",
            6,
            f"region: {NO_FUNCTION_URL.format(region=region)}",
        )
        for region in ["il-central-1", "eu-south-2", "us-gov-west-1"]
    ),
    bad(
        "function-url-written-in-a-region-without",
        BASE + "deploy:\n  health_check: false\n  frontend: function_url\nregion: ca-west-1\n",
        8,
        f"deploy.frontend: {NO_FUNCTION_URL.format(region='ca-west-1')}",
    ),
]


def one_table(body: str) -> str:
    """A config whose one table `t` has this body (keys indented under it, from line 6)."""
    return "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n" + textwrap.indent(body, " " * 8)


OUTSIDE = "is outside the config file's directory ({root}); use a path inside it"

DATABASES = [
    bad(
        "file-and-tables",
        "stack: s\ndatabases:\n  d:\n    file: x.db\n    tables:\n      t: a.csv\n",
        3,
        "databases.d: give either 'file' (an existing SQLite database) or 'tables'"
        " (built from CSV/JSON sources), not both or neither",
        files={"x.db": ""},
    ),
    bad(
        "neither-file-nor-tables",
        "stack: s\ndatabases:\n  d:\n    sql: select 1\n",
        3,
        "databases.d: give either 'file' (an existing SQLite database) or 'tables'"
        " (built from CSV/JSON sources), not both or neither",
    ),
    bad(
        "file-that-does-not-exist",
        "stack: s\ndatabases:\n  d:\n    file: data/missing.db\n",
        4,
        "databases.d.file: file 'data/missing.db' not found (looked in {root})",
    ),
    bad(
        "file-that-is-a-directory",
        "stack: s\ndatabases:\n  d:\n    file: data\n",
        4,
        "databases.d.file: file 'data' not found (looked in {root})",
        files={"data/": ""},
    ),
    bad(
        "file-outside-the-config-directory",
        "stack: s\ndatabases:\n  d:\n    file: ../x.db\n",
        4,
        f"databases.d.file: '../x.db' {OUTSIDE}",
        project="project",
    ),
    bad(
        "sql-that-is-a-number",
        BASE + "    sql: 5\n",
        6,
        "databases.d.sql: expected a list of SQL statements, got 5",
    ),
    bad(
        "build-dir-outside-the-config-directory",
        BASE + "build_dir: ../build\n",
        6,
        f"build_dir: '../build' {OUTSIDE}",
    ),
    bad(
        "database-named-internal",
        "stack: s\ndatabases:\n  _internal:\n    tables:\n      t: a.csv\n",
        3,
        "databases._internal: '_internal' is the name of Datasette's own internal database (yours"
        " would be renamed); rename it",
    ),
    *(
        bad(
            f"table-named-{name}",
            f"stack: s\ndatabases:\n  d:\n    tables:\n      {name}: a.csv\n",
            5,
            f"databases.d.tables.{name}: '{name}': SQLite reserves table names starting with"
            " 'sqlite_'; rename the table",
        )
        for name in ["sqlite_master", "SQLITE_stat1", "sqlite_x"]
    ),
    bad(
        "table-name-empty",
        "stack: s\ndatabases:\n  d:\n    tables:\n      '': a.csv\n",
        5,
        "databases.d.tables.: a table name is empty; give the table a name",
    ),
    bad(
        "tables-empty",
        "stack: s\ndatabases:\n  d:\n    tables: {}\n",
        4,
        "databases.d.tables: expected a mapping of table names, got an empty mapping",
    ),
    bad(
        "source-that-climbs-out-after-normalising",
        "stack: s\ndatabases:\n  d:\n    tables:\n      t: data/../../x.csv\n",
        5,
        f"databases.d.tables.t.source: 'data/../../x.csv' {OUTSIDE}",
        project="project",
    ),
]

TABLES = [
    bad(
        "wrong-column-type",
        one_table("source: a.csv\ntypes:\n  name: text\n  population: int\n"),
        9,
        "databases.d.tables.t.types.population: 'int' is not allowed; choose one of: integer, float, text",
    ),
    bad(
        "types-that-are-a-list",
        "stack: s\ndatabases:\n  d:\n    tables:\n      t: {source: a.csv, types: [integer]}\n",
        5,
        "databases.d.tables.t.types: expected a mapping of column: type, got a list",
    ),
    bad(
        "types-naming-one-column-twice",
        one_table("source: a.csv\ntypes: {code: text, Code: integer}\n"),
        7,
        "databases.d.tables.t.types.Code: 'Code' and 'code' name the same column"
        " (column names are not case-sensitive); keep one",
    ),
    bad(
        "bad-format",
        one_table("source: a.xlsx\nformat: excel\n"),
        7,
        "databases.d.tables.t.format: 'excel' is not allowed; choose one of: csv, tsv, json, jsonl",
    ),
    *(
        bad(
            f"source-{source}",
            f"stack: s\ndatabases:\n  d:\n    tables:\n      t: {source}\n",
            5,
            f"databases.d.tables.t.source: '{source}' {OUTSIDE}",
        )
        for source in ["../outside.csv", "data/../../outside.csv", "../*.csv"]
    ),
    bad(  # inside, but absolute: configs must stay portable
        "absolute-source",
        one_table("source: {root}/data/a.csv\n"),
        6,
        f"databases.d.tables.t.source: '{{root}}/data/a.csv' {OUTSIDE}",
    ),
    bad(
        "unknown-encoding",
        one_table("source: a.csv\nencoding: klingon\n"),
        7,
        "databases.d.tables.t.encoding: unknown encoding 'klingon'; use a Python codec"
        " name such as utf-8, latin-1 or cp1252",
    ),
    *(
        bad(
            f"codec-{codec}-that-is-not-a-text-encoding",
            f"stack: s\ndatabases:\n  d:\n    tables:\n      t: {{source: a.csv, encoding: {codec}}}\n",
            5,
            f"databases.d.tables.t.encoding: unknown encoding '{codec}'; use a Python codec"
            " name such as utf-8, latin-1 or cp1252",
        )
        for codec in ["hex", "rot13", "base64"]
    ),
    *(
        bad(
            f"delimiter-{written}",
            one_table(f"source: a.csv\ndelimiter: {written}\n"),
            7,
            f"databases.d.tables.t.delimiter: expected one character, got {shown}",
        )
        for written, shown in [("';;'", "';;'"), ("''", "''"), ("1", "1")]
    ),
    bad(
        "pk-listed-twice",
        one_table("source: a.csv\npk:\n  - id\n  - id\n"),
        9,
        "databases.d.tables.t.pk[1]: 'id' is listed twice",
    ),
    bad(
        "pk-that-is-empty",
        "stack: s\ndatabases:\n  d:\n    tables:\n      t: {source: a.csv, pk: []}\n",
        5,
        "databases.d.tables.t.pk: expected a column name or a list of them, got a list",
    ),
    bad(
        "index-column-that-is-not-text",
        one_table("source: a.csv\nindexes:\n  - [state]\n  - [state, 3]\n"),
        9,
        "databases.d.tables.t.indexes[1][1]: expected a column name, got 3",
    ),
    bad(
        "table-body-that-is-empty",
        "stack: s\ndatabases:\n  d:\n    tables:\n      t:\n",
        5,
        "databases.d.tables.t: expected a mapping of keys (source, format, encoding,"
        " delimiter, pk, types, fts, indexes, foreign_keys), got nothing",
    ),
]

QUOTE_DATES = "quote dates and other values that are not text, numbers, true/false, lists or mappings"
METADATA = [
    bad(
        "metadata-for-a-database-not-defined",
        BASE + "metadata:\n  databases:\n    e:\n      title: E\n",
        8,
        "metadata for database 'e', which the config does not define; the databases are: d",
    ),
    bad(
        "metadata-for-a-table-not-built",
        BASE + "metadata:\n  databases:\n    d:\n      tables:\n        tt:\n          title: T\n",
        10,
        "metadata for table 'tt' of database 'd', which the config does not build; did you mean 't'?",
    ),
    bad(
        "metadata-file-for-a-database-not-defined",
        BASE + "metadata: meta.yml\n",
        3,
        "metadata for database 'dd', which the config does not define; did you mean 'd'?",
        files={"meta.yml": "title: X\ndatabases:\n  dd: {}\n"},
        at="meta.yml",
    ),
    bad(
        "file-that-does-not-exist",
        BASE + "metadata: meta/missing.yml\n",
        6,
        "metadata: file 'meta/missing.yml' not found (looked in {root})",
    ),
    bad(
        "invalid-yaml-names-the-metadata-file",
        BASE + "metadata: metadata.yml\n",
        3,
        "invalid YAML: expected ',' or ']', but got ':'",
        files={"metadata.yml": "title: Example\ndescription: [unclosed\nlicense: CC0\n"},
        at="metadata.yml",
    ),
    bad(
        "duplicate-key",
        BASE + "metadata: metadata.yml\n",
        3,
        "duplicate key 'title' at the top level (first defined at line 1)",
        files={"metadata.yml": "title: One\nlicense: CC0\ntitle: Two\n"},
        at="metadata.yml",
    ),
    bad(
        "impossible-date",
        BASE + "metadata: metadata.yml\n",
        2,
        "invalid YAML: '2024-02-30' is not a valid timestamp (day is out of"
        " range for month); put it in quotes if it is text",
        files={"metadata.yml": "title: x\nupdated: 2024-02-30\n"},
        at="metadata.yml",
    ),
    bad(
        "invalid-json",
        BASE + "metadata: metadata.json\n",
        3,
        "invalid JSON: Expecting property name enclosed in double quotes",
        files={"metadata.json": '{\n  "title": "x",\n}\n'},
        at="metadata.json",
    ),
    *(
        bad(
            f"not-a-mapping-but-{shown}",
            BASE + "metadata: metadata.yml\n",
            1,
            f"metadata must be a mapping, got {shown}",
            files={"metadata.yml": text},
            at="metadata.yml",
        )
        for text, shown in [("- a\n- b\n", "a list"), ("", "nothing"), ("hello\n", "'hello'")]
    ),
    bad(
        "outside-the-config-directory",
        BASE + "metadata: ../metadata.yml\n",
        6,
        f"metadata: '../metadata.yml' {OUTSIDE}",
        project="project",
    ),
    # the metadata goes into the bundle as JSON: a value JSON cannot hold fails at load, at its line
    bad(
        "a-date-in-the-metadata-file",
        BASE + "metadata: metadata.yml\n",
        4,
        f"metadata cannot be written as JSON (Object of type date is not JSON serializable); {QUOTE_DATES}",
        files={"metadata.yml": "title: x\ndatabases:\n  d:\n    updated: 2024-02-03\n"},
        at="metadata.yml",
    ),
    *(
        bad(
            f"{constant}-in-the-metadata-json-file",
            BASE + "metadata: metadata.json\n",
            3,
            f"invalid JSON: {constant} is not a JSON value (JSON has no NaN or Infinity); write null,"
            f' or "{constant}" as a string',
            files={"metadata.json": f'{{\n  "title": "a {constant} b",\n  "n": {constant}\n}}\n'},
            at="metadata.json",
        )
        for constant in ("NaN", "Infinity", "-Infinity")
    ),
    bad(
        "an-infinity-in-the-metadata-yaml-file",
        BASE + "metadata: metadata.yml\n",
        2,
        "metadata cannot be written as JSON (Out of range float values are not JSON compliant);"
        f" {QUOTE_DATES}",
        files={"metadata.yml": "title: x\nn: .inf\n"},
        at="metadata.yml",
    ),
    bad(
        "a-date-in-inline-metadata",
        BASE + "metadata:\n  title: x\n  about:\n    - since\n    - 2024-02-03\n",
        10,
        f"metadata cannot be written as JSON (Object of type date is not JSON serializable); {QUOTE_DATES}",
    ),
]

DATASETTE = [
    *(
        bad(
            f"version-{name}",
            BASE + f"datasette:\n  version: {written}\n",
            7,
            f"datasette.version: {shown} is not a version such as 0.65.1 or a pip specifier such as"
            " >=0.65,<0.66",
        )
        for name, written, shown in [
            ("latest", "latest", "'latest'"),
            ("a-url", "https://example.com/d.zip", "'https://example.com/d.zip'"),
            ("two-operators", '"==>0.65"', "'==>0.65'"),
        ]
    ),
    bad(
        "unknown-setting",
        BASE + "datasette:\n  settings:\n    sql_time_limit: 3000\n",
        8,
        "unknown key 'sql_time_limit' in datasette.settings; did you mean 'sql_time_limit_ms'?",
    ),
    *(
        bad(
            f"setting-{setting}-{value}-out-of-range",
            BASE + f"datasette:\n  settings:\n    {setting}: {value}\n",
            8,
            f"datasette.settings.{setting}: expected a whole number of at least {low}, got {value}",
        )
        for setting, value, low in [
            ("default_page_size", -5, 1),
            ("default_page_size", 0, 1),
            ("max_returned_rows", 0, 1),
            ("sql_time_limit_ms", 0, 1),
            ("default_facet_size", -1, 1),
            ("facet_time_limit_ms", 0, 1),
            ("facet_suggest_time_limit_ms", -1, 1),
            ("num_sql_threads", -1, 0),
            ("default_cache_ttl", -1, 0),
            ("cache_size_kb", -1, 0),
            ("max_csv_mb", -1, 0),
            ("truncate_cells_html", -1, 0),
        ]
    ),
    *(
        bad(
            f"setting-{setting}-{value or 'empty'}",
            BASE + f"datasette:\n  settings:\n    {setting}: {value}\n",
            8,
            f"datasette.settings.{setting}: {problem}",
        )
        for setting, value, problem in [
            ("default_page_size", '"50"', "expected a whole number, got '50'"),
            ("default_page_size", "true", "expected a whole number, got true"),
            ("sql_time_limit_ms", "1.5", "expected a whole number, got 1.5"),
            ("allow_download", "1", "expected true or false, got 1"),
            ("allow_download", '"no"', "expected true or false, got 'no'"),
            ("base_url", "5", "expected text, got 5"),
            ("base_url", "", "expected text, got nothing"),
        ]
    ),
    bad(
        "bad-plugin-requirement",
        BASE + 'datasette:\n  plugins:\n    - datasette-cluster-map\n    - "datasette vega!"\n',
        9,
        "datasette.plugins[1]: 'datasette vega!' is not a package name or pip requirement"
        " such as datasette-cluster-map or datasette-vega==0.6.2",
    ),
    bad(
        "plugin-listed-twice",
        BASE + "datasette:\n  plugins: [datasette-vega, datasette-vega]\n",
        7,
        "datasette.plugins[1]: 'datasette-vega' is listed twice",
    ),
    bad(
        "static-directory-missing",
        BASE + "datasette:\n  static:\n    assets: static-files\n",
        8,
        "datasette.static.assets: directory 'static-files' not found (looked in {root})",
    ),
    bad(
        "static-mounts-with-the-same-url-path",
        BASE + "datasette:\n  static:\n    assets: static-files\n    /assets/: static-files\n",
        9,
        "datasette.static./assets/: '/assets/' is the same url path as 'assets' (/assets/); keep one",
        files={"static-files/": ""},
    ),
    bad(
        "static-shorthand-directory-missing",
        BASE + "datasette:\n  static: static\n",
        7,
        "datasette.static.static: directory 'static' not found (looked in {root})",
    ),
    bad(
        "templates-directory-missing",
        BASE + "datasette:\n  templates: templates\n",
        7,
        "datasette.templates: directory 'templates' not found (looked in {root})",
    ),
    bad(
        "templates-that-is-a-file",
        BASE + "datasette:\n  templates: templates\n",
        7,
        "datasette.templates: directory 'templates' not found (looked in {root})",
        files={"templates": "not a directory"},
    ),
    bad(
        "plugins-dir-missing",
        BASE + "datasette:\n  plugins_dir: plugins\n",
        7,
        "datasette.plugins_dir: directory 'plugins' not found (looked in {root})",
    ),
]

LAMBDA = [
    *(
        bad(
            f"python-{written}",
            BASE + f"lambda:\n  python: {written}\n",
            7,
            f"lambda.python: {shown} is not allowed; choose one of: 3.11, 3.12, 3.13, 3.14",
        )
        for written, shown in [('"3.9"', "'3.9'"), ("3.9", "'3.9'"), ("3", "3"), ('"3.10"', "'3.10'")]
    ),
    bad(
        "architecture",
        BASE + "lambda:\n  architecture: arm\n",
        7,
        "lambda.architecture: 'arm' is not allowed; choose one of: x86_64, arm64",
    ),
    *(
        bad(
            f"{key}-{value}",
            BASE + f"lambda:\n  {key}: {value}\n",
            7,
            f"lambda.{key}: expected a whole number from {low} to {high}, got {shown}",
        )
        for key, low, high, value, shown in [
            ("memory", 128, 10240, "64", "64"),
            ("memory", 128, 10240, "10241", "10241"),
            ("memory", 128, 10240, "yes", "true"),
            ("memory", 128, 10240, "true", "true"),
            ("memory", 128, 10240, '"1024"', "'1024'"),
            ("memory", 128, 10240, "1024.0", "1024.0"),
            ("timeout", 1, 900, "901", "901"),
            ("timeout", 1, 900, "0", "0"),
            ("ephemeral_storage", 512, 10240, "511", "511"),
            ("reserved_concurrency", 1, 1000, "-1", "-1"),
            ("reserved_concurrency", 1, 1000, "1001", "1001"),
            ("reserved_concurrency", 1, 1000, "false", "false"),
        ]
    ),
    bad(
        "reserved-concurrency-0",
        BASE + "lambda:\n  memory: 512\n  reserved_concurrency: 0\n",
        8,
        "lambda.reserved_concurrency: 0 would throttle every request (a function with reserved"
        " concurrency 0 never runs); use at least 1, or remove the key to reserve nothing",
    ),
]

TAG_TEXT = "letters, digits, spaces and + - = . _ : / @"
RESERVED_TAG = (
    "keys starting with 'aws:' are reserved by AWS, and keys starting with 'datasette-lambda:'"
    " by this tool; rename the tag"
)

NOT_LAMBDA_VARIABLE = (
    "is not a name Lambda accepts for an environment variable: a letter, then at least one"
    " letter, digit or _ ([a-zA-Z][a-zA-Z0-9_]+)"
)

DEPLOY = [
    bad(
        "frontend",
        BASE + "deploy:\n  frontend: alb\n",
        7,
        "deploy.frontend: 'alb' is not allowed; choose one of: function_url, http_api",
    ),
    *(
        bad(
            f"bucket-{bucket}",
            BASE + f"deploy:\n  bucket: {bucket}\n",
            7,
            f"deploy.bucket: '{bucket}' is not a valid S3 bucket name; use 3 to 63 lower-case letters,"
            " digits, dots and hyphens, starting and ending with a letter or digit",
        )
        for bucket in ["My_Bucket", "a..b", "ab"]
    ),
    *(
        bad(
            f"log-retention-{written}",
            BASE + f"deploy:\n  log_retention_days: {written}\n",
            7,
            f"deploy.log_retention_days: {shown} is not a retention CloudWatch Logs offers; choose one of:"
            " 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,"
            " 2922, 3288, 3653",
        )
        for written, shown in [("31", "31"), ('"30"', "'30'"), ("", "nothing")]
    ),
    bad(
        "health-check",
        BASE + 'deploy:\n  health_check: "yes"\n',
        7,
        "deploy.health_check: expected true or false, got 'yes'",
    ),
    # tags: each error on the line of the tag's key, the count on the line of `tags:`
    bad(
        "tags-that-are-a-list",
        BASE + "deploy:\n  tags: [team]\n",
        7,
        "deploy.tags: expected a mapping of tag: value, got a list",
    ),
    bad(
        "tag-value-that-is-not-text",
        BASE + "deploy:\n  tags:\n    team: data\n    public: true\n",
        9,
        "deploy.tags.public: expected a text value, got true",
    ),
    bad(
        "tag-key-starting-with-aws",
        BASE + "deploy:\n  tags:\n    team: data\n    aws:owner: x\n",
        9,
        f"deploy.tags: 'aws:owner': {RESERVED_TAG}",
    ),
    bad(
        "tag-key-starting-with-this-tool's-prefix",
        BASE + "deploy:\n  tags:\n    datasette-lambda:stack: x\n",
        8,
        f"deploy.tags: 'datasette-lambda:stack': {RESERVED_TAG}",
    ),
    bad(
        "tag-key-with-a-character-aws-rejects",
        BASE + 'deploy:\n  tags:\n    team: data\n    "team#1": x\n',
        9,
        f"deploy.tags: 'team#1' is not a tag key AWS accepts: 1 to 128 {TAG_TEXT}",
    ),
    bad(
        "tag-key-that-is-empty",
        BASE + 'deploy:\n  tags:\n    "": x\n',
        8,
        f"deploy.tags: '' is not a tag key AWS accepts: 1 to 128 {TAG_TEXT}",
    ),
    bad(
        "tag-key-that-is-too-long",
        BASE + f"deploy:\n  tags:\n    {'k' * 129}: x\n",
        8,
        f"deploy.tags: '{'k' * 129}' is not a tag key AWS accepts: 1 to 128 {TAG_TEXT}",
    ),
    bad(
        "tag-value-that-is-too-long",
        BASE + f"deploy:\n  tags:\n    team: {'x' * 257}\n",
        8,
        f"deploy.tags.team: '{'x' * 257}' is not a tag value AWS accepts: up to 256 {TAG_TEXT}",
    ),
    bad(
        "too-many-tags",
        BASE + "deploy:\n  tags:\n" + "".join(f"    t{i}: x\n" for i in range(49)),
        7,
        "deploy.tags: 49 tags; AWS allows 50 per resource and this tool adds 2: keep at most 48",
    ),
    # secrets: each error on the line of the list item
    bad(
        "secret-that-is-not-a-variable-name",
        BASE + "deploy:\n  secrets: [MAPBOX_TOKEN, 1TOKEN]\n",
        7,
        f"deploy.secrets[1]: '1TOKEN' {NOT_LAMBDA_VARIABLE}",
    ),
    *(
        bad(
            f"secret-{name}-that-lambda-refuses",
            BASE + f"deploy:\n  secrets:\n    - MAPBOX_TOKEN\n    - {name}\n",
            9,
            f"deploy.secrets[1]: '{name}' {NOT_LAMBDA_VARIABLE}",
        )
        for name in ["_TOKEN", "X", "MY-TOKEN", "TOKÉN"]
    ),
    *(
        bad(
            f"secret-{name}-that-is-reserved",
            BASE + f"deploy:\n  secrets:\n    - MAPBOX_TOKEN\n    - {name}\n",
            9,
            f"deploy.secrets: '{name}' is reserved (by Lambda, or by this tool's entry point) and"
            " cannot be given to the function; use another variable name",
        )
        for name in [
            "AWS_REGION",
            "_HANDLER",
            "DATASETTE_DATA_BUCKET",
            "LAMBDA_TASK_ROOT",
            "DATASETTE_LAMBDA_DEPLOYMENT_ID",
        ]
    ),
    bad(
        "secret-written-alone-that-is-reserved",
        BASE + "deploy:\n  secrets: AWS_REGION\n",
        7,
        "deploy.secrets: 'AWS_REGION' is reserved (by Lambda, or by this tool's entry point) and"
        " cannot be given to the function; use another variable name",
    ),
]

ERRORS = {
    "keys": KEYS,
    "yaml": YAML,
    "stack-region": STACK_AND_REGION,
    "databases": DATABASES,
    "tables": TABLES,
    "metadata": METADATA,
    "datasette": DATASETTE,
    "lambda": LAMBDA,
    "deploy": DEPLOY,
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(*param.values, id=f"{part}-{param.id}")
        for part, params in ERRORS.items()
        for param in params
    ],
)
def test_config_error(tmp_path: Path, case: Bad) -> None:
    root = tmp_path / case.project
    root.mkdir(exist_ok=True)
    for name, content in case.files.items():
        target = root / name
        if name.endswith("/"):
            target.mkdir(parents=True)
        else:
            target.write_text(content, encoding="utf-8")
    resolved = str(root.resolve())
    path = write(root, case.text.replace("{root}", resolved))
    where = path if case.at is None else root.resolve() / case.at
    assert error_of(path) == f"{where}:{case.line}: {case.message.replace('{root}', resolved)}"


# -- errors that need more than a config text -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "missing.yml",
            None,
            "config file not found; create it (`datasette-lambda init` writes one) or pass -c PATH",
        ),
        ("", None, "is a directory; pass the config file itself"),
        (CONFIG_NAME, b"stack: caf\xe9\n", "is not UTF-8 text (byte 10); save it as UTF-8"),
    ],
    ids=["missing", "a-directory", "not-utf8"],
)
def test_config_file_that_cannot_be_read(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert error_of(path) == f"{path}: {message}"


def test_symlink_leading_out_of_the_config_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.db").write_bytes(b"")
    project.mkdir()
    (project / "link").symlink_to(elsewhere, target_is_directory=True)
    path = write(project, "stack: s\ndatabases:\n  d:\n    file: link/x.db\n")
    assert error_of(path) == (
        f"{path}:4: databases.d.file: 'link/x.db' resolves to {elsewhere.resolve() / 'x.db'}, outside"
        f" the config file's directory ({project.resolve()}); use a path inside it"
    )


def test_error_carries_message_and_location_separately(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "region: nowhere\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.message == "region: 'nowhere' is not an AWS region; use a region name such as us-east-1"
    assert info.value.location == Location(path, 6)


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
    message = "config file not found; create it (`datasette-lambda init` writes one) or pass -c PATH"
    result = run_cli(tmp_path, "-c", "missing.yml", "--json")
    assert result.returncode == 1
    assert result.stderr == f"Error: missing.yml: {message}\n"
    assert json.loads(result.stdout) == {"error": message, "file": "missing.yml", "line": None}

    result = run_cli(tmp_path)  # the default name, datasette-lambda.yml, is not there either
    assert result.returncode == 1
    assert result.stderr == f"Error: {CONFIG_NAME}: {message}\n"
    assert "Traceback" not in result.stderr


def test_an_alias_bomb_fails_fast_and_small(tmp_path: Path) -> None:
    """The billion laughs is refused in well under a second and a few MB (it grew to 24 GB)."""
    import time
    import tracemalloc

    path = write(tmp_path, BILLION_LAUGHS)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="billion laughs"):
        load_config(path)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 20_000_000


def test_aliases_within_the_budget_load(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace("t: data/t.csv", "t: &t data/t.csv\n      u: *t"))
    assert table(config, name="u").source == "data/t.csv"


def test_a_source_that_leaves_and_comes_back_is_inside(tmp_path: Path) -> None:
    config = load(tmp_path, BASE.replace("data/t.csv", "data/../data/t.csv"))
    assert table(config).source == "data/t.csv"


def test_metadata_for_what_the_config_may_not_know_is_allowed(tmp_path: Path) -> None:
    """Tables of a `file:` database, views of `sql:` steps and the FTS table are not refused."""
    (tmp_path / "x.db").write_bytes(b"")
    text = BASE + (
        "    sql: create view v as select 1\n"
        "  f:\n    file: x.db\n"
        "metadata:\n  databases:\n"
        "    d: {tables: {v: {title: V}}}\n"
        "    f: {tables: {anything: {title: A}}}\n"
    )
    assert load(tmp_path, text).metadata is not None
    text = BASE + "metadata:\n  databases:\n    d: {tables: {t: {}, t_fts: {hidden: true}}}\n"
    assert load(tmp_path, text).metadata is not None
