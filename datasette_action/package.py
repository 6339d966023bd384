"""Package stage: Config + BuildResult -> two content-addressed zips for Lambda.

- the layer (`dependencies.py`): Datasette, mangum and the plugins, under `python/`;
- the function code: the Lambda modules of `datasette_action_entrypoint` (LAMBDA_MODULES),
  `manifest.json`, the databases that fit under `databases/`, static files, templates and
  one-file plugins.

Both trees stay unzipped in `<build_dir>/package/` (`deps-<key>/` and `app/`) for local runs.
Lambda's size limits are checked here, before anything is uploaded: databases that do not fit
beside the code go to S3 and are copied into /tmp at cold start, with /tmp sized to hold them; a
database too large to download through a Lambda response gets an S3 copy too, where its download
redirects.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasette_action.build import BuildResult, BuiltDatabase
from datasette_action.config import TIMEOUT_MAX, Config
from datasette_action.dependencies import prepare_layer
from datasette_action.errors import Location, PackageError, disk_space_checked
from datasette_action.pyc import compile_tree, find_interpreter, no_interpreter_warning
from datasette_action.sqlite import Sqlite
from datasette_action.zips import Artifact, ZipResult, tree_size, write_named_zip
from datasette_action_entrypoint.downloads import DOWNLOAD_LIMIT
from datasette_action_entrypoint.manifest import (
    HANDLER,
    MANIFEST_NAME,
    Manifest,
    ManifestDatabase,
    ManifestStatic,
)

Log = Callable[[str], None]

MB = 1024 * 1024  # Lambda's "MB" for memory and ephemeral storage is 2**20 bytes
# Lambda quotas: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
# "Deployment package (.zip file archive) size: 250 MB (unzipped)" for the function code and all
# its layers together; the error reads "Unzipped size must be smaller than 262144000 bytes".
UNZIPPED_LIMIT = 262_144_000
# Same page: "Function ephemeral storage: between 512 MB and 10,240 MB, in 1-MB increments".
EPHEMERAL_MAX_MB = 10_240
# The 50 MB zipped limit applies to direct uploads only; the zips go through S3.
TMP_HEADROOM = 64 * MB  # /tmp room beside the databases for SQLite's temporary files
MANIFEST_ALLOWANCE = 64 * 1024  # the manifest grows a little once placements are known
FUNCTION_RUNTIME_PATH = "/var/task"  # where Lambda unpacks the function code
# Datasette settings this project changes unless the config sets them: facet suggestions run
# extra queries on every table page, which a cold, small Lambda pays for on each request.
SPEED_DEFAULTS: dict[str, Any] = {"suggest_facets": False}


@dataclass(frozen=True)
class DatabasePlacement:
    name: str
    file: str  # the file name: databases/<file> in the bundle, or in /tmp when in S3
    path: Path  # the built database on this machine
    sha256: str
    size: int
    location: str  # "bundle" (inside the function code) or "s3" (copied into /tmp at cold start)
    # content-addressed, databases/<sha256>/<file>: in S3, or over DOWNLOAD_LIMIT (its download's copy)
    s3_key: str | None
    reason: str


@dataclass(frozen=True)
class Placement:
    databases: tuple[DatabasePlacement, ...]  # in the order of the config
    ephemeral_storage: int  # MB of /tmp the function needs


@dataclass(frozen=True)
class PackageResult:
    layer: Artifact
    function: Artifact
    handler: str  # Lambda's Handler setting
    python: str
    architecture: str
    compiled: bool  # whether both trees hold .pyc for the target Python
    python_path: tuple[Path, ...]  # what a local runner puts on sys.path: app dir, deps python/
    ephemeral_storage: int  # MB
    databases: tuple[DatabasePlacement, ...]
    manifest: Path
    requirements: tuple[str, ...]
    sqlite: Sqlite  # the SQLite the site runs: the layer's binding (the build ran the same)
    warnings: tuple[str, ...]

    @property
    def artifacts(self) -> tuple[Artifact, Artifact]:
        return (self.layer, self.function)


def package(config: Config, build_result: BuildResult, log: Log = lambda message: None) -> PackageResult:
    """The layer and the function code, each made in scratch and moved into place when whole:
    a failure (a full disk too) leaves no half-written zip or tree."""
    package_dir = config.build_dir / "package"
    with disk_space_checked(package_dir, "the Lambda bundle"):
        return _package(config, build_result, package_dir, log)


def _package(config: Config, build_result: BuildResult, package_dir: Path, log: Log) -> PackageResult:
    package_dir.mkdir(parents=True, exist_ok=True)
    interpreter = find_interpreter(config.lambda_.python)
    warnings = [] if interpreter else [no_interpreter_warning(config.lambda_.python)]
    layer = prepare_layer(config, package_dir, interpreter, log)
    app_dir = package_dir / "app"
    placement, written, code_warnings = _make_app(
        config, build_result, layer.artifact.unzipped_size, interpreter, app_dir, log
    )
    code_warnings += check_download_time(config, placement.databases)
    _remove_other_zips(package_dir, "function", written.path)
    function = Artifact(
        "function", written.path, app_dir, written.sha256, written.zipped_size, written.unzipped_size, False
    )
    return PackageResult(
        layer=layer.artifact,
        function=function,
        handler=HANDLER,
        python=config.lambda_.python,
        architecture=config.lambda_.architecture,
        compiled=layer.compiled,
        python_path=(app_dir, layer.artifact.directory / "python"),
        ephemeral_storage=placement.ephemeral_storage,
        databases=placement.databases,
        manifest=app_dir / MANIFEST_NAME,
        requirements=layer.requirements,
        sqlite=layer.sqlite,
        warnings=(*warnings, *layer.warnings, *code_warnings),
    )


def _make_app(
    config: Config,
    build_result: BuildResult,
    layer_size: int,
    interpreter: Path | None,
    app_dir: Path,
    log: Log,
) -> tuple[Placement, ZipResult, list[str]]:
    """The function code tree and its zip, made in a scratch directory; the tree is moved to
    `app_dir` once it is complete, within Lambda's limits and zipped. A failure leaves the
    previous tree and zip as they were."""
    where = Location(config.path)
    scratch = Path(tempfile.mkdtemp(prefix=".app-", dir=app_dir.parent))
    try:
        warnings = _add_code(config, scratch, interpreter)
        inspect_data = json.loads(build_result.inspect_data.read_text())
        databases, storage = build_result.databases, config.lambda_.ephemeral_storage
        # Measure the code with a manifest that lists every database, then place the databases.
        _write_manifest(
            scratch,
            build_manifest(config, inspect_data, place_databases(databases, 0, storage, where)),
        )
        code_size = tree_size(scratch) + MANIFEST_ALLOWANCE
        check_limits(layer_size, code_size, where)
        placement = place_databases(databases, layer_size + code_size, storage, where)
        _add_databases(scratch, placement)
        _write_manifest(scratch, build_manifest(config, inspect_data, placement))
        check_limits(layer_size, tree_size(scratch), where)
        log("zipping the function code")
        written = write_named_zip(scratch, app_dir.parent, "function")
        if app_dir.exists():
            shutil.rmtree(app_dir)
        os.replace(scratch, app_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return placement, written, warnings


# -- databases: in the bundle or in S3 ------------------------------------------------------


def place_databases(
    databases: Sequence[BuiltDatabase], code_size: int, ephemeral_storage: int, where: Location | None = None
) -> Placement:
    """Which databases fit in the function code beside `code_size` bytes (code + layer), and
    how much /tmp (MB, at least `ephemeral_storage`) the rest need once copied from S3.

    The smallest go into the bundle first, so as many as possible load without a download.
    """
    left = UNZIPPED_LIMIT - code_size
    decided: dict[str, DatabasePlacement] = {}
    for database in sorted(databases, key=lambda d: (d.size, d.name)):
        if database.size <= left:
            left -= database.size
            reason = f"fits in the function code ({_mb(left)} MB left of Lambda's 250 MB unzipped limit)"
            decided[database.name] = _placed(database, "bundle", reason)
        else:
            _check_fits_tmp(database, where)
            reason = (
                f"{_mb(database.size)} MB does not fit beside the code ({_mb(max(left, 0))} MB left of"
                " Lambda's 250 MB unzipped limit): uploaded to S3, copied into /tmp at cold start"
            )
            decided[database.name] = _placed(database, "s3", reason)
    placed = tuple(decided[database.name] for database in databases)
    return Placement(placed, _ephemeral_storage(placed, ephemeral_storage, where))


def _placed(database: BuiltDatabase, location: str, reason: str) -> DatabasePlacement:
    """The placement; with an S3 key when the database goes to S3, and when it is larger than a
    Lambda response can carry (DOWNLOAD_LIMIT): its download then redirects to that object."""
    file = database.path.name
    too_large = database.size > DOWNLOAD_LIMIT
    s3_key = f"databases/{database.sha256}/{file}" if location == "s3" or too_large else None
    if too_large:
        copy = "a copy uploaded to S3" if location == "bundle" else "the object in S3"
        reason += (
            f"; its download is over the {_mb(DOWNLOAD_LIMIT)} MB a Lambda response can carry:"
            f" it redirects to {copy}"
        )
    return DatabasePlacement(
        database.name, file, database.path, database.sha256, database.size, location, s3_key, reason
    )


# The databases placed in S3 are downloaded inside the first request of each new execution
# environment, so under the function's timeout (and an HTTP API's 30 s). AWS publishes no network
# bandwidth for Lambda, so the estimate is deliberately conservative:
# - one connection's worth of S3: "Make one concurrent request for each 85-90 MB/s of desired
#   network throughput" (within a Region; https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance-guidelines.html).
#   boto3's download_file uses up to 10 connections, so downloads are usually faster than this;
# - scaled down below one vCPU: "Lambda allocates CPU power in proportion to the amount of memory
#   configured ... At 1,769 MB, a function has the equivalent of one vCPU", and "If a function is
#   CPU, network or memory-bound, then increasing the memory setting can dramatically improve its
#   performance" (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
S3_CONNECTION_THROUGHPUT = 85_000_000  # bytes per second: the low end of 85-90 MB/s
ONE_VCPU_MEMORY = 1769  # MB
# "Maximum integration timeout: 30 seconds" for HTTP APIs, not raisable:
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html
HTTP_API_TIMEOUT = 30


def download_seconds(size: int, memory: int) -> float:
    """The conservative estimate of downloading `size` bytes from S3 with `memory` MB."""
    return size / (S3_CONNECTION_THROUGHPUT * min(1.0, memory / ONE_VCPU_MEMORY))


def check_download_time(config: Config, placed: Sequence[DatabasePlacement]) -> list[str]:
    """An error when the databases placed in S3 could not arrive within lambda.timeout (every
    cold start would time out, and leave a partial download); a warning when they arrive only
    after an HTTP API has given up on the first request."""
    in_s3 = [p for p in placed if p.location == "s3"]
    if not in_s3:
        return []
    memory, timeout = config.lambda_.memory, config.lambda_.timeout
    seconds = download_seconds(sum(p.size for p in in_s3), memory)
    rate = S3_CONNECTION_THROUGHPUT * min(1.0, memory / ONE_VCPU_MEMORY) / 1e6
    what = (
        f"the databases in S3 ({', '.join(f'{p.name} {_mb(p.size)} MB' for p in in_s3)}) are downloaded"
        " inside the first request of each new execution environment: about"
        f" {math.ceil(seconds):,} s at a conservative {rate:,.0f} MB/s for {memory:,} MB of memory"
    )
    more_memory = (
        f"lambda.memory (more memory brings more CPU and network, up to one vCPU at {ONE_VCPU_MEMORY:,} MB)"
    )
    if seconds > timeout:
        fixes = []
        if timeout < TIMEOUT_MAX:
            fixes.append(f"lambda.timeout (at most {TIMEOUT_MAX} s; Lambda bills only the time used)")
        if memory < ONE_VCPU_MEMORY:
            fixes.append(more_memory)
        fix = f"Raise {', or '.join(fixes)}; or publish" if fixes else "Publish"
        raise PackageError(
            f"{what}, longer than lambda.timeout ({timeout} s): every cold start would time out before"
            f" the site answers. {fix} smaller databases",
            Location(config.path),
        )
    if config.deploy.frontend == "http_api" and seconds > HTTP_API_TIMEOUT:
        fix = f"raise {more_memory}, or u" if memory < ONE_VCPU_MEMORY else "u"
        return [
            f"{what}, longer than the {HTTP_API_TIMEOUT} s an HTTP API waits: that first request gets an"
            " error from API Gateway while the download goes on, and later requests are served;"
            f" {fix}se deploy.frontend: function_url (no 30 s limit)"
        ]
    return []


def _check_fits_tmp(database: BuiltDatabase, where: Location | None) -> None:
    if database.size + TMP_HEADROOM > EPHEMERAL_MAX_MB * MB:
        raise PackageError(
            f"database '{database.name}' is {_mb(database.size)} MB: too large for the function"
            f" code (250 MB unzipped) and for Lambda's /tmp ({EPHEMERAL_MAX_MB:,} MB at most, with"
            f" {TMP_HEADROOM // MB} MB to spare); split it into smaller databases",
            where,
        )


def _ephemeral_storage(placed: Sequence[DatabasePlacement], configured: int, where: Location | None) -> int:
    in_s3 = [p for p in placed if p.location == "s3"]
    if not in_s3:
        return configured
    needed = math.ceil((sum(p.size for p in in_s3) + TMP_HEADROOM) / MB)
    if needed > EPHEMERAL_MAX_MB:
        listed = ", ".join(f"{p.name} {_mb(p.size)} MB" for p in in_s3)
        raise PackageError(
            f"the databases that go to S3 ({listed}) need {needed:,} MB of /tmp, with"
            f" {TMP_HEADROOM // MB} MB to spare; Lambda allows at most {EPHEMERAL_MAX_MB:,} MB;"
            " publish fewer or smaller databases",
            where,
        )
    return max(configured, needed)


def check_limits(layer_unzipped: int, function_unzipped: int, where: Location | None = None) -> None:
    total = layer_unzipped + function_unzipped
    if total >= UNZIPPED_LIMIT:
        raise PackageError(
            f"the dependencies ({_mb(layer_unzipped)} MB) and the function code"
            f" ({_mb(function_unzipped)} MB) unzip to {total:,} bytes; Lambda requires less than"
            f" {UNZIPPED_LIMIT:,} bytes (250 MB) for code and layers together; remove plugins from"
            " datasette.plugins, or large files from the static or template directories",
            where,
        )


def _add_databases(app: Path, placement: Placement) -> None:
    target = app / "databases"
    target.mkdir()
    for database in placement.databases:
        if database.location == "bundle":
            _link_or_copy(database.path, target / database.file)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)  # databases can be large: no copy when on the same disk
    except OSError:
        shutil.copyfile(source, destination)


def _mb(size: int) -> str:
    return f"{size / MB:,.1f}"


# -- the function code ------------------------------------------------------------------------


# The entry point package as Lambda imports it (the first part of its Handler setting), and the only
# modules of it that go into the bundle: what runs in Lambda, no test helpers.
LAMBDA_PACKAGE = HANDLER.partition(".")[0]
LAMBDA_MODULES = ("__init__", "app", "bundle", "downloads", "handler", "manifest", "paths", "sqlite", "units")


def _add_code(config: Config, app: Path, interpreter: Path | None) -> list[str]:
    """The entry point (compiled for the target), static files, templates and plugins."""
    entrypoint = app / LAMBDA_PACKAGE
    entrypoint.mkdir()
    source = entrypoint_source()
    for module in LAMBDA_MODULES:
        shutil.copyfile(source / f"{module}.py", entrypoint / f"{module}.py")
    warnings = []
    if interpreter is not None:
        problems = compile_tree(interpreter, entrypoint, f"{FUNCTION_RUNTIME_PATH}/{LAMBDA_PACKAGE}")
        if problems:
            warnings.append(
                f"the entry point does not compile for Python {config.lambda_.python}: {problems[0]}"
            )
    for mount in config.datasette.static:
        shutil.copytree(mount.directory, app / static_directory(mount.url_path))
    if config.datasette.templates is not None:
        shutil.copytree(config.datasette.templates, app / "templates")
    if config.datasette.plugins_dir is not None:
        shutil.copytree(config.datasette.plugins_dir, app / "plugins")
    return warnings


def entrypoint_source() -> Path:
    """The installed entry point package's directory (entrypoint/ in this repository)."""
    spec = importlib.util.find_spec(LAMBDA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {LAMBDA_PACKAGE} package is not installed beside datasette_action")
    return Path(next(iter(spec.submodule_search_locations)))


def static_directory(url_path: str) -> str:
    """Where a static mount's files go in the bundle: static/<url path, '/' as '__'>."""
    return "static/" + (url_path.replace("/", "__") or "_root")


def build_manifest(config: Config, inspect_data: dict[str, Any], placement: Placement) -> Manifest:
    databases = tuple(
        ManifestDatabase(p.name, p.file, p.sha256, p.size, p.location, p.s3_key) for p in placement.databases
    )
    # The "file" of Datasette's inspect data is relative to the bundle's root for databases in
    # the bundle; a database from S3 keeps its bare file name (the entry point puts it in /tmp).
    locations = {p.name: p for p in placement.databases}
    inspect = {
        name: {**data, "file": _bundle_file(locations[name]) if name in locations else data.get("file")}
        for name, data in inspect_data.items()
    }
    return Manifest(
        databases=databases,
        inspect_data=inspect,
        settings={**SPEED_DEFAULTS, **config.datasette.settings},
        metadata=dict(config.metadata) if config.metadata is not None else None,
        static=tuple(
            ManifestStatic(m.url_path, static_directory(m.url_path)) for m in config.datasette.static
        ),
        templates="templates" if config.datasette.templates is not None else None,
        plugins_dir="plugins" if config.datasette.plugins_dir is not None else None,
        version_note=config.datasette.version_note,
    )


def _bundle_file(placement: DatabasePlacement) -> str:
    return f"databases/{placement.file}" if placement.location == "bundle" else placement.file


def _write_manifest(app: Path, manifest: Manifest) -> None:
    # config loading made sure the metadata can be written as JSON
    (app / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")


def _remove_other_zips(package_dir: Path, stem: str, keep: Path) -> None:
    for stale in package_dir.glob(f"{stem}-*.zip"):
        if stale != keep:
            stale.unlink()
