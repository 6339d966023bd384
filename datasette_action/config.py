"""The config file (`datasette-lambda.yml`) -> `Config`, a tree of frozen dataclasses.

The YAML is parsed once, here, and every check of the config lives here. Every error names the
file, the line, the key path, the bad value and what is allowed. Paths in the config are relative
to the config file's directory and may not leave it.

The keys of each section, their defaults and the reader that checks each are one table,
`SECTIONS` (at the end of this module): the parser takes its allowed keys, "did you mean"
suggestions, required keys and defaults from it, and the docs test reads it. Checks that other
front doors share (a stack name, a region, Lambda's memory range) are small public functions
returning the problem text, so each caller words its own prefix.
"""

from __future__ import annotations

import difflib
import functools
import glob
import importlib.util
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from datasette_action.errors import ConfigError, Location
from datasette_action.yaml_lines import KeyPath, LoadedYaml, format_path, load_yaml
from datasette_action_entrypoint.bundle import ENV_BUCKET, ENV_ROOT, ENV_TMP

DEFAULT_CONFIG_NAME = "datasette-lambda.yml"
DEFAULT_BUILD_DIR = ".datasette-lambda"
COLUMN_TYPES = ("integer", "float", "text")
SOURCE_FORMATS = ("csv", "tsv", "json", "jsonl")
# Lambda runtimes this tool targets; see shared/FACTS.md (3.11 is deprecated 2027-06-30).
LAMBDA_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
ARCHITECTURES = ("x86_64", "arm64")
# Lambda's limits: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
MEMORY_MIN, MEMORY_MAX = 128, 10240  # MB
TIMEOUT_MAX = 900  # seconds
EPHEMERAL_STORAGE_MIN, EPHEMERAL_STORAGE_MAX = 512, 10240  # MB of /tmp
RESERVED_CONCURRENCY_MAX = 1000  # the default account quota of concurrent executions
# Datasette 0.65's settings and the type of each (datasette.app.SETTINGS; a test keeps this in step).
DATASETTE_SETTINGS: Mapping[str, type] = {
    "default_page_size": int,
    "max_returned_rows": int,
    "num_sql_threads": int,
    "sql_time_limit_ms": int,
    "default_facet_size": int,
    "facet_time_limit_ms": int,
    "facet_suggest_time_limit_ms": int,
    "allow_facet": bool,
    "default_allow_sql": bool,
    "allow_download": bool,
    "suggest_facets": bool,
    "default_cache_ttl": int,
    "cache_size_kb": int,
    "allow_csv_stream": bool,
    "max_csv_mb": int,
    "truncate_cells_html": int,
    "force_https_urls": bool,
    "template_debug": bool,
    "trace_debug": bool,
    "base_url": str,
}
# The least each integer setting can mean something, from Datasette 0.65's docs/settings.rst:
# 0 turns off threads (num_sql_threads), caching (default_cache_ttl, cache_size_kb), the CSV size
# limit (max_csv_mb) and truncation (truncate_cells_html); pages, facets and time limits need 1.
DATASETTE_SETTING_MIN: Mapping[str, int] = {
    "default_page_size": 1,
    "max_returned_rows": 1,
    "num_sql_threads": 0,
    "sql_time_limit_ms": 1,
    "default_facet_size": 1,
    "facet_time_limit_ms": 1,
    "facet_suggest_time_limit_ms": 1,
    "default_cache_ttl": 0,
    "cache_size_kb": 0,
    "max_csv_mb": 0,
    "truncate_cells_html": 0,
}
# CloudFormation stack names: https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
REGION = re.compile(r"[a-z]{2,4}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}")
# A database name becomes a file name and a URL path segment.
DATABASE_NAME = re.compile(r"\w[\w.-]*")
# Lambda's own pattern for environment variable names: the key pattern of Environment.Variables
# in the AWS::Lambda::Function resource schema (cfn-lint vendors it: a test keeps this in step)
# and of the Lambda API's Environment type (https://docs.aws.amazon.com/lambda/latest/api/API_Environment.html).
ENV_NAME_PATTERN = "[a-zA-Z][a-zA-Z0-9_]+"
ENV_NAME = re.compile(ENV_NAME_PATTERN)
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
FRONTENDS = ("function_url", "http_api")
# Regions without Lambda function URLs (deploy.frontend: function_url), from two sources that do
# not quite agree, so both are kept (tests/test_config.py compares them with cfn-lint's data):
# - the AWS Lambda developer guide, "Creating and managing Lambda function URLs"
#   (https://docs.aws.amazon.com/lambda/latest/dg/lambda-urls.html): "Function URLs are not
#   supported in the following AWS Regions: ...". eu-south-2 is listed there, though
#   CloudFormation's registry there has AWS::Lambda::Url.
FUNCTION_URL_UNSUPPORTED_DOCUMENTED = (
    "ap-east-2",
    "ap-south-2",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-west-1",
    "eu-central-2",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
)
# - CloudFormation's resource types per region, as cfn-lint vendors them (cfn-lint 1.58.0,
#   cfnlint/data/schemas/providers/<region>.json): AWS::Lambda::Url is missing in these too
#   (China, Mexico, GovCloud; the guide covers the commercial regions), so a stack with a function
#   URL fails there ("Unrecognized resource types").
FUNCTION_URL_UNSUPPORTED_CLOUDFORMATION = ("cn-northwest-1", "mx-central-1", "us-gov-east-1", "us-gov-west-1")
FUNCTION_URL_UNSUPPORTED = frozenset(
    FUNCTION_URL_UNSUPPORTED_DOCUMENTED + FUNCTION_URL_UNSUPPORTED_CLOUDFORMATION
)
# CloudWatch Logs' allowed retention periods, in days.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Tags: https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html ("letters, numbers,
# spaces representable in UTF-8, and + - = . _ : / @"; keys up to 128, values up to 256 characters;
# keys starting with aws: are reserved by AWS; at most 50 tags per resource).
TAG_TEXT = re.compile(r"[\w +\-=.:/@]*")
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
TAGS_MAX = 50
# The tags this tool puts on every resource besides deploy.tags (template.py gives them values);
# users may not write keys with their prefix.
TOOL_TAG_PREFIX = "datasette-lambda:"
TAG_STACK = f"{TOOL_TAG_PREFIX}stack"
TAG_VERSION = f"{TOOL_TAG_PREFIX}version"
TOOL_TAGS = (TAG_STACK, TAG_VERSION)
# The function's variable that a forced deploy changes (template.py sets it from a parameter).
ENV_DEPLOYMENT_ID = "DATASETTE_LAMBDA_DEPLOYMENT_ID"
# Environment variables Lambda reserves (setting one fails the deploy) and those the entry point
# reads for itself: https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html
# DATASETTE_SECRET is not here: deploy.secrets may list it (it is always passed as a secret).
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
        ENV_BUCKET,
        ENV_ROOT,
        ENV_TMP,
        ENV_DEPLOYMENT_ID,
    }
)


