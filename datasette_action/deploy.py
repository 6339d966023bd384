"""Deploy stage: the only module that talks to AWS (boto3).

    deploy:  who am I -> the stack's state (ours? busy? a failed first create?) -> artifacts bucket
             (bootstrap stack or deploy.bucket) -> uploads by content hash -> change set -> wait ->
             describe -> execute -> wait -> outputs -> deployed-state file -> health check
    plan:    the same up to the change set, which is described and deleted; nothing is uploaded
             and the live stack is not changed. Without credentials it says so and stays offline.
    destroy: the main stack, the objects this tool wrote, and the bootstrap stack it made.

The behaviour follows aws-actions/aws-cloudformation-github-deploy: an empty change set is a
success, a stack stuck in ROLLBACK_COMPLETE (a failed first create) is deleted and created again,
a failed change shows the failing resources' reasons. `botocore`'s `ClientError` is translated by
its `Error.Code` here and nowhere else; the one message AWS forces us to match is in
`is_no_changes`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import boto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    WaiterError,
)

from datasette_action import template as tpl
from datasette_action.config import Config
from datasette_action.errors import AwsError, CredentialsError, StackFailedError
from datasette_action.package import PackageResult
from datasette_action.state import (
    DeployedState,
    StateFormatError,
    state_from_json,
    state_from_package,
    state_key,
)
from datasette_action.template import Template
from entrypoint.bundle import ENV_SECRET

Log = Callable[[str], None]

RETRIES = {"mode": "standard", "max_attempts": 10}
TEMPLATES_PREFIX = "templates/"  # the rendered template, by its sha256: templates/<sha256>.json
STATE_PREFIX = "state/"
# States: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/view-stack-events.html
STUCK = {
    "UPDATE_ROLLBACK_FAILED": (
        "an update failed and so did its rollback. Let CloudFormation finish the rollback, then deploy"
        " again: aws cloudformation continue-update-rollback --stack-name {stack} (add"
        " --resources-to-skip for resources that cannot roll back; see the stack's events)"
    ),
    "ROLLBACK_FAILED": (
        "its first create failed and so did the clean-up. Delete it (datasette-lambda destroy, or"
        " aws cloudformation delete-stack --stack-name {stack}), then deploy again"
    ),
    "DELETE_FAILED": (
        "deleting it failed. Delete it again (datasette-lambda destroy, or aws cloudformation"
        " delete-stack --stack-name {stack}; see the stack's events for what stayed), then deploy"
    ),
    "CREATE_FAILED": (
        "its first create failed with rollback disabled. Delete it (datasette-lambda destroy), then"
        " deploy again"
    ),
    "IMPORT_ROLLBACK_FAILED": "a resource import failed and so did its rollback; fix it in the console",
}
OPERATION_STARTS = {"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"}
ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403", "Forbidden"}
BAD_CREDENTIALS = {
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "IncompleteSignature",
    "AuthFailure",
}
NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
HOW_TO_CONFIGURE = (
    "configure AWS credentials: the environment variables AWS_ACCESS_KEY_ID and"
    " AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), a profile (AWS_PROFILE, ~/.aws/credentials,"
    " aws configure sso), or in GitHub Actions aws-actions/configure-aws-credentials with an OIDC"
    " role (role-to-assume, and `permissions: id-token: write` on the job)"
)


def _quiet(message: str) -> None:
    pass


# -- plain data in and out ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeployOptions:
    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL, else AWS itself
    health_check: bool = True  # also needs config.deploy.health_check
    timeout: float = 1800.0  # seconds to wait for each stack operation (and for a busy stack)
    poll: float = 5.0  # seconds between status checks
    run_id: str | None = None  # change set names; None: GITHUB_RUN_ID + GITHUB_RUN_ATTEMPT, else random
    log: Log = _quiet
    # Deploy even when nothing changed: a fresh DeploymentId parameter (the function's
    # DATASETTE_LAMBDA_DEPLOYMENT_ID) makes the change set non-empty and updates the function.
    force: bool = False
    # Secret values by environment variable name, used before the process environment (for a
    # caller that holds secrets it should not put in os.environ).
    secret_values: Mapping[str, str] = field(default_factory=dict)


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


@dataclass(frozen=True)
class DestroyResult:
    stack: str
    region: str
    stack_deleted: bool  # False: there was no such stack
    bucket: str | None
    objects_deleted: int
    bootstrap_deleted: bool
    seconds: float


# -- the session ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aws:
    """A boto3 session with its region and endpoint; clients are made once, on first use.

    Register botocore event handlers (e.g. `session.events.register("before-call", ...)`) before
    the first `client()` call: clients copy the session's handlers when they are made.
    """

    session: Any  # boto3.Session
    region: str
    endpoint_url: str | None
    _clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=BotoConfig(retries=dict(RETRIES), user_agent_extra="datasette-lambda"),
            )
        return self._clients[service]


def aws_session(config: Config, endpoint_url: str | None = None) -> Aws:
    """Credentials and region from the standard chain (environment, profile, SSO, web identity);
    `config.region` wins over the environment's region. `endpoint_url` (or AWS_ENDPOINT_URL)
    sends every call elsewhere, e.g. to a local moto server."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    # botocore reads AWS_DEFAULT_REGION (and profiles) but not AWS_REGION, which other SDKs and
    # aws-actions/configure-aws-credentials use; it wins over AWS_DEFAULT_REGION, as in those SDKs.
    region_name = config.region or os.environ.get("AWS_REGION") or None
    try:
        session = boto3.Session(region_name=region_name)
    except ProfileNotFound as exc:
        raise CredentialsError(f"AWS profile not found ({exc}); {HOW_TO_CONFIGURE}") from None
    region = session.region_name
    if not region:
        raise CredentialsError(
            "no AWS region: set `region:` in the config, or AWS_REGION in the environment"
            " (aws-actions/configure-aws-credentials sets it from its aws-region input)"
        )
    return Aws(session, region, endpoint.rstrip("/") if endpoint else None)


