"""Stack states: describe a stack, check it is ours, wait for a busy one, settle one that needs
repair (or a person), delete one, and wait for an operation, with the failing resources' reasons."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError  # type: ignore[import-untyped]

from datasette_action import template as tpl
from datasette_action.deploy.data import DeployOptions
from datasette_action.deploy.session import Aws, error_code, step, translate
from datasette_action.errors import AwsError, StackFailedError

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


@dataclass(frozen=True)
class StackInfo:
    name: str
    status: str
    outputs: Mapping[str, str]
    parameters: frozenset[str]  # names of the parameters the stack has values for
    tags: Mapping[str, str]
    last_updated: datetime | None
    # the parameters' values as DescribeStacks gives them (AWS shows a NoEcho value as ****)
    values: Mapping[str, str] = field(default_factory=dict)


def describe_stack(aws: Aws, name: str) -> StackInfo | None:
    """The stack, or None when there is none. For a valid stack name (the config checked it),
    ValidationError is how DescribeStacks says "does not exist"."""
    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if error_code(exc) == "ValidationError":
            return None
        raise translate(exc, f"reading the stack {name}") from None
    except BotoCoreError as exc:
        raise translate(exc, f"reading the stack {name}") from None
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
        values={
            str(p["ParameterKey"]): str(p.get("ParameterValue", "")) for p in stack.get("Parameters") or ()
        },
    )


def check_ownership(aws: Aws, info: StackInfo, stack: str, kind: str) -> None:
    """Refuse to touch a stack this tool did not make: it is ours only when its template's
    Metadata carries the marker AND its `datasette-lambda:stack` tag names `stack`; a stack with
    one of the two is refused, untouched. Checked before any change."""
    body = deployed_template(aws, info.name)
    marker = (body.get("Metadata") or {}).get(tpl.METADATA_KEY)
    tagged = info.tags.get(tpl.TAG_STACK) == stack
    if not isinstance(marker, dict) and not tagged:
        raise AwsError(
            f"the stack {info.name} already exists and was not made by datasette-lambda (its template has no"
            f" '{tpl.METADATA_KEY}' Metadata); nothing was changed. Choose another `stack:` name in the"
            " config, or delete that stack if it is an old copy of this site"
        )
    if not isinstance(marker, dict) or not tagged:
        missing = (
            f"its template has no '{tpl.METADATA_KEY}' Metadata"
            if tagged
            else f"its tag {tpl.TAG_STACK} is {info.tags.get(tpl.TAG_STACK)!r}, not {stack!r}"
        )
        raise AwsError(
            f"the stack {info.name} is not recognised as this site's: {missing}; nothing was changed."
            " A datasette-lambda stack has both; choose another `stack:` name, or delete that stack"
            " if it is an old copy of this site"
        )
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


def deployed_template(aws: Aws, name: str) -> dict[str, Any]:
    """The stack's current template as plain data ({} for one that is not JSON)."""
    with step(f"reading the template of the stack {name}"):
        body = aws.client("cloudformation").get_template(StackName=name, TemplateStage="Original")[
            "TemplateBody"
        ]
    if isinstance(body, str):  # botocore decodes JSON bodies; a YAML body stays text
        try:
            body = json.loads(body)
        except ValueError:
            body = {}
    return body if isinstance(body, dict) else {}


# A resource in these states is not (or no longer) held by its stack
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackResourceDetail.html):
# a failed first create leaves its resources DELETE_COMPLETE or CREATE_FAILED, a retained one is
# DELETE_SKIPPED, an import rolled back leaves the resource outside the stack.
RESOURCE_NOT_HELD = {
    "CREATE_FAILED",
    "DELETE_COMPLETE",
    "DELETE_SKIPPED",
    "IMPORT_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
}


