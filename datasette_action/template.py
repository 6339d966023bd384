"""Template stage: Config + PackageResult -> the CloudFormation stack that serves the site.

A pure module: no AWS calls, no file or environment reads. `render_template` describes the main
stack (`<stack>`): the dependencies layer, the function, its role, its log group and its public
front (a function URL, or an API Gateway HTTP API). `bootstrap_template` describes the artifacts
stack (`<stack>-artifacts`): one private S3 bucket.

Why two stacks: the function's code must be in S3 before CloudFormation can create the function,
and the bucket must exist before anything can be uploaded. So the bucket comes first, in a stack
of its own; its `BucketName` output becomes the main stack's `ArtifactBucket` parameter. When the
config names a bucket (`deploy.bucket`), no bootstrap stack is used: that bucket is the
`ArtifactBucket` value, and the user owns its settings (encryption, public access, TLS policy).

What changes with the data stays out of the template body: the zips' S3 keys are parameters
(`LayerKey`, `FunctionKey`), and so are the keys of the databases the function reads from the bucket
(`DatabaseKey1`, ...: those in S3, and the copies of those too large to download through Lambda),
which the role may read and nothing else; the manifest inside the function code has them too. A
data-only deploy sends the same template with new parameter values (only a change in how many
databases have an S3 key changes the template). Secrets are parameters too
(NoEcho), given values at deploy time from environment variables: never in the template body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasette_action import __version__
from datasette_action.config import ENV_DEPLOYMENT_ID, Config
from datasette_action.config import TAG_STACK as TAG_STACK  # re-exported: deploy and tests use them
from datasette_action.config import TAG_VERSION as TAG_VERSION
from datasette_action.package import PackageResult
from datasette_action_entrypoint.bundle import ENV_BUCKET, ENV_SECRET

TOOL_VERSION = __version__  # read at render time (tests pin it so golden files survive releases)
TEMPLATE_FORMAT = 1  # bump when deploy must treat templates of an older format differently
METADATA_KEY = "datasette-lambda"  # top-level Metadata key marking a stack made by this tool
# Template sizes: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html
# and the TemplateBody/TemplateURL parameters of https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html
# TemplateBody (inline) holds at most 51,200 bytes, so deploy uploads the main template to the
# artifacts bucket and passes TemplateURL. For a template in S3 the API reference long said
# 460,800 bytes (shared/FACTS.md); newer SDK references say 1 MB. We keep to the smaller figure.
TEMPLATE_BODY_INLINE_LIMIT = 51_200
TEMPLATE_URL_LIMIT = 460_800
# The function's role has no explicit name (CloudFormation makes one), so CAPABILITY_IAM is
# enough; CAPABILITY_NAMED_IAM is not needed.
CAPABILITIES = ("CAPABILITY_IAM",)
BOOTSTRAP_SUFFIX = "-artifacts"
STACK_NAME_MAX = 128  # https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
FUNCTION_NAME_MAX = 64  # https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html
ARTIFACTS_PREFIX = "artifacts/"
DATABASES_PREFIX = "databases/"  # package.py's s3_key: databases/<sha256>/<file>

# Parameter names (deploy passes values for them).
P_BUCKET = "ArtifactBucket"
P_LAYER_KEY = "LayerKey"
P_FUNCTION_KEY = "FunctionKey"
P_DATABASE_KEY = "DatabaseKey"  # + 1, 2, ...: one per database with an S3 key, in the config's order
P_DATASETTE_SECRET = "DatasetteSecret"
# A value deploy changes only when forced (`deploy --force`, the action's `force` input): it is the
# function's DATASETTE_LAMBDA_DEPLOYMENT_ID, so a new value updates the function's configuration
# (and Lambda starts fresh execution environments) when nothing else changed.
P_DEPLOYMENT_ID = "DeploymentId"
# Output names.
O_SITE_URL = "SiteUrl"
O_FUNCTION_NAME = "FunctionName"
O_BUCKET_NAME = "BucketName"  # in both stacks: the bootstrap stack's is the main stack's ArtifactBucket

PARAMETER_NAME_MAX = 255  # CloudFormation parameter names: alphanumeric, up to 255 characters

_TEMPLATE_VERSION = "2010-09-09"


@dataclass(frozen=True)
class TemplateResource:
    logical_id: str
    type: str  # e.g. AWS::Lambda::Function


@dataclass(frozen=True)
class Template:
    """A rendered template: its JSON text (fixed once made) and, as typed fields, what deploy
    needs to know about it. Make one with `Template.of(body, ...)`."""

    text: str  # the template as CloudFormation receives it (`to_json`)
    # Values for its non-secret parameters. ArtifactBucket is here only when the bucket is known
    # (deploy.bucket, or `bucket=` given to render_template); otherwise deploy adds it from the
    # bootstrap stack's BucketName output.
    parameters: Mapping[str, str]
    # NoEcho parameter name -> the environment variable whose value deploy gives it.
    secret_parameters: Mapping[str, str]
    parameter_names: frozenset[str]  # every parameter the template declares
    resources: tuple[TemplateResource, ...]  # in the template's (sorted) order
    sha256: str  # of `text` as UTF-8: the uploaded template's name
    size: int  # bytes of `text` as UTF-8, for CloudFormation's limits

    @classmethod
    def of(
        cls, body: Mapping[str, Any], parameters: Mapping[str, str], secret_parameters: Mapping[str, str]
    ) -> Template:
        text = to_json(body)
        data = text.encode("utf-8")
        return cls(
            text=text,
            parameters=dict(parameters),
            secret_parameters=dict(secret_parameters),
            parameter_names=frozenset(body.get("Parameters") or {}),
            resources=tuple(
                TemplateResource(logical_id, str(resource.get("Type", "")))
                for logical_id, resource in sorted((body.get("Resources") or {}).items())
            ),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )

    @property
    def body(self) -> dict[str, Any]:
        """The template as plain data: a new copy each time, so the template itself never changes."""
        result: dict[str, Any] = json.loads(self.text)
        return result

    def to_json(self) -> str:
        return self.text


@dataclass(frozen=True)
class ArtifactKeys:
    """Where the two zips go in the artifacts bucket, named by their content."""

    layer: str
    function: str


def to_json(body: Mapping[str, Any]) -> str:
    """A template as deterministic JSON: sorted keys, indent 2, ASCII only, a trailing newline."""
    return json.dumps(body, sort_keys=True, indent=2) + "\n"


def inline_body(template: Template) -> str | None:
    """The template as a change set can take it inline (TemplateBody): compact JSON, the same
    template to CloudFormation; None when even that is over TEMPLATE_BODY_INLINE_LIMIT bytes."""
    body = json.dumps(template.body, sort_keys=True, separators=(",", ":"))
    return body if len(body.encode("utf-8")) <= TEMPLATE_BODY_INLINE_LIMIT else None


def artifact_keys(result: PackageResult) -> ArtifactKeys:
    return ArtifactKeys(
        layer=f"{ARTIFACTS_PREFIX}layer-{result.layer.sha256}.zip",
        function=f"{ARTIFACTS_PREFIX}function-{result.function.sha256}.zip",
    )


def function_name(stack: str) -> str:
    """The Lambda function's name: the stack name, or when that is longer than Lambda allows, its
    start plus a hash of the whole (so two long stack names never share a function)."""
    return _shorten(stack, FUNCTION_NAME_MAX)


def log_group_name(stack: str) -> str:
    return f"/aws/lambda/{function_name(stack)}"


def bootstrap_stack_name(stack: str) -> str:
    """`<stack>-artifacts`, shortened with a hash when that would pass CloudFormation's 128."""
    return _shorten(stack, STACK_NAME_MAX - len(BOOTSTRAP_SUFFIX)) + BOOTSTRAP_SUFFIX


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def secret_parameter_names(secrets: Sequence[str]) -> dict[str, str]:
    """NoEcho parameter name -> environment variable, for DATASETTE_SECRET and `deploy.secrets`.

    MAPBOX_TOKEN becomes SecretMapboxToken. Names that would collide (MY_KEY and my_key) both get a
    hash of the variable name appended, whatever their order in the config.
    """
    wanted = [name for name in dict.fromkeys(secrets) if name != ENV_SECRET]
    bases = {
        name: "Secret" + "".join(part.capitalize() for part in name.split("_") if part) for name in wanted
    }
    counts: dict[str, int] = {}
    for base in bases.values():
        counts[base] = counts.get(base, 0) + 1
    names = {P_DATASETTE_SECRET: ENV_SECRET}
    for env, base in bases.items():
        if counts[base] > 1 or len(base) > PARAMETER_NAME_MAX:
            digest = hashlib.sha256(env.encode()).hexdigest()[:8]
            base = base[: PARAMETER_NAME_MAX - 8] + digest
        names[base] = env
    return names


