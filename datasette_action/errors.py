"""The exception hierarchy. Every error a user can cause is a `UserError`: the CLI prints its
message (no traceback) and exits 1. Anything else escaping is a bug in this tool."""

from __future__ import annotations

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


class CheckError(UserError):
    """A plan's offline checks failed: cfn-lint found errors in the template, or the bundle
    failed its smoke test."""


class SiteDownError(AwsError):
    """The stack deployed, but the site did not answer the health check."""