def has_credentials(aws: Aws) -> bool:
    """Whether the credential chain finds anything, without asking AWS whether it is valid."""
    try:
        return aws.session.get_credentials() is not None
    except BotoCoreError:
        return False


def check_credentials(aws: Aws) -> Identity:
    """sts:GetCallerIdentity, the first call of every mode: clear errors for missing or wrong
    credentials before anything else happens."""
    try:
        answer = aws.client("sts").get_caller_identity()
    except NoCredentialsError:
        raise CredentialsError(f"no AWS credentials found; {HOW_TO_CONFIGURE}") from None
    except ClientError as exc:
        code = _code(exc)
        if code in BAD_CREDENTIALS or code in ACCESS_DENIED:
            raise CredentialsError(
                f"AWS did not accept the credentials ({code}: {_message(exc)}); {HOW_TO_CONFIGURE}"
            ) from None
        raise _translate(exc, "checking the AWS credentials (sts:GetCallerIdentity)") from None
    except EndpointConnectionError as exc:
        if aws.endpoint_url is None and not _known_region(aws):
            raise AwsError(
                f"cannot reach AWS in the region '{aws.region}': it is not a region this botocore"
                " knows, and its endpoint does not answer; check `region:` in the config, the"
                " aws-region input or AWS_REGION (e.g. us-east-1)"
            ) from None
        raise AwsError(
            f"cannot reach AWS in the region {aws.region}: {exc}; check the network, the region,"
            " AWS_ENDPOINT_URL or --endpoint-url"
        ) from None
    except BotoCoreError as exc:
        raise CredentialsError(f"cannot use the AWS credentials: {exc}; {HOW_TO_CONFIGURE}") from None
    return Identity(str(answer["Account"]), str(answer["Arn"]))


def _known_region(aws: Aws) -> bool:
    """Whether botocore's endpoint data lists the region (in any partition). A region newer than
    the installed botocore may be missing: only used to explain an endpoint that does not answer."""
    try:
        session = aws.session
        return any(
            aws.region in session.get_available_regions(service, partition)
            for partition in session.get_available_partitions()
            for service in ("sts", "cloudformation")
        )
    except (BotoCoreError, AttributeError):
        return True  # unknown: say nothing about the region


# -- errors ---------------------------------------------------------------------------------------


def is_no_changes(reason: str | None) -> bool:
    """Whether CloudFormation's words say there was nothing to change: the one message match AWS
    forces on its users. Change sets fail with "The submitted information didn't contain changes.
    Submit different information to create a change set." (AWS and moto), UpdateStack with "No
    updates are to be performed."."""
    text = reason or ""
    return "didn't contain changes" in text or "No updates are to be performed" in text


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def _translate(exc: ClientError | BotoCoreError, action: str) -> AwsError:
    if isinstance(exc, BotoCoreError):
        return AwsError(f"{action}: {exc}")
    code = _code(exc)
    if code in BAD_CREDENTIALS:
        return CredentialsError(f"{action}: the credentials were refused ({code}); {HOW_TO_CONFIGURE}")
    if code in ACCESS_DENIED:
        return AwsError(
            f"{action}: access denied ({_message(exc)}); the deploying identity needs the permissions"
            " listed in the README (Deploying: the minimum IAM policy)"
        )
    return AwsError(f"{action}: {code}: {_message(exc)}")