def render_template(config: Config, result: PackageResult, *, bucket: str | None = None) -> Template:
    """The main stack's template and its parameter values.

    `bucket` is the artifacts bucket when the caller knows it (the bootstrap stack's BucketName
    output); without it `deploy.bucket` is used, and without that ArtifactBucket is left for the
    caller to fill in.
    """
    deploy = config.deploy
    tags = _tags(config)
    name = function_name(config.stack)
    secrets = secret_parameter_names(deploy.secrets)
    # The databases the function reads from the bucket: parameter name -> S3 key
    keyed = [database.s3_key for database in result.databases if database.s3_key]
    database_keys = {f"{P_DATABASE_KEY}{index}": key for index, key in enumerate(keyed, start=1)}

    parameters: dict[str, Any] = {
        P_BUCKET: {
            "Type": "String",
            "Description": "The S3 bucket holding the zips (and any databases placed in S3)",
            "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        },
        P_LAYER_KEY: {
            "Type": "String",
            "Description": "S3 key of the dependencies layer zip, named by its sha256",
            "AllowedPattern": r"^artifacts/layer-[0-9a-f]{64}\.zip$",
        },
        P_FUNCTION_KEY: {
            "Type": "String",
            "Description": "S3 key of the function code zip, named by its sha256",
            "AllowedPattern": r"^artifacts/function-[0-9a-f]{64}\.zip$",
        },
        P_DEPLOYMENT_ID: {
            "Type": "String",
            "Default": "",
            "Description": "Changed by a forced deploy only: the function's DATASETTE_LAMBDA_DEPLOYMENT_ID",
            "AllowedPattern": "^[A-Za-z0-9-]{0,64}$",
        },
    }
    for parameter in database_keys:
        parameters[parameter] = {
            "Type": "String",
            "Description": "S3 key of a database the function reads (in S3, or a copy for its download)",
            "AllowedPattern": rf"^{DATABASES_PREFIX}[0-9a-f]{{64}}/[^/]+$",
        }
    for parameter, env in secrets.items():
        parameters[parameter] = {
            "Type": "String",
            "NoEcho": True,
            "Description": f"Read from the environment variable {env} at deploy time",
        }

    resources: dict[str, Any] = {
        "LogGroup": {
            "Type": "AWS::Logs::LogGroup",
            # Deleted with the stack, explicitly: the group has a fixed name, so one left behind
            # would make the next stack of the same name fail to create it.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": log_group_name(config.stack),
                "RetentionInDays": deploy.log_retention_days,
                "Tags": _tag_list(tags),
            },
        },
        "FunctionRole": _role(tags, tuple(database_keys)),
        "DependenciesLayer": {
            "Type": "AWS::Lambda::LayerVersion",
            "Properties": {
                "LayerName": f"{name}-dependencies",
                "Description": f"Datasette, mangum and plugins for python{result.python} {result.architecture}",
                "Content": {"S3Bucket": {"Ref": P_BUCKET}, "S3Key": {"Ref": P_LAYER_KEY}},
                "CompatibleRuntimes": [f"python{result.python}"],
                "CompatibleArchitectures": [result.architecture],
            },
        },
        "Function": _function(config, result, name, tags, secrets, bool(database_keys)),
    }
    if deploy.frontend == "http_api":
        resources.update(_http_api(config.stack, tags))
        site_url: Any = {"Fn::Sub": "${HttpApi.ApiEndpoint}/"}
    else:
        resources.update(_function_url())
        site_url = {"Fn::GetAtt": ["FunctionUrl", "FunctionUrl"]}  # ends with "/"

    body = {
        "AWSTemplateFormatVersion": _TEMPLATE_VERSION,
        "Description": f"Datasette site {config.stack} on AWS Lambda (datasette-lambda {TOOL_VERSION})",
        "Metadata": _marker("site"),
        "Parameters": parameters,
        "Resources": resources,
        "Outputs": {
            O_SITE_URL: {"Description": "The site's URL, ending in /", "Value": site_url},
            O_FUNCTION_NAME: {"Description": "The Lambda function", "Value": {"Ref": "Function"}},
            O_BUCKET_NAME: {"Description": "The artifacts bucket", "Value": {"Ref": P_BUCKET}},
        },
    }
    keys = artifact_keys(result)
    values = {P_LAYER_KEY: keys.layer, P_FUNCTION_KEY: keys.function, **database_keys}
    known_bucket = bucket or deploy.bucket
    if known_bucket:
        values[P_BUCKET] = known_bucket
    return Template.of(body, values, secrets)