# -- checks the front doors share (each returns the problem, or None) ---------------------------


def stack_name_problem(value: str) -> str | None:
    if STACK_NAME.fullmatch(value):
        return None
    return (
        f"'{value}' is not a valid CloudFormation stack name; use letters, digits and hyphens,"
        " starting with a letter, at most 128 characters"
    )


def version_specifier(version: str) -> str | None:
    """A Datasette version as a pip specifier: "0.65.1" is "==0.65.1"; ">=0.65,<0.66" stays as it
    is. None when it is neither."""
    # imported here: most configs pin no version, and it costs `build` 15 ms to start
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    spec = version.strip()
    if spec[:1].isdigit():
        spec = f"=={spec}"
    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        return None
    return spec


@functools.cache
def known_regions() -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    """The regions the installed botocore knows and each partition's region pattern, from
    botocore/data/endpoints.json (read as a file: importing botocore or boto3 would cost every
    config load 100 ms). botocore, not cfn-lint: it is what deploy reaches AWS with, and it knows
    the isolated partitions cfn-lint leaves out."""
    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:  # pragma: no cover - botocore is a dependency
        return frozenset(), (REGION,)
    data = json.loads((Path(spec.origin).parent / "data" / "endpoints.json").read_text(encoding="utf-8"))
    partitions = data["partitions"]
    regions = frozenset(region for partition in partitions for region in partition["regions"])
    return regions, tuple(re.compile(partition["regionRegex"]) for partition in partitions)


def region_problem(value: str) -> str | None:
    """A region botocore knows; or one newer than this botocore when only its number is new (its
    words, such as `us` and `east`, are those of known regions: `us-east-3`). Anything else,
    `us-easst-1`, is a typo to fix, not a region to try."""
    regions, patterns = known_regions()
    if value in regions:
        return None
    words = {word for region in regions for word in region.split("-") if not word.isdigit()}
    shaped = any(pattern.fullmatch(value) for pattern in patterns) and REGION.fullmatch(value)
    if shaped and all(word in words for word in value.split("-") if not word.isdigit()):
        return None
    close = difflib.get_close_matches(value.lower(), sorted(regions), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "use a region name such as us-east-1"
    return f"'{value}' is not an AWS region; {hint}"


def frontend_problem(
    frontend: str, region: str, *, setting: str = "deploy.frontend", fix: str = "`deploy.frontend: http_api`"
) -> str | None:
    """Whether the site's front can exist in `region` (function URLs are not offered everywhere:
    FUNCTION_URL_UNSUPPORTED). The config loader says it at the line of `region` or
    `deploy.frontend`; the pipeline says it for a region from the environment; `datasette publish
    lambda` names its own option (`setting`, and the `fix` to write)."""
    if frontend != "function_url" or region not in FUNCTION_URL_UNSUPPORTED:
        return None
    return (
        f"AWS offers no Lambda function URLs in {region}, and {setting} is function_url (the"
        f" default); use {fix} there (an API Gateway HTTP API in front of the function)"
    )


@dataclass(frozen=True)
class ForeignKey:
    column: str
    other_table: str
    other_column: str | None  # None: the other table's primary key


@dataclass(frozen=True)
class TableConfig:
    name: str
    source: str  # a path or glob pattern, relative to the config's directory
    format: str | None  # None: decided by each file's extension
    encoding: str
    delimiter: str | None
    pk: tuple[str, ...]
    types: Mapping[str, str]
    fts: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...]
    foreign_keys: tuple[ForeignKey, ...]
    # Where each key was written, so build-time errors can point back at the config.
    locations: Mapping[str, Location]

    def location(self, key: str) -> Location:
        return self.locations.get(key) or self.locations["table"]


@dataclass(frozen=True)
class SqlStep:
    sql: str
    location: Location


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    file: Path | None  # an existing SQLite database, published as it is
    tables: tuple[TableConfig, ...]
    sql: tuple[SqlStep, ...]
    location: Location


@dataclass(frozen=True)
class StaticMount:
    url_path: str  # served at /<url_path>/
    directory: Path


