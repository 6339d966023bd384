"""The deployer's IAM policy (`datasette-lambda iam-policy`) and the template command
(`datasette-lambda template`).

What proves the policy:

- coverage against AWS's resource schemas: for every config variant (both frontends, with and
  without deploy.bucket, databases in S3, short and long stack names, two regions), every permission
  the handlers (create, read, update, delete) of every resource type in the rendered templates
  list is allowed by the generated policy on the concrete resource it acts on (named as
  CloudFormation names it), or is left out for a template property no template sets;
- nothing more: every action granted was asked for by a schema or by one of the tool's own calls,
  no action is a wildcard, and only actions that take no resource have "Resource": "*";
- the tool's own calls, recorded with a botocore event hook during a real deploy, plan and
  destroy against the local AWS (moto, both bucket choices and frontends), each allowed on the
  resource its parameters name; and the names moto gave the role and bucket are matched;
- generated names: CloudFormation's IdentifierUtils algorithm (ported below as the oracle) for
  stack names of every length gives names the policy matches, and other stacks' names it does not.

The policy evaluator here is small and strict: Allow statements only, `*` and `?` wildcards
(actions case-insensitive, resources case-sensitive), StringEquals conditions against a context.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import boto3.s3.transfer
import pytest
from click.testing import CliRunner
from test_template import in_s3, make_config, make_result

from datasette_action import deploy as d
from datasette_action import iam
from datasette_action import template as tpl
from datasette_action.build import build
from datasette_action.cli import cli
from datasette_action.config import Config, load_config
from datasette_action.local_aws import LocalAws
from datasette_action.package import PackageResult, package

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
README = (Path(__file__).resolve().parent.parent / "docs/deploying.md").read_text(encoding="utf-8")
LONG_STACK = "A" + "-long-stack-name" * 7 + "-end"  # 128 characters
# The Service Authorization Reference lists no resource type for these: they need "Resource": "*".
NO_RESOURCE = {
    "sts:getcalleridentity",
    "lambda:getaccountsettings",
    "logs:describeloggroups",
    "logs:describeindexpolicies",
    "logs:describeresourcepolicies",
}


# -- a small IAM evaluator ------------------------------------------------------------------------


def wildcard(pattern: str, value: str, *, case: bool = True) -> bool:
    regex = "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(regex, value, flags=0 if case else re.IGNORECASE) is not None


def listed(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allows(
    policy: Mapping[str, Any], action: str, resource: str, context: Mapping[str, str] | None = None
) -> bool:
    """Whether some statement allows `action` on `resource` (`context`: the request's condition keys)."""
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement) <= {
            "Sid",
            "Effect",
            "Action",
            "Resource",
            "Condition",
        }
        if not any(wildcard(a, action, case=False) for a in listed(statement["Action"])):
            continue
        if not any(wildcard(r, resource) for r in listed(statement["Resource"])):
            continue
        conditions = statement.get("Condition") or {}
        assert set(conditions) <= {"StringEquals"}, conditions
        if all(
            (context or {}).get(key) == value for key, value in (conditions.get("StringEquals") or {}).items()
        ):
            return True
    return False