def bootstrap_template(config: Config) -> dict[str, Any]:
    """The `<stack>-artifacts` stack: the private bucket the zips, databases and templates go to.

    Not used when `deploy.bucket` names a bucket of the user's own: that bucket is then the main
    stack's ArtifactBucket, and its settings are the user's business.

    - Private: every public access block on, ACLs disabled (BucketOwnerEnforced).
    - Encrypted at rest with S3-managed keys (SSE-S3, AES256): no KMS key to pay for or to grant
      the function's role access to.
    - TLS only: a bucket policy denies every request made without it (aws:SecureTransport false).
    - Not versioned: every key is named by its content (artifacts/<role>-<sha256>.zip,
      databases/<sha256>/<file>), so an object is never overwritten with other bytes; versions
      would only keep deleted objects around, at a cost, and make the bucket harder to empty
      when the site is destroyed.
    - A lifecycle rule aborts multipart uploads left incomplete for a day (a killed deploy). No
      expiry: a rollback needs the previous zips, and a running function its databases.
    """
    tags = _tags(config)
    bucket_arn = {"Fn::GetAtt": ["ArtifactBucket", "Arn"]}
    return {
        "AWSTemplateFormatVersion": _TEMPLATE_VERSION,
        "Description": (
            f"Artifacts bucket for the Datasette site {config.stack} (datasette-lambda {TOOL_VERSION})"
        ),
        "Metadata": _marker("artifacts"),
        "Resources": {
            "ArtifactBucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    },
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                    "LifecycleConfiguration": {
                        "Rules": [
                            {
                                "Id": "abort-incomplete-uploads",
                                "Status": "Enabled",
                                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                            }
                        ]
                    },
                    "Tags": _tag_list(tags),
                },
            },
            "ArtifactBucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "ArtifactBucket"},
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "DenyInsecureTransport",
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:*",
                                "Resource": [bucket_arn, {"Fn::Sub": "${ArtifactBucket.Arn}/*"}],
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ],
                    },
                },
            },
        },
        "Outputs": {
            O_BUCKET_NAME: {"Description": "The artifacts bucket", "Value": {"Ref": "ArtifactBucket"}}
        },
    }


