"""`datasette-lambda setup-github`: the one-time AWS setup for a GitHub repository, as one
CloudFormation stack (`<stack>-github`) deployed with the caller's credentials:

- GitHub's OIDC provider, unless the account has one already (there is one per URL and account:
  "You cannot register the same provider multiple times in a single AWS account",
  https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateOpenIDConnectProvider.html); its
  ARN is then a parameter. The stack's own provider is kept when the stack is deleted or stops
  holding it (DeletionPolicy Retain): other roles of the account may trust it;
- a deploy role only the repository's deploy environment (or one branch) can assume, holding
  exactly the deployer's policy `datasette-lambda iam-policy` prints for the config;
- a plan role only its pull requests can assume, holding the `iam-policy --plan` policy.

The policies are computed for the account `${AWS::AccountId}` (CloudFormation fills it in), so
the template (`--print`) needs no AWS call, and the deployed documents are `iam.deployer_policy`'s
and `iam.plan_policy`'s for the deploying account, to the character. The stack is created and
updated through a change set (`deploy.change_sets.apply`) and is marked as this tool's as the
site's stacks are (the Metadata marker, kind `github-roles`, and the `datasette-lambda:stack` tag);
`--destroy` deletes only such a stack.

GitHub's OIDC facts (https://docs.github.com/en/actions/reference/security/oidc and "Example
subject claims" in https://docs.github.com/en/actions/deployment/security-hardening-your-deployments/about-security-hardening-with-openid-connect#example-subject-claims):
the issuer is https://token.actions.githubusercontent.com; aws-actions/configure-aws-credentials
asks for the audience sts.amazonaws.com; `sub` is `repo:OWNER/NAME:environment:NAME` for a job
that names an environment, `repo:OWNER/NAME:ref:refs/heads/BRANCH` for a job on a branch without
one ("only works if the branch does not refer to an environment"), and
`repo:OWNER/NAME:pull_request` for a pull_request event. AWS no longer checks the provider's
thumbprint for GitHub (it trusts its CA library, API_CreateOpenIDConnectProvider above), and
AWS::IAM::OIDCProvider's ThumbprintList is optional (its schema, as cfn-lint ships it, requires
no property): the template gives none.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datasette_action import iam
from datasette_action import template as tpl
from datasette_action.config import Config
from datasette_action.errors import AwsError, UserError

ISSUER_HOST = "token.actions.githubusercontent.com"
ISSUER_URL = f"https://{ISSUER_HOST}"
AUDIENCE = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials requests
DEFAULT_ENVIRONMENT = "production"  # examples/workflows/publish.yml's `environment:`
KIND = "github-roles"  # the Metadata marker's kind
SUFFIX = "-github"
P_PROVIDER = "OidcProviderArn"
MAKE_PROVIDER = "MakeProvider"
PROVIDER_ID = "GitHubOidc"
DEPLOY_ROLE, PLAN_ROLE = "DeployRole", "PlanRole"
DEPLOY_POLICY, PLAN_POLICY = "DeployPolicy", "PlanPolicy"
O_DEPLOY_ROLE, O_PLAN_ROLE, O_PROVIDER = "DeployRoleArn", "PlanRoleArn", "OidcProviderArn"
# The repository variables examples/workflows/publish.yml and pr-plan.yml read (`vars.`), and the
# region their `aws-region:` names.
VARIABLES = {O_DEPLOY_ROLE: "AWS_DEPLOY_ROLE_ARN", O_PLAN_ROLE: "AWS_PLAN_ROLE_ARN"}
REGION_VARIABLE = "AWS_REGION"
ACCOUNT_SUB = "${AWS::AccountId}"
GH_TIMEOUT = 10.0  # seconds for `gh auth status`
# An owner (user or organization) is letters, digits and single hyphens, at most 39 characters; a
# repository name letters, digits, `.`, `_` and `-`, at most 100.
REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/[A-Za-z0-9._-]{1,100}")
# What may follow `environment:` or `refs/heads/` in a `sub` this tool writes: no whitespace, no
# `:` (the claim's separator), no IAM wildcard; at most 255 characters.
NAME = re.compile(r"[^\s:*?]{1,255}")
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")


@dataclass(frozen=True)
class Trust:
    """Who may assume the roles: one repository's deploy environment (or branch), and its pull
    requests for the plan role."""

    repo: str
    environment: str | None = DEFAULT_ENVIRONMENT
    branch: str | None = None

    @property
    def deploy_subject(self) -> str:
        if self.branch is not None:
            return f"repo:{self.repo}:ref:refs/heads/{self.branch}"
        return f"repo:{self.repo}:environment:{self.environment}"

    @property
    def plan_subject(self) -> str:
        return f"repo:{self.repo}:pull_request"

    @property
    def deployer(self) -> str:
        return f"branch {self.branch}" if self.branch is not None else f"environment {self.environment}"


def trust(repo: str, environment: str | None = None, branch: str | None = None) -> Trust:
    """The checked --repo, --environment and --branch."""
    if REPO.fullmatch(repo) is None or repo.split("/")[1] in (".", ".."):
        raise UserError(f"--repo {repo!r} is not a GitHub repository: give OWNER/NAME, e.g. octo-org/my-data")
    if environment is not None and branch is not None:
        raise UserError(
            "--environment and --branch exclude each other: the deploy role trusts a job of one"
            " environment, or one branch's jobs that name no environment"
        )
    for option, value in (("--environment", environment), ("--branch", branch)):
        if value is not None and NAME.fullmatch(value) is None:
            raise UserError(
                f"{option} {value!r} cannot be trusted exactly: give a name of at most 255"
                " characters without spaces, ':', '*' or '?'"
            )
    if branch is not None and branch.startswith("refs/"):
        raise UserError(f"--branch {branch!r}: give the branch's name (e.g. main), not its ref")
    return Trust(repo, None if branch is not None else environment or DEFAULT_ENVIRONMENT, branch)


def stack_name(config: Config, given: str | None = None) -> str:
    name = given or f"{config.stack}{SUFFIX}"
    if STACK_NAME.fullmatch(name) is None:
        raise UserError(
            f"the stack name {name!r} is not valid for CloudFormation (a letter, then letters, digits"
            " and hyphens, at most 128 characters); choose one with --stack"
        )
    return name


# -- the template ---------------------------------------------------------------------------------


def account_neutral(document: Any) -> Any:
    """A policy computed for the placeholder account, with `${AWS::AccountId}` in its place
    (Fn::Sub) wherever it appears. The placeholder ACCOUNT_ID cannot occur otherwise: stack,
    function and bucket names hold no underscore."""
    if isinstance(document, dict):
        return {key: account_neutral(value) for key, value in document.items()}
    if isinstance(document, list):
        return [account_neutral(value) for value in document]
    if isinstance(document, str) and iam.PLACEHOLDER_ACCOUNT in document:
        if "${" in document:  # would be read as a Fn::Sub variable
            raise ValueError(f"cannot substitute the account in {document!r}")
        return {"Fn::Sub": document.replace(iam.PLACEHOLDER_ACCOUNT, ACCOUNT_SUB)}
    return document


def policies(config: Config, region: str, partition: str = "aws") -> tuple[iam.Policy, iam.Policy]:
    """The deployer's and the plan role's policies for `config`, in the placeholder account."""
    target = iam.Target(region, iam.PLACEHOLDER_ACCOUNT, partition)
    return iam.deployer_policy(config, target), iam.plan_policy(config, target)


def _trust_policy(subject: str) -> dict[str, Any]:
    provider = {"Fn::If": [MAKE_PROVIDER, {"Ref": PROVIDER_ID}, {"Ref": P_PROVIDER}]}
    return {
        "Version": iam.POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{ISSUER_HOST}:aud": AUDIENCE, f"{ISSUER_HOST}:sub": subject}
                },
            }
        ],
    }


def _role_and_policy(
    role_id: str, policy_id: str, policy: iam.Policy, subject: str, description: str
) -> dict[str, Any]:
    """The role and its managed policy; a policy longer than a managed policy may be (the warning
    iam.Policy gives) is the role's inline policy instead (10,240 characters,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html)."""
    document = account_neutral(policy.document)
    role: dict[str, Any] = {
        "Description": description,
        "AssumeRolePolicyDocument": _trust_policy(subject),
    }
    if policy.size > iam.MANAGED_POLICY_MAX:
        role["Policies"] = [{"PolicyName": policy_id, "PolicyDocument": document}]
        return {role_id: {"Type": "AWS::IAM::Role", "Properties": role}}
    role["ManagedPolicyArns"] = [{"Ref": policy_id}]
    return {
        policy_id: {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {"Description": description, "PolicyDocument": document},
        },
        role_id: {"Type": "AWS::IAM::Role", "Properties": role},
    }


