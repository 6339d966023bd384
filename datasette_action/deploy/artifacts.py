"""The artifacts bucket and what is in it: the bootstrap stack's bucket (or deploy.bucket,
checked), uploads named by content hash, the template's URL, the deployed-state file, and deleting
the objects this tool wrote."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from datasette_action import template as tpl
from datasette_action.config import Config
from datasette_action.deploy.change_sets import StackRequest, apply, stack_tags
from datasette_action.deploy.data import DeployOptions, Identity, PlannedUpload, Upload
from datasette_action.deploy.session import ACCESS_DENIED, NOT_FOUND, Aws, error_code, step, translate
from datasette_action.deploy.stacks import describe_stack, settle
from datasette_action.errors import AwsError
from datasette_action.package import PackageResult
from datasette_action.state import DeployedState, StateFormatError, state_from_json, state_key
from datasette_action.template import Template

TEMPLATES_PREFIX = "templates/"  # the rendered template, by its sha256: templates/<sha256>.json
STATE_PREFIX = "state/"


# -- the artifacts bucket ------------------------------------------------------------------------


def artifacts_bucket(
    aws: Aws, config: Config, options: DeployOptions, *, create: bool
) -> tuple[str | None, bool]:
    """deploy.bucket (`check_own_bucket` checked it first); or the bootstrap stack's bucket,
    created (or updated) when `create`. Returns the bucket (None: no bootstrap stack yet and not
    `create`) and whether the bootstrap stack changed."""
    if config.deploy.bucket:  # checked before anything changed (preflight.check_before_changes)
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
    """deploy.bucket must exist, belong to the deploying account and be in the deploy's region."""
    try:
        answer = aws.client("s3").head_bucket(Bucket=bucket, ExpectedBucketOwner=identity.account)
    except ClientError as exc:
        code = error_code(exc)
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
            raise AwsError(_bucket_elsewhere(aws, bucket, bucket_region(exc.response))) from None
        raise translate(exc, f"checking deploy.bucket '{bucket}'") from None
    except BotoCoreError as exc:
        raise translate(exc, f"checking deploy.bucket '{bucket}'") from None
    # botocore follows S3's redirect to another region silently (S3RegionRedirectorv2), so the
    # HeadBucket above succeeds wherever the bucket is: its answer names the bucket's region.
    region = bucket_region(answer)
    if region and region != aws.region:
        raise AwsError(_bucket_elsewhere(aws, bucket, region))


def bucket_region(response: Mapping[str, Any]) -> str | None:
    """The region S3 says a bucket is in: HeadBucket's BucketRegion, i.e. the x-amz-bucket-region
    header (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html)."""
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    region = response.get("BucketRegion") or headers.get("x-amz-bucket-region")
    return str(region) if region else None


def _bucket_elsewhere(aws: Aws, bucket: str, region: str | None) -> str:
    # "S3Bucket: An Amazon S3 bucket in the same AWS Region as your function"
    # (https://docs.aws.amazon.com/lambda/latest/api/API_FunctionCode.html)
    where = f"in {region}" if region else "in another region"
    return (
        f"deploy.bucket '{bucket}' is {where}, but this deploy is to {aws.region}, and Lambda reads"
        " code only from a bucket in the function's own region; nothing was uploaded. Use a bucket in"
        f" {aws.region} (aws s3 mb s3://NAME --region {aws.region}), remove deploy.bucket to let this"
        " tool create one, or deploy to the bucket's region"
    )


# -- uploads --------------------------------------------------------------------------------------


def object_exists(aws: Aws, bucket: str, key: str) -> bool:
    """HeadObject: a missing key is 404 only with s3:ListBucket permission (else 403)."""
    try:
        aws.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return False
        raise translate(exc, f"looking for s3://{bucket}/{key}") from None
    except BotoCoreError as exc:
        raise translate(exc, f"looking for s3://{bucket}/{key}") from None
    return True