# -- the pieces ---------------------------------------------------------------------------------


def _marker(kind: str) -> dict[str, Any]:
    """What deploy looks for before touching an existing stack: made by this tool, in this format."""
    return {METADATA_KEY: {"format": TEMPLATE_FORMAT, "kind": kind, "version": TOOL_VERSION}}


def _function(
    config: Config,
    result: PackageResult,
    name: str,
    tags: Mapping[str, str],
    secrets: Mapping[str, str],
    reads_databases: bool,
) -> dict[str, Any]:
    variables: dict[str, Any] = {env: {"Ref": parameter} for parameter, env in secrets.items()}
    if reads_databases:
        variables[ENV_BUCKET] = {"Ref": P_BUCKET}
    variables[ENV_DEPLOYMENT_ID] = {"Ref": P_DEPLOYMENT_ID}
    properties: dict[str, Any] = {
        "FunctionName": name,
        "Description": f"Datasette site {config.stack} (datasette-lambda {TOOL_VERSION})",
        "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
        "Handler": result.handler,
        "Runtime": f"python{result.python}",
        "Architectures": [result.architecture],
        "MemorySize": config.lambda_.memory,
        "Timeout": config.lambda_.timeout,
        "EphemeralStorage": {"Size": result.ephemeral_storage},
        "Code": {"S3Bucket": {"Ref": P_BUCKET}, "S3Key": {"Ref": P_FUNCTION_KEY}},
        "Layers": [{"Ref": "DependenciesLayer"}],
        "Environment": {"Variables": variables},
        "LoggingConfig": {"LogGroup": {"Ref": "LogGroup"}, "LogFormat": "Text"},
        "Tags": _tag_list(tags),
    }
    if config.lambda_.reserved_concurrency is not None:
        properties["ReservedConcurrentExecutions"] = config.lambda_.reserved_concurrency
    return {"Type": "AWS::Lambda::Function", "Properties": properties}


