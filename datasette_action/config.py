"""The config file (`datasette-lambda.yml`) -> `Config`, a tree of frozen dataclasses.

The YAML is parsed once, here. Every error names the file, the line, the key path, the bad value
and what is allowed. Paths in the config are relative to the config file's directory and may not
leave it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasette_action.errors import ConfigError, Location
from datasette_action.yaml_lines import KeyPath, LoadedYaml, format_path, load_yaml

DEFAULT_CONFIG_NAME = "datasette-lambda.yml"
COLUMN_TYPES = ("integer", "float", "text")
SOURCE_FORMATS = ("csv", "tsv", "json", "jsonl")
# Lambda runtimes this tool targets; see shared/FACTS.md (3.11 is deprecated 2027-06-30).
LAMBDA_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
ARCHITECTURES = ("x86_64", "arm64")
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
# CloudFormation stack names: https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}")
# A database name becomes a file name and a URL path segment.
DATABASE_NAME = re.compile(r"\w[\w.-]*")


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


FRONTENDS = ("function_url", "http_api")
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
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


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
    build_dir: Path = Path(".datasette-lambda")
    deploy: DeployConfig = field(default_factory=DeployConfig)

    @property
    def databases_dir(self) -> Path:
        return self.build_dir / "databases"


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "config file not found; create it (see the README) or pass -c PATH",
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
    """Validates the loaded YAML; each method reads one section of the config."""

    def __init__(self, path: Path, loaded: LoadedYaml) -> None:
        self.file = path
        self.root = path.resolve().parent
        self.loaded = loaded

    # -- helpers ---------------------------------------------------------------------------

    def where(self, path: KeyPath) -> Location:
        while path and path not in self.loaded.lines:
            path = path[:-1]
        return Location(self.file, self.loaded.lines.get(path, 1))

    def fail(self, path: KeyPath, problem: str) -> ConfigError:
        return ConfigError(f"{format_path(path)}: {problem}", self.where(path))

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

    def relative_path(self, value: Any, path: KeyPath, *, glob: bool = False) -> str:
        """A path (or glob) inside the config file's directory tree, kept relative."""
        text = self.string(value, path, "a path relative to the config file")
        candidate = Path(text)
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
        return text

    def existing(self, value: Any, path: KeyPath, *, kind: str) -> Path:
        text = self.relative_path(value, path)
        resolved = self.root / text
        ok = resolved.is_dir() if kind == "directory" else resolved.is_file()
        if not ok:
            raise self.fail(path, f"{kind} '{text}' not found (looked in {self.root})")
        return resolved

    # -- sections ----------------------------------------------------------------------------

    def config(self) -> Config:
        top = self.mapping(
            self.loaded.value,
            (),
            ("stack", "region", "databases", "metadata", "datasette", "lambda", "build_dir", "deploy"),
            required=("stack", "databases"),
        )
        stack = self.string(top["stack"], ("stack",), "a stack name")
        if not STACK_NAME.fullmatch(stack):
            raise self.fail(
                ("stack",),
                f"'{stack}' is not a valid CloudFormation stack name; use letters, digits and"
                " hyphens, starting with a letter, at most 128 characters",
            )
        region = None
        if top.get("region") is not None:
            region = self.string(top["region"], ("region",), "an AWS region")
            if not REGION.fullmatch(region):
                raise self.fail(("region",), f"'{region}' is not an AWS region name such as us-east-1")
        metadata, metadata_file = self.metadata(top.get("metadata"))
        build_dir = self.root / self.relative_path(top.get("build_dir", ".datasette-lambda"), ("build_dir",))
        return Config(
            path=self.file,
            root=self.root,
            stack=stack,
            region=region,
            databases=self.databases(top["databases"]),
            metadata=metadata,
            metadata_file=metadata_file,
            datasette=self.datasette(top.get("datasette")),
            lambda_=self.lambda_(top.get("lambda")),
            build_dir=build_dir,
            deploy=self.deploy(top.get("deploy")),
        )

    def deploy(self, value: Any) -> DeployConfig:
        path: KeyPath = ("deploy",)
        body = self.mapping(
            {} if value is None else value,
            path,
            ("frontend", "bucket", "log_retention_days", "tags", "secrets", "health_check"),
        )
        defaults = DeployConfig()
        bucket = None
        if body.get("bucket") is not None:
            bucket = self.string(body["bucket"], (*path, "bucket"), "an S3 bucket name")
            if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
                raise self.fail(
                    (*path, "bucket"),
                    f"'{bucket}' is not a valid S3 bucket name; use 3 to 63 lower-case letters,"
                    " digits, dots and hyphens, starting and ending with a letter or digit",
                )
        retention = body.get("log_retention_days", defaults.log_retention_days)
        if type(retention) is not int or retention not in LOG_RETENTION_DAYS:
            raise self.fail(
                (*path, "log_retention_days"),
                f"{_show(retention)} is not a retention CloudWatch Logs offers; choose one of:"
                f" {', '.join(map(str, LOG_RETENTION_DAYS))}",
            )
        tags: dict[str, str] = {}
        raw_tags = body.get("tags") or {}
        if not isinstance(raw_tags, dict):
            raise self.fail((*path, "tags"), f"expected a mapping of tag: value, got {_show(raw_tags)}")
        for key, tag_value in raw_tags.items():
            if isinstance(tag_value, bool) or not isinstance(tag_value, (str, int, float)):
                raise self.fail((*path, "tags", key), f"expected a text value, got {_show(tag_value)}")
            tags[key] = str(tag_value)
        secrets: tuple[str, ...] = ()
        if "secrets" in body:
            secrets = self.string_list(body["secrets"], (*path, "secrets"), "an environment variable name")
            for index, name in enumerate(secrets):
                if not ENV_NAME.fullmatch(name):
                    raise self.fail(
                        (*path, "secrets", index),
                        f"'{name}' is not an environment variable name (letters, digits, _)",
                    )
        health_check = body.get("health_check", defaults.health_check)
        if not isinstance(health_check, bool):
            raise self.fail((*path, "health_check"), f"expected true or false, got {_show(health_check)}")
        return DeployConfig(
            frontend=self.choice(body.get("frontend", defaults.frontend), (*path, "frontend"), FRONTENDS),
            bucket=bucket,
            log_retention_days=retention,
            tags=tags,
            secrets=secrets,
            health_check=health_check,
        )

    def databases(self, value: Any) -> tuple[DatabaseConfig, ...]:
        path: KeyPath = ("databases",)
        if not isinstance(value, dict) or not value:
            raise self.fail(path, f"expected a mapping of database names, got {_show(value)}")
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
            seen[name.lower()] = name
            result.append(self.database(name, body, (*path, name)))
        return tuple(result)

    def database(self, name: str, value: Any, path: KeyPath) -> DatabaseConfig:
        body = self.mapping(value, path, ("file", "tables", "sql"))
        if ("file" in body) == ("tables" in body):
            raise self.fail(
                path,
                "give either 'file' (an existing SQLite database) or 'tables' (built from"
                " CSV/JSON sources), not both or neither",
            )
        file = self.existing(body["file"], (*path, "file"), kind="file") if "file" in body else None
        tables: tuple[TableConfig, ...] = ()
        if "tables" in body:
            tables_path = (*path, "tables")
            raw = body["tables"]
            if not isinstance(raw, dict) or not raw:
                raise self.fail(tables_path, f"expected a mapping of table names, got {_show(raw)}")
            seen: dict[str, str] = {}
            for table_name, table_body in raw.items():
                if table_name.lower() in seen:
                    raise self.fail(
                        (*tables_path, table_name),
                        f"table '{table_name}' has the same name as '{seen[table_name.lower()]}'"
                        " (SQLite table names are not case-sensitive); rename one",
                    )
                seen[table_name.lower()] = table_name
                tables += (self.table(table_name, table_body, (*tables_path, table_name)),)
        sql: tuple[SqlStep, ...] = ()
        if "sql" in body:
            sql_path = (*path, "sql")
            statements = body["sql"]
            if isinstance(statements, str):
                statements = [statements]
            if not isinstance(statements, list):
                raise self.fail(sql_path, f"expected a list of SQL statements, got {_show(statements)}")
            sql = tuple(
                SqlStep(self.string(s, (*sql_path, i), "an SQL statement"), self.where((*sql_path, i)))
                for i, s in enumerate(statements)
            )
        return DatabaseConfig(name, file, tables, sql, self.where(path))

    def table(self, name: str, value: Any, path: KeyPath) -> TableConfig:
        if isinstance(value, str):  # shorthand: `counties: data/counties.csv`
            value = {"source": value}
            self.loaded.lines[(*path, "source")] = self.where(path).line or 1  # type: ignore[index]
        body = self.mapping(
            value,
            path,
            ("source", "format", "encoding", "delimiter", "pk", "types", "fts", "indexes", "foreign_keys"),
            required=("source",),
        )
        source = self.relative_path(body["source"], (*path, "source"), glob=True)
        fmt = self.choice(body["format"], (*path, "format"), SOURCE_FORMATS) if "format" in body else None
        encoding = self.encoding(body.get("encoding", "utf-8"), (*path, "encoding"))
        delimiter = None
        if "delimiter" in body:
            delimiter = body["delimiter"]
            if not isinstance(delimiter, str) or len(delimiter) != 1:
                raise self.fail((*path, "delimiter"), f"expected one character, got {_show(delimiter)}")
        pk = self.string_list(body["pk"], (*path, "pk"), "a column name") if "pk" in body else ()
        types: dict[str, str] = {}
        if "types" in body:
            raw_types = body["types"]
            if not isinstance(raw_types, dict):
                raise self.fail(
                    (*path, "types"), f"expected a mapping of column: type, got {_show(raw_types)}"
                )
            for column, column_type in raw_types.items():
                twin = next((c for c in types if c.lower() == column.lower()), None)
                if twin is not None:
                    raise self.fail(
                        (*path, "types", column),
                        f"'{column}' and '{twin}' name the same column (column names are not"
                        " case-sensitive); keep one",
                    )
                types[column] = self.choice(column_type, (*path, "types", column), COLUMN_TYPES)
        fts = self.string_list(body["fts"], (*path, "fts"), "a column name") if "fts" in body else ()
        indexes: tuple[tuple[str, ...], ...] = ()
        if "indexes" in body:
            raw_indexes = body["indexes"]
            if not isinstance(raw_indexes, list) or not raw_indexes:
                raise self.fail(
                    (*path, "indexes"),
                    f"expected a list of columns or column lists, got {_show(raw_indexes)}",
                )
            indexes = tuple(
                self.string_list(item, (*path, "indexes", i), "a column name")
                for i, item in enumerate(raw_indexes)
            )
        foreign_keys = self.foreign_keys(body.get("foreign_keys"), (*path, "foreign_keys"))
        locations = {"table": self.where(path)}
        for key in body:
            locations[key] = self.where((*path, key))
        return TableConfig(
            name=name,
            source=source,
            format=fmt,
            encoding=encoding,
            delimiter=delimiter,
            pk=pk,
            types=types,
            fts=fts,
            indexes=indexes,
            foreign_keys=foreign_keys,
            locations=locations,
        )

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

    def foreign_keys(self, value: Any, path: KeyPath) -> tuple[ForeignKey, ...]:
        if value is None:
            return ()
        if not isinstance(value, dict) or not value:
            raise self.fail(path, f"expected a mapping of column: other_table.column, got {_show(value)}")
        result = []
        for column, target in value.items():
            target = self.string(target, (*path, column), "other_table or other_table.column")
            other_table, _, other_column = target.partition(".")
            result.append(ForeignKey(column, other_table, other_column or None))
        return tuple(result)

    def metadata(self, value: Any) -> tuple[Mapping[str, Any] | None, Path | None]:
        path: KeyPath = ("metadata",)
        if value is None:
            return None, None
        if isinstance(value, dict):
            return value, None
        file = self.existing(value, path, kind="file")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(path, f"cannot read metadata file '{value}': {exc}") from None
        if file.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"invalid JSON: {exc.msg}", Location(file, exc.lineno)) from None
        else:
            # load_yaml, not yaml.safe_load: duplicate keys are errors and every error has a line
            data = load_yaml(text, file).value
        if not isinstance(data, dict):
            raise ConfigError(f"metadata must be a mapping, got {_show(data)}", Location(file, 1))
        return data, file

    def datasette(self, value: Any) -> DatasetteConfig:
        path: KeyPath = ("datasette",)
        body = self.mapping(
            {} if value is None else value,
            path,
            ("version", "settings", "plugins", "static", "templates", "plugins_dir", "version_note"),
        )
        version = None
        if "version" in body:
            raw = body["version"]
            version = str(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else raw
            version = self.string(version, (*path, "version"), "a Datasette version such as 0.65.1")
        settings = self.settings(body.get("settings"), (*path, "settings"))
        plugins: tuple[str, ...] = ()
        if "plugins" in body:
            # imported here: most configs have no plugins, and it costs `build` 15 ms to start
            from packaging.requirements import InvalidRequirement, Requirement

            plugins = self.string_list(body["plugins"], (*path, "plugins"), "a plugin name")
            for i, plugin in enumerate(plugins):
                try:
                    Requirement(plugin)
                except InvalidRequirement:
                    raise self.fail(
                        (*path, "plugins", i),
                        f"'{plugin}' is not a package name or pip requirement such as"
                        " datasette-cluster-map or datasette-vega==0.6.2",
                    ) from None
        static: tuple[StaticMount, ...] = ()
        if "static" in body:
            raw_static = body["static"]
            if isinstance(raw_static, str):
                raw_static = {"static": raw_static}
            if not isinstance(raw_static, dict):
                raise self.fail(
                    (*path, "static"), f"expected a mapping of url path: directory, got {_show(raw_static)}"
                )
            static = tuple(
                StaticMount(
                    mount.strip("/"), self.existing(directory, (*path, "static", mount), kind="directory")
                )
                for mount, directory in raw_static.items()
            )
        templates = (
            self.existing(body["templates"], (*path, "templates"), kind="directory")
            if "templates" in body
            else None
        )
        plugins_dir = (
            self.existing(body["plugins_dir"], (*path, "plugins_dir"), kind="directory")
            if "plugins_dir" in body
            else None
        )
        version_note = None
        if body.get("version_note") is not None:
            version_note = self.string(body["version_note"], (*path, "version_note"), "a note (text)")
        return DatasetteConfig(version, settings, plugins, static, templates, plugins_dir, version_note)

    def settings(self, value: Any, path: KeyPath) -> dict[str, Any]:
        body = self.mapping({} if value is None else value, path, tuple(DATASETTE_SETTINGS))
        for key, setting in body.items():
            expected = DATASETTE_SETTINGS[key]
            if type(setting) is not expected:
                kind = {int: "a whole number", bool: "true or false", str: "text"}[expected]
                raise self.fail((*path, key), f"expected {kind}, got {_show(setting)}")
        return body

    def lambda_(self, value: Any) -> LambdaConfig:
        path: KeyPath = ("lambda",)
        body = self.mapping(
            {} if value is None else value,
            path,
            ("python", "architecture", "memory", "timeout", "ephemeral_storage", "reserved_concurrency"),
        )
        defaults = LambdaConfig()
        python = body.get("python", defaults.python)
        if isinstance(python, float):  # `python: 3.13` unquoted; 3.10 would read as 3.1
            python = repr(python)
        python = self.choice(python, (*path, "python"), LAMBDA_PYTHONS)
        # Limits: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
        return LambdaConfig(
            python=python,
            architecture=self.choice(
                body.get("architecture", defaults.architecture), (*path, "architecture"), ARCHITECTURES
            ),
            memory=self.integer(body.get("memory", defaults.memory), (*path, "memory"), 128, 10240),
            timeout=self.integer(body.get("timeout", defaults.timeout), (*path, "timeout"), 1, 900),
            ephemeral_storage=self.integer(
                body.get("ephemeral_storage", defaults.ephemeral_storage),
                (*path, "ephemeral_storage"),
                512,
                10240,
            ),
            reserved_concurrency=(
                self.integer(body["reserved_concurrency"], (*path, "reserved_concurrency"), 0, 1000)
                if body.get("reserved_concurrency") is not None
                else None
            ),
        )


def _show(value: Any) -> str:
    """A value as the user wrote it, for messages."""
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
