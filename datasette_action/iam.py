"""The least-privilege IAM policies for a config: the deployer's (`deployer_policy`) and the
plan role's (`plan_policy`, what a pull request's read-only role needs to run `plan`).

Deploy passes CloudFormation no service role, so CloudFormation makes every resource's calls with
the deployer's permissions. What those calls are, AWS's resource schemas say: each resource type's
`handlers` (create, read, update, delete) list the permissions its handlers need. cfn-lint ships
the schemas (`cfnlint/data/schemas/providers/<region>.json` maps a type to its file under
`schemas/resources/`); they are read here at run time, for the deploy's region, for every
resource type of the two templates. This tool's own calls (`CALLS`, from `datasette_action/deploy/`)
come on top. Each call names the modes that make it; the plan role's policy is plan's calls alone
(a change set that is never executed makes no resource calls, and plan writes nothing).

Every permission is granted on this site's resources only (`Site`, `resources`): its stacks, its
function, layer, role, log group, HTTP API and artifacts bucket, named as narrowly as their names
are known before they exist. Left out (`LEFT_OUT`, each with the template properties it serves,
which no template sets): handler permissions that would act beyond the site's resources for
features the templates never use (VPC networking, KMS keys, file systems, account-wide log
policies), and the Put/Delete permissions of bucket configurations the bootstrap bucket never has
(without them the policy fits IAM's 6,144 characters for a managed policy, `MANAGED_POLICY_MAX`).
No action is a wildcard; `"Resource": "*"` holds only actions that take no resource
(sts:GetCallerIdentity, lambda:GetAccountSettings, logs:DescribeLogGroups, ...), as the Service
Authorization Reference lists them.

`locate` finds the region and, when credentials exist, the account (sts:GetCallerIdentity, through
`datasette_action.deploy`); without them the account is a placeholder to replace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasette_action import template as tpl
from datasette_action.config import Config
from datasette_action.deploy.artifacts import STATE_PREFIX, TEMPLATES_PREFIX
from datasette_action.errors import UserError
from datasette_action.state import state_key

PLACEHOLDER_ACCOUNT = "ACCOUNT_ID"
PLACEHOLDER_REGION = "REGION"
SCHEMA_REGION = "us-east-1"  # cfn-lint's schemas for a region it does not know (or the placeholder)
# CloudFormation runs create, read, update and delete for stacks; `list` serves the Cloud Control
# API's ListResources (and resource scans), never a stack operation.
HANDLERS = ("create", "read", "update", "delete")
POLICY_VERSION = "2012-10-17"
# A managed policy holds at most 6,144 characters, whitespace not counted:
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
MANAGED_POLICY_MAX = 6_144

# -- the site's names -------------------------------------------------------------------------------

# Logical IDs of the resources whose names CloudFormation generates (template.py).
ROLE_LOGICAL_ID = "FunctionRole"
# A resource with no name in the template is named `<stack>-<LogicalId>-<random>` by CloudFormation
# ("Name type": "MyStack-MyBucket-abcdefghijk1", in lower case for S3 buckets,
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-name.html). A name
# longer than the resource allows is cut in the stack's part; the logical ID is kept whole: the
# CloudFormation CLI's IdentifierUtils.generateResourceIdentifier (aws-cloudformation/
# cloudformation-cli-java-plugin), which resource handlers call, keeps 13 characters for the random
# part and a dash, splits the rest fairly between stack and logical ID, and turns repeated dashes in
# the stack name into one. So a role (at most 64 characters,
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html) keeps 38 characters of
# the stack name before "-FunctionRole", and a bucket (at most 63,
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html) 35 before
# "-artifactbucket"; names reported from CloudFormation with a 13-character random part keep one
# fewer. The policy's patterns keep fewer still, then a `*`, so they match either.
ROLE_NAME_KEEP = 32
BUCKET_NAME_KEEP = 30


def generated_name(stack: str, logical_id: str, keep: int) -> str:
    """The pattern of the name CloudFormation gives `logical_id` in the stack `stack`: exact up to
    the random part when the whole stack name is kept, else its first `keep` characters, a `*`
    for what may be cut, and the logical ID."""
    head = stack[:keep].split("--", 1)[0]
    if head == stack:
        return f"{stack}-{logical_id}-*"
    return f"{head}*-{logical_id}-*"


@dataclass(frozen=True)
class Target:
    """Where the policy applies: the partition, region and account its ARNs name."""

    region: str
    account: str
    partition: str = "aws"
    notes: tuple[str, ...] = ()  # what is a placeholder, and why


@dataclass(frozen=True)
class Site:
    """The names of one config's resources, as far as they are known before they exist."""

    target: Target
    stack: str
    bootstrap_stack: str | None  # None: deploy.bucket names the user's own bucket
    bucket: str  # deploy.bucket, or the pattern of the bootstrap bucket's generated name
    function: str
    layer: str
    log_group: str
    role: str  # the pattern of the function role's generated name
    frontend: str

    @classmethod
    def of(cls, config: Config, target: Target, bucket_logical_id: str) -> Site:
        function = tpl.function_name(config.stack)
        own = config.deploy.bucket
        bootstrap = None if own else tpl.bootstrap_stack_name(config.stack)
        return cls(
            target=target,
            stack=config.stack,
            bootstrap_stack=bootstrap,
            bucket=own or generated_name(str(bootstrap), bucket_logical_id, BUCKET_NAME_KEEP).lower(),
            function=function,
            layer=f"{function}-dependencies",  # template.py's DependenciesLayer LayerName
            log_group=tpl.log_group_name(config.stack),
            role=generated_name(config.stack, ROLE_LOGICAL_ID, ROLE_NAME_KEEP),
            frontend=config.deploy.frontend,
        )