@contextmanager
def _step(action: str) -> Iterator[None]:
    """Any AWS error inside becomes one `AwsError` naming the step, never a traceback."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, action) from None


# -- stacks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackInfo:
    name: str
    status: str
    outputs: Mapping[str, str]
    parameters: frozenset[str]  # names of the parameters the stack has values for
    tags: Mapping[str, str]
    last_updated: datetime | None


def describe_stack(aws: Aws, name: str) -> StackInfo | None:
    """The stack, or None when there is none. For a valid stack name (the config checked it),
    ValidationError is how DescribeStacks says "does not exist"."""
    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError":
            return None
        raise _translate(exc, f"reading the stack {name}") from None
    except BotoCoreError as exc:
        raise _translate(exc, f"reading the stack {name}") from None
    if not stacks:
        return None
    stack = stacks[0]
    return StackInfo(
        name=name,
        status=str(stack["StackStatus"]),
        outputs={str(o["OutputKey"]): str(o.get("OutputValue", "")) for o in stack.get("Outputs") or ()},
        parameters=frozenset(str(p["ParameterKey"]) for p in stack.get("Parameters") or ()),
        tags={str(t["Key"]): str(t["Value"]) for t in stack.get("Tags") or ()},
        last_updated=stack.get("LastUpdatedTime") or stack.get("CreationTime"),
    )


def check_ownership(aws: Aws, info: StackInfo, stack: str, kind: str) -> None:
    """Refuse to touch a stack this tool did not make: its template's Metadata carries the
    marker (or, failing that, the stack the tag names). Checked before any change."""
    with _step(f"reading the template of the stack {info.name}"):
        body = aws.client("cloudformation").get_template(StackName=info.name, TemplateStage="Original")[
            "TemplateBody"
        ]
    if isinstance(body, str):  # botocore decodes JSON bodies; a YAML body stays text
        try:
            body = json.loads(body)
        except ValueError:
            body = {}
    marker = (body.get("Metadata") or {}).get(tpl.METADATA_KEY) if isinstance(body, dict) else None
    if isinstance(marker, dict):
        if int(marker.get("format", 0)) > tpl.TEMPLATE_FORMAT:
            raise AwsError(
                f"the stack {info.name} was deployed by a newer datasette-lambda"
                f" ({marker.get('version')}); upgrade this tool before deploying it"
            )
        if marker.get("kind", kind) != kind:
            raise AwsError(
                f"the stack {info.name} was made by datasette-lambda as the {marker.get('kind')} stack,"
                f" not a {kind} stack; choose another `stack:` name"
            )
        return
    if info.tags.get(tpl.TAG_STACK) == stack:
        return
    raise AwsError(
        f"the stack {info.name} already exists and was not made by datasette-lambda (its template has no"
        f" '{tpl.METADATA_KEY}' Metadata); nothing was changed. Choose another `stack:` name in the"
        " config, or delete that stack if it is an old copy of this site"
    )


def _in_progress(status: str) -> bool:
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def wait_until_idle(aws: Aws, info: StackInfo, options: DeployOptions) -> StackInfo | None:
    """A stack busy with another operation (another deploy, a rollback): wait for it."""
    deadline = time.monotonic() + options.timeout
    current: StackInfo | None = info
    options.log(
        f"stack {info.name} is busy ({info.status}), probably another deploy; waiting up to"
        f" {options.timeout / 60:.0f} min for it to finish"
    )
    while current is not None and _in_progress(current.status):
        if time.monotonic() >= deadline:
            raise AwsError(
                f"the stack {info.name} is still {current.status} after {options.timeout:.0f} s; let the"
                " other operation finish (see the stack's events), then deploy again"
            )
        time.sleep(options.poll)
        current = describe_stack(aws, info.name)
    return current


def settle(
    aws: Aws, name: str, stack: str, kind: str, options: DeployOptions, *, repair: bool
) -> tuple[StackInfo | None, bool]:
    """The stack ready for a change set: None if it must be created. Waits for a busy stack;
    refuses one not made by this tool and one stuck in a state that needs a person. With
    `repair`, a stack left in ROLLBACK_COMPLETE by a failed first create is deleted (it serves
    nothing and cannot be updated). Returns the stack and whether it was deleted."""
    info = describe_stack(aws, name)
    if info is not None and _in_progress(info.status):
        info = wait_until_idle(aws, info, options)
    if info is None or info.status == "REVIEW_IN_PROGRESS":  # nothing was ever created in it
        return info, False
    check_ownership(aws, info, stack, kind)
    if info.status in STUCK:
        raise AwsError(f"the stack {name} is {info.status}: {STUCK[info.status].format(stack=name)}")
    if info.status == "ROLLBACK_COMPLETE" and repair:
        options.log(
            f"stack {name} is ROLLBACK_COMPLETE (its first create failed): deleting it to create it again"
        )
        delete_stack(aws, name, options)
        return None, True
    return info, False


def delete_stack(aws: Aws, name: str, options: DeployOptions) -> None:
    cf = aws.client("cloudformation")
    started = datetime.now(UTC)
    with _step(f"deleting the stack {name}"):
        cf.delete_stack(StackName=name)
    _wait(aws, "stack_delete_complete", name, started, options, what="deleting")


def _waiter_config(options: DeployOptions) -> dict[str, Any]:
    return {
        "Delay": options.poll,
        "MaxAttempts": max(1, math.ceil(options.timeout / max(options.poll, 0.01))),
    }


def _wait(aws: Aws, waiter: str, name: str, started: datetime, options: DeployOptions, *, what: str) -> None:
    try:
        aws.client("cloudformation").get_waiter(waiter).wait(
            StackName=name, WaiterConfig=_waiter_config(options)
        )
    except WaiterError as exc:
        status = _status_of(exc) or "unknown"
        failures = failed_events(aws, name, started)
        raise StackFailedError(_failure_message(name, what, status, failures, options.timeout)) from None
    except (ClientError, BotoCoreError) as exc:
        raise _translate(exc, f"waiting for the stack {name}") from None


def _status_of(exc: WaiterError) -> str | None:
    response = getattr(exc, "last_response", None) or {}
    stacks = response.get("Stacks") or []
    return str(stacks[0]["StackStatus"]) if stacks else None


def _failure_message(name: str, what: str, status: str, failures: Sequence[str], timeout: float) -> str:
    if status.endswith("_IN_PROGRESS"):
        head = f"{what} the stack {name} did not finish within {timeout:.0f} s (it is {status})"
    else:
        head = f"{what} the stack {name} failed: it is {status}"
    if status.startswith("UPDATE_ROLLBACK"):
        head += "; CloudFormation rolled the update back: the previous version is still serving"
    elif status.startswith("ROLLBACK") or status == "CREATE_FAILED":
        head += "; nothing is serving yet: the next deploy deletes this failed stack and creates it again"
    lines = [head]
    lines += [f"  {failure}" for failure in failures] or [
        "  (no resource reported a reason; see the stack's events)"
    ]
    return "\n".join(lines)


def failed_events(aws: Aws, name: str, since: datetime) -> list[str]:
    """The reasons of the resources that failed in this operation, oldest first:
    "Function (AWS::Lambda::Function) UPDATE_FAILED: <reason>"."""
    found = []
    earliest = since - timedelta(seconds=60)  # the local clock may run ahead of AWS's
    try:
        pages = aws.client("cloudformation").get_paginator("describe_stack_events").paginate(StackName=name)
        for page in pages:
            done = False
            for event in page["StackEvents"]:
                if event["Timestamp"] < earliest:
                    done = True
                    break
                status = str(event.get("ResourceStatus", ""))
                reason = event.get("ResourceStatusReason")
                if status.endswith("_FAILED") and reason and event.get("LogicalResourceId") != name:
                    found.append(
                        f"{event['LogicalResourceId']} ({event.get('ResourceType')}) {status}: {reason}"
                    )
                if event.get("LogicalResourceId") == name and status in OPERATION_STARTS:
                    done = True  # the stack's own first event of this operation: older ones are not ours
                    break
            if done:
                break
    except (ClientError, BotoCoreError) as exc:
        return [f"(the stack's events could not be read: {_translate(exc, 'reading events')})"]
    return list(reversed(found))


# -- change sets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackRequest:
    name: str
    template_url: str | None  # one of the two
    template_body: str | None
    parameters: tuple[Mapping[str, Any], ...]  # CloudFormation's Parameter shape
    tags: Mapping[str, str]
    capabilities: tuple[str, ...] = tpl.CAPABILITIES


def _run_part(options: DeployOptions, limit: int) -> str:
    """GitHub's run id and attempt (or options.run_id), as letters, digits and hyphens."""
    run = options.run_id
    if run is None and os.environ.get("GITHUB_RUN_ID"):
        run = f"{os.environ['GITHUB_RUN_ID']}-{os.environ.get('GITHUB_RUN_ATTEMPT', '1')}"
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in run or "")[:limit]


