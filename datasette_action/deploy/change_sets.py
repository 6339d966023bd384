"""Change sets: what a stack is asked for (`StackRequest`, its parameters and tags), unique
names, create -> wait -> describe -> execute -> wait (`apply`), deleting one, and checking that
what a deploy asked for is what the stack holds after it (`check_live`: two deploys at once)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError  # type: ignore[import-untyped]

from datasette_action import template as tpl
from datasette_action.config import Config
from datasette_action.deploy.data import ChangeSet, DeployOptions, ResourceChange
from datasette_action.deploy.session import Aws, error_code, error_message, is_no_changes, step, translate
from datasette_action.deploy.stacks import (
    StackInfo,
    busy_error,
    describe_stack,
    in_progress,
    wait_for_stack,
    waiter_config,
)
from datasette_action.errors import AwsError
from datasette_action.template import Template
from datasette_action_entrypoint.bundle import ENV_SECRET


@dataclass(frozen=True)
class StackRequest:
    name: str
    template_url: str | None  # one of the two
    template_body: str | None
    parameters: tuple[Mapping[str, Any], ...]  # CloudFormation's Parameter shape
    tags: Mapping[str, str]
    capabilities: tuple[str, ...] = tpl.CAPABILITIES
    no_echo: frozenset[str] = frozenset()  # parameters whose values DescribeStacks hides (****)


def _run_part(options: DeployOptions, limit: int) -> str:
    """options.run_id as letters, digits and hyphens."""
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in options.run_id or "")[:limit]


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
        if error_code(exc) == "ValidationError" and is_no_changes(
            error_message(exc)
        ):  # moto, for inline bodies
            return ChangeSet(request.name, name, kind, ())
        # Another deploy's update began after this one checked the stack (stacks.settle).
        current = describe_stack(aws, request.name) if error_code(exc) == "ValidationError" else None
        if current is not None and in_progress(current.status):
            raise busy_error(request.name, current.status) from None
        raise translate(exc, f"creating a change set for the stack {request.name}") from None
    except BotoCoreError as exc:
        raise translate(exc, f"creating a change set for the stack {request.name}") from None
    try:
        cf.get_waiter("change_set_create_complete").wait(
            StackName=request.name, ChangeSetName=name, WaiterConfig=waiter_config(options)
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
    with step(f"describing the change set {name}"):
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
    try:
        aws.client("cloudformation").execute_change_set(
            StackName=change_set.stack, ChangeSetName=change_set.name
        )
    except ClientError as exc:
        if error_code(exc) not in REFUSED_EXECUTION:
            raise translate(exc, f"executing the change set {change_set.name}") from None
        _refused_execution(aws, change_set, exc, options)  # returns only when ours is running
    except BotoCoreError as exc:
        raise translate(exc, f"executing the change set {change_set.name}") from None
    waiter = "stack_create_complete" if change_set.kind == "CREATE" else "stack_update_complete"
    what = "creating" if change_set.kind == "CREATE" else "updating"
    options.log(f"{what} the stack {change_set.stack} ({len(change_set.changes)} resource change(s))")
    wait_for_stack(aws, waiter, change_set.stack, started, options, what=what.capitalize())


# ExecuteChangeSet's errors when another deploy got there first
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ExecuteChangeSet.html):
# "When you execute a change set, CloudFormation deletes all other change sets associated with the
# stack because they aren't valid for the updated stack" (ChangeSetNotFound); until then such a change
# set's ExecutionStatus is OBSOLETE, "because the stack was already updated"
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ChangeSetSummary.html), and
# executing it fails with InvalidChangeSetStatus, as it does while "the stack status might be
# UPDATE_IN_PROGRESS". ValidationError: a stack busy with another operation, in older wording.
REFUSED_EXECUTION = {"InvalidChangeSetStatus", "ChangeSetNotFound", "ValidationError"}
EXECUTED = {"EXECUTE_IN_PROGRESS", "EXECUTE_COMPLETE", "EXECUTE_FAILED"}


def _refused_execution(aws: Aws, change_set: ChangeSet, exc: ClientError, options: DeployOptions) -> None:
    """Why ExecuteChangeSet was refused, from the change set's and the stack's states (not from
    AWS's words): the stack changed since the change set was made (it is OBSOLETE, or gone), or
    another operation holds the stack. Either way nothing of this deploy was applied, and the
    change set is deleted. Returns (the deploy waits as usual) when the change set is executing
    already: a retried call whose first attempt went through."""
    status = _execution_status(aws, change_set)
    if status in EXECUTED:
        return
    if status == "AVAILABLE":
        current = describe_stack(aws, change_set.stack)
        if current is None or not in_progress(current.status):
            raise translate(exc, f"executing the change set {change_set.name}") from None
        delete_change_set(aws, change_set.stack, change_set.name, options)
        raise busy_error(change_set.stack, current.status) from None
    if status not in (None, "OBSOLETE"):  # e.g. still being created: not a race
        raise translate(exc, f"executing the change set {change_set.name}") from None
    if status is not None:
        delete_change_set(aws, change_set.stack, change_set.name, options)
    raise AwsError(
        f"the stack {change_set.stack} changed since this deploy's change set was made (another deploy"
        f" landed first); run again. Nothing of this deploy was applied (its change set {change_set.name}"
        f" was {status or 'deleted by CloudFormation'})"
    ) from None


def _execution_status(aws: Aws, change_set: ChangeSet) -> str | None:
    """The change set's ExecutionStatus; None when CloudFormation no longer has it."""
    try:
        answer = aws.client("cloudformation").describe_change_set(
            StackName=change_set.stack, ChangeSetName=change_set.name
        )
    except ClientError as exc:
        if error_code(exc) == "ChangeSetNotFound":
            return None
        raise translate(exc, f"describing the change set {change_set.name}") from None
    except BotoCoreError as exc:
        raise translate(exc, f"describing the change set {change_set.name}") from None
    return str(answer.get("ExecutionStatus") or "")


def check_live(request: StackRequest, final: StackInfo | None) -> None:
    """After the change set (executed, or empty): the stack holds the parameter values this deploy
    asked for, the artifacts' keys among them (they name the code and data by their sha256).
    Another deploy that executed after this one, or whose update this one's wait saw complete,
    leaves its own values: then this deploy's data is not live, and it must not say it is.
    Values kept with UsePreviousValue, and NoEcho ones (DescribeStacks shows them as ****), are not
    compared."""
    if final is None:
        raise AwsError(
            f"the stack {request.name} is gone: another operation deleted it while this deploy ran;"
            " what this deploy built is not live; run again"
        )
    wanted = {
        str(p["ParameterKey"]): str(p["ParameterValue"])
        for p in request.parameters
        if "ParameterValue" in p and p["ParameterKey"] not in request.no_echo
    }
    differ = [(key, final.values.get(key), value) for key, value in sorted(wanted.items())]
    differ = [(key, live, value) for key, live, value in differ if live != value]
    if differ:
        found = "; ".join(f"{key} is {live!r}, this deploy's is {value!r}" for key, live, value in differ)
        raise AwsError(
            f"another deploy replaced this one's changes: the stack {request.name} ({final.status}) holds"
            f" parameters that are not this deploy's ({found}); what this deploy built is not live;"
            " run again if it should be"
        )


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


# -- parameters and tags --------------------------------------------------------------------------


def stack_parameters(
    template: Template, bucket: str, existing: StackInfo | None, options: DeployOptions
) -> tuple[Mapping[str, Any], ...]:
    """The template's values, the bucket, and the secrets' values (`options.secrets`).

    An unset (or empty) secret keeps the stack's previous value (UsePreviousValue) when the stack
    has one; DATASETTE_SECRET is otherwise generated once, at create time, and kept from then on
    (signed cookies and tokens stay valid across deploys); any other is an error.
    """
    env = options.secrets
    values = {**template.parameters}
    values.setdefault(tpl.P_BUCKET, bucket)
    parameters: list[Mapping[str, Any]] = [
        {"ParameterKey": key, "ParameterValue": value} for key, value in sorted(values.items())
    ]
    has_previous = (
        existing.parameters if existing and existing.status != "REVIEW_IN_PROGRESS" else frozenset()
    )
    # DeploymentId: new on a forced deploy and on a create; otherwise kept, so nothing changes.
    if tpl.P_DEPLOYMENT_ID in template.parameter_names:
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


def stack_tags(config: Config) -> dict[str, str]:
    """Stack-level tags: deploy.tags and the one that names the site (CloudFormation passes stack
    tags on to the resources that take tags)."""
    return {**config.deploy.tags, tpl.TAG_STACK: config.stack}