def _role(tags: Mapping[str, str], key_parameters: Sequence[str]) -> dict[str, Any]:
    """Least privilege: write to its own log group; read exactly the databases' objects, whose keys
    are the `key_parameters` (a URL the function presigns for a download is allowed by the same
    s3:GetObject: S3 checks the signer's permissions when the URL is used)."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            # the log group's streams (what the LogGroup's Arn attribute also returns)
            "Resource": {
                "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroup}:*"
            },
        }
    ]
    if key_parameters:
        statements.append(
            {
                "Sid": "ReadDatabases",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [
                    {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{P_BUCKET}}}/${{{parameter}}}"}
                    for parameter in key_parameters
                ],
            }
        )
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": "The Datasette function's role: its own logs, its databases",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "datasette-function",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
            "Tags": _tag_list(tags),
        },
    }


def _function_url() -> dict[str, Any]:
    """A public function URL. Since October 2025 a public URL needs two permissions: the URL one
    (lambda:InvokeFunctionUrl, auth type NONE) and lambda:InvokeFunction limited to calls that
    come through the URL (InvokedViaFunctionUrl), so the function cannot be invoked directly."""
    return {
        "FunctionUrl": {
            "Type": "AWS::Lambda::Url",
            "Properties": {
                "TargetFunctionArn": {"Fn::GetAtt": ["Function", "Arn"]},
                "AuthType": "NONE",
                "InvokeMode": "BUFFERED",
            },
        },
        "FunctionUrlPermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": {"Ref": "Function"},
                "Action": "lambda:InvokeFunctionUrl",
                "Principal": "*",
                "FunctionUrlAuthType": "NONE",
            },
        },
        "FunctionUrlInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": {"Ref": "Function"},
                "Action": "lambda:InvokeFunction",
                "Principal": "*",
                "InvokedViaFunctionUrl": True,
            },
        },
    }


def _http_api(stack: str, tags: Mapping[str, str]) -> dict[str, Any]:
    """An HTTP API made by quick create (`Target`): API Gateway adds the Lambda proxy integration,
    a catch-all `$default` route and an auto-deployed `$default` stage (no stage prefix in paths).
    The entry point reads both payload formats (1.0 and 2.0), so the integration's format, which
    quick create chooses, does not matter. Invoking the function needs a permission of its own,
    limited to this API."""
    return {
        "HttpApi": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": stack,
                "Description": f"Datasette site {stack}",
                "ProtocolType": "HTTP",
                "Target": {"Fn::GetAtt": ["Function", "Arn"]},
                "Tags": dict(tags),
            },
        },
        "HttpApiPermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": {"Ref": "Function"},
                "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {
                    "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*"
                },
            },
        },
    }


# -- tags ----------------------------------------------------------------------------------------


def _tags(config: Config) -> dict[str, str]:
    """deploy.tags (checked against what AWS accepts when the config loaded) plus this tool's own."""
    own = {TAG_STACK: config.stack, TAG_VERSION: TOOL_VERSION}  # config.TOOL_TAGS: a test keeps them in step
    return {**config.deploy.tags, **own}


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": tags[key]} for key in sorted(tags)]