def change_set_name(options: DeployOptions, purpose: str) -> str:
    """Unique per run and valid ([a-zA-Z][-a-zA-Z0-9]*, at most 128): GitHub's run id and attempt
    when there are some, and a random part so two steps of one run never collide."""
    parts = ["datasette-lambda", purpose, _run_part(options, 60), uuid.uuid4().hex[:8]]
    return "-".join(p for p in parts if p)


def deployment_id(options: DeployOptions) -> str:
    """A fresh DeploymentId value (at most 64 of [A-Za-z0-9-]): the run, and a random part."""
    return "-".join(p for p in (_run_part(options, 40), uuid.uuid4().hex[:12]) if p)


def create_change_set(
    aws: Aws, request: StackRequest, kind: str, name: str, options: DeployOptions
) -> ChangeSet:
    """Create the change set and wait for it. Empty (nothing to do): it is deleted and the
    result has no changes. Rejected: it is deleted and the reason raised."""
    cf = aws.client("cloudformation")
    arguments: dict[str, Any] = {
        "StackName": request.name,
        "ChangeSetName": name,
        "ChangeSetType": kind,
        "Parameters": [dict(p) for p in request.parameters],
        "Capabilities": list(request.capabilities),
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(request.tags.items())],
        "Description": "datasette-lambda",
    }
    if request.template_url:
        arguments["TemplateURL"] = request.template_url
    else:
        arguments["TemplateBody"] = request.template_body
    try:
        cf.create_change_set(**arguments)
    except ClientError as exc:
        if _code(exc) == "ValidationError" and is_no_changes(_message(exc)):  # moto, for inline bodies
            return ChangeSet(request.name, name, kind, ())
        raise _translate(exc, f"creating a change set for the stack {request.name}") from None
    except BotoCoreError as exc:
        raise _translate(exc, f"creating a change set for the stack {request.name}") from None
    try:
        cf.get_waiter("change_set_create_complete").wait(
            StackName=request.name, ChangeSetName=name, WaiterConfig=_waiter_config(options)
        )
    except WaiterError as exc:
        response = getattr(exc, "last_response", None) or {}
        reason = str(response.get("StatusReason") or response.get("Error", {}).get("Message") or exc)
        delete_change_set(aws, request.name, name, options)
        if is_no_changes(reason):
            return ChangeSet(request.name, name, kind, ())
        raise AwsError(
            f"CloudFormation rejected the change set for the stack {request.name}: {reason}"
        ) from None
    return ChangeSet(request.name, name, kind, describe_change_set(aws, request.name, name))


def describe_change_set(aws: Aws, stack: str, name: str) -> tuple[ResourceChange, ...]:
    changes = []
    with _step(f"describing the change set {name}"):
        pages = aws.client("cloudformation").get_paginator("describe_change_set")
        for page in pages.paginate(StackName=stack, ChangeSetName=name):
            for change in page.get("Changes") or ():
                resource = change.get("ResourceChange") or {}
                changes.append(
                    ResourceChange(
                        action=str(resource.get("Action", "")),
                        logical_id=str(resource.get("LogicalResourceId", "")),
                        resource_type=str(resource.get("ResourceType", "")),
                        replacement=resource.get("Replacement"),
                    )
                )
    return tuple(changes)


def delete_change_set(aws: Aws, stack: str, name: str, options: DeployOptions) -> None:
    """Delete a change set, and say so when that fails (never silently)."""
    try:
        aws.client("cloudformation").delete_change_set(StackName=stack, ChangeSetName=name)
    except (ClientError, BotoCoreError) as exc:
        options.log(f"Warning: could not delete the change set {name} of {stack}: {exc}")


def execute_change_set(aws: Aws, change_set: ChangeSet, options: DeployOptions) -> None:
    started = datetime.now(UTC)
    with _step(f"executing the change set {change_set.name}"):
        aws.client("cloudformation").execute_change_set(
            StackName=change_set.stack, ChangeSetName=change_set.name
        )
    waiter = "stack_create_complete" if change_set.kind == "CREATE" else "stack_update_complete"
    what = "creating" if change_set.kind == "CREATE" else "updating"
    options.log(f"{what} the stack {change_set.stack} ({len(change_set.changes)} resource change(s))")
    _wait(aws, waiter, change_set.stack, started, options, what=what.capitalize())


def apply(
    aws: Aws, request: StackRequest, info: StackInfo | None, options: DeployOptions, purpose: str
) -> ChangeSet:
    """change set -> wait -> describe -> execute -> wait. An empty change set is a success."""
    kind = "UPDATE" if info is not None and info.status != "REVIEW_IN_PROGRESS" else "CREATE"
    change_set = create_change_set(aws, request, kind, change_set_name(options, purpose), options)
    if change_set.empty:
        options.log(f"stack {request.name}: no changes")
        return change_set
    for change in change_set.changes:
        options.log(f"  {change.action:<7} {change.logical_id} ({change.resource_type}){_replacing(change)}")
    execute_change_set(aws, change_set, options)
    return change_set


