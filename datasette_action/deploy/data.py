"""The plain data in and out of the deploy stage: the options a mode takes, and what each mode
returns (uploads, change sets, the health check, `DeployResult`, `PlanResult`, `DestroyResult`).
Nothing here calls AWS."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from datasette_action.state import DeployedState

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class DeployOptions:
    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL, else AWS itself
    health_check: bool = True  # also needs config.deploy.health_check
    timeout: float = 1800.0  # seconds to wait for each stack operation (and for a busy stack)
    poll: float = 5.0  # seconds between status checks
    # A CI run's id, in change set names and DeploymentIds (the front doors pass GitHub's
    # GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT: pipeline.run_id); None: a random part only.
    run_id: str | None = None
    log: Log = _quiet
    # Deploy even when nothing changed: a fresh DeploymentId parameter (the function's
    # DATASETTE_LAMBDA_DEPLOYMENT_ID) makes the change set non-empty and updates the function.
    force: bool = False
    # The values of the template's secret parameters, by environment variable name
    # (DATASETTE_SECRET and deploy.secrets; pipeline.secret_values reads them from an environment).
    # This package reads no environment variable for them.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str


@dataclass(frozen=True)
class Upload:
    """One object put in (or found already in) the artifacts bucket, named by its content."""

    role: str  # "layer", "function", "database <name>" or "template"
    key: str
    sha256: str
    size: int  # bytes
    uploaded: bool  # False: the object was there already (reused)

    @property
    def bytes_uploaded(self) -> int:
        return self.size if self.uploaded else 0


@dataclass(frozen=True)
class ResourceChange:
    action: str  # Add, Modify, Remove, Import, Dynamic
    logical_id: str
    resource_type: str
    replacement: str | None  # "True", "False", "Conditional"; None for Add and Remove


@dataclass(frozen=True)
class ChangeSet:
    stack: str
    name: str
    kind: str  # CREATE or UPDATE
    changes: tuple[ResourceChange, ...]  # empty: nothing to do

    @property
    def empty(self) -> bool:
        return not self.changes


@dataclass(frozen=True)
class HealthCheck:
    url: str
    status: int | None  # None: no HTTP answer
    seconds: float
    error: str | None  # why it failed, if it did

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400


@dataclass(frozen=True)
class DeployResult:
    stack: str
    region: str
    account: str
    url: str | None
    function_name: str | None
    bucket: str
    changed: bool  # False: the change set was empty, the live stack was not touched
    recreated: bool  # a stack left in ROLLBACK_COMPLETE was deleted first
    artifacts: tuple[Upload, ...]
    change_set: ChangeSet  # empty: nothing to change, the live stack was not touched
    bootstrap_changed: bool
    health: HealthCheck | None  # None: skipped
    outputs: Mapping[str, str]
    seconds: float

    @property
    def bytes_uploaded(self) -> int:
        return sum(upload.bytes_uploaded for upload in self.artifacts)


@dataclass(frozen=True)
class PlannedUpload:
    """An object a deploy needs in the artifacts bucket, before it is put there."""

    role: str  # "layer", "function", "database <name>" or "template"
    key: str  # named by its content
    sha256: str
    source: Path | bytes  # a file, or the bytes themselves

    @property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size


@dataclass(frozen=True)
class PlannedArtifact:
    role: str
    key: str
    sha256: str
    size: int
    in_bucket: bool | None  # None: not known (offline, or no bucket yet)


@dataclass(frozen=True)
class PlanResult:
    stack: str
    online: bool
    note: str  # offline: why; online: the stack's state in a sentence
    region: str | None
    account: str | None
    stack_status: str | None  # None: the stack does not exist (or offline)
    changes: tuple[ResourceChange, ...]
    changes_from: str  # "change set", "template" (a new stack: everything is added) or "unknown"
    artifacts: tuple[PlannedArtifact, ...]
    deployed: DeployedState | None  # what the last deploy recorded; None: nothing, or unknown
    planned: DeployedState  # what this deploy would put live
    seconds: float
    changes_note: str | None = None  # online with changes "unknown": why no change set was made


@dataclass(frozen=True)
class DestroyResult:
    stack: str
    region: str
    stack_deleted: bool  # False: there was no such stack
    bucket: str | None
    objects_deleted: int
    bootstrap_deleted: bool
    seconds: float