@dataclass(frozen=True)
class DatasetteConfig:
    version: str | None  # a pip version specifier for datasette itself, e.g. "==0.65.1"
    settings: Mapping[str, Any]
    plugins: tuple[str, ...]  # pip requirement strings
    static: tuple[StaticMount, ...]
    templates: Path | None
    plugins_dir: Path | None
    version_note: str | None = None  # shown on /-/versions, as `datasette serve --version-note`


@dataclass(frozen=True)
class LambdaConfig:
    python: str = "3.13"
    architecture: str = "x86_64"
    memory: int = 1024
    timeout: int = 30
    ephemeral_storage: int = 512
    reserved_concurrency: int | None = None
    # Whether the config file sets `architecture` (else it is the default): `serve` previews a
    # config that does not on this machine's own CPU.
    architecture_written: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class DeployConfig:
    frontend: str = "function_url"  # or "http_api" (API Gateway v2)
    bucket: str | None = None  # an existing bucket for artifacts; None: a bootstrap stack makes one
    log_retention_days: int = 30
    tags: Mapping[str, str] = field(default_factory=dict)
    # Environment variables read at deploy time and given to the function (never to the template
    # or the bundle): plugin secrets referenced from metadata with {"$env": "NAME"}.
    secrets: tuple[str, ...] = ()
    health_check: bool = True


@dataclass(frozen=True)
class Config:
    path: Path
    root: Path  # the config file's directory: every relative path starts here
    stack: str
    region: str | None
    databases: tuple[DatabaseConfig, ...]
    metadata: Mapping[str, Any] | None
    metadata_file: Path | None
    datasette: DatasetteConfig
    lambda_: LambdaConfig = field(default_factory=LambdaConfig)
    build_dir: Path = Path(DEFAULT_BUILD_DIR)
    deploy: DeployConfig = field(default_factory=DeployConfig)

    @property
    def databases_dir(self) -> Path:
        return self.build_dir / "databases"

    @property
    def build_outputs(self) -> tuple[Path, ...]:
        """What the tool writes under build_dir (and rewrites on every run)."""
        return build_outputs(self.build_dir)

    @property
    def not_sources(self) -> tuple[Path, ...]:
        """Files and trees a glob never loads: the config and metadata files and built output."""
        own = (self.path, self.metadata_file) if self.metadata_file else (self.path,)
        return tuple(p.resolve() for p in (*own, *self.build_outputs))


def build_outputs(build_dir: Path) -> tuple[Path, ...]:
    return (build_dir / "databases", build_dir / "package", build_dir / "plan.md")


def is_within(path: Path, trees: Sequence[Path]) -> bool:
    """Whether a resolved path is one of `trees` (resolved) or inside one."""
    return any(path == tree or path.is_relative_to(tree) for tree in trees)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "config file not found; create it (`datasette-lambda init` writes one) or pass -c PATH",
            Location(path),
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a directory; pass the config file itself", Location(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text (byte {exc.start}); save it as UTF-8", Location(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror}", Location(path)) from None
    return _Parser(path, load_yaml(text, path)).config()