def _replacing(change: ResourceChange) -> str:
    return {"True": ", replaced", "Conditional": ", may be replaced"}.get(change.replacement or "", "")


# -- the artifacts bucket ------------------------------------------------------------------------


def artifacts_bucket(
    aws: Aws, config: Config, identity: Identity, options: DeployOptions, *, create: bool
) -> tuple[str | None, bool]:
    """deploy.bucket, checked; or the bootstrap stack's bucket, created (or updated) when
    `create`. Returns the bucket (None: no bootstrap stack yet and not `create`) and whether the
    bootstrap stack changed."""
    if config.deploy.bucket:
        check_own_bucket(aws, config.deploy.bucket, identity)
        return config.deploy.bucket, False
    name = tpl.bootstrap_stack_name(config.stack)
    info, _ = settle(aws, name, config.stack, "artifacts", options, repair=create)
    if not create:
        bucket = info.outputs.get(tpl.O_BUCKET_NAME) if info is not None else None
        return bucket, False
    request = StackRequest(
        name=name,
        template_url=None,  # the bucket does not exist yet: the small template goes inline
        template_body=tpl.to_json(tpl.bootstrap_template(config)),
        parameters=(),
        tags=stack_tags(config),
    )
    change_set = apply(aws, request, info, options, "bootstrap")
    final = describe_stack(aws, name)
    bucket = final.outputs.get(tpl.O_BUCKET_NAME) if final else None
    if not bucket:
        raise AwsError(f"the stack {name} has no {tpl.O_BUCKET_NAME} output; delete it and deploy again")
    return bucket, not change_set.empty


def check_own_bucket(aws: Aws, bucket: str, identity: Identity) -> None:
    """deploy.bucket must exist and belong to the deploying account."""
    try:
        aws.client("s3").head_bucket(Bucket=bucket, ExpectedBucketOwner=identity.account)
    except ClientError as exc:
        code = _code(exc)
        if code in NOT_FOUND:
            raise AwsError(
                f"deploy.bucket '{bucket}' does not exist; create it (aws s3 mb s3://{bucket} --region"
                f" {aws.region}), or remove deploy.bucket to let this tool create a bucket in the stack"
                " <stack>-artifacts"
            ) from None
        if code in ACCESS_DENIED:
            raise AwsError(
                f"deploy.bucket '{bucket}' exists but does not belong to account {identity.account}"
                " (BucketAlreadyExists: S3 bucket names are shared by all AWS accounts), or these"
                " credentials may not use it; choose another name, or remove deploy.bucket to let"
                " this tool create one"
            ) from None
        if code in {"301", "PermanentRedirect"}:
            raise AwsError(
                f"deploy.bucket '{bucket}' is in another region than {aws.region}; Lambda reads code only"
                " from a bucket in its own region: use a bucket in that region"
            ) from None
        raise _translate(exc, f"checking deploy.bucket '{bucket}'") from None
    except BotoCoreError as exc:
        raise _translate(exc, f"checking deploy.bucket '{bucket}'") from None


def stack_tags(config: Config) -> dict[str, str]:
    """Stack-level tags: deploy.tags and the one that names the site (CloudFormation passes stack
    tags on to the resources that take tags)."""
    return {**config.deploy.tags, tpl.TAG_STACK: config.stack}


# -- uploads --------------------------------------------------------------------------------------


def object_exists(aws: Aws, bucket: str, key: str) -> bool:
    """HeadObject: a missing key is 404 only with s3:ListBucket permission (else 403)."""
    try:
        aws.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in NOT_FOUND:
            return False
        raise _translate(exc, f"looking for s3://{bucket}/{key}") from None
    except BotoCoreError as exc:
        raise _translate(exc, f"looking for s3://{bucket}/{key}") from None
    return True


def upload(
    aws: Aws, bucket: str, role: str, key: str, sha256: str, source: Path | bytes, options: DeployOptions
) -> Upload:
    """Put `source` at `key` unless an object is there already: keys are named by content."""
    size = len(source) if isinstance(source, bytes) else source.stat().st_size
    if object_exists(aws, bucket, key):
        return Upload(role, key, sha256, size, uploaded=False)
    options.log(f"uploading {role} ({size:,} bytes) to s3://{bucket}/{key}")
    extra = {"Metadata": {"sha256": sha256}, "ContentType": _content_type(key)}
    s3 = aws.client("s3")
    with _step(f"uploading {role} to s3://{bucket}/{key}"):
        if isinstance(source, bytes):
            s3.put_object(Bucket=bucket, Key=key, Body=source, **extra)
        else:
            s3.upload_file(str(source), bucket, key, ExtraArgs=extra)
    return Upload(role, key, sha256, size, uploaded=True)


def _content_type(key: str) -> str:
    if key.endswith(".zip"):
        return "application/zip"
    if key.endswith(".json"):
        return "application/json"
    return "application/octet-stream"


def planned_uploads(result: PackageResult, template: Template) -> list[tuple[str, str, str, Path | bytes]]:
    """(role, key, sha256, source) of every object a deploy needs in the bucket."""
    keys = tpl.artifact_keys(result)
    wanted: list[tuple[str, str, str, Path | bytes]] = [
        ("layer", keys.layer, result.layer.sha256, result.layer.zip_path),
        ("function", keys.function, result.function.sha256, result.function.zip_path),
    ]
    for database in result.databases:
        if database.location == "s3" and database.s3_key:
            wanted.append((f"database {database.name}", database.s3_key, database.sha256, database.path))
    wanted.append(template_object(template))
    return wanted