# -- what a permission acts on: families of the site's ARNs -------------------------------------------

STACKS = "Stacks"
FUNCTION = "Function"
LAYER = "Layer"
ROLE = "FunctionRole"
PASS_ROLE = "PassFunctionRoleToLambda"
LOG_GROUP = "LogGroup"
HTTP_API = "HttpApi"
BUCKET = "ArtifactsBucket"
READ_OBJECTS = "ReadArtifacts"
WRITE_OBJECTS = "WriteArtifacts"
CODE = "ReadCode"  # what Lambda reads, with the deployer's permissions, to create a function or layer
ANY = "NoResourceLevelPermissions"  # actions that take no resource: "Resource": "*"
FAMILIES = (
    *(STACKS, FUNCTION, LAYER, ROLE, PASS_ROLE, LOG_GROUP, HTTP_API),
    *(BUCKET, READ_OBJECTS, WRITE_OBJECTS, CODE, ANY),
)  # the statements' order
# iam:PassRole only towards Lambda: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
CONDITIONS: Mapping[str, Mapping[str, Any]] = {
    PASS_ROLE: {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
}


def resources(site: Site) -> dict[str, tuple[str, ...]]:
    """Each family's ARNs (formats: the Service Authorization Reference's resource types of each
    service, https://docs.aws.amazon.com/service-authorization/latest/reference/)."""
    t = site.target
    p, region, account = t.partition, t.region, t.account
    lam = f"arn:{p}:lambda:{region}:{account}"
    role = f"arn:{p}:iam::{account}:role/{site.role}"
    log_group = f"arn:{p}:logs:{region}:{account}:log-group:{site.log_group}"
    bucket = f"arn:{p}:s3:::{site.bucket}"
    stacks = [site.stack, *([site.bootstrap_stack] if site.bootstrap_stack else [])]
    if site.bootstrap_stack:  # the whole bucket is this site's: destroy empties it
        read: tuple[str, ...] = (f"{bucket}/*",)
        write: tuple[str, ...] = (f"{bucket}/*",)
    else:  # the user's own bucket: only the keys this tool writes (by content), and its state file
        prefixes = (tpl.ARTIFACTS_PREFIX, tpl.DATABASES_PREFIX, TEMPLATES_PREFIX)
        read = tuple(f"{bucket}/{prefix}*" for prefix in (*prefixes, STATE_PREFIX))
        write = (*(f"{bucket}/{prefix}*" for prefix in prefixes), f"{bucket}/{state_key(site.stack)}")
    return {
        STACKS: tuple(f"arn:{p}:cloudformation:{region}:{account}:stack/{name}/*" for name in stacks),
        FUNCTION: (f"{lam}:function:{site.function}",),
        LAYER: (f"{lam}:layer:{site.layer}", f"{lam}:layer:{site.layer}:*"),
        ROLE: (role,),
        PASS_ROLE: (role,),
        LOG_GROUP: (log_group, f"{log_group}:*"),
        # an API's id is made when it is created: every HTTP API of the region, and their tags
        HTTP_API: tuple(f"arn:{p}:apigateway:{region}::{path}" for path in ("/apis", "/apis/*", "/tags/*")),
        BUCKET: (bucket,),
        READ_OBJECTS: read,
        WRITE_OBJECTS: write,
        CODE: (f"{bucket}/{tpl.ARTIFACTS_PREFIX}*",),
        ANY: ("*",),
    }


# -- the resource types' handler permissions ------------------------------------------------------

MAIN_TYPES = ("AWS::IAM::Role", "AWS::Lambda::Function", "AWS::Lambda::LayerVersion", "AWS::Logs::LogGroup")
FRONTEND_TYPES = {
    "function_url": ("AWS::Lambda::Permission", "AWS::Lambda::Url"),
    "http_api": ("AWS::ApiGatewayV2::Api", "AWS::Lambda::Permission"),
}

# Per resource type, what its handlers' permissions act on: a permission's own entry, else its
# service's. Permissions the Service Authorization Reference lists with no resource type need "*".
SCOPES: Mapping[str, Mapping[str, str]] = {
    "AWS::Lambda::Function": {
        "lambda": FUNCTION,
        "lambda:getlayerversion": LAYER,
        "iam:passrole": PASS_ROLE,
        "s3:getobject": CODE,
        "s3:getobjectversion": CODE,
    },
    "AWS::Lambda::Url": {"lambda": FUNCTION},
    "AWS::Lambda::Permission": {"lambda": FUNCTION},
    "AWS::Lambda::LayerVersion": {"lambda": LAYER, "s3:getobject": CODE, "s3:getobjectversion": CODE},
    "AWS::IAM::Role": {"iam": ROLE},
    "AWS::Logs::LogGroup": {
        "logs": LOG_GROUP,
        "logs:describeloggroups": ANY,
        "logs:describeindexpolicies": ANY,
        "logs:describeresourcepolicies": ANY,
    },
    "AWS::ApiGatewayV2::Api": {"apigateway": HTTP_API},
    "AWS::S3::Bucket": {"s3": BUCKET, "s3:putobjectacl": WRITE_OBJECTS, "s3:deleteobject": WRITE_OBJECTS},
    "AWS::S3::BucketPolicy": {"s3": BUCKET},
}


@dataclass(frozen=True)
class LeftOut:
    """Handler permissions left out of the policy (names, or `service:*`): each serves only a
    feature that needs one of the template `properties` of `resource_type`, which no template sets
    (a test keeps that true). Two kinds: permissions that would act beyond this site's resources
    (VPC networking, KMS keys, file systems, account-wide log policies), and the bootstrap bucket's
    configurations it never has (CORS, replication, a website, ...), whose Put and Delete
    permissions would take the policy past IAM's 6,144 characters for a managed policy."""

    resource_type: str
    properties: tuple[str, ...]
    reason: str
    permissions: tuple[str, ...]

    def matches(self, resource_type: str, permission: str) -> bool:
        if resource_type != self.resource_type:
            return False
        service, _, action = permission.lower().partition(":")
        return any(wanted.lower() in (f"{service}:*", f"{service}:{action}") for wanted in self.permissions)


def _out(resource_type: str, properties: str, reason: str, *permissions: str) -> LeftOut:
    return LeftOut(resource_type, tuple(properties.split()), reason, permissions)


FUNCTION_TYPE, LOG_GROUP_TYPE, BUCKET_TYPE = "AWS::Lambda::Function", "AWS::Logs::LogGroup", "AWS::S3::Bucket"
BUCKET_FEATURE = "the bucket has no"
LEFT_OUT = (
    _out(FUNCTION_TYPE, "VpcConfig", "VPC networking: the function is in no VPC", "ec2:*"),
    _out(
        FUNCTION_TYPE,
        "FileSystemConfigs",
        "file systems: none is mounted",
        "elasticfilesystem:*",
        "s3files:*",
    ),
    _out(
        FUNCTION_TYPE,
        "KmsKeyArn",
        "KMS: no customer managed key (Lambda encrypts the environment with its AWS managed key)",
        "kms:*",
    ),
    _out(FUNCTION_TYPE, "CodeSigningConfigArn", "code signing: none", "lambda:GetCodeSigningConfig"),
    _out(
        FUNCTION_TYPE,
        "CapacityProviderConfig",
        "Lambda Managed Instances: not used",
        "lambda:PassCapacityProvider",
    ),
    _out(
        LOG_GROUP_TYPE,
        "ResourcePolicyDocument",
        "a resource policy: none (these actions take no resource: they would be account-wide)",
        "logs:PutResourcePolicy",
        "logs:DeleteResourcePolicy",
    ),
    _out(
        LOG_GROUP_TYPE,
        "FieldIndexPolicies",
        "field index policies: none (account-wide actions too)",
        "logs:PutIndexPolicy",
        "logs:DeleteIndexPolicy",
    ),
    _out(
        LOG_GROUP_TYPE,
        "DataProtectionPolicy",
        "delivering data protection findings (to S3, Firehose): no data protection policy",
        "logs:CreateLogDelivery",
        "s3:REST.PUT.OBJECT",
        "firehose:*",
    ),
    _out(
        "AWS::ApiGatewayV2::Api",
        "BodyS3Location",
        "an OpenAPI definition in S3: quick create (Target) needs none",
        "s3:GetObject",
    ),
    _out(
        BUCKET_TYPE,
        "ReplicationConfiguration",
        f"{BUCKET_FEATURE} replication (and no role to pass)",
        "iam:PassRole",
        "s3:PutBucketReplication",
        "s3:PutReplicationConfiguration",
        "s3:DeleteBucketReplication",
    ),
    _out(
        BUCKET_TYPE,
        "MetadataTableConfiguration MetadataConfiguration",
        f"{BUCKET_FEATURE} S3 Metadata tables",
        "s3tables:*",
        "s3:CreateBucketMetadataTableConfiguration",
        "s3:DeleteBucketMetadataTableConfiguration",
        "s3:UpdateBucketMetadataJournalTableConfiguration",
        "s3:UpdateBucketMetadataInventoryTableConfiguration",
        "s3:UpdateBucketMetadataAnnotationTableConfiguration",
    ),
    _out(
        BUCKET_TYPE,
        "AccelerateConfiguration",
        f"{BUCKET_FEATURE} transfer acceleration",
        "s3:PutAccelerateConfiguration",
    ),
    _out(
        BUCKET_TYPE,
        "AnalyticsConfigurations",
        f"{BUCKET_FEATURE} analytics",
        "s3:PutAnalyticsConfiguration",
        "s3:DeleteBucketAnalyticsConfiguration",
    ),
    _out(BUCKET_TYPE, "AbacStatus", f"{BUCKET_FEATURE} attribute-based access control", "s3:PutBucketAbac"),
    _out(BUCKET_TYPE, "AccessControl", f"{BUCKET_FEATURE} ACL (ACLs are disabled)", "s3:PutBucketAcl"),
    _out(
        BUCKET_TYPE,
        "CorsConfiguration",
        f"{BUCKET_FEATURE} CORS rules",
        "s3:PutBucketCORS",
        "s3:DeleteBucketCors",
    ),
    _out(
        BUCKET_TYPE,
        "IntelligentTieringConfigurations",
        f"{BUCKET_FEATURE} Intelligent-Tiering archive",
        "s3:PutIntelligentTieringConfiguration",
    ),
    _out(
        BUCKET_TYPE, "InventoryConfigurations", f"{BUCKET_FEATURE} inventory", "s3:PutInventoryConfiguration"
    ),
    _out(BUCKET_TYPE, "LoggingConfiguration", f"{BUCKET_FEATURE} access logging", "s3:PutBucketLogging"),
    _out(
        BUCKET_TYPE,
        "MetricsConfigurations",
        f"{BUCKET_FEATURE} request metrics",
        "s3:PutMetricsConfiguration",
        "s3:DeleteBucketMetricsConfiguration",
    ),
    _out(
        BUCKET_TYPE,
        "NotificationConfiguration",
        f"{BUCKET_FEATURE} event notifications",
        "s3:PutBucketNotification",
    ),
    _out(
        BUCKET_TYPE,
        "ObjectLockConfiguration ObjectLockEnabled",
        f"{BUCKET_FEATURE} Object Lock",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutObjectLockConfiguration",
    ),
    _out(BUCKET_TYPE, "VersioningConfiguration", f"{BUCKET_FEATURE} versioning", "s3:PutBucketVersioning"),
    _out(
        BUCKET_TYPE,
        "WebsiteConfiguration",
        f"{BUCKET_FEATURE} website",
        "s3:PutBucketWebsite",
        "s3:DeleteBucketWebsite",
    ),
)


@dataclass(frozen=True)
class Permission:
    """One permission a resource type's handler lists, and what the policy does with it."""

    resource_type: str
    handler: str
    permission: str
    family: str | None  # granted on this family's ARNs; None: left out or unscoped
    left_out: LeftOut | None = None


def scope(resource_type: str, permission: str) -> tuple[str | None, LeftOut | None]:
    """What a handler permission acts on (its family), or why it is left out. (None, None): a
    permission of another service this tool does not know how to scope."""
    for left in LEFT_OUT:
        if left.matches(resource_type, permission):
            return None, left
    rules = SCOPES.get(resource_type)
    if rules is None:
        raise KeyError(f"iam.SCOPES has no entry for {resource_type}: add what its permissions act on")
    key = permission.lower()
    return rules.get(key) or rules.get(key.partition(":")[0]), None


def handler_permissions(resource_type: str, region: str) -> dict[str, tuple[str, ...]]:
    """The permissions each handler of `resource_type` lists in AWS's resource schema, as
    cfn-lint vendors it for `region` (us-east-1's where the type is missing there)."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER, ResourceNotFoundError  # type: ignore[import-untyped]

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
    except ResourceNotFoundError:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(SCHEMA_REGION, resource_type).schema
    handlers = schema.get("handlers") or {}
    return {name: tuple((handlers.get(name) or {}).get("permissions") or ()) for name in HANDLERS}


def schema_region(region: str) -> str:
    from cfnlint.helpers import REGIONS  # type: ignore[import-untyped]

    return region if region in REGIONS else SCHEMA_REGION


# -- this tool's own calls --------------------------------------------------------------------------

DEPLOY, PLAN, DESTROY = "deploy", "plan", "destroy"
MODES = (DEPLOY, PLAN, DESTROY)
EVERY_MODE = frozenset(MODES)
DEPLOY_PLAN = frozenset({DEPLOY, PLAN})
DEPLOY_DESTROY = frozenset({DEPLOY, DESTROY})
ONLY_DEPLOY, ONLY_DESTROY = frozenset({DEPLOY}), frozenset({DESTROY})


@dataclass(frozen=True)
class Call:
    """An API operation this tool calls (botocore's service endpoint prefix and operation name),
    one IAM action it needs, on which family's ARNs, and the modes that make it."""

    service: str
    operation: str
    action: str
    family: str
    modes: frozenset[str]  # of MODES; docs/deploying.md's "The AWS API calls each mode makes" lists them
    bootstrap_only: bool = False  # made only on the bootstrap bucket (versions: destroy empties it)
    parameter: str | None = None  # the action is needed only when the call has this parameter


def _calls(service: str, family: str, modes: frozenset[str], *names: str) -> tuple[Call, ...]:
    """Operations authorized by the action of the same name."""
    return tuple(Call(service, name, f"{service}:{name}", family, modes) for name in names)


# The operations of datasette_action/deploy/ (and the waiters': DescribeStacks, DescribeChangeSet),
# by the modes (datasette_action/deploy/modes.py) that make them. S3's actions per operation are on
# each operation's page of the S3 API reference (https://docs.aws.amazon.com/AmazonS3/latest/API/):
# HeadBucket and ListObjectsV2 need s3:ListBucket, HeadObject s3:GetObject, the multipart upload's
# parts s3:PutObject, ListObjectVersions s3:ListBucketVersions, DeleteObjects s3:DeleteObject (and
# s3:DeleteObjectVersion for versions); HeadObject and GetObject of a missing key answer 404 only
# with s3:ListBucket on the bucket, else 403 (which this tool takes for a refusal).
CALLS: tuple[Call, ...] = (
    Call("sts", "GetCallerIdentity", "sts:GetCallerIdentity", ANY, EVERY_MODE),  # needs no permission
    *_calls("cloudformation", STACKS, EVERY_MODE, "DescribeStacks", "GetTemplate"),
    *_calls(
        "cloudformation",
        STACKS,
        DEPLOY_PLAN,
        "DescribeStackResource",
        "CreateChangeSet",
        "DescribeChangeSet",
        "DeleteChangeSet",
    ),
    # "TemplateURL must reference a valid S3 object to which you have access" (CloudFormation's
    # error): it reads the template with the caller's credentials
    Call(
        "cloudformation",
        "CreateChangeSet",
        "s3:GetObject",
        READ_OBJECTS,
        DEPLOY_PLAN,
        parameter="TemplateURL",
    ),
    *_calls("cloudformation", STACKS, ONLY_DEPLOY, "ExecuteChangeSet"),
    *_calls("cloudformation", STACKS, DEPLOY_DESTROY, "DescribeStackEvents", "DeleteStack"),
    Call("s3", "HeadBucket", "s3:ListBucket", BUCKET, EVERY_MODE),
    Call("s3", "HeadObject", "s3:GetObject", READ_OBJECTS, DEPLOY_PLAN),
    Call("s3", "HeadObject", "s3:ListBucket", BUCKET, DEPLOY_PLAN),
    Call("s3", "GetObject", "s3:GetObject", READ_OBJECTS, EVERY_MODE),
    Call("s3", "GetObject", "s3:ListBucket", BUCKET, EVERY_MODE),
    Call("s3", "ListObjectsV2", "s3:ListBucket", BUCKET, ONLY_DESTROY),
    Call("s3", "ListObjectVersions", "s3:ListBucketVersions", BUCKET, ONLY_DESTROY, bootstrap_only=True),
    *(
        Call("s3", name, "s3:PutObject", WRITE_OBJECTS, ONLY_DEPLOY)
        for name in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
    ),
    Call("s3", "AbortMultipartUpload", "s3:AbortMultipartUpload", WRITE_OBJECTS, ONLY_DEPLOY),
    Call("s3", "DeleteObjects", "s3:DeleteObject", WRITE_OBJECTS, ONLY_DESTROY),
    Call(
        "s3",
        "DeleteObjects",
        "s3:DeleteObjectVersion",
        WRITE_OBJECTS,
        ONLY_DESTROY,
        bootstrap_only=True,
    ),
    Call("lambda", "GetAccountSettings", "lambda:GetAccountSettings", ANY, DEPLOY_PLAN),
    Call("logs", "DescribeLogGroups", "logs:DescribeLogGroups", ANY, DEPLOY_PLAN),
)


def calls(site: Site, modes: Iterable[str]) -> tuple[Call, ...]:
    """The calls `modes` make for this site (the bootstrap bucket's only when there is one)."""
    wanted = set(modes)
    return tuple(c for c in CALLS if c.modes & wanted and (site.bootstrap_stack or not c.bootstrap_only))


# -- the policies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """An IAM policy this tool derived: the deployer's (`deployer_policy`: what CloudFormation
    does with the caller's permissions, and every mode's calls) or the plan role's (`plan_policy`:
    plan's calls only)."""

    site: Site
    modes: tuple[str, ...]  # the modes it lets run
    document: Mapping[str, Any]  # the IAM policy document
    resource_types: tuple[str, ...] = ()  # whose handlers' permissions it grants (none for plan)
    permissions: tuple[Permission, ...] = ()  # every handler permission of those types
    schema_region: str | None = None  # whose resource schemas were read
    cfn_lint_version: str | None = None

    @property
    def left_out(self) -> tuple[Permission, ...]:
        return tuple(p for p in self.permissions if p.left_out is not None)

    @property
    def unscoped(self) -> tuple[Permission, ...]:
        """Handler permissions not granted because this tool cannot tell what they act on."""
        return tuple(p for p in self.permissions if p.family is None and p.left_out is None)

    @property
    def actions(self) -> int:
        return sum(len(statement["Action"]) for statement in self.document["Statement"])

    @property
    def warnings(self) -> tuple[str, ...]:
        unscoped = [f"{p.permission} ({p.resource_type}, {p.handler})" for p in self.unscoped]
        found = list(self.site.target.notes)
        if unscoped:
            found.append(
                "not granted, as this version cannot tell what they act on (AWS's schemas list them):"
                f" {', '.join(dict.fromkeys(unscoped))}; if a deploy is refused one of them, grant it"
            )
        if self.size > MANAGED_POLICY_MAX:
            found.append(
                f"the policy is {self.size:,} characters, more than the {MANAGED_POLICY_MAX:,} of a"
                " managed policy: attach it as an inline policy (10,240), or use a shorter stack name"
            )
        return tuple(found)

    @property
    def size(self) -> int:
        """Its length as IAM counts it against MANAGED_POLICY_MAX: whitespace not counted."""
        return len("".join(json.dumps(self.document).split()))


def resource_types(config: Config) -> tuple[str, ...]:
    """The resource types of the templates deploy sends for this config."""
    types = {*MAIN_TYPES, *FRONTEND_TYPES[config.deploy.frontend]}
    if not config.deploy.bucket:
        types |= {str(r["Type"]) for r in tpl.bootstrap_template(config)["Resources"].values()}
    return tuple(sorted(types))


def site_of(config: Config, target: Target) -> Site:
    bucket_ids = [
        logical_id
        for logical_id, resource in tpl.bootstrap_template(config)["Resources"].items()
        if resource["Type"] == "AWS::S3::Bucket"
    ]
    return Site.of(config, target, bucket_ids[0])


def deployer_policy(config: Config, target: Target) -> Policy:
    """What the identity that runs deploy (and plan and destroy) needs: CloudFormation creates,
    updates and deletes the resources with its permissions."""
    import cfnlint.version  # type: ignore[import-untyped]

    site = site_of(config, target)
    region = schema_region(target.region)
    types = resource_types(config)
    permissions = tuple(
        Permission(resource_type, handler, permission, *scope(resource_type, permission))
        for resource_type in types
        for handler, listed in handler_permissions(resource_type, region).items()
        for permission in listed
    )
    grants = [(p.permission, p.family) for p in permissions if p.family is not None]
    grants += [(c.action, c.family) for c in calls(site, MODES)]
    document = {"Version": POLICY_VERSION, "Statement": statements(grants, resources(site))}
    return Policy(site, MODES, document, types, permissions, region, str(cfnlint.version.__version__))


def plan_policy(config: Config, target: Target) -> Policy:
    """What the identity that runs only plan (a pull request's role) needs: plan's own calls.
    No resource handler's permission: "CloudFormation doesn't make changes until you execute the
    change set" (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html),
    and plan never executes one; nor any write to S3 (plan uploads nothing: deploy/modes.py)."""
    site = site_of(config, target)
    grants = [(c.action, c.family) for c in calls(site, (PLAN,))]
    document = {"Version": POLICY_VERSION, "Statement": statements(grants, resources(site))}
    return Policy(site, (PLAN,), document)


def statements(
    grants: Sequence[tuple[str, str]], arns: Mapping[str, tuple[str, ...]]
) -> list[dict[str, Any]]:
    """One statement per family, its actions sorted; an action dropped where another family
    without a condition grants it on ARNs that cover this family's."""
    by_family: dict[str, dict[str, str]] = {}
    for action, family in grants:
        by_family.setdefault(family, {}).setdefault(action.lower(), action)
    result = []
    for family in FAMILIES:
        wanted = by_family.get(family) or {}
        kept = [
            action
            for key, action in wanted.items()
            if not any(
                other != family
                and other not in CONDITIONS
                and key in by_family[other]
                and all(any(arn_matches(wide, arn) for wide in arns[other]) for arn in arns[family])
                for other in by_family
            )
        ]
        if not kept:
            continue
        statement: dict[str, Any] = {
            "Sid": family,
            "Effect": "Allow",
            "Action": sorted(kept, key=str.lower),
            "Resource": list(arns[family]) if len(arns[family]) > 1 else arns[family][0],
        }
        if family in CONDITIONS:
            statement["Condition"] = CONDITIONS[family]
        result.append(statement)
    return result


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM's matching of a Resource element: `*` any characters, `?` one, case-sensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn) is not None


# -- where: region and account --------------------------------------------------------------------


def locate(config: Config, endpoint_url: str | None = None) -> Target:
    """The region (the config's, else the AWS environment's) and, with credentials, the account
    (sts:GetCallerIdentity). What cannot be found becomes a placeholder, and a note says so."""
    from datasette_action.deploy import aws_session, check_credentials, has_credentials

    try:
        aws = aws_session(config, endpoint_url)
    except UserError as error:
        return Target(
            PLACEHOLDER_REGION,
            PLACEHOLDER_ACCOUNT,
            notes=(
                f"no region ({error.message}): the ARNs say {PLACEHOLDER_REGION} and"
                f" {PLACEHOLDER_ACCOUNT}; replace them, or set the region and run this again",
            ),
        )
    try:
        partition = str(aws.session.get_partition_for_region(aws.region))
    except Exception:  # botocore's UnknownRegionError (a region newer than botocore): the usual
        partition = "aws"
    if not has_credentials(aws):
        reason = "no AWS credentials"
    else:
        try:
            return Target(aws.region, check_credentials(aws).account, partition)
        except UserError as error:
            reason = f"the account could not be read ({error.message})"
    note = f"{reason}: the ARNs say {PLACEHOLDER_ACCOUNT}; replace it with the deploying account's id"
    return Target(aws.region, PLACEHOLDER_ACCOUNT, partition, (note,))
