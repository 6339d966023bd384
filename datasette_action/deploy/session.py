"""The boto3 session (region, endpoint, clients with standard retries), the credentials check,
and the translation of botocore's errors: `ClientError` becomes an `AwsError` by its `Error.Code`,
here (`translate`, `step`) and in the other modules of this package, nowhere else."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)

from datasette_action.config import Config
from datasette_action.deploy.data import Identity
from datasette_action.errors import AwsError, CredentialsError

RETRIES = {"mode": "standard", "max_attempts": 10}
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
    try:
        session = _session(config.region)
    except ProfileNotFound as exc:
        raise CredentialsError(f"AWS profile not found ({exc}); {HOW_TO_CONFIGURE}") from None
    region = session.region_name
    if not region:
        raise CredentialsError(
            "no AWS region: set `region:` in the config, or AWS_REGION in the environment"
            " (aws-actions/configure-aws-credentials sets it from its aws-region input)"
        )
    return Aws(session, region, endpoint.rstrip("/") if endpoint else None)


def _session(region: str | None) -> Any:
    # botocore reads AWS_DEFAULT_REGION (and profiles) but not AWS_REGION, which other SDKs and
    # aws-actions/configure-aws-credentials use; it wins over AWS_DEFAULT_REGION, as in those SDKs.
    return boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)


def environment_region() -> str | None:
    """The region the AWS environment names (AWS_REGION, AWS_DEFAULT_REGION, the profile's), as
    `aws_session` finds it when the config has none; no AWS call. None when there is none (or the
    profile is missing: `aws_session` says so)."""
    try:
        return _session(None).region_name or None
    except ProfileNotFound:
        return None


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
        code = error_code(exc)
        if code in BAD_CREDENTIALS or code in ACCESS_DENIED:
            raise CredentialsError(
                f"AWS did not accept the credentials ({code}: {error_message(exc)}); {HOW_TO_CONFIGURE}"
            ) from None
        raise translate(exc, "checking the AWS credentials (sts:GetCallerIdentity)") from None
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


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def translate(exc: ClientError | BotoCoreError, action: str) -> AwsError:
    if isinstance(exc, BotoCoreError):
        return AwsError(f"{action}: {exc}")
    code = error_code(exc)
    if code in BAD_CREDENTIALS:
        return CredentialsError(f"{action}: the credentials were refused ({code}); {HOW_TO_CONFIGURE}")
    if code in ACCESS_DENIED:
        return AwsError(
            f"{action}: access denied ({error_message(exc)}); the deploying identity needs the permissions"
            " that `datasette-lambda iam-policy` prints for this config"
        )
    return AwsError(f"{action}: {code}: {error_message(exc)}")


@contextmanager
def step(action: str) -> Iterator[None]:
    """Any AWS error inside becomes one `AwsError` naming the step, never a traceback."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, action) from None