def template_object(template: Template) -> tuple[str, str, str, bytes]:
    """The rendered template as an object named by its sha256: templates/<sha256>.json."""
    body = template.to_json().encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    return "template", f"{TEMPLATES_PREFIX}{digest}.json", digest, body


def template_url(aws: Aws, bucket: str, key: str) -> str:
    """The S3 URL CloudFormation reads the template from. A custom endpoint gets a path-style
    URL on it; AWS a virtual-hosted one (path-style when the bucket name has dots)."""
    if aws.endpoint_url:
        parts = urlsplit(aws.endpoint_url)
        if parts.hostname and parts.hostname.startswith("127."):
            # moto's CloudFormation reads a path-style URL only when its host says "localhost"
            # (an IP is taken for a virtual-hosted bucket name); both are the same loopback server.
            parts = parts._replace(netloc=f"localhost:{parts.port}" if parts.port else "localhost")
        return f"{urlunsplit(parts).rstrip('/')}/{bucket}/{quote(key)}"
    suffix = "amazonaws.com.cn" if aws.region.startswith("cn-") else "amazonaws.com"
    if "." in bucket:
        return f"https://s3.{aws.region}.{suffix}/{bucket}/{quote(key)}"
    return f"https://{bucket}.s3.{aws.region}.{suffix}/{quote(key)}"


# -- parameters -----------------------------------------------------------------------------------


def stack_parameters(
    template: Template,
    bucket: str,
    existing: StackInfo | None,
    options: DeployOptions,
    environ: Mapping[str, str] | None = None,
) -> tuple[Mapping[str, Any], ...]:
    """The template's values, the bucket, and the secrets read from the deployer's environment.

    An unset (or empty) secret keeps the stack's previous value (UsePreviousValue) when the stack
    has one; DATASETTE_SECRET is otherwise generated once, at create time, and kept from then on
    (signed cookies and tokens stay valid across deploys); any other is an error.
    """
    env = {**os.environ, **options.secret_values} if environ is None else environ
    values = {**template.parameters}
    values.setdefault(tpl.P_BUCKET, bucket)
    parameters: list[Mapping[str, Any]] = [
        {"ParameterKey": key, "ParameterValue": value} for key, value in sorted(values.items())
    ]
    has_previous = (
        existing.parameters if existing and existing.status != "REVIEW_IN_PROGRESS" else frozenset()
    )
    # DeploymentId: new on a forced deploy and on a create; otherwise kept, so nothing changes.
    if tpl.P_DEPLOYMENT_ID in (template.body.get("Parameters") or {}):
        if options.force or tpl.P_DEPLOYMENT_ID not in has_previous:
            parameters.append({"ParameterKey": tpl.P_DEPLOYMENT_ID, "ParameterValue": deployment_id(options)})
        else:
            parameters.append({"ParameterKey": tpl.P_DEPLOYMENT_ID, "UsePreviousValue": True})
    for parameter, variable in sorted(template.secret_parameters.items()):
        value = env.get(variable)
        if value:
            parameters.append({"ParameterKey": parameter, "ParameterValue": value})
        elif parameter in has_previous:
            parameters.append({"ParameterKey": parameter, "UsePreviousValue": True})
        elif variable == ENV_SECRET:
            options.log(
                f"{ENV_SECRET} is not set: generated one for this new stack; it is kept (NoEcho) in the"
                " stack's parameters and reused by later deploys"
            )
            parameters.append({"ParameterKey": parameter, "ParameterValue": secrets.token_hex(32)})
        else:
            raise AwsError(
                f"the secret {variable} (deploy.secrets) is not set in the environment and the stack has no"
                f" previous value for it; set it before deploying (in GitHub Actions: env: {variable}:"
                f" ${{{{ secrets.{variable} }}}})"
            )
    return tuple(parameters)


# -- deployed state -------------------------------------------------------------------------------


def read_state(aws: Aws, bucket: str, stack: str, options: DeployOptions) -> DeployedState | None:
    try:
        body = aws.client("s3").get_object(Bucket=bucket, Key=state_key(stack))["Body"].read()
    except ClientError as exc:
        if _code(exc) in NOT_FOUND:
            return None
        raise _translate(exc, f"reading s3://{bucket}/{state_key(stack)}") from None
    except BotoCoreError as exc:
        raise _translate(exc, f"reading s3://{bucket}/{state_key(stack)}") from None
    try:
        return state_from_json(body.decode("utf-8"))
    except (StateFormatError, UnicodeDecodeError) as exc:
        options.log(f"Warning: s3://{bucket}/{state_key(stack)} cannot be read ({exc}); ignoring it")
        return None


def write_state(
    aws: Aws, bucket: str, state: DeployedState, previous: DeployedState | None, options: DeployOptions
) -> None:
    """Written only when it differs: a deploy with nothing new writes nothing."""
    if previous is not None and previous.to_json() == state.to_json():
        return
    with _step(f"writing s3://{bucket}/{state_key(state.stack)}"):
        aws.client("s3").put_object(
            Bucket=bucket,
            Key=state_key(state.stack),
            Body=state.to_json().encode("utf-8"),
            ContentType="application/json",
        )


# -- health check ---------------------------------------------------------------------------------


def health_check(url: str, *, attempts: int = 3, delay: float = 3.0, timeout: float = 30.0) -> HealthCheck:
    """GET the site; a new function URL can take a few seconds to answer, so a failure is tried
    again. Reports the last try."""
    result = HealthCheck(url, None, 0.0, "not tried")
    for attempt in range(attempts):
        if attempt:
            time.sleep(delay)
        started = time.perf_counter()
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "datasette-lambda health check"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                status: int | None = int(response.status)
                error = None
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError) as exc:
            status, error = None, str(getattr(exc, "reason", exc))
        result = HealthCheck(url, status, time.perf_counter() - started, error)
        if result.ok:
            break
    return result