def holds_resource(aws: Aws, stack: str, logical_id: str, physical_id: str) -> bool:
    """Whether the stack holds `physical_id` as its resource `logical_id`
    (cloudformation:DescribeStackResource). A stack without that resource does not."""
    try:
        detail = aws.client("cloudformation").describe_stack_resource(
            StackName=stack, LogicalResourceId=logical_id
        )["StackResourceDetail"]
    except ClientError as exc:
        if error_code(exc) == "ValidationError":  # no such stack, or no such resource in it
            return False
        raise translate(exc, f"reading the resource {logical_id} of the stack {stack}") from None
    except BotoCoreError as exc:
        raise translate(exc, f"reading the resource {logical_id} of the stack {stack}") from None
    return (
        detail.get("PhysicalResourceId") == physical_id
        and detail.get("ResourceStatus") not in RESOURCE_NOT_HELD
    )


def in_progress(status: str) -> bool:
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def busy_error(name: str, status: str) -> AwsError:
    """A stack another operation holds: CloudFormation refuses CreateChangeSet on it (ValidationError
    "Stack:<id> is in UPDATE_IN_PROGRESS state and can not be updated.") and ExecuteChangeSet
    (InvalidChangeSetStatus: "the stack status might be UPDATE_IN_PROGRESS",
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ExecuteChangeSet.html)."""
    return AwsError(
        f"the stack {name} is {status}: another deploy is running; wait for it and run again"
        " (this deploy changed nothing)"
    )


def wait_until_idle(aws: Aws, info: StackInfo, options: DeployOptions) -> StackInfo | None:
    """A stack busy with another operation (another deploy, a rollback): wait for it."""
    deadline = time.monotonic() + options.timeout
    current: StackInfo | None = info
    options.log(
        f"stack {info.name} is busy ({info.status}), probably another deploy; waiting up to"
        f" {options.timeout / 60:.0f} min for it to finish"
    )
    while current is not None and in_progress(current.status):
        if time.monotonic() >= deadline:
            raise AwsError(
                f"the stack {info.name} is still {current.status} after {options.timeout:.0f} s: another"
                " deploy is running (or another operation: see the stack's events); wait for it and run"
                " again"
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
    if info is not None and in_progress(info.status):
        info = wait_until_idle(aws, info, options)
    if info is None or info.status == "REVIEW_IN_PROGRESS":  # nothing was ever created in it
        return info, False
    check_ownership(aws, info, stack, kind)
    if info.status in STUCK:
        raise AwsError(f"the stack {name} is {info.status}: {STUCK[info.status].format(stack=name)}")
    return repair_failed_create(aws, info, options) if repair else (info, False)


def repair_failed_create(
    aws: Aws, info: StackInfo | None, options: DeployOptions
) -> tuple[StackInfo | None, bool]:
    """A stack `settle`d without repair, made ready for a change set: one left in
    ROLLBACK_COMPLETE by a failed first create is deleted (None: create it). Returns the stack and
    whether it was deleted."""
    if info is None or info.status != "ROLLBACK_COMPLETE":
        return info, False
    options.log(
        f"stack {info.name} is ROLLBACK_COMPLETE (its first create failed): deleting it to create it again"
    )
    delete_stack(aws, info.name, options)
    return None, True


def delete_stack(aws: Aws, name: str, options: DeployOptions) -> None:
    cf = aws.client("cloudformation")
    started = datetime.now(UTC)
    with step(f"deleting the stack {name}"):
        cf.delete_stack(StackName=name)
    wait_for_stack(aws, "stack_delete_complete", name, started, options, what="deleting")


def waiter_config(options: DeployOptions) -> dict[str, Any]:
    return {
        "Delay": options.poll,
        "MaxAttempts": max(1, math.ceil(options.timeout / max(options.poll, 0.01))),
    }


def wait_for_stack(
    aws: Aws, waiter: str, name: str, started: datetime, options: DeployOptions, *, what: str
) -> None:
    try:
        aws.client("cloudformation").get_waiter(waiter).wait(
            StackName=name, WaiterConfig=waiter_config(options)
        )
    except WaiterError as exc:
        status = _status_of(exc) or "unknown"
        failures = failed_events(aws, name, started)
        raise StackFailedError(_failure_message(name, what, status, failures, options.timeout)) from None
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, f"waiting for the stack {name}") from None


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
        return [f"(the stack's events could not be read: {translate(exc, 'reading events')})"]
    return list(reversed(found))