def roles_template(config: Config, trusted: Trust, region: str, partition: str = "aws") -> dict[str, Any]:
    """The stack's template as plain data; pure (golden-tested, cfn-linted)."""
    deploy_policy, plan_policy = policies(config, region, partition)
    resources: dict[str, Any] = {
        PROVIDER_ID: {
            "Type": "AWS::IAM::OIDCProvider",
            "Condition": MAKE_PROVIDER,
            # One per account, which other roles may trust: never deleted with this stack.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"Url": ISSUER_URL, "ClientIdList": [AUDIENCE]},
        },
        **_role_and_policy(
            DEPLOY_ROLE,
            DEPLOY_POLICY,
            deploy_policy,
            trusted.deploy_subject,
            f"Deploys the datasette-lambda site {config.stack} from {trusted.repo} ({trusted.deployer})",
        ),
        **_role_and_policy(
            PLAN_ROLE,
            PLAN_POLICY,
            plan_policy,
            trusted.plan_subject,
            f"Plans datasette-lambda deploys of {config.stack} for pull requests of {trusted.repo}"
            " (read-only; change sets are made and deleted, never run)",
        ),
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"GitHub Actions OIDC roles of {trusted.repo} for the Datasette site {config.stack}"
            f" (datasette-lambda {tpl.TOOL_VERSION})"
        ),
        "Metadata": {
            tpl.METADATA_KEY: {"format": tpl.TEMPLATE_FORMAT, "kind": KIND, "version": tpl.TOOL_VERSION}
        },
        "Parameters": {
            P_PROVIDER: {
                "Type": "String",
                "Default": "",
                "Description": "The ARN of the account's GitHub OIDC provider; empty: this stack makes it",
            }
        },
        "Conditions": {MAKE_PROVIDER: {"Fn::Equals": [{"Ref": P_PROVIDER}, ""]}},
        "Resources": resources,
        "Outputs": {
            O_DEPLOY_ROLE: {
                "Description": f"role-to-assume for publish.yml (repository variable {VARIABLES[O_DEPLOY_ROLE]})",
                "Value": {"Fn::GetAtt": [DEPLOY_ROLE, "Arn"]},
            },
            O_PLAN_ROLE: {
                "Description": f"role-to-assume for pr-plan.yml (repository variable {VARIABLES[O_PLAN_ROLE]})",
                "Value": {"Fn::GetAtt": [PLAN_ROLE, "Arn"]},
            },
            O_PROVIDER: {
                "Description": "GitHub's OIDC provider the roles trust",
                "Value": {"Fn::If": [MAKE_PROVIDER, {"Ref": PROVIDER_ID}, {"Ref": P_PROVIDER}]},
            },
        },
    }