# -- the three modes ------------------------------------------------------------------------------


def deploy(
    config: Config,
    result: PackageResult,
    template: Template,
    options: DeployOptions = DeployOptions(),
    aws: Aws | None = None,
) -> DeployResult:
    started = time.perf_counter()
    aws = aws or aws_session(config, options.endpoint_url)
    identity = check_credentials(aws)
    log = options.log
    log(f"deploying {config.stack} to account {identity.account}, {aws.region}")
    if options.force:
        log(f"forced: a new {tpl.P_DEPLOYMENT_ID} updates the function even if nothing else changed")
    _check_template_size(template)
    # Ours, idle, repairable? Checked before anything is created or uploaded.
    info, recreated = settle(aws, config.stack, config.stack, "site", options, repair=True)
    bucket, bootstrap_changed = artifacts_bucket(aws, config, identity, options, create=True)
    assert bucket is not None
    uploads = tuple(
        upload(aws, bucket, role, key, digest, source, options)
        for role, key, digest, source in planned_uploads(result, template)
    )
    sent = sum(u.bytes_uploaded for u in uploads)
    log(f"uploads: {sent:,} bytes sent, {sum(not u.uploaded for u in uploads)} object(s) already there")
    previous_state = read_state(aws, bucket, config.stack, options)
    request = StackRequest(
        name=config.stack,
        template_url=template_url(aws, bucket, template_object(template)[1]),
        template_body=None,
        parameters=stack_parameters(template, bucket, info, options),
        tags=stack_tags(config),
    )
    change_set = apply(aws, request, info, options, "deploy")
    final = describe_stack(aws, config.stack)
    outputs = dict(final.outputs) if final else {}
    keys = tuple(sorted({*(previous_state.keys if previous_state else ()), *(u.key for u in uploads)}))
    write_state(aws, bucket, state_from_package(config.stack, result, keys), previous_state, options)
    url = outputs.get(tpl.O_SITE_URL)
    health = None
    if url and options.health_check and config.deploy.health_check:
        health = health_check(url)
    return DeployResult(
        stack=config.stack,
        region=aws.region,
        account=identity.account,
        url=url,
        function_name=outputs.get(tpl.O_FUNCTION_NAME),
        bucket=bucket,
        changed=not change_set.empty,
        recreated=recreated,
        artifacts=uploads,
        change_set=change_set,
        bootstrap_changed=bootstrap_changed,
        health=health,
        outputs=outputs,
        seconds=time.perf_counter() - started,
    )


def _check_template_size(template: Template) -> None:
    size = len(template.to_json().encode("utf-8"))
    if size > tpl.TEMPLATE_URL_LIMIT:
        raise AwsError(
            f"the template is {size:,} bytes; CloudFormation reads at most {tpl.TEMPLATE_URL_LIMIT:,}"
            " from S3; publish fewer databases or static mounts per site"
        )


def plan(
    config: Config,
    result: PackageResult,
    template: Template,
    options: DeployOptions = DeployOptions(),
    aws: Aws | None = None,
) -> PlanResult:
    """What `deploy` would do, without doing it: a change set that is described and deleted,
    and which artifacts are already in the bucket. No credentials: offline, says why."""
    started = time.perf_counter()
    planned_state = state_from_package(config.stack, result)
    wanted = planned_uploads(result, template)

    def offline(reason: str, region: str | None) -> PlanResult:
        return PlanResult(
            stack=config.stack,
            online=False,
            note=reason,
            region=region,
            account=None,
            stack_status=None,
            changes=(),
            changes_from="unknown",
            artifacts=_planned(wanted, {}),
            deployed=None,
            planned=planned_state,
            seconds=time.perf_counter() - started,
        )

    try:
        aws = aws or aws_session(config, options.endpoint_url)
    except CredentialsError as error:
        return offline(f"offline: {error.message}", config.region)
    if not has_credentials(aws):
        return offline(
            "offline: no AWS credentials (a pull request from a fork gets none); the stack and the"
            " deployed version were not compared",
            aws.region,
        )
    identity = check_credentials(aws)
    _check_template_size(template)
    info, _ = settle(aws, config.stack, config.stack, "site", options, repair=False)
    bucket, _ = artifacts_bucket(aws, config, identity, options, create=False)
    in_bucket = {key: object_exists(aws, bucket, key) for _, key, _, _ in wanted} if bucket else {}
    deployed = read_state(aws, bucket, config.stack, options) if bucket else None
    if info is None or info.status == "REVIEW_IN_PROGRESS" or bucket is None:
        note = f"the stack {config.stack} does not exist yet: deploy creates everything"
        changes, source = _all_added(template), "template"
    elif info.status == "ROLLBACK_COMPLETE":
        note = (
            f"the stack {config.stack} is ROLLBACK_COMPLETE (a failed first create): deploy deletes it"
            " and creates everything again"
        )
        changes, source = _all_added(template), "template"
    else:
        note = f"the stack {config.stack} is {info.status}"
        changes, source = _planned_changes(aws, config, template, bucket, info, options), "change set"
    return PlanResult(
        stack=config.stack,
        online=True,
        note=note,
        region=aws.region,
        account=identity.account,
        stack_status=info.status if info else None,
        changes=changes,
        changes_from=source,
        artifacts=_planned(wanted, in_bucket),
        deployed=deployed,
        planned=planned_state,
        seconds=time.perf_counter() - started,
    )