def upload(aws: Aws, bucket: str, planned: PlannedUpload, options: DeployOptions) -> Upload:
    """Put the object unless one is at its key already: keys are named by content."""
    role, key, size = planned.role, planned.key, planned.size
    if object_exists(aws, bucket, key):
        return Upload(role, key, planned.sha256, size, uploaded=False)
    options.log(f"uploading {role} ({size:,} bytes) to s3://{bucket}/{key}")
    extra = {"Metadata": {"sha256": planned.sha256}, "ContentType": _content_type(key)}
    s3 = aws.client("s3")
    with step(f"uploading {role} to s3://{bucket}/{key}"):
        if isinstance(planned.source, bytes):
            s3.put_object(Bucket=bucket, Key=key, Body=planned.source, **extra)
        else:
            s3.upload_file(str(planned.source), bucket, key, ExtraArgs=extra)
    return Upload(role, key, planned.sha256, size, uploaded=True)


def _content_type(key: str) -> str:
    if key.endswith(".zip"):
        return "application/zip"
    if key.endswith(".json"):
        return "application/json"
    return "application/octet-stream"


def planned_uploads(result: PackageResult, template: Template) -> tuple[PlannedUpload, ...]:
    """Every object a deploy needs in the bucket: the zips, the databases with an S3 key (those
    placed in S3, and the copies that downloads too large for Lambda redirect to), the template."""
    keys = tpl.artifact_keys(result)
    wanted = [
        PlannedUpload("layer", keys.layer, result.layer.sha256, result.layer.zip_path),
        PlannedUpload("function", keys.function, result.function.sha256, result.function.zip_path),
    ]
    for database in result.databases:
        if database.s3_key:
            wanted.append(
                PlannedUpload(f"database {database.name}", database.s3_key, database.sha256, database.path)
            )
    wanted.append(template_object(template))
    return tuple(wanted)


def template_object(template: Template) -> PlannedUpload:
    """The rendered template as an object named by its sha256: templates/<sha256>.json."""
    body = template.to_json().encode("utf-8")
    return PlannedUpload("template", f"{TEMPLATES_PREFIX}{template.sha256}.json", template.sha256, body)


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


# -- deployed state -------------------------------------------------------------------------------


def read_state(aws: Aws, bucket: str, stack: str, options: DeployOptions) -> DeployedState | None:
    try:
        body = aws.client("s3").get_object(Bucket=bucket, Key=state_key(stack))["Body"].read()
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise translate(exc, f"reading s3://{bucket}/{state_key(stack)}") from None
    except BotoCoreError as exc:
        raise translate(exc, f"reading s3://{bucket}/{state_key(stack)}") from None
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
    with step(f"writing s3://{bucket}/{state_key(state.stack)}"):
        aws.client("s3").put_object(
            Bucket=bucket,
            Key=state_key(state.stack),
            Body=state.to_json().encode("utf-8"),
            ContentType="application/json",
        )


# -- deleting what this tool wrote ----------------------------------------------------------------


def delete_own_objects(aws: Aws, bucket: str, stack: str, options: DeployOptions) -> int:
    """In a bucket of the user's own: the keys this stack's deploys recorded, less those another
    site's state also lists (content-addressed keys can be shared), and the state file itself."""
    state = read_state(aws, bucket, stack, options)
    mine = set(state.keys if state else ())
    with step(f"listing s3://{bucket}/{STATE_PREFIX}"):
        pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=STATE_PREFIX)
        others = [
            o["Key"] for page in pages for o in page.get("Contents") or () if o["Key"] != state_key(stack)
        ]
    for key in others:
        other = read_state(aws, bucket, key[len(STATE_PREFIX) : -len(".json")], options)
        if other is not None:
            mine -= set(other.keys)
    return _delete_keys(aws, bucket, [*sorted(mine), state_key(stack)] if state else [], options)


def empty_bucket(aws: Aws, bucket: str, options: DeployOptions) -> int:
    """Every object (and object version) in the bootstrap bucket: CloudFormation cannot delete a
    bucket that is not empty."""
    s3 = aws.client("s3")
    keys: list[tuple[str, str | None]] = []
    with step(f"listing s3://{bucket}"):
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
        with step(f"deleting objects in s3://{bucket}"):
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        errors = answer.get("Errors") or []
        for error in errors:
            options.log(f"Warning: could not delete s3://{bucket}/{error.get('Key')}: {error.get('Message')}")
        deleted += len(batch) - len(errors)
    if deleted:
        options.log(f"deleted {deleted} object(s) from s3://{bucket}")
    return deleted