def to_json(template: Mapping[str, Any]) -> str:
    return json.dumps(template, indent=2, sort_keys=True) + "\n"


# -- deploying it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupResult:
    stack: str
    region: str
    account: str
    trust: Trust
    deploy_role_arn: str
    plan_role_arn: str
    provider_arn: str
    provider_reused: bool  # the account's provider was there before: the stack did not make it
    changed: bool  # False: the stack was up to date
    created: bool = False  # True: this run made the stack

    @property
    def variables(self) -> dict[str, str]:
        return {
            VARIABLES[O_DEPLOY_ROLE]: self.deploy_role_arn,
            VARIABLES[O_PLAN_ROLE]: self.plan_role_arn,
            REGION_VARIABLE: self.region,
        }


@dataclass(frozen=True)
class RemovedResult:
    stack: str
    region: str
    deleted: bool  # False: there was no such stack
    kept_provider: str | None  # the provider the stack made, kept (DeletionPolicy Retain)


def find_provider(aws: Any) -> str | None:
    """The ARN of the account's GitHub OIDC provider (iam:ListOpenIDConnectProviders), if any:
    ARNs end in `oidc-provider/<the URL without https://>`."""
    from datasette_action.deploy.session import step

    with step("listing the account's OIDC providers (iam:ListOpenIDConnectProviders)"):
        found = aws.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    arns = [str(p["Arn"]) for p in found if str(p["Arn"]).endswith(f":oidc-provider/{ISSUER_HOST}")]
    return arns[0] if arns else None