def _planned_changes(
    aws: Aws, config: Config, template: Template, bucket: str, info: StackInfo, options: DeployOptions
) -> tuple[ResourceChange, ...]:
    """A change set for the update, described, then deleted: the live stack is not touched. The
    template goes inline when it fits (51,200 bytes), so nothing is uploaded."""
    body = template.to_json()
    url = None
    if len(body.encode("utf-8")) > tpl.TEMPLATE_BODY_INLINE_LIMIT:
        role, key, digest, source = template_object(template)
        upload(aws, bucket, role, key, digest, source, options)
        url = template_url(aws, bucket, key)
    request = StackRequest(
        name=config.stack,
        template_url=url,
        template_body=None if url else body,
        parameters=stack_parameters(template, bucket, info, options),
        tags=stack_tags(config),
    )
    change_set = create_change_set(aws, request, "UPDATE", change_set_name(options, "plan"), options)
    if not change_set.empty:
        delete_change_set(aws, config.stack, change_set.name, options)
    return change_set.changes


def _all_added(template: Template) -> tuple[ResourceChange, ...]:
    resources = template.body.get("Resources") or {}
    return tuple(
        ResourceChange("Add", logical_id, str(resource.get("Type", "")), None)
        for logical_id, resource in sorted(resources.items())
    )


def _planned(
    wanted: Sequence[tuple[str, str, str, Path | bytes]], in_bucket: Mapping[str, bool]
) -> tuple[PlannedArtifact, ...]:
    return tuple(
        PlannedArtifact(
            role,
            key,
            digest,
            len(source) if isinstance(source, bytes) else source.stat().st_size,
            in_bucket.get(key),
        )
        for role, key, digest, source in wanted
    )


def destroy(
    config: Config, options: DeployOptions = DeployOptions(), aws: Aws | None = None
) -> DestroyResult:
    """Delete the site: the main stack, then the objects this tool wrote to the bucket, then the
    bootstrap stack if this tool made it (its bucket emptied first)."""
    started = time.perf_counter()
    aws = aws or aws_session(config, options.endpoint_url)
    identity = check_credentials(aws)
    info = describe_stack(aws, config.stack)
    if info is not None and _in_progress(info.status):
        info = wait_until_idle(aws, info, options)
    if info is not None and info.status != "REVIEW_IN_PROGRESS":
        check_ownership(aws, info, config.stack, "site")
    bootstrap_name = tpl.bootstrap_stack_name(config.stack)
    bootstrap = None if config.deploy.bucket else describe_stack(aws, bootstrap_name)
    if bootstrap is not None:
        check_ownership(aws, bootstrap, config.stack, "artifacts")
    if info is not None:
        options.log(f"deleting the stack {config.stack}")
        delete_stack(aws, config.stack, options)
    bucket: str | None = config.deploy.bucket
    deleted = 0
    if bucket:
        check_own_bucket(aws, bucket, identity)
        deleted = _delete_own_objects(aws, bucket, config.stack, options)
    elif bootstrap is not None:
        bucket = bootstrap.outputs.get(tpl.O_BUCKET_NAME)
        if bucket:
            deleted = _empty_bucket(aws, bucket, options)
        options.log(f"deleting the stack {bootstrap_name}")
        delete_stack(aws, bootstrap_name, options)
    return DestroyResult(
        stack=config.stack,
        region=aws.region,
        stack_deleted=info is not None,
        bucket=bucket,
        objects_deleted=deleted,
        bootstrap_deleted=bootstrap is not None,
        seconds=time.perf_counter() - started,
    )


def _delete_own_objects(aws: Aws, bucket: str, stack: str, options: DeployOptions) -> int:
    """In a bucket of the user's own: the keys this stack's deploys recorded, less those another
    site's state also lists (content-addressed keys can be shared), and the state file itself."""
    state = read_state(aws, bucket, stack, options)
    mine = set(state.keys if state else ())
    with _step(f"listing s3://{bucket}/{STATE_PREFIX}"):
        pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=STATE_PREFIX)
        others = [
            o["Key"] for page in pages for o in page.get("Contents") or () if o["Key"] != state_key(stack)
        ]
    for key in others:
        other = read_state(aws, bucket, key[len(STATE_PREFIX) : -len(".json")], options)
        if other is not None:
            mine -= set(other.keys)
    return _delete_keys(aws, bucket, [*sorted(mine), state_key(stack)] if state else [], options)


def _empty_bucket(aws: Aws, bucket: str, options: DeployOptions) -> int:
    """Every object (and object version) in the bootstrap bucket: CloudFormation cannot delete a
    bucket that is not empty."""
    s3 = aws.client("s3")
    keys: list[tuple[str, str | None]] = []
    with _step(f"listing s3://{bucket}"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for item in [*(page.get("Versions") or ()), *(page.get("DeleteMarkers") or ())]:
                keys.append((item["Key"], item.get("VersionId")))
    return _delete_versions(aws, bucket, keys, options)


def _delete_keys(aws: Aws, bucket: str, keys: Sequence[str], options: DeployOptions) -> int:
    return _delete_versions(aws, bucket, [(key, None) for key in keys], options)


def _delete_versions(
    aws: Aws, bucket: str, keys: Sequence[tuple[str, str | None]], options: DeployOptions
) -> int:
    s3 = aws.client("s3")
    deleted = 0
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = [
            {"Key": key, **({"VersionId": version} if version and version != "null" else {})}
            for key, version in keys[start : start + 1000]
        ]
        with _step(f"deleting objects in s3://{bucket}"):
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        errors = answer.get("Errors") or []
        for error in errors:
            options.log(f"Warning: could not delete s3://{bucket}/{error.get('Key')}: {error.get('Message')}")
        deleted += len(batch) - len(errors)
    if deleted:
        options.log(f"deleted {deleted} object(s) from s3://{bucket}")
    return deleted
