"""The bundle the function runs from: its manifest, its directories and its database files.

Standard library only (boto3, present in every Lambda Python runtime, is imported only when a database
lives in S3). Databases with location "bundle" are read in place from `databases/` under the
read-only code root. Databases with location "s3" are downloaded at cold start from
`s3://$DATASETTE_DATA_BUCKET/<s3_key>` into the temporary directory (Lambda's /tmp, which
survives between invocations of a warm function): a file already there with the manifest's sha256 is
reused, a fresh download is checked against it before use. A download goes to a temporary name and
is renamed once verified; the partial files of a download that was killed (a timeout) are removed
before the next one, and the free space is checked first.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasette_action_entrypoint.manifest import MANIFEST_NAME, Manifest, ManifestDatabase, load_manifest

ENV_ROOT = "DATASETTE_LAMBDA_ROOT"  # the bundle root, for tests (default: the package directory's parent)
ENV_TMP = "DATASETTE_LAMBDA_TMP"  # where S3 databases go (default /tmp)
ENV_BUCKET = "DATASETTE_DATA_BUCKET"  # the bucket holding the databases with an s3_key
ENV_SECRET = "DATASETTE_SECRET"  # Datasette's signing secret; never stored in the bundle
# Set by Lambda to the runtime's identifier, e.g. "AWS_Lambda_python3.13" (Lambda's "Defined runtime
# environment variables", https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html)
ENV_EXECUTION = "AWS_EXECUTION_ENV"

_CHUNK = 1024 * 1024


class BundleError(Exception):
    """A problem with the bundle or the function's environment, worded for whoever deploys it."""


@dataclass(frozen=True)
class Environment:
    """What the function reads from its environment, read once on the first event."""

    root: Path
    tmp_dir: Path
    bucket: str | None
    secret: str | None
    execution_env: str | None = None  # the Lambda runtime (None outside Lambda)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], default_root: Path) -> Environment:
        return cls(
            root=Path(environ.get(ENV_ROOT) or default_root),
            tmp_dir=Path(environ.get(ENV_TMP) or "/tmp"),
            bucket=environ.get(ENV_BUCKET) or None,
            secret=environ.get(ENV_SECRET) or None,
            execution_env=environ.get(ENV_EXECUTION) or None,
        )


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest
    database_files: tuple[Path, ...]  # in manifest order

    def path(self, relative: str) -> Path:
        return self.root / relative


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    try:
        return load_manifest(path)
    except FileNotFoundError:
        raise BundleError(
            f"{path} is missing: the function code is not a datasette-lambda bundle "
            f"(set {ENV_ROOT} to the bundle root when running it elsewhere)"
        ) from None
    except (ValueError, KeyError, TypeError) as error:  # bad JSON, wrong format, missing or unknown fields
        detail = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise BundleError(f"{path} could not be read: {detail}") from None


def load_bundle(env: Environment) -> Bundle:
    """Read the manifest, check the bundle's directories and make every database file available."""
    manifest = read_manifest(env.root)
    for relative in [s.directory for s in manifest.static] + [manifest.templates, manifest.plugins_dir]:
        if relative is not None and not (env.root / relative).is_dir():
            raise BundleError(f"{MANIFEST_NAME} names directory {relative!r}, which is not in the bundle")
    files = tuple(database_file(database, env) for database in manifest.databases)
    return Bundle(env.root, manifest, files)


def database_file(database: ManifestDatabase, env: Environment) -> Path:
    if database.location == "bundle":
        path = env.root / "databases" / database.file
        if not path.is_file():
            raise BundleError(f"database {database.name!r}: databases/{database.file} is not in the bundle")
        size = path.stat().st_size
        if size != database.size:
            raise BundleError(
                f"database {database.name!r}: databases/{database.file} has {size} bytes, "
                f"the manifest says {database.size}"
            )
        return path
    if database.location == "s3":
        return fetch_from_s3(database, env)
    raise BundleError(f"database {database.name!r}: unknown location {database.location!r} (bundle or s3)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _has_content(path: Path, database: ManifestDatabase) -> bool:
    return path.is_file() and path.stat().st_size == database.size and sha256_of(path) == database.sha256


def fetch_from_s3(database: ManifestDatabase, env: Environment) -> Path:
    """Download one database into the temporary directory, unless it is already there."""
    if not database.s3_key:
        raise BundleError(f"database {database.name!r}: location is s3 but the manifest has no s3_key")
    if not env.bucket:
        raise BundleError(
            f"database {database.name!r} is stored in S3 but {ENV_BUCKET} is not set: "
            "set it to the bucket holding the databases"
        )
    target = env.tmp_dir / database.file
    if _has_content(target, database):
        return target
    source = f"s3://{env.bucket}/{database.s3_key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    _make_room(target, database, source)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        _download(env.bucket, database.s3_key, partial, source)
        actual = sha256_of(partial)
        if actual != database.sha256:
            raise BundleError(
                f"database {database.name!r}: {source} has sha256 {actual}, the manifest expects "
                f"{database.sha256}: the object was replaced after packaging; deploy again"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _make_room(target: Path, database: ManifestDatabase, source: str) -> None:
    """Before a download: remove what an invocation killed mid-download left (a timeout ends the
    process, not /tmp): its partial file and the one boto3's transfer writes beside it
    (`.<file>.<pid>.part.<random>`), and a copy of the file with other content; then check that
    the temporary directory has room. One invocation at a time runs per execution environment,
    so no other download is using these files."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part*"):
        stale.unlink(missing_ok=True)
    target.unlink(missing_ok=True)  # its content is not the manifest's (checked by the caller)
    free = shutil.disk_usage(target.parent).free
    if free < database.size:
        raise BundleError(
            f"database {database.name!r} needs {database.size:,} bytes in {target.parent} to download"
            f" {source}, and {free:,} are free: give the function more ephemeral storage"
            " (lambda.ephemeral_storage; package sizes it for the databases plus 64 MB, so something"
            " else, such as a plugin, is filling it)"
        )


def _download(bucket: str, key: str, target: Path, source: str) -> None:
    try:
        import boto3  # type: ignore[import-untyped]  # in every Lambda Python runtime
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]
    except ImportError:
        raise BundleError(f"boto3 is needed to download {source} and is not installed") from None
    try:
        boto3.client("s3").download_file(bucket, key, str(target))
    except ClientError as error:
        raise BundleError(f"could not download {source}: {_client_error(error)}") from None
    except BotoCoreError as error:
        raise BundleError(f"could not download {source}: {error}") from None
    except OSError as error:  # /tmp full or not writable
        raise BundleError(f"could not write {target} while downloading {source}: {error}") from None


def _client_error(error: Any) -> str:
    info = error.response.get("Error", {})
    code = str(info.get("Code", "error"))
    hint = {
        "404": "no such object (was the database uploaded?)",
        "NoSuchKey": "no such object (was the database uploaded?)",
        "NoSuchBucket": "no such bucket",
        "403": "access denied (does the function's role allow s3:GetObject on it?)",
        "AccessDenied": "access denied (does the function's role allow s3:GetObject on it?)",
    }.get(code)
    return f"{code}: {hint}" if hint else f"{code}: {info.get('Message', error)}"