def setup(config: Config, trusted: Trust, name: str, options: Any) -> SetupResult:
    """Create or update the stack (options: deploy.DeployOptions)."""
    from datasette_action.deploy import aws_session, check_credentials
    from datasette_action.deploy.change_sets import StackRequest, apply, stack_tags
    from datasette_action.deploy.stacks import describe_stack, settle

    aws = aws_session(config, options.endpoint_url)
    identity = check_credentials(aws)
    info, _ = settle(aws, name, config.stack, KIND, options, repair=True)
    existing = find_provider(aws)
    # The stack's own provider stays in it; one made elsewhere is used, not made again.
    reuse = existing if existing is not None and not _made_provider(info) else ""
    if reuse:
        options.log(f"using the account's GitHub OIDC provider {reuse}")
    body = roles_template(config, trusted, aws.region, _partition(aws))
    request = StackRequest(
        name=name,
        template_url=None,
        template_body=json.dumps(body, separators=(",", ":"), sort_keys=True),
        parameters=({"ParameterKey": P_PROVIDER, "ParameterValue": reuse},),
        tags=stack_tags(config),
    )
    change_set = apply(aws, request, info, options, "github")
    final = describe_stack(aws, name)
    outputs = final.outputs if final is not None else {}
    missing = [key for key in (O_DEPLOY_ROLE, O_PLAN_ROLE, O_PROVIDER) if not outputs.get(key)]
    if final is None or missing:
        raise AwsError(f"the stack {name} has no output {', '.join(missing)}: see its events")
    return SetupResult(
        stack=name,
        region=aws.region,
        account=identity.account,
        trust=trusted,
        deploy_role_arn=outputs[O_DEPLOY_ROLE],
        plan_role_arn=outputs[O_PLAN_ROLE],
        provider_arn=outputs[O_PROVIDER],
        provider_reused=bool(reuse),
        changed=not change_set.empty,
        created=change_set.kind == "CREATE",
    )


def remove(config: Config, name: str, options: Any) -> RemovedResult:
    """Delete the stack, when this tool made it; its OIDC provider is kept."""
    from datasette_action.deploy import aws_session, check_credentials
    from datasette_action.deploy.stacks import delete_stack, settle

    aws = aws_session(config, options.endpoint_url)
    check_credentials(aws)
    info, _ = settle(aws, name, config.stack, KIND, options, repair=False)
    if info is None:
        return RemovedResult(name, aws.region, False, None)
    provider = info.outputs.get(O_PROVIDER)
    kept = provider if provider and _made_provider(info) else None
    delete_stack(aws, name, options)
    return RemovedResult(name, aws.region, True, kept)


def _made_provider(info: Any) -> bool:
    """Whether the stack (a StackInfo, or None) holds GitHub's provider: it was given no ARN of
    one (OidcProviderArn empty), so its MakeProvider condition made it."""
    return info is not None and info.status != "REVIEW_IN_PROGRESS" and info.values.get(P_PROVIDER) == ""


