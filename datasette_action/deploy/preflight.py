"""What AWS would refuse halfway through a deploy, checked before anything changes (in `plan`
too): the config's own bucket in another region, a reserved concurrency the account cannot give,
a log group of the function's name that the stack does not own. Each is read-only and fails with
what to do about it."""

from __future__ import annotations

from datasette_action import template as tpl
from datasette_action.config import Config
from datasette_action.deploy.artifacts import check_own_bucket
from datasette_action.deploy.data import Identity
from datasette_action.deploy.session import Aws, step
from datasette_action.deploy.stacks import StackInfo, deployed_template, holds_resource
from datasette_action.errors import AwsError, Location
from datasette_action.template import Template

# "You can reserve concurrency for as many functions as you like, as long as you leave at least
# 100 simultaneous executions unreserved for functions that aren't configured with a per-function
# limit" (https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html); the
# account's limit and what is left unreserved come from GetAccountSettings
# (https://docs.aws.amazon.com/lambda/latest/api/API_GetAccountSettings.html). New accounts may
# have a ConcurrentExecutions quota below the usual 1,000.
UNRESERVED_MINIMUM = 100
# Stacks in these states hold none of their resources (nothing was created, or the failed first
# create was rolled back, and deploy deletes the stack).
HOLDS_NOTHING = {"REVIEW_IN_PROGRESS", "ROLLBACK_COMPLETE"}


def check_before_changes(
    aws: Aws, config: Config, template: Template, identity: Identity, info: StackInfo | None
) -> None:
    """Every check, for the main stack `info` as it is now (None: it does not exist)."""
    if config.deploy.bucket:
        check_own_bucket(aws, config.deploy.bucket, identity)
    check_log_group(aws, config, template, info)
    check_concurrency(aws, config, info)


def check_log_group(aws: Aws, config: Config, template: Template, info: StackInfo | None) -> None:
    """The stack's LogGroup has a fixed name (`/aws/lambda/<function>`): one that already exists
    and that the stack does not hold (an earlier function of the same name left it) makes the
    create fail with "already exists"."""
    name = tpl.log_group_name(config.stack)
    with step(f"looking for the log group {name} (logs:DescribeLogGroups)"):
        found = aws.client("logs").describe_log_groups(logGroupNamePrefix=name).get("logGroups") or []
    # the page is sorted by name, so the exact name (the prefix itself) comes first of its matches
    if not any(group.get("logGroupName") == name for group in found):
        return
    logical_id = next(r.logical_id for r in template.resources if r.type == "AWS::Logs::LogGroup")
    # the resource's own status says whether the stack still holds it (after a failed first
    # create, ROLLBACK_COMPLETE, its resources are DELETE_COMPLETE or CREATE_FAILED)
    if info is not None and holds_resource(aws, config.stack, logical_id, name):
        return
    raise AwsError(
        f"the log group {name} already exists in {aws.region}, and the stack {config.stack} does not own"
        f" it (an earlier function of the same name made it), so CloudFormation could not create the"
        f" stack's {logical_id}; nothing was changed. Delete it (its logs go with it): aws logs"
        f" delete-log-group --log-group-name {name} --region {aws.region}; or import it into the stack"
        f" as {logical_id} (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/resource-import.html)"
    )


def check_concurrency(aws: Aws, config: Config, info: StackInfo | None) -> None:
    """lambda.reserved_concurrency against the account's figures (lambda:GetAccountSettings).
    The function's own current reservation is already counted as reserved there, and is given
    back by this deploy."""
    wanted = config.lambda_.reserved_concurrency
    if wanted is None:
        return
    with step("reading the account's Lambda concurrency (lambda:GetAccountSettings)"):
        limit = aws.client("lambda").get_account_settings().get("AccountLimit") or {}
    total = int(limit.get("ConcurrentExecutions", 0))
    unreserved = int(limit.get("UnreservedConcurrentExecutions", 0))
    own = current_reservation(aws, info)
    left = unreserved + own - wanted
    if left >= UNRESERVED_MINIMUM:
        return
    most = unreserved + own - UNRESERVED_MINIMUM
    replaced = f"; this function already reserves {own}, which this deploy replaces" if own else ""
    fix = f"Reserve at most {most}, remove" if most >= 1 else "Remove"
    raise AwsError(
        f"lambda.reserved_concurrency: {wanted} would leave {left} unreserved concurrent executions in"
        f" the account in {aws.region}, and Lambda keeps at least {UNRESERVED_MINIMUM} for functions"
        " without a reservation. The account (lambda:GetAccountSettings): ConcurrentExecutions"
        f" {total}, UnreservedConcurrentExecutions {unreserved}{replaced}. {fix}"
        " lambda.reserved_concurrency, or ask AWS for a higher quota (Service Quotas: AWS Lambda,"
        " Concurrent executions); nothing was changed",
        Location(config.path),
    )


def current_reservation(aws: Aws, info: StackInfo | None) -> int:
    """The function's reserved concurrency as the stack last set it (its deployed template);
    0 when the stack has no function."""
    if info is None or info.status in HOLDS_NOTHING:
        return 0
    resources = deployed_template(aws, info.name).get("Resources") or {}
    for resource in resources.values():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Lambda::Function":
            value = (resource.get("Properties") or {}).get("ReservedConcurrentExecutions")
            return value if type(value) is int else 0
    return 0