class _Parser:
    """Validates the loaded YAML. The sections' keys are read as `SECTIONS` says; each method
    below is one section's or one key's reader."""

    def __init__(self, path: Path, loaded: LoadedYaml) -> None:
        self.file = path
        self.root = path.resolve().parent
        self.loaded = loaded
        # where a key path of the metadata is (inline: in the config; else in its own file)
        self.metadata_where: Callable[[KeyPath], Location] = lambda key: self.where(("metadata", *key))

    # -- helpers ---------------------------------------------------------------------------

    def where(self, path: KeyPath) -> Location:
        return Location(self.file, _line_of(self.loaded.lines, path))

    def fail(self, path: KeyPath, problem: str, *, at: KeyPath | None = None) -> ConfigError:
        """An error about `path`, on the line of `at` (a key or item inside it) when given."""
        return ConfigError(f"{format_path(path)}: {problem}", self.where(path if at is None else at))

    def check(self, path: KeyPath, problem: str | None) -> None:
        if problem is not None:
            raise self.fail(path, problem)

    def mapping(
        self, value: Any, path: KeyPath, allowed: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Any]:
        where = format_path(path) or "the top level"
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where}: expected a mapping of keys ({', '.join(allowed)}), got {_show(value)}",
                self.where(path),
            )
        for key in value:
            if key not in allowed:
                inside = f"in {format_path(path)}" if path else "at the top level"
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = (
                    f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(sorted(allowed))}"
                )
                raise ConfigError(f"unknown key '{key}' {inside}; {hint}", self.where((*path, key)))
        for key in required:
            if key not in value:
                inside = f"in {format_path(path)}" if path else "at the top level"
                raise ConfigError(f"missing required key '{key}' {inside}", self.where(path))
        return value

    def keys(self, value: Any, path: KeyPath, keys: Sequence[Key]) -> dict[str, Any]:
        """A section's mapping, checked against its keys (unknown and missing ones)."""
        return self.mapping(value, path, [k.name for k in keys], [k.name for k in keys if k.required])

    def read(self, body: Mapping[str, Any], path: KeyPath, keys: Sequence[Key]) -> dict[str, Any]:
        """Each key's value as its reader makes it (or its default): field name -> value."""
        values: dict[str, Any] = {}
        for key in keys:
            raw = body.get(key.name)
            if key.name not in body or (raw is None and key.nullable):
                values[key.field or key.name] = key.absent()
            else:
                values[key.field or key.name] = key.read(self, raw, (*path, key.name))
        return values

    def section(self, value: Any, path: KeyPath, keys: Sequence[Key]) -> dict[str, Any]:
        return self.read(self.keys(value, path, keys), path, keys)

    def string(self, value: Any, path: KeyPath, what: str = "text") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected {what}, got {_show(value)}")
        return value

    def string_list(self, value: Any, path: KeyPath, what: str) -> tuple[str, ...]:
        """A single string or a list of strings (YAML lets users write either)."""
        if isinstance(value, str):
            return (self.string(value, path, what),)
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected {what} or a list of them, got {_show(value)}")
        items = tuple(self.string(item, (*path, i), what) for i, item in enumerate(value))
        for i, item in enumerate(items):
            if item in items[:i]:
                raise self.fail((*path, i), f"'{item}' is listed twice")
        return items

    def integer(self, value: Any, path: KeyPath, low: int, high: int) -> int:
        # bool is an int subclass: `memory: yes` must not become 1
        if type(value) is not int or not low <= value <= high:
            raise self.fail(path, f"expected a whole number from {low} to {high}, got {_show(value)}")
        return value

    def choice(self, value: Any, path: KeyPath, choices: Sequence[str]) -> str:
        if value not in choices or not isinstance(value, str):
            raise self.fail(path, f"{_show(value)} is not allowed; choose one of: {', '.join(choices)}")
        return value

    def boolean(self, value: Any, path: KeyPath) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_show(value)}")
        return value

    def relative_path(self, value: Any, path: KeyPath, *, glob: bool = False) -> str:
        """A path (or glob) inside the config file's directory tree, kept relative."""
        text = self.string(value, path, "a path relative to the config file")
        # `data/../data/x.csv` is inside; `data/../../x.csv` is not
        candidate = Path(os.path.normpath(text))
        if candidate.is_absolute() or ".." in candidate.parts:
            raise self.fail(
                path,
                f"'{text}' is outside the config file's directory ({self.root}); use a path inside it",
            )
        if not glob:
            resolved = (self.root / candidate).resolve()
            if not resolved.is_relative_to(self.root):
                raise self.fail(
                    path,
                    f"'{text}' resolves to {resolved}, outside the config file's directory"
                    f" ({self.root}); use a path inside it",
                )
        return text if candidate == Path(text) else candidate.as_posix()

    def existing(self, value: Any, path: KeyPath, *, kind: str) -> Path:
        text = self.relative_path(value, path)
        resolved = self.root / text
        ok = resolved.is_dir() if kind == "directory" else resolved.is_file()
        if not ok:
            raise self.fail(path, f"{kind} '{text}' not found (looked in {self.root})")
        return resolved

    # -- the top level -----------------------------------------------------------------------

    def config(self) -> Config:
        values = self.section(self.loaded.value, (), TOP_KEYS)
        if values["region"] is not None:
            frontend: KeyPath = ("deploy", "frontend")
            # on the line of deploy.frontend when it is written, else of region
            at = frontend if frontend in self.loaded.lines else ("region",)
            self.check(at, frontend_problem(values["deploy"].frontend, values["region"]))
        metadata, metadata_file = values.pop("metadata")
        if metadata is not None:
            self.metadata_names(metadata, values["databases"])
        build_dir = self.root / values.pop("build_dir")
        self.sources_outside(values["databases"], build_dir)
        return Config(
            path=self.file,
            root=self.root,
            metadata=metadata,
            metadata_file=metadata_file,
            build_dir=build_dir,
            **values,
        )

    def sources_outside(self, databases: Sequence[DatabaseConfig], build_dir: Path) -> None:
        """A source named outright may not be built output: each run rewrites that."""
        outputs = [p.resolve() for p in build_outputs(build_dir)]
        for db in databases:
            named = [(db.file, self.where(("databases", db.name, "file")))] if db.file else []
            named += [
                (self.root / t.source, t.location("source"))
                for t in db.tables
                if not glob.has_magic(t.source)
            ]
            for path, where in named:
                if is_within(path.resolve(), outputs):
                    raise ConfigError(
                        f"database '{db.name}': {path.relative_to(self.root)} is under build_dir"
                        f" ({build_dir.relative_to(self.root)}), in the output each build rewrites;"
                        " keep sources outside it, or set build_dir to a directory of its own",
                        where,
                    )

    def stack(self, value: Any, path: KeyPath) -> str:
        stack = self.string(value, path, "a stack name")
        self.check(path, stack_name_problem(stack))
        return stack

    def region(self, value: Any, path: KeyPath) -> str:
        region = self.string(value, path, "an AWS region")
        self.check(path, region_problem(region))
        return region

    def metadata(self, value: Any, path: KeyPath) -> tuple[Mapping[str, Any], Path | None]:
        if isinstance(value, dict):
            _check_json(value, path, self.where)
            return value, None
        file = self.existing(value, path, kind="file")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(path, f"cannot read metadata file '{value}': {exc}") from None
        if file.suffix == ".json":
            try:
                data = json.loads(text, parse_constant=_refuse_constant)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"invalid JSON: {exc.msg}", Location(file, exc.lineno)) from None
            except _NotJsonConstant as exc:
                raise ConfigError(
                    f"invalid JSON: {exc} is not a JSON value (JSON has no NaN or Infinity); write"
                    f' null, or "{exc}" as a string',
                    Location(file, _line_of_word(text, str(exc))),
                ) from None
            self.metadata_where = lambda key: Location(file)  # json.loads keeps no lines
        else:
            # load_yaml, not yaml.safe_load: duplicate keys are errors and every error has a line
            loaded = load_yaml(text, file)
            data = loaded.value
            self.metadata_where = lambda key: Location(file, _line_of(loaded.lines, key))
            if isinstance(data, dict):
                _check_json(data, (), lambda key: Location(file, _line_of(loaded.lines, key)))
        if not isinstance(data, dict):
            raise ConfigError(f"metadata must be a mapping, got {_show(data)}", Location(file, 1))
        return data, file

    def metadata_names(self, metadata: Mapping[str, Any], databases: Sequence[DatabaseConfig]) -> None:
        """Metadata for a database the config does not define, or for a table of a built database
        that it does not build, is a typo. Only what the config knows is checked: a `file:`
        database's tables, and whatever a database's `sql:` steps may create, are not."""
        written = metadata.get("databases")
        if not isinstance(written, dict):
            return
        by_name = {db.name: db for db in databases}
        for name, body in written.items():
            where = self.metadata_where(("databases", name))
            db = by_name.get(name)
            if db is None:
                close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"the databases are: {', '.join(by_name)}"
                raise ConfigError(
                    f"metadata for database '{name}', which the config does not define; {hint}", where
                )
            tables = body.get("tables") if isinstance(body, dict) else None
            if db.file is not None or db.sql or not isinstance(tables, dict):
                continue
            known = [t.name for t in db.tables]
            for table_name in tables:
                # `<t>_fts` and its shadow tables are built too
                if any(table_name == t or table_name.startswith(f"{t}_fts") for t in known):
                    continue
                close = difflib.get_close_matches(table_name, known, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"its tables are: {', '.join(known)}"
                raise ConfigError(
                    f"metadata for table '{table_name}' of database '{name}', which the config does"
                    f" not build; {hint}",
                    self.metadata_where(("databases", name, "tables", table_name)),
                )

    # -- databases and tables ----------------------------------------------------------------

    def databases(self, value: Any, path: KeyPath) -> tuple[DatabaseConfig, ...]:
        if not isinstance(value, dict) or not value:
            raise self.fail(path, f"expected a mapping of database names, got {_show(value, empty=True)}")
        seen: dict[str, str] = {}
        result = []
        for name, body in value.items():
            if not DATABASE_NAME.fullmatch(name):
                raise self.fail(
                    (*path, name),
                    f"'{name}' is not a usable database name; use letters, digits, '_', '-' and"
                    " '.', starting with a letter or digit",
                )
            if name.lower() in seen:
                raise self.fail(
                    (*path, name),
                    f"database '{name}' has the same name as '{seen[name.lower()]}'"
                    " (names are not case-sensitive on every file system); rename one",
                )
            if name == "_internal":
                raise self.fail(
                    (*path, name),
                    "'_internal' is the name of Datasette's own internal database (yours would be"
                    " renamed); rename it",
                )
            seen[name.lower()] = name
            result.append(self.database(name, body, (*path, name)))
        return tuple(result)

    def database(self, name: str, value: Any, path: KeyPath) -> DatabaseConfig:
        body = self.keys(value, path, DATABASE_KEYS)
        if ("file" in body) == ("tables" in body):
            raise self.fail(
                path,
                "give either 'file' (an existing SQLite database) or 'tables' (built from"
                " CSV/JSON sources), not both or neither",
            )
        return DatabaseConfig(name=name, location=self.where(path), **self.read(body, path, DATABASE_KEYS))

    def tables(self, value: Any, path: KeyPath) -> tuple[TableConfig, ...]:
        if not isinstance(value, dict) or not value:
            raise self.fail(path, f"expected a mapping of table names, got {_show(value, empty=True)}")
        seen: dict[str, str] = {}
        tables: list[TableConfig] = []
        for name, body in value.items():
            if not name.strip():
                raise self.fail((*path, name), "a table name is empty; give the table a name")
            if name.lower().startswith("sqlite_"):
                # "object name reserved for internal use": https://www.sqlite.org/lang_createtable.html
                raise self.fail(
                    (*path, name),
                    f"'{name}': SQLite reserves table names starting with 'sqlite_'; rename the table",
                )
            if name.lower() in seen:
                raise self.fail(
                    (*path, name),
                    f"table '{name}' has the same name as '{seen[name.lower()]}'"
                    " (SQLite table names are not case-sensitive); rename one",
                )
            seen[name.lower()] = name
            tables.append(self.table(name, body, (*path, name)))
        return tuple(tables)

    def sql(self, value: Any, path: KeyPath) -> tuple[SqlStep, ...]:
        statements = [value] if isinstance(value, str) else value
        if not isinstance(statements, list):
            raise self.fail(path, f"expected a list of SQL statements, got {_show(statements)}")
        return tuple(
            SqlStep(self.string(s, (*path, i), "an SQL statement"), self.where((*path, i)))
            for i, s in enumerate(statements)
        )

    def table(self, name: str, value: Any, path: KeyPath) -> TableConfig:
        if isinstance(value, str):  # shorthand: `counties: data/counties.csv`
            value = {"source": value}
            self.loaded.lines[(*path, "source")] = self.where(path).line or 1  # type: ignore[index]
        body = self.keys(value, path, TABLE_KEYS)
        locations = {"table": self.where(path)}
        for key in body:
            locations[key] = self.where((*path, key))
        return TableConfig(name=name, locations=locations, **self.read(body, path, TABLE_KEYS))

    def encoding(self, value: Any, path: KeyPath) -> str:
        text = self.string(value, path, "an encoding name such as utf-8 or latin-1")
        try:
            # not codecs.lookup(): it also accepts codecs that are not text encodings (hex, rot13, bz2)
            "".encode(text)
        except LookupError:
            raise self.fail(
                path, f"unknown encoding '{text}'; use a Python codec name such as utf-8, latin-1 or cp1252"
            ) from None
        return text

    def delimiter(self, value: Any, path: KeyPath) -> str:
        if not isinstance(value, str) or len(value) != 1:
            raise self.fail(path, f"expected one character, got {_show(value)}")
        return value

    def types(self, value: Any, path: KeyPath) -> dict[str, str]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping of column: type, got {_show(value)}")
        types: dict[str, str] = {}
        for column, column_type in value.items():
            twin = next((c for c in types if c.lower() == column.lower()), None)
            if twin is not None:
                raise self.fail(
                    (*path, column),
                    f"'{column}' and '{twin}' name the same column (column names are not"
                    " case-sensitive); keep one",
                )
            types[column] = self.choice(column_type, (*path, column), COLUMN_TYPES)
        return types

    def indexes(self, value: Any, path: KeyPath) -> tuple[tuple[str, ...], ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(path, f"expected a list of columns or column lists, got {_show(value)}")
        return tuple(self.string_list(item, (*path, i), "a column name") for i, item in enumerate(value))

    def foreign_keys(self, value: Any, path: KeyPath) -> tuple[ForeignKey, ...]:
        if not isinstance(value, dict) or not value:
            raise self.fail(path, f"expected a mapping of column: other_table.column, got {_show(value)}")
        result = []
        for column, target in value.items():
            target = self.string(target, (*path, column), "other_table or other_table.column")
            other_table, _, other_column = target.partition(".")
            result.append(ForeignKey(column, other_table, other_column or None))
        return tuple(result)

    # -- datasette ---------------------------------------------------------------------------

    def datasette(self, value: Any, path: KeyPath) -> DatasetteConfig:
        return DatasetteConfig(**self.section(value, path, DATASETTE_KEYS))

    def version(self, value: Any, path: KeyPath) -> str:
        version = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        version = self.string(version, path, "a Datasette version such as 0.65.1")
        if version_specifier(version) is None:
            raise self.fail(
                path,
                f"'{version}' is not a version such as 0.65.1 or a pip specifier such as >=0.65,<0.66",
            )
        return version

    def settings(self, value: Any, path: KeyPath) -> dict[str, Any]:
        body = self.mapping(value, path, tuple(DATASETTE_SETTINGS))
        for key, setting in body.items():
            expected = DATASETTE_SETTINGS[key]
            if type(setting) is not expected:
                kind = {int: "a whole number", bool: "true or false", str: "text"}[expected]
                raise self.fail((*path, key), f"expected {kind}, got {_show(setting)}")
            low = DATASETTE_SETTING_MIN.get(key)
            if low is not None and cast(int, setting) < low:
                raise self.fail((*path, key), f"expected a whole number of at least {low}, got {setting}")
        return body

    def plugins(self, value: Any, path: KeyPath) -> tuple[str, ...]:
        # imported here: most configs have no plugins, and it costs `build` 15 ms to start
        from packaging.requirements import InvalidRequirement, Requirement

        plugins = self.string_list(value, path, "a plugin name")
        for i, plugin in enumerate(plugins):
            try:
                Requirement(plugin)
            except InvalidRequirement:
                raise self.fail(
                    (*path, i),
                    f"'{plugin}' is not a package name or pip requirement such as"
                    " datasette-cluster-map or datasette-vega==0.6.2",
                ) from None
        return plugins

    def static(self, value: Any, path: KeyPath) -> tuple[StaticMount, ...]:
        mounts = {"static": value} if isinstance(value, str) else value
        if not isinstance(mounts, dict):
            raise self.fail(path, f"expected a mapping of url path: directory, got {_show(mounts)}")
        written: dict[str, str] = {}  # url path -> the mount as written
        result = []
        for mount, directory in mounts.items():
            url_path = mount.strip("/")
            if url_path in written:
                # both would be copied to the same place in the bundle (package.static_directory)
                raise self.fail(
                    (*path, mount),
                    f"'{mount}' is the same url path as '{written[url_path]}' (/{url_path}/); keep one",
                )
            written[url_path] = mount
            result.append(StaticMount(url_path, self.existing(directory, (*path, mount), kind="directory")))
        return tuple(result)

    # -- lambda and deploy -------------------------------------------------------------------

    def lambda_(self, value: Any, path: KeyPath) -> LambdaConfig:
        written = isinstance(value, dict) and "architecture" in value
        return LambdaConfig(**self.section(value, path, LAMBDA_KEYS), architecture_written=written)

    def python(self, value: Any, path: KeyPath) -> str:
        if isinstance(value, float):  # `python: 3.13` unquoted; 3.10 would read as 3.1
            value = repr(value)
        return self.choice(value, path, LAMBDA_PYTHONS)

    def reserved_concurrency(self, value: Any, path: KeyPath) -> int:
        # "Reserved concurrency - This represents the maximum number of concurrent instances
        # allocated to your function" (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html):
        # 0 allows none, so the site would answer nothing but throttling errors.
        if type(value) is int and value == 0:
            raise self.fail(
                path,
                "0 would throttle every request (a function with reserved concurrency 0 never runs);"
                " use at least 1, or remove the key to reserve nothing",
            )
        return self.integer(value, path, 1, RESERVED_CONCURRENCY_MAX)

    def deploy(self, value: Any, path: KeyPath) -> DeployConfig:
        return DeployConfig(**self.section(value, path, DEPLOY_KEYS))

    def bucket(self, value: Any, path: KeyPath) -> str:
        bucket = self.string(value, path, "an S3 bucket name")
        if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise self.fail(
                path,
                f"'{bucket}' is not a valid S3 bucket name; use 3 to 63 lower-case letters,"
                " digits, dots and hyphens, starting and ending with a letter or digit",
            )
        return bucket

    def log_retention_days(self, value: Any, path: KeyPath) -> int:
        if type(value) is not int or value not in LOG_RETENTION_DAYS:
            raise self.fail(
                path,
                f"{_show(value)} is not a retention CloudWatch Logs offers; choose one of:"
                f" {', '.join(map(str, LOG_RETENTION_DAYS))}",
            )
        return value

    def tags(self, value: Any, path: KeyPath) -> dict[str, str]:
        """Tags as AWS accepts them, leaving room for the TOOL_TAGS template.py adds."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping of tag: value, got {_show(value)}")
        room = TAGS_MAX - len(TOOL_TAGS)
        if len(value) > room:
            raise self.fail(
                path,
                f"{len(value)} tags; AWS allows {TAGS_MAX} per resource and this tool adds"
                f" {len(TOOL_TAGS)}: keep at most {room}",
            )
        tags: dict[str, str] = {}
        for key, raw in value.items():
            at = (*path, key)
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise self.fail(at, f"expected a text value, got {_show(raw)}")
            if key.lower().startswith("aws:") or key.startswith(TOOL_TAG_PREFIX):
                raise self.fail(
                    path,
                    f"'{key}': keys starting with 'aws:' are reserved by AWS, and keys"
                    f" starting with '{TOOL_TAG_PREFIX}' by this tool; rename the tag",
                    at=at,
                )
            if not key or len(key) > TAG_KEY_MAX or not TAG_TEXT.fullmatch(key):
                raise self.fail(
                    path,
                    f"'{key}' is not a tag key AWS accepts: 1 to {TAG_KEY_MAX} letters,"
                    " digits, spaces and + - = . _ : / @",
                    at=at,
                )
            text = str(raw)
            if len(text) > TAG_VALUE_MAX or not TAG_TEXT.fullmatch(text):
                raise self.fail(
                    at,
                    f"'{text}' is not a tag value AWS accepts: up to {TAG_VALUE_MAX}"
                    " letters, digits, spaces and + - = . _ : / @",
                )
            tags[key] = text
        return tags

    def secrets(self, value: Any, path: KeyPath) -> tuple[str, ...]:
        names = self.string_list(value, path, "an environment variable name")
        for index, name in enumerate(names):
            if name in RESERVED_ENV:  # first: Lambda's own _HANDLER would not match the pattern
                raise self.fail(
                    path,
                    f"'{name}' is reserved (by Lambda, or by this tool's entry point) and cannot be"
                    " given to the function; use another variable name",
                    at=(*path, index),
                )
            if not ENV_NAME.fullmatch(name):
                raise self.fail(
                    (*path, index),
                    f"'{name}' is not a name Lambda accepts for an environment variable: a letter,"
                    f" then at least one letter, digit or _ ({ENV_NAME_PATTERN})",
                )
        return names


# -- the table of keys -------------------------------------------------------------------------

Reader = Callable[[_Parser, Any, KeyPath], Any]  # (parser, the value written, its key path) -> field


@dataclass(frozen=True)
class Key:
    """One key of a config section: its name, how it is read and checked, what it is when absent."""

    name: str
    read: Reader
    doc: str
    default: Any = None  # the field's value when the key is absent
    default_factory: Callable[[], Any] | None = None  # instead of `default`, for mutable values
    nullable: bool = False  # `key: null` (or nothing after the colon) means absent too
    required: bool = False
    field: str = ""  # the dataclass field, when it is not the key's name

    def absent(self) -> Any:
        return self.default_factory() if self.default_factory else self.default


def _text(what: str) -> Reader:
    return lambda parser, value, path: parser.string(value, path, what)


def _whole(low: int, high: int) -> Reader:
    return lambda parser, value, path: parser.integer(value, path, low, high)


def _one_of(choices: Sequence[str]) -> Reader:
    return lambda parser, value, path: parser.choice(value, path, choices)


def _names(what: str) -> Reader:
    return lambda parser, value, path: parser.string_list(value, path, what)


def _existing(kind: str) -> Reader:
    return lambda parser, value, path: parser.existing(value, path, kind=kind)


def _inside(*, glob: bool = False) -> Reader:
    return lambda parser, value, path: parser.relative_path(value, path, glob=glob)


_LAMBDA = LambdaConfig()
_DEPLOY = DeployConfig()

TOP_KEYS = (
    Key("stack", _Parser.stack, "CloudFormation stack name", required=True),
    Key("region", _Parser.region, "AWS region; none: the AWS environment decides", nullable=True),
    Key("databases", _Parser.databases, "database name -> file or tables", required=True),
    Key("metadata", _Parser.metadata, "Datasette metadata: a file or a mapping", (None, None), nullable=True),
    Key(
        "datasette",
        _Parser.datasette,
        "the Datasette section",
        default_factory=lambda: DatasetteConfig(None, {}, (), (), None, None),
        nullable=True,
    ),
    Key(
        "lambda",
        _Parser.lambda_,
        "the Lambda section",
        default_factory=LambdaConfig,
        nullable=True,
        field="lambda_",
    ),
    Key("build_dir", _inside(), "where built files go", DEFAULT_BUILD_DIR),
    Key("deploy", _Parser.deploy, "the deploy section", default_factory=DeployConfig, nullable=True),
)
DATABASE_KEYS = (
    Key("file", _existing("file"), "an existing SQLite database"),
    Key("tables", _Parser.tables, "table name -> source (instead of file)", ()),
    Key("sql", _Parser.sql, "statements run after the tables load", ()),
)
TABLE_KEYS = (
    Key("source", _inside(glob=True), "a path or glob", required=True),
    Key("format", _one_of(SOURCE_FORMATS), "none: from each file's extension"),
    Key("encoding", _Parser.encoding, "a Python text codec", "utf-8"),
    Key("delimiter", _Parser.delimiter, "one character"),
    Key("pk", _names("a column name"), "primary key column(s)", ()),
    Key("types", _Parser.types, "column -> integer, float or text", default_factory=dict),
    Key("fts", _names("a column name"), "full-text search columns", ()),
    Key("indexes", _Parser.indexes, "each a column or a list of columns", ()),
    Key("foreign_keys", _Parser.foreign_keys, "column -> other_table[.column]", (), nullable=True),
)
DATASETTE_KEYS = (
    Key("version", _Parser.version, "pip version of Datasette itself"),
    Key("settings", _Parser.settings, "Datasette settings", default_factory=dict, nullable=True),
    Key("plugins", _Parser.plugins, "pip requirements", ()),
    Key("static", _Parser.static, "url path -> directory", ()),
    Key("templates", _existing("directory"), "custom templates"),
    Key("plugins_dir", _existing("directory"), "one-file plugins"),
    Key("version_note", _text("a note (text)"), "shown on /-/versions", nullable=True),
)
LAMBDA_KEYS = (
    Key("python", _Parser.python, "Lambda Python runtime", _LAMBDA.python),
    Key("architecture", _one_of(ARCHITECTURES), "x86_64 or arm64", _LAMBDA.architecture),
    Key("memory", _whole(MEMORY_MIN, MEMORY_MAX), "MB", _LAMBDA.memory),
    Key("timeout", _whole(1, TIMEOUT_MAX), "seconds", _LAMBDA.timeout),
    Key(
        "ephemeral_storage",
        _whole(EPHEMERAL_STORAGE_MIN, EPHEMERAL_STORAGE_MAX),
        "MB of /tmp",
        _LAMBDA.ephemeral_storage,
    ),
    Key("reserved_concurrency", _Parser.reserved_concurrency, "cap on concurrent executions", nullable=True),
)
DEPLOY_KEYS = (
    Key("frontend", _one_of(FRONTENDS), "function_url or http_api", _DEPLOY.frontend),
    Key("bucket", _Parser.bucket, "an existing artifacts bucket", nullable=True),
    Key("log_retention_days", _Parser.log_retention_days, "CloudWatch Logs", _DEPLOY.log_retention_days),
    Key("tags", _Parser.tags, "tags on every resource", default_factory=dict, nullable=True),
    Key("secrets", _Parser.secrets, "variables passed to the function", ()),
    Key("health_check", _Parser.boolean, "request the site after deploying", _DEPLOY.health_check),
)
# Each section's keys, by where the section is in the config (as docs/configuration.md names them).
SECTIONS: Mapping[str, tuple[Key, ...]] = {
    "": TOP_KEYS,
    "databases.<db>": DATABASE_KEYS,
    "tables.<t>": TABLE_KEYS,
    "datasette": DATASETTE_KEYS,
    "lambda": LAMBDA_KEYS,
    "deploy": DEPLOY_KEYS,
}


class _NotJsonConstant(ValueError):
    """NaN, Infinity or -Infinity, which Python's json reads and JSON does not have."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonConstant(name)


def _line_of_word(text: str, word: str) -> int:
    """The line of the first `word` outside a JSON string (json.loads keeps no lines)."""
    for number, line in enumerate(text.splitlines(), start=1):
        outside = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
        if re.search(rf"(?<![\w-]){re.escape(word)}(?!\w)", outside):
            return number
    return 1


def _check_json(metadata: Mapping[str, Any], path: KeyPath, where: Callable[[KeyPath], Location]) -> None:
    """Metadata goes into the bundle's manifest as JSON: a YAML date (or another value JSON has
    no word for) is an error now, at its line, not after the build."""
    try:
        json.dumps(metadata, allow_nan=False)  # NaN and infinities are not JSON (Python writes them)
    except (TypeError, ValueError) as exc:
        found = _first_not_json(metadata, path)
        raise ConfigError(
            f"metadata cannot be written as JSON ({exc}); quote dates and other values that are not"
            " text, numbers, true/false, lists or mappings",
            where(found if found is not None else path),
        ) from None


def _first_not_json(value: Any, path: KeyPath) -> KeyPath | None:
    """The key path of the first value JSON cannot hold: not text, a finite number, true/false,
    null, a list or a mapping (load_yaml has refused keys that are not text, and self-referring aliases)."""
    if isinstance(value, (dict, list)):
        items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found = _first_not_json(item, cast(KeyPath, (*path, key)))
            if found is not None:
                return found
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    return None if value is None or isinstance(value, (str, int, bool)) else path


def _line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int:
    """The line of `path`, or of the nearest key around it that has one."""
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _show(value: Any, *, empty: bool = False) -> str:
    """A value as the user wrote it, for messages (`empty`: say so of an empty mapping or list)."""
    if empty and value in ({}, []):
        return "an empty mapping" if isinstance(value, dict) else "an empty list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)