def region_of(config: Config, endpoint_url: str | None = None) -> tuple[str, str]:
    """The region (the config's, else the environment's) and its partition; no AWS call."""
    from datasette_action.deploy import aws_session

    aws = aws_session(config, endpoint_url)
    return aws.region, _partition(aws)


def _partition(aws: Any) -> str:
    try:
        return str(aws.session.get_partition_for_region(aws.region))
    except Exception:  # botocore's UnknownRegionError: a region newer than botocore
        return "aws"


# -- what to tell the user --------------------------------------------------------------------------


def gh_ready() -> bool:
    """Whether the GitHub CLI is on PATH and logged in (`gh auth status` exits 0)."""
    gh = shutil.which("gh")
    if gh is None:
        return False
    try:
        done = subprocess.run(
            [gh, "auth", "status"],
            capture_output=True,
            timeout=GH_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def gh_commands(result: SetupResult) -> tuple[str, ...]:
    """`gh variable set NAME --repo OWNER/NAME --body VALUE` for each repository variable ("Create
    or update variables", `-R, --repo`: https://manpages.ubuntu.com/manpages/plucky/man1/gh-variable.1.html);
    printed, never run."""
    repo = shlex.quote(result.trust.repo)
    return tuple(
        f"gh variable set {name} --repo {repo} --body {shlex.quote(value)}"
        for name, value in result.variables.items()
    )


def setup_text(result: SetupResult, commands: tuple[str, ...]) -> str:
    state = "created" if result.created else "updated" if result.changed else "up to date"
    provider = (
        "the account's own, reused" if result.provider_reused else "made by this stack, kept if it is deleted"
    )
    lines = [
        f"Stack {result.stack} ({result.region}, account {result.account}): {state}",
        f"  OIDC provider: {result.provider_arn} ({provider})",
        f"  deploy role: {result.deploy_role_arn}",
        f"    assumed only by jobs with sub {result.trust.deploy_subject}",
        f"  plan role:   {result.plan_role_arn}",
        f"    assumed only by jobs with sub {result.trust.plan_subject}",
        "",
        f"Set these repository variables in {result.trust.repo} (Settings > Secrets and variables > Actions > Variables):",
        *(f"  {name}={value}" for name, value in result.variables.items()),
        f"  (the workflows init writes read ${{{{ vars.{REGION_VARIABLE} }}}} for `aws-region:`)",
    ]
    if result.trust.branch is not None:
        lines.append(
            f"  publish.yml's deploy job must name no `environment:`: a job with one is trusted by"
            f" its environment, not by the branch {result.trust.branch}"
        )
    if commands:
        lines += ["", "With the GitHub CLI (not run here):", *(f"  {command}" for command in commands)]
    return "\n".join(lines)


def setup_json(result: SetupResult, commands: tuple[str, ...]) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "region": result.region,
        "account": result.account,
        "repo": result.trust.repo,
        "changed": result.changed,
        "created": result.created,
        "deploy_role_arn": result.deploy_role_arn,
        "deploy_subject": result.trust.deploy_subject,
        "plan_role_arn": result.plan_role_arn,
        "plan_subject": result.trust.plan_subject,
        "provider_arn": result.provider_arn,
        "provider_reused": result.provider_reused,
        "variables": result.variables,
        "gh_commands": list(commands),
    }


def removed_text(result: RemovedResult) -> str:
    if not result.deleted:
        return f"No stack {result.stack} in {result.region}: nothing to delete"
    lines = [f"Deleted the stack {result.stack} ({result.region}) and its roles"]
    if result.kept_provider:
        lines.append(
            f"  kept GitHub's OIDC provider {result.kept_provider} (other roles may trust it); if"
            " nothing does: aws iam delete-open-id-connect-provider --open-id-connect-provider-arn"
            f" {result.kept_provider}"
        )
    return "\n".join(lines)


def removed_json(result: RemovedResult) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "region": result.region,
        "deleted": result.deleted,
        "kept_provider": result.kept_provider,
    }