def test_the_evaluator() -> None:
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b-*/x/*"},
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "arn:aws:iam::1:role/r",
                "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            },
        ]
    }
    assert allows(policy, "s3:getobject", "arn:aws:s3:::b-1/x/y/z")
    assert not allows(policy, "s3:GetObject", "arn:aws:s3:::b-1/y")
    assert not allows(policy, "s3:GetObject", "arn:aws:s3:::B-1/x/y")
    assert not allows(policy, "s3:PutObject", "arn:aws:s3:::b-1/x/y")
    assert allows(
        policy, "iam:PassRole", "arn:aws:iam::1:role/r", {"iam:PassedToService": "lambda.amazonaws.com"}
    )
    assert not allows(
        policy, "iam:PassRole", "arn:aws:iam::1:role/r", {"iam:PassedToService": "ec2.amazonaws.com"}
    )
    assert not allows(policy, "iam:PassRole", "arn:aws:iam::1:role/r")


# -- CloudFormation's generated names (the oracle) --------------------------------------------------


def fair_split(cap: int, buckets: Sequence[int]) -> list[int]:
    """IdentifierUtils.fairSplit (aws-cloudformation/cloudformation-cli-java-plugin)."""
    remaining, allocated = cap, [0] * len(buckets)
    while remaining > 0:
        most = 1 if remaining < len(buckets) else remaining // len(buckets)
        satisfied = 0
        for i, wanted in enumerate(buckets):
            if allocated[i] < wanted:
                step = min(most, wanted - allocated[i])
                allocated[i] += step
                remaining -= step
            else:
                satisfied += 1
            if remaining <= 0 or satisfied == len(buckets):
                return allocated
    return allocated


def generated(
    stack: str, logical_id: str, max_length: int, *, random: int = 12, collapse: bool = True
) -> str:
    """The name IdentifierUtils.generateResourceIdentifier(stackId, logicalId, token, maxLength)
    makes: 12 random characters there. `random=13, collapse=False`: names seen from CloudFormation
    with a 13-character random part (and, not knowing, repeated dashes kept)."""
    clean = re.sub("-{2,}", "-", stack.lstrip("-")) if collapse else stack
    stack_chars, logical_chars = fair_split(max_length - (random + 1) - 1, [len(clean), len(logical_id)])
    prefix = f"{clean[:stack_chars]}-{logical_id[:logical_chars]}"[: max_length - (random + 1)]
    return f"{prefix}-{'Q7x' * 5}"[: len(prefix) + 1 + random]


def test_the_oracle_gives_the_names_cloudformation_gave() -> None:
    # A name CloudFormation made (64 characters), quoted in a public report of the cut:
    # MyStackDev-MyNestedApplicationStack-MyLambdaFunctionName-1U44TLUZ7OR55 (70) became
    # MyStackDev-MyNestedApplicatio-MyLambdaFunctionName-1U44TLUZ7OR55.
    name = generated(
        "MyStackDev-MyNestedApplicationStack-K87FLFVLYVQJ", "MyLambdaFunctionName", 64, random=13
    )
    assert name[:-13] == "MyStackDev-MyNestedApplicatio-MyLambdaFunctionName-" and len(name) == 64
    # the user guide's example (Name type): stack123123123123-s3bucket-abcdefghijk1
    assert generated("stack123123123123", "s3bucket", 63).lower()[:-12] == "stack123123123123-s3bucket-"
    assert len(generated("a" * 128, "FunctionRole", 64)) == 64


def stack_names() -> list[str]:
    """Valid stack names of every length, with dashes (and a double one) in them."""
    base = "My-data--site-0123456789-"
    return [(base * 6)[:length].rstrip("-") or "M" for length in range(1, 129)]


def test_generated_role_and_bucket_names_are_matched_for_every_stack_length() -> None:
    for stack in stack_names():
        config = make_config(stack=stack)
        arns = iam.resources(iam.Site.of(config, iam.Target(REGION, ACCOUNT), "ArtifactBucket"))
        bootstrap = tpl.bootstrap_stack_name(stack)
        for random, collapse in ((12, True), (13, False), (13, True)):
            role = generated(stack, "FunctionRole", 64, random=random, collapse=collapse)
            bucket = generated(bootstrap, "ArtifactBucket", 63, random=random, collapse=collapse).lower()
            assert len(role) <= 64 and len(bucket) <= 63
            assert wildcard(arns[iam.ROLE][0], f"arn:aws:iam::{ACCOUNT}:role/{role}"), (stack, role)
            assert wildcard(arns[iam.BUCKET][0], f"arn:aws:s3:::{bucket}"), (stack, bucket)


def test_the_patterns_do_not_match_other_stacks_names() -> None:
    arns = iam.resources(
        iam.Site.of(make_config(stack="my-data"), iam.Target(REGION, ACCOUNT), "ArtifactBucket")
    )
    assert arns[iam.ROLE] == (f"arn:aws:iam::{ACCOUNT}:role/my-data-FunctionRole-*",)
    assert arns[iam.BUCKET] == ("arn:aws:s3:::my-data-artifacts-artifactbucket-*",)
    for other in ("my-data2", "my-dat", "xmy-data", "my-data-2"):
        role = generated(other, "FunctionRole", 64)
        bucket = generated(tpl.bootstrap_stack_name(other), "ArtifactBucket", 63).lower()
        assert not wildcard(arns[iam.ROLE][0], f"arn:aws:iam::{ACCOUNT}:role/{role}"), other
        assert not wildcard(arns[iam.BUCKET][0], f"arn:aws:s3:::{bucket}"), other
    # a cut stack name keeps its first characters and the logical ID
    long = iam.resources(
        iam.Site.of(make_config(stack=LONG_STACK), iam.Target(REGION, ACCOUNT), "ArtifactBucket")
    )
    assert long[iam.ROLE] == (f"arn:aws:iam::{ACCOUNT}:role/{LONG_STACK[:32]}*-FunctionRole-*",)
    assert long[iam.BUCKET] == (f"arn:aws:s3:::{LONG_STACK[:30].lower()}*-artifactbucket-*",)


# -- coverage against the resource schemas --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    config: Config
    templates: tuple[dict[str, Any], ...]  # as deploy sends them: the main stack's, the bootstrap's

    @property
    def resources(self) -> list[tuple[str, dict[str, Any]]]:
        return [(str(r["Type"]), r) for body in self.templates for r in body["Resources"].values()]

    def one(self, resource_type: str) -> dict[str, Any]:
        (found,) = [r for t, r in self.resources if t == resource_type]
        return found


def variant(stack: str, region: str, frontend: str, bucket: str | None, s3_databases: bool) -> Variant:
    config = dataclasses.replace(make_config(stack=stack, frontend=frontend, bucket=bucket), region=region)
    result = make_result(config, databases=in_s3()) if s3_databases else make_result(config)
    main = tpl.render_template(config, result).body
    return Variant(config, (main,) if bucket else (main, tpl.bootstrap_template(config)))


VARIANTS = [
    variant(stack, region, frontend, bucket, s3)
    for stack, region, s3 in (("golden-site", REGION, False), (LONG_STACK, "eu-west-1", True))
    for frontend in ("function_url", "http_api")
    for bucket in (None, "my-artifacts")
]
IDS = [
    f"{v.config.stack[:11]}-{v.config.deploy.frontend}-{v.config.deploy.bucket or 'bootstrap'}"
    for v in VARIANTS
]


@dataclasses.dataclass(frozen=True)
class Names:
    """The concrete resources of a deployed variant, named as CloudFormation would name them."""

    variant: Variant
    account: str = ACCOUNT

    @property
    def region(self) -> str:
        return str(self.variant.config.region)

    @property
    def bucket(self) -> str:
        config = self.variant.config
        own = config.deploy.bucket
        return own or generated(tpl.bootstrap_stack_name(config.stack), "ArtifactBucket", 63).lower()

    def acted_on(self, resource_type: str, permission: str) -> list[str]:
        """What a handler's permission acts on (its resource type in the Service Authorization
        Reference), for the resources of this variant's templates."""
        service, _, action = permission.lower().partition(":")
        lam = f"arn:aws:lambda:{self.region}:{self.account}"
        bucket = f"arn:aws:s3:::{self.bucket}"
        function = self.variant.one("AWS::Lambda::Function")["Properties"]
        layer = self.variant.one("AWS::Lambda::LayerVersion")["Properties"]["LayerName"]
        log_group = self.variant.one("AWS::Logs::LogGroup")["Properties"]["LogGroupName"]
        if permission.lower() in NO_RESOURCE:
            return ["*"]
        if service == "iam":
            role = generated(self.variant.config.stack, "FunctionRole", 64)
            return [f"arn:aws:iam::{self.account}:role/{role}"]
        if service == "s3" and resource_type in ("AWS::Lambda::Function", "AWS::Lambda::LayerVersion"):
            return [f"{bucket}/{tpl.artifact_keys(make_result(self.variant.config)).function}"]
        if service == "s3":
            return [f"{bucket}/artifacts/any.zip"] if "object" in action else [bucket]
        if service == "lambda" and action == "publishlayerversion":
            return [f"{lam}:layer:{layer}"]
        if service == "lambda" and "layerversion" in action:
            return [f"{lam}:layer:{layer}:7"]
        if service == "lambda":
            return [f"{lam}:function:{function['FunctionName']}"]
        if service == "logs":
            arn = f"arn:aws:logs:{self.region}:{self.account}:log-group:{log_group}"
            return [arn, f"{arn}:*"]
        if service == "apigateway":
            api = f"arn:aws:apigateway:{self.region}::"
            return [f"{api}/apis", f"{api}/apis/a1b2c3d4e5", f"{api}/apis/a1b2c3d4e5/stages/$default"]
        raise AssertionError(f"the test knows no resource for {permission} of {resource_type}")


def policy_of(v: Variant) -> iam.Policy:
    return iam.deployer_policy(v.config, iam.Target(str(v.config.region), ACCOUNT))


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_the_resource_types_are_those_of_the_templates(v: Variant) -> None:
    assert iam.resource_types(v.config) == tuple(sorted({t for t, _ in v.resources}))


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_every_handler_permission_is_allowed_or_left_out_for_an_unused_feature(v: Variant) -> None:
    policy = policy_of(v)
    names = Names(v)
    assert policy.schema_region == v.config.region
    assert not policy.unscoped and not policy.warnings
    checked = 0
    for resource_type in {t for t, _ in v.resources}:
        for handler, permissions in iam.handler_permissions(resource_type, str(v.config.region)).items():
            assert handler in ("create", "read", "update", "delete")
            for permission in permissions:
                left = next((out for out in iam.LEFT_OUT if out.matches(resource_type, permission)), None)
                if left is not None:
                    used = [
                        r
                        for t, r in v.resources
                        if t == resource_type and set(r["Properties"]) & set(left.properties)
                    ]
                    assert not used, f"{permission} is left out for {left.properties}, which a template sets"
                    continue
                context = {"iam:PassedToService": "lambda.amazonaws.com"}
                for resource in names.acted_on(resource_type, permission):
                    assert allows(policy.document, permission, resource, context), (
                        f"{resource_type} {handler}: {permission} on {resource}"
                    )
                    checked += 1
    assert checked > 100


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_the_policy_grants_nothing_else(v: Variant) -> None:
    policy = policy_of(v)
    asked = {c.action.lower() for c in iam.CALLS}
    for resource_type in policy.resource_types:
        for permissions in iam.handler_permissions(resource_type, str(v.config.region)).values():
            asked |= {p.lower() for p in permissions}
    for statement in policy.document["Statement"]:
        actions = listed(statement["Action"])
        assert not any("*" in action or "?" in action for action in actions)
        assert {a.lower() for a in actions} <= asked
        if "*" in listed(statement["Resource"]):
            assert statement["Resource"] == "*" and {a.lower() for a in actions} <= NO_RESOURCE
        for resource in listed(statement["Resource"]):
            # every ARN names this region, this account and this site's own names
            assert (
                resource == "*"
                or resource.startswith(("arn:aws:s3:::", "arn:aws:iam::123456789012:"))
                or (f":{v.config.region}:" in resource)
            )
    # with deploy.bucket, no bucket of the tool's own and no bootstrap stack
    text = json.dumps(policy.document)
    assert (f"stack/{tpl.bootstrap_stack_name(v.config.stack)}/" in text) is (v.config.deploy.bucket is None)
    assert "s3:CreateBucket" not in text or v.config.deploy.bucket is None
    assert policy.size <= iam.MANAGED_POLICY_MAX


# What a read-only role may hold: reads, and change sets created, described and deleted.
READ_ONLY = re.compile(
    r"sts:GetCallerIdentity|cloudformation:(Describe|Get)\w+|cloudformation:(Create|Delete)ChangeSet"
    r"|s3:(Get|List)\w+|lambda:Get\w+|logs:Describe\w+"
)
LIVE_CHANGES = (
    "cloudformation:ExecuteChangeSet",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:DeleteStack",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "iam:PassRole",
    "lambda:UpdateFunctionCode",
)


@pytest.mark.parametrize("v", VARIANTS, ids=IDS)
def test_the_plan_policy_can_change_nothing_live(v: Variant) -> None:
    target = iam.Target(str(v.config.region), ACCOUNT)
    plan, deployer = iam.plan_policy(v.config, target), iam.deployer_policy(v.config, target)
    assert plan.modes == (iam.PLAN,) and not plan.resource_types and not plan.warnings
    statements = plan.document["Statement"]
    actions = [a for statement in statements for a in listed(statement["Action"])]
    assert actions and all(READ_ONLY.fullmatch(action) for action in actions), actions
    everything = {r for statement in deployer.document["Statement"] for r in listed(statement["Resource"])}
    for action in LIVE_CHANGES:
        assert not any(allows(plan.document, action, resource) for resource in everything), action
    # exactly plan's calls, each granted as the deployer's policy grants it (a subset of it)
    assert {a.lower() for a in actions} == {c.action.lower() for c in iam.calls(plan.site, [iam.PLAN])}
    for statement in statements:
        for action in listed(statement["Action"]):
            for resource in listed(statement["Resource"]):
                assert allows(deployer.document, action, resource), (action, resource)


def test_the_largest_policy_fits_a_managed_policy() -> None:
    """The longest stack name, the bootstrap bucket, the HTTP API, a GovCloud region."""
    config = make_config(stack=LONG_STACK, frontend="http_api")
    policy = iam.deployer_policy(config, iam.Target("us-gov-west-1", ACCOUNT, "aws-us-gov"))
    assert 5_000 < policy.size <= iam.MANAGED_POLICY_MAX
    assert "arn:aws-us-gov:lambda:us-gov-west-1:" in json.dumps(policy.document)


def test_the_names_are_the_templates() -> None:
    """The function, layer and log group names the policy uses are those the template renders."""
    for v in VARIANTS:
        site = policy_of(v).site
        assert site.function == v.one("AWS::Lambda::Function")["Properties"]["FunctionName"]
        assert site.layer == v.one("AWS::Lambda::LayerVersion")["Properties"]["LayerName"]
        assert site.log_group == v.one("AWS::Logs::LogGroup")["Properties"]["LogGroupName"]
        roles = [
            logical
            for body in v.templates
            for logical, r in body["Resources"].items()
            if r["Type"] == "AWS::IAM::Role"
        ]
        assert roles == [iam.ROLE_LOGICAL_ID] and "RoleName" not in v.one("AWS::IAM::Role")["Properties"]
        if not v.config.deploy.bucket:
            assert "BucketName" not in v.one("AWS::S3::Bucket")["Properties"]


def test_the_own_bucket_is_narrowed_to_the_keys_this_tool_writes() -> None:
    config = make_config(stack="my-data", bucket="shared-bucket")
    policy = iam.deployer_policy(config, iam.Target(REGION, ACCOUNT)).document
    assert allows(policy, "s3:PutObject", f"arn:aws:s3:::shared-bucket/artifacts/layer-{'1' * 64}.zip")
    assert allows(policy, "s3:PutObject", "arn:aws:s3:::shared-bucket/state/my-data.json")
    assert allows(
        policy, "s3:GetObject", "arn:aws:s3:::shared-bucket/state/other-site.json"
    )  # destroy reads it
    assert allows(policy, "s3:DeleteObject", f"arn:aws:s3:::shared-bucket/databases/{'3' * 64}/db.db")
    assert not allows(policy, "s3:DeleteObject", "arn:aws:s3:::shared-bucket/state/other-site.json")
    assert not allows(policy, "s3:PutObject", "arn:aws:s3:::shared-bucket/photos/cat.jpg")
    assert not allows(policy, "s3:DeleteBucket", "arn:aws:s3:::shared-bucket")
    assert not allows(
        policy, "s3:DeleteObjectVersion", f"arn:aws:s3:::shared-bucket/artifacts/layer-{'1' * 64}.zip"
    )


def test_the_readme_lists_every_call_of_each_mode() -> None:
    """README's "The AWS API calls each mode makes" is iam.CALLS by mode: each row names exactly
    the operations marked with its mode (`service:Operation`, then `Operation` of the same
    service; what is in parentheses says when)."""
    section = README.split("**The AWS API calls each mode makes**", 1)[1]
    rows = dict(re.findall(r"^\| (\w+) \| (.+) \|$", section.split("\n\n", 2)[1], flags=re.MULTILINE))
    assert set(rows) == {"mode", *iam.MODES}
    for mode in iam.MODES:
        named, service = set(), ""
        for token in re.findall(r"`([^`]+)`", re.sub(r"\([^()]*\)", "", rows[mode])):
            prefix, _, operation = token.rpartition(":")
            service = prefix or service
            assert service and re.fullmatch(r"[A-Z][a-z]\w+", operation), (mode, token)
            named.add((service, operation))
        assert named == {(c.service, c.operation) for c in iam.CALLS if mode in c.modes}, mode


def test_the_readme_names_every_action_of_the_plan_policy() -> None:
    section = README.split("### The plan role's policy", 1)[1].split("\n## ", 1)[0]
    policy = iam.plan_policy(make_config(stack="my-data"), iam.Target(REGION, ACCOUNT))
    actions = {a for statement in policy.document["Statement"] for a in listed(statement["Action"])}
    missing = [a for a in actions if f"`{a}`" not in section and f"`{a.partition(':')[2]}`" not in section]
    assert not missing, f"actions of the plan policy the README's plan role section does not name: {missing}"


def test_every_left_out_permission_is_in_the_readme() -> None:
    section = README.split("### The deployer's IAM policy", 1)[1].split("\n## ", 1)[0]
    missing = [p for out in iam.LEFT_OUT for p in out.permissions if f"`{p}`" not in section]
    assert not missing, f"left-out permissions the README does not name: {missing}"


# -- the command line, offline --------------------------------------------------------------------


def write_project(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(root / "data.db") as db:
        db.execute("create table t (id integer primary key)")
    db.close()
    config = root / "datasette-lambda.yml"
    config.write_text(text + "databases:\n  data: {file: data.db}\n")
    return config


def test_iam_policy_without_credentials_has_a_placeholder_account(no_aws: None, tmp_path: Path) -> None:
    path = write_project(tmp_path / "site", "stack: my-data\nregion: eu-west-1\n")
    done = CliRunner().invoke(cli, ["iam-policy", "-c", str(path)])
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    expected = iam.deployer_policy(load_config(path), iam.Target("eu-west-1", iam.PLACEHOLDER_ACCOUNT))
    assert document == expected.document
    assert "arn:aws:lambda:eu-west-1:ACCOUNT_ID:function:my-data" in done.stdout
    assert "Warning: no AWS credentials: the ARNs say ACCOUNT_ID" in done.stderr
    assert "IAM policy for deploying my-data (function_url) to eu-west-1, account ACCOUNT_ID" in done.stderr
    assert "left out: ec2:DescribeSecurityGroups" in done.stderr


def test_iam_policy_plan_prints_the_plan_roles_policy(no_aws: None, tmp_path: Path) -> None:
    path = write_project(tmp_path / "site", "stack: my-data\nregion: eu-west-1\n")
    done = CliRunner().invoke(cli, ["iam-policy", "-c", str(path), "--plan"])
    assert done.exit_code == 0, done.output
    expected = iam.plan_policy(load_config(path), iam.Target("eu-west-1", iam.PLACEHOLDER_ACCOUNT))
    assert json.loads(done.stdout) == expected.document
    assert "cloudformation:ExecuteChangeSet" not in done.stdout and "s3:PutObject" not in done.stdout
    assert "IAM policy for planning (read-only) my-data (function_url) to eu-west-1" in done.stderr
    assert "never executes one; no resource's permissions, no upload" in done.stderr


def test_iam_policy_without_a_region_says_so(no_aws: None, tmp_path: Path) -> None:
    path = write_project(
        tmp_path / "site", "stack: my-data\ndeploy: {bucket: my-bucket, frontend: http_api}\n"
    )
    done = CliRunner().invoke(cli, ["iam-policy", "-c", str(path)])
    assert done.exit_code == 0, done.output
    assert "arn:aws:cloudformation:REGION:ACCOUNT_ID:stack/my-data/*" in done.stdout
    assert "arn:aws:apigateway:REGION::/apis" in done.stdout and "artifactbucket" not in done.stdout
    assert "Warning: no region (no AWS region: set `region:`" in done.stderr


def test_template_bootstrap_needs_no_build_and_no_aws(no_aws: None, tmp_path: Path) -> None:
    path = write_project(tmp_path / "site", "stack: my-data\nregion: eu-west-1\n")
    done = CliRunner().invoke(cli, ["template", "-c", str(path), "--bootstrap"])
    assert done.exit_code == 0, done.output
    assert done.stdout == tpl.to_json(tpl.bootstrap_template(load_config(path)))
    assert "The template of the stack my-data-artifacts:" in done.stderr and "sent inline" in done.stderr
    assert not (tmp_path / "site" / ".datasette-lambda").exists()


def test_template_bootstrap_with_an_own_bucket_is_an_error(no_aws: None, tmp_path: Path) -> None:
    path = write_project(
        tmp_path / "site", "stack: my-data\nregion: eu-west-1\ndeploy: {bucket: my-bucket}\n"
    )
    done = CliRunner().invoke(cli, ["template", "-c", str(path), "--bootstrap"])
    assert done.exit_code == 1 and done.stdout == ""
    assert (
        "Error: deploy.bucket names a bucket of your own (my-bucket): deploy makes no bootstrap stack"
        in done.stderr
    )


# -- the tool's own calls, recorded against the local AWS -------------------------------------------


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path
    config: Config
    result: PackageResult


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, example_copy: Callable[[Path], Path]) -> Project:
    root = example_copy(tmp_path_factory.mktemp("iam") / "site")
    config = load_config(root / "datasette-lambda.yml")
    return Project(root, config, package(config, build(config)))


RecordedCall = tuple[str, str, str, dict[str, Any]]  # (mode, service, operation, parameters)


@dataclasses.dataclass
class Recorder:
    """Every AWS call of a session, with its API parameters (botocore's before-parameter-build
    event: before-call has the serialized request), under the mode being run."""

    mode: str
    calls: list[RecordedCall] = dataclasses.field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((self.mode, model.service_model.endpoint_prefix, model.name, params))

    def session(self, config: Config) -> d.Aws:
        aws = d.aws_session(config)
        aws.session.events.register("before-parameter-build", self)  # before the first client
        return aws


@dataclasses.dataclass(frozen=True)
class Recorded:
    config: Config
    calls: tuple[RecordedCall, ...]
    uploaded_template: bytes  # the main template as deploy put it in the bucket
    bootstrap_template: str | None  # the bootstrap stack's template as CloudFormation holds it
    role: str  # the function role's name as the stack made it
    bucket: str


def record(local_aws: LocalAws, project: Project, config: Config) -> Recorded:
    """deploy, deploy again (nothing to do), plan and destroy, every AWS call recorded."""
    recorder = Recorder(iam.DEPLOY)
    aws = recorder.session(config)
    options = d.DeployOptions(poll=0.1, timeout=60, health_check=False)
    template = tpl.render_template(config, project.result)
    deployed = d.deploy(config, project.result, template, options, aws=aws)
    d.deploy(config, project.result, template, options, aws=aws)
    recorder.mode = iam.PLAN
    d.plan(config, project.result, template, options, aws=aws)
    s3 = boto3.client("s3", region_name=REGION)
    uploaded = s3.get_object(Bucket=deployed.bucket, Key=f"templates/{template.sha256}.json")["Body"].read()
    cf = boto3.client("cloudformation", region_name=REGION)
    bootstrap = None
    if not config.deploy.bucket:
        bootstrap = cf.get_template(StackName=tpl.bootstrap_stack_name(config.stack))["TemplateBody"]
        bootstrap = bootstrap if isinstance(bootstrap, str) else json.dumps(bootstrap)
    role = cf.describe_stack_resource(StackName=config.stack, LogicalResourceId=iam.ROLE_LOGICAL_ID)
    recorder.mode = iam.DESTROY
    d.destroy(config, options, aws=aws)
    return Recorded(
        config,
        tuple(recorder.calls),
        uploaded,
        bootstrap,
        role["StackResourceDetail"]["PhysicalResourceId"],
        deployed.bucket,
    )


@pytest.fixture(scope="module")
def with_bootstrap(local_aws: LocalAws, project: Project) -> Recorded:
    """The example as it is: a function URL, the bootstrap bucket. Its layer (about 5 MB) goes up
    in a multipart upload, as a layer over boto3's 8 MB threshold does: the threshold is lowered
    to 1 MB (the layer is then one part, and the last part of an upload may be below S3's 5 MB)."""
    with pytest.MonkeyPatch.context() as patch:
        lowered = functools.partial(boto3.s3.transfer.TransferConfig, multipart_threshold=1024 * 1024)
        patch.setattr(boto3.s3.transfer, "TransferConfig", lowered)
        return record(local_aws, project, project.config)


@pytest.fixture(scope="module")
def with_own_bucket(local_aws: LocalAws, project: Project) -> Recorded:
    """deploy.bucket, an HTTP API and a reserved concurrency (lambda:GetAccountSettings)."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="iam-own-bucket")
    deploy = dataclasses.replace(project.config.deploy, bucket="iam-own-bucket", frontend="http_api")
    lambda_ = dataclasses.replace(project.config.lambda_, reserved_concurrency=5)
    return record(
        local_aws,
        project,
        dataclasses.replace(project.config, stack="iam-own", deploy=deploy, lambda_=lambda_),
    )


def resource_of(call: iam.Call, params: Mapping[str, Any], region: str) -> list[str]:
    """What a call's action acts on, as IAM authorizes it (from the call's own parameters)."""
    if call.family == iam.ANY:
        return ["*"]
    if call.parameter == "TemplateURL":  # the template object CloudFormation reads
        url = urllib.parse.urlsplit(str(params["TemplateURL"]))
        host, path = url.hostname or "", urllib.parse.unquote(url.path.lstrip("/"))
        # virtual-hosted (<bucket>.s3.<region>.amazonaws.com/<key>), else path-style (/<bucket>/<key>)
        return [f"arn:aws:s3:::{host.split('.s3.')[0]}/{path}" if ".s3." in host else f"arn:aws:s3:::{path}"]
    if call.service == "cloudformation":
        assert "StackName" in params, params
        stack = str(params["StackName"])
        return [
            stack
            if stack.startswith("arn:")
            else f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{stack}/x1"
        ]
    assert call.service == "s3", call
    bucket = f"arn:aws:s3:::{params['Bucket']}"
    if call.family == iam.BUCKET:
        return [bucket]
    if "Delete" in params:
        return [f"{bucket}/{o['Key']}" for o in params["Delete"]["Objects"]]
    return [f"{bucket}/{params['Key']}"]


def refusals(calls: Sequence[RecordedCall], policy: Mapping[str, Any]) -> list[str]:
    """What the recorded calls need that `policy` does not allow, and calls `iam.CALLS` does not
    list for the mode that made them."""
    found = []
    for mode, service, operation, params in calls:
        needed = [c for c in iam.CALLS if (c.service, c.operation) == (service, operation)]
        if not needed:
            found.append(f"{service}:{operation} is not in iam.CALLS")
        versions = any("VersionId" in o for o in (params.get("Delete") or {}).get("Objects", ()))
        for call in needed:
            if mode not in call.modes:
                found.append(f"{mode} called {operation}: iam.CALLS says {call.action} is not {mode}'s")
            if call.bootstrap_only and not versions and operation == "DeleteObjects":
                continue
            if call.parameter and call.parameter not in params:
                continue
            for resource in resource_of(call, params, REGION):
                if not allows(policy, call.action, resource):
                    found.append(f"{mode} {operation}: {call.action} on {resource}")
    return list(dict.fromkeys(found))


def operations(run: Recorded, mode: str) -> set[tuple[str, str]]:
    return {(service, operation) for made_in, service, operation, _ in run.calls if made_in == mode}


@pytest.mark.parametrize("recorded", ["with_bootstrap", "with_own_bucket"])
def test_every_call_deploy_plan_and_destroy_make_is_allowed(
    recorded: str, request: pytest.FixtureRequest
) -> None:
    run: Recorded = request.getfixturevalue(recorded)
    policy = iam.deployer_policy(run.config, iam.locate(run.config))
    assert policy.site.target.account == ACCOUNT and not policy.warnings  # from STS (moto's)
    deploy, destroy = operations(run, iam.DEPLOY), operations(run, iam.DESTROY)
    assert ("cloudformation", "ExecuteChangeSet") in deploy and ("s3", "DeleteObjects") in destroy
    assert ("logs", "DescribeLogGroups") in deploy
    if run.config.deploy.bucket:
        assert ("lambda", "GetAccountSettings") in deploy and ("s3", "HeadBucket") in destroy
    else:
        assert ("s3", "CreateMultipartUpload") in deploy and ("s3", "UploadPart") in deploy
        assert ("s3", "ListObjectVersions") in destroy
    assert any("TemplateURL" in params for *_, params in run.calls)  # CloudFormation reads it
    assert not refusals(run.calls, policy.document)


@pytest.mark.parametrize("recorded", ["with_bootstrap", "with_own_bucket"])
def test_every_call_plan_makes_is_allowed_by_the_plan_policy(
    recorded: str, request: pytest.FixtureRequest
) -> None:
    run: Recorded = request.getfixturevalue(recorded)
    policy = iam.plan_policy(run.config, iam.locate(run.config))
    assert policy.site.target.account == ACCOUNT and not policy.warnings
    plan = operations(run, iam.PLAN)
    change_sets = {("cloudformation", f"{verb}ChangeSet") for verb in ("Create", "Describe", "Delete")}
    assert change_sets | {("logs", "DescribeLogGroups"), ("s3", "HeadObject")} <= plan
    if run.config.deploy.bucket:
        assert {("lambda", "GetAccountSettings"), ("s3", "HeadBucket")} <= plan
    assert not {("s3", "PutObject"), ("cloudformation", "ExecuteChangeSet")} & plan
    assert not refusals([c for c in run.calls if c[0] == iam.PLAN], policy.document)
    # the deploy's and the destroy's calls are refused
    assert any(": cloudformation:ExecuteChangeSet on" in r for r in refusals(run.calls, policy.document))


def test_plan_sends_a_large_template_by_its_url_or_not_at_all(local_aws: LocalAws, project: Project) -> None:
    """A template over 51,200 bytes even as compact JSON: plan uploads nothing. One a deploy
    uploaded goes by its URL (CloudFormation reads it with the plan role's s3:GetObject); another
    makes no change set, and the plan says why."""
    tags = {f"tag-{i:02d}-{'k' * 100}": "v" * 256 for i in range(47)}  # on every resource
    config = dataclasses.replace(
        project.config, stack="iam-large", deploy=dataclasses.replace(project.config.deploy, tags=tags)
    )
    template = tpl.render_template(config, project.result)
    assert tpl.inline_body(template) is None
    options = d.DeployOptions(poll=0.1, timeout=60, health_check=False)
    d.deploy(config, project.result, template, options)
    recorder = Recorder(iam.PLAN)
    aws = recorder.session(config)
    try:
        same = d.plan(config, project.result, template, options, aws=aws)
        retagged = dataclasses.replace(
            config, deploy=dataclasses.replace(config.deploy, tags={**tags, "another": "tag"})
        )
        other = d.plan(
            retagged, project.result, tpl.render_template(retagged, project.result), options, aws=aws
        )
    finally:
        d.destroy(config, options)
    assert same.changes_from == "change set" and same.changes_note is None
    assert other.changes_from == "unknown" and other.changes == () and other.online
    assert other.changes_note is not None and "no change set was made" in other.changes_note
    (url,) = [
        params["TemplateURL"] for _, _, operation, params in recorder.calls if operation == "CreateChangeSet"
    ]
    assert url.endswith(f"/templates/{template.sha256}.json")
    made = {operation for _, _, operation, _ in recorder.calls}
    assert not made & {"PutObject", "CreateMultipartUpload", "ExecuteChangeSet"}
    assert not refusals(recorder.calls, iam.plan_policy(config, iam.locate(config)).document)


@pytest.mark.parametrize("recorded", ["with_bootstrap", "with_own_bucket"])
def test_the_names_the_stacks_made_are_matched(recorded: str, request: pytest.FixtureRequest) -> None:
    run: Recorded = request.getfixturevalue(recorded)
    policy = iam.deployer_policy(run.config, iam.Target(REGION, ACCOUNT)).document
    role = f"arn:aws:iam::{ACCOUNT}:role/{run.role}"
    assert allows(policy, "iam:CreateRole", role)
    assert allows(policy, "iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert allows(policy, "s3:PutObject", f"arn:aws:s3:::{run.bucket}/artifacts/any.zip")
    if not run.config.deploy.bucket:
        assert allows(policy, "s3:CreateBucket", f"arn:aws:s3:::{run.bucket}")


def test_template_prints_what_deploy_uploaded(
    with_bootstrap: Recorded, project: Project, tmp_path: Path
) -> None:
    """`template` runs the build and the package (the layer from the cache) and prints the very
    bytes deploy put in the bucket; `--bootstrap` what the bootstrap stack was made from."""
    root = tmp_path / "site"
    shutil.copytree(project.root, root)
    runner = CliRunner()
    done = runner.invoke(cli, ["template", "-c", str(root / "datasette-lambda.yml")])
    assert done.exit_code == 0, done.output
    assert done.stdout.encode() == with_bootstrap.uploaded_template
    sha256 = hashlib.sha256(with_bootstrap.uploaded_template).hexdigest()
    assert f"uploaded as templates/{sha256}.json" in done.stderr
    assert "parameter LayerKey = artifacts/layer-" in done.stderr
    assert "parameter DatasetteSecret = (NoEcho: $DATASETTE_SECRET at deploy time)" in done.stderr
    bootstrap = runner.invoke(cli, ["template", "-c", str(root / "datasette-lambda.yml"), "--bootstrap"])
    assert bootstrap.exit_code == 0, bootstrap.output
    assert json.loads(bootstrap.stdout) == json.loads(str(with_bootstrap.bootstrap_template))
