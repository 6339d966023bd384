"""The exception hierarchy. Every error a user can cause is a `UserError`: the CLI prints its
message (no traceback) and exits 1. Anything else escaping is a bug in this tool."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """A place in a user's file, for messages and (later) GitHub annotations."""

    file: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)


class UserError(Exception):
    """A problem the user can fix. `location` points at the file (and line) to fix, if known.
    `result` is what a step finished before failing (a plan whose checks failed, a deploy whose
    site does not answer), for the front door to show before the error."""

    def __init__(self, message: str, location: Location | None = None, *, result: object = None) -> None:
        super().__init__(message, location)  # both in args: errors cross process boundaries
        self.message = message
        self.location = location
        self.result = result

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(UserError):
    """The config file (or a file it names, such as metadata) is invalid."""


class SourceError(UserError):
    """A data source cannot be read or does not hold what its format promises."""


class BuildError(UserError):
    """The data is readable but cannot become the database the config describes."""


class PackageError(UserError):
    """The Lambda bundle cannot be made: a dependency has no wheel, or a limit would be broken."""


class AwsError(UserError):
    """AWS refused a step of a deploy, plan or destroy, or a stack is in a state that needs a
    person; the message names the step and how to fix it."""


class CredentialsError(AwsError):
    """No usable AWS credentials (or region): nothing was sent to AWS beyond asking who we are."""


class StackFailedError(AwsError):
    """CloudFormation could not apply the change set; the message lists the failing resources."""


class InputError(UserError):
    """An input of the GitHub Action (a `with:` value in the workflow) is invalid; the message
    names the input, the bad value and what is allowed."""


class UnsafeEventError(UserError):
    """The workflow event would make the action run code a pull request controls while this
    repository's secrets are in reach (pull_request_target from a fork)."""


class CheckError(UserError):
    """A plan's offline checks failed: cfn-lint found errors in the template, or the bundle
    failed its smoke test."""


class SiteDownError(AwsError):
    """The stack deployed, but the site did not answer the health check."""


class DiskFullError(UserError):
    """A step could not write its output: the disk is full, a quota or file-size limit is hit,
    the file system is read-only, or the disk fails."""


_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
# SQLite's messages for SQLITE_FULL and SQLITE_IOERR (without extended codes, a write that
# failed for EFBIG or EIO is the latter).
_SQLITE_CANNOT_WRITE = ("database or disk is full", "disk I/O error")


def is_out_of_space(error: BaseException) -> bool:
    """An OSError for a full disk, a quota, a file-size limit or a read-only file system, or
    SQLite's "database or disk is full" / "disk I/O error"."""
    if isinstance(error, OSError):
        return error.errno in _CANNOT_WRITE
    return type(error).__name__ == "OperationalError" and str(error) in _SQLITE_CANNOT_WRITE


def disk_full(directory: Path, what: str, error: BaseException) -> DiskFullError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return DiskFullError(
        f"could not write {what} in {directory} ({reason}); free some space there (or check that"
        " it is writable), or set build_dir to a disk with room. The earlier output there is as it was."
    )


@contextmanager
def disk_space_checked(directory: Path, what: str) -> Iterator[None]:
    """Turn a failure to write `what` under `directory` (see is_out_of_space) into a
    DiskFullError. The step inside must leave nothing half-written behind: it writes to
    scratch and moves the result into place."""
    try:
        yield
    except Exception as error:
        if is_out_of_space(error):
            raise disk_full(directory, what, error) from None
        raise
