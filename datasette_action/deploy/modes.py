"""The three modes, each a short chain of the other modules' steps: `deploy`, `plan`
(a change set described and deleted; offline without credentials) and `destroy`; and the
health check after a deploy."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from datasette_action import template as tpl
from datasette_action.config import Config
from datasette_action.deploy.artifacts import (
    artifacts_bucket,
    check_own_bucket,
    delete_own_objects,
    empty_bucket,
    object_exists,
    planned_uploads,
    read_state,
    template_object,
    template_url,
    upload,
    write_state,
)
from datasette_action.deploy.change_sets import (
    StackRequest,
    apply,
    change_set_name,
    check_live,
    create_change_set,
    delete_change_set,
    stack_parameters,
    stack_tags,
)
from datasette_action.deploy.data import (
    DeployOptions,
    DeployResult,
    DestroyResult,
    HealthCheck,
    PlannedArtifact,
    PlannedUpload,
    PlanResult,
    ResourceChange,
)
from datasette_action.deploy.preflight import check_before_changes
from datasette_action.deploy.session import Aws, aws_session, check_credentials, has_credentials
from datasette_action.deploy.stacks import (
    StackInfo,
    check_ownership,
    delete_stack,
    describe_stack,
    in_progress,
    repair_failed_create,
    settle,
    wait_until_idle,
)
from datasette_action.errors import AwsError, CredentialsError
from datasette_action.package import PackageResult
from datasette_action.state import state_from_package
from datasette_action.template import Template

DEFAULT_OPTIONS = DeployOptions()  # frozen: one shared default is safe


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
    options: DeployOptions = DEFAULT_OPTIONS,
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
    # Ours, idle, repairable, and deployable in this account? Checked before anything changes.
    info, _ = settle(aws, config.stack, config.stack, "site", options, repair=False)
    check_before_changes(aws, config, template, identity, info)
    info, recreated = repair_failed_create(aws, info, options)
    bucket, bootstrap_changed = artifacts_bucket(aws, config, options, create=True)
    assert bucket is not None
    uploads = tuple(upload(aws, bucket, planned, options) for planned in planned_uploads(result, template))
    sent = sum(u.bytes_uploaded for u in uploads)
    log(f"uploads: {sent:,} bytes sent, {sum(not u.uploaded for u in uploads)} object(s) already there")
    previous_state = read_state(aws, bucket, config.stack, options)
    request = StackRequest(
        name=config.stack,
        template_url=template_url(aws, bucket, template_object(template).key),
        template_body=None,
        parameters=stack_parameters(template, bucket, info, options),
        tags=stack_tags(config),
        no_echo=frozenset(template.secret_parameters),
    )
    change_set = apply(aws, request, info, options, "deploy")
    final = describe_stack(aws, config.stack)
    check_live(request, final)  # another deploy at once: never report data that is not live
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
    if template.size > tpl.TEMPLATE_URL_LIMIT:
        raise AwsError(
            f"the template is {template.size:,} bytes; CloudFormation reads at most {tpl.TEMPLATE_URL_LIMIT:,}"
            " from S3; publish fewer databases or static mounts per site"
        )


def plan(
    config: Config,
    result: PackageResult,
    template: Template,
    options: DeployOptions = DEFAULT_OPTIONS,
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
    check_before_changes(aws, config, template, identity, info)
    bucket, _ = artifacts_bucket(aws, config, options, create=False)
    in_bucket = {w.key: object_exists(aws, bucket, w.key) for w in wanted} if bucket else {}
    deployed = read_state(aws, bucket, config.stack, options) if bucket else None
    changes_note = None
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
        uploaded = bool(in_bucket.get(template_object(template).key))
        found = _planned_changes(aws, config, template, bucket, info, options, uploaded=uploaded)
        changes, source = (found, "change set") if found is not None else ((), "unknown")
        if found is None:
            changes_note = (
                f"Unknown: the template does not fit in the {tpl.TEMPLATE_BODY_INLINE_LIMIT:,} bytes"
                " CloudFormation takes inline, and no deploy has uploaded it yet; plan uploads nothing,"
                " so no change set was made (deploy uploads it)"
            )
    return PlanResult(
        stack=config.stack,
        online=True,
        note=note,
        region=aws.region,
        account=identity.account,
        stack_status=info.status if info else None,
        changes=changes,
        changes_from=source,
        changes_note=changes_note,
        artifacts=_planned(wanted, in_bucket),
        deployed=deployed,
        planned=planned_state,
        seconds=time.perf_counter() - started,
    )


def _planned_changes(
    aws: Aws,
    config: Config,
    template: Template,
    bucket: str,
    info: StackInfo,
    options: DeployOptions,
    *,
    uploaded: bool,
) -> tuple[ResourceChange, ...] | None:
    """A change set for the update, described, then deleted: the live stack is not touched.

    Plan uploads nothing: its role may only read (`datasette-lambda iam-policy --plan`), because
    deploy reuses an object already at a content-addressed key without reading it back, so a
    pull request allowed to write there could plant a template a later deploy would run. The
    template goes inline (TemplateBody, compact JSON) when it fits, else by its URL when a deploy
    uploaded it already (CloudFormation reads it with the caller's s3:GetObject). Neither: None,
    no change set."""
    body = tpl.inline_body(template)
    if body is None and not uploaded:
        return None
    request = StackRequest(
        name=config.stack,
        template_url=None if body is not None else template_url(aws, bucket, template_object(template).key),
        template_body=body,
        parameters=stack_parameters(template, bucket, info, options),
        tags=stack_tags(config),
    )
    change_set = create_change_set(aws, request, "UPDATE", change_set_name(options, "plan"), options)
    if not change_set.empty:
        delete_change_set(aws, config.stack, change_set.name, options)
    return change_set.changes


def _all_added(template: Template) -> tuple[ResourceChange, ...]:
    return tuple(
        ResourceChange("Add", resource.logical_id, resource.type, None)
        for resource in sorted(template.resources, key=lambda resource: resource.logical_id)
    )


def _planned(wanted: Sequence[PlannedUpload], in_bucket: Mapping[str, bool]) -> tuple[PlannedArtifact, ...]:
    return tuple(PlannedArtifact(w.role, w.key, w.sha256, w.size, in_bucket.get(w.key)) for w in wanted)


def destroy(
    config: Config, options: DeployOptions = DEFAULT_OPTIONS, aws: Aws | None = None
) -> DestroyResult:
    """Delete the site: the main stack, then the objects this tool wrote to the bucket, then the
    bootstrap stack if this tool made it (its bucket emptied first)."""
    started = time.perf_counter()
    aws = aws or aws_session(config, options.endpoint_url)
    identity = check_credentials(aws)
    info = describe_stack(aws, config.stack)
    if info is not None and in_progress(info.status):
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
        deleted = delete_own_objects(aws, bucket, config.stack, options)
    elif bootstrap is not None:
        bucket = bootstrap.outputs.get(tpl.O_BUCKET_NAME)
        if bucket:
            deleted = empty_bucket(aws, bucket, options)
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
