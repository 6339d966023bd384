"""Tests for the template stage: Config + PackageResult -> CloudFormation templates.

The golden files under tests/golden/ are the whole templates as deploy sends them (sorted JSON),
compared byte for byte. After an intended change, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_template.py

cfn-lint (AWS's own resource schemas, offline) checks every variant for region us-east-1 with its
default rules (errors and warnings): none may be reported. No pip, no AWS: the PackageResult is
made directly, with fixed fake sha256s, so these tests are fast and deterministic.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from datasette_action import template as template_module
from datasette_action.config import (
    LAMBDA_PYTHONS,
    TOOL_TAGS,
    Config,
    DatasetteConfig,
    DeployConfig,
    LambdaConfig,
)
from datasette_action.package import DatabasePlacement, PackageResult
from datasette_action.sqlite import Sqlite
from datasette_action.template import (
    CAPABILITIES,
    FUNCTION_NAME_MAX,
    METADATA_KEY,
    STACK_NAME_MAX,
    TAG_STACK,
    TAG_VERSION,
    TEMPLATE_BODY_INLINE_LIMIT,
    TEMPLATE_URL_LIMIT,
    Template,
    artifact_keys,
    bootstrap_stack_name,
    bootstrap_template,
    function_name,
    render_template,
    secret_parameter_names,
    to_json,
)
from datasette_action.zips import Artifact
from datasette_action_entrypoint.downloads import DOWNLOAD_LIMIT
from datasette_action_entrypoint.manifest import HANDLER

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = bool(os.environ.get("UPDATE_GOLDEN"))
REGION = "us-east-1"
LAYER_SHA = "1" * 64
FUNCTION_SHA = "2" * 64
DATABASE_SHA = "3" * 64
GOLDEN_VERSION = "0.0.0"  # the tool version written into golden templates (releases do not touch them)


@pytest.fixture(autouse=True)
def pinned_version(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(template_module, "TOOL_VERSION", GOLDEN_VERSION)
    yield


def make_config(*, stack: str = "golden-site", lambda_: LambdaConfig | None = None, **deploy: Any) -> Config:
    return Config(
        path=Path("datasette-lambda.yml"),
        root=Path("."),
        stack=stack,
        region=REGION,
        databases=(),
        metadata=None,
        metadata_file=None,
        datasette=DatasetteConfig(None, {}, (), (), None, None),
        lambda_=lambda_ or LambdaConfig(),
        deploy=DeployConfig(**deploy),
    )


def artifact(role: str, sha256: str) -> Artifact:
    return Artifact(
        role, Path(f"/nonexistent/{role}-{sha256}.zip"), Path("/nonexistent"), sha256, 1000, 2000, False
    )


def database(name: str, location: str, sha256: str = DATABASE_SHA) -> DatabasePlacement:
    s3_key = f"databases/{sha256}/{name}.db" if location == "s3" else None
    return DatabasePlacement(
        name, f"{name}.db", Path(f"/nonexistent/{name}.db"), sha256, 4096, location, s3_key, "test"
    )


def make_result(
    config: Config,
    *,
    layer_sha: str = LAYER_SHA,
    function_sha: str = FUNCTION_SHA,
    databases: tuple[DatabasePlacement, ...] = (),
    ephemeral_storage: int | None = None,
) -> PackageResult:
    """A PackageResult as `package` returns it, made by hand: no pip, no zips."""
    return PackageResult(
        layer=artifact("layer", layer_sha),
        function=artifact("function", function_sha),
        handler=HANDLER,
        python=config.lambda_.python,
        architecture=config.lambda_.architecture,
        compiled=True,
        python_path=(),
        ephemeral_storage=ephemeral_storage or config.lambda_.ephemeral_storage,
        databases=databases or (database("census", "bundle"),),
        manifest=Path("/nonexistent/manifest.json"),
        requirements=("datasette", "mangum"),
        sqlite=Sqlite("sqlean.py", "3.50.4.5", "3.50.4"),
        warnings=(),
    )


def render(config: Config, **result: Any) -> Template:
    return render_template(config, make_result(config, **result))


def in_s3() -> tuple[DatabasePlacement, ...]:
    return (database("small", "bundle"), database("big", "s3", "4" * 64))


def large_download(name: str = "large", sha256: str = "5" * 64) -> DatabasePlacement:
    """A database in the function code too large to download through Lambda: an S3 copy, as
    `package` places it."""
    return DatabasePlacement(
        name,
        f"{name}.db",
        Path(f"/nonexistent/{name}.db"),
        sha256,
        DOWNLOAD_LIMIT + 1,
        "bundle",
        f"databases/{sha256}/{name}.db",
        "test",
    )


def keyed() -> tuple[DatabasePlacement, ...]:
    """One database of each kind: in the bundle, in S3, in the bundle with an S3 copy."""
    return (*in_s3(), large_download())


# Every variant cfn-lint checks: name -> the rendered template's JSON.
VARIANTS = {
    "default": lambda: render(make_config()).to_json(),
    "http_api": lambda: render(make_config(frontend="http_api")).to_json(),
    "reserved_concurrency": lambda: render(
        make_config(lambda_=LambdaConfig(reserved_concurrency=5))
    ).to_json(),
    "secrets": lambda: render(make_config(secrets=("MAPBOX_TOKEN", "api_key", "API_KEY"))).to_json(),
    "database_in_s3": lambda: render(make_config(), databases=in_s3(), ephemeral_storage=2048).to_json(),
    "s3_databases": lambda: render(make_config(), databases=keyed()).to_json(),
    "tags": lambda: render(make_config(tags={"team": "data", "cost-centre": "42", "env": "prod"})).to_json(),
    "arm64": lambda: render(make_config(lambda_=LambdaConfig(architecture="arm64"))).to_json(),
    "everything": lambda: render(
        make_config(
            frontend="http_api",
            bucket="my-own-bucket",
            log_retention_days=365,
            tags={"team": "data"},
            secrets=("MAPBOX_TOKEN",),
            lambda_=LambdaConfig(architecture="arm64", memory=3008, timeout=60, reserved_concurrency=2),
        ),
        databases=in_s3(),
        ephemeral_storage=10240,
    ).to_json(),
    "bootstrap": lambda: to_json(bootstrap_template(make_config(tags={"team": "data"}))),
}


# -- golden files ----------------------------------------------------------------------------


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run UPDATE_GOLDEN=1 pytest tests/test_template.py"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"{name} differs from the golden file; if intended, regenerate (see the module docstring)"
    )


@pytest.mark.parametrize(
    ("name", "frontend"),
    [("template-function-url.json", "function_url"), ("template-http-api.json", "http_api")],
)
def test_golden_templates(name: str, frontend: str) -> None:
    check_golden(name, render(make_config(frontend=frontend)).to_json())


def test_golden_template_with_databases_in_s3() -> None:
    """The role reads exactly the databases' keys (parameters DatabaseKey1, ...): one in S3, one
    whose download redirects to its S3 copy."""
    check_golden("template-s3-databases.json", VARIANTS["s3_databases"]())


def test_golden_bootstrap_template() -> None:
    check_golden("bootstrap.json", to_json(bootstrap_template(make_config())))


def test_json_is_deterministic_sorted_and_ends_with_a_newline() -> None:
    first, second = render(make_config()).to_json(), render(make_config()).to_json()
    assert first == second
    assert first.endswith("}\n") and not first.endswith("\n\n")
    assert first == json.dumps(json.loads(first), sort_keys=True, indent=2) + "\n"


# -- cfn-lint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_reports_nothing(variant: str) -> None:
    # Default rules: errors (E) and warnings (W). Informational rules (I) are not asserted on:
    # I4010 asks for free-text "Context" metadata on every resource; I3011 is satisfied where it
    # matters (the log group's policies are explicit, the bucket is the bootstrap stack's point).
    matches = lint(VARIANTS[variant](), config=ManualArgs(regions=[REGION]))
    for match in matches:
        print(match.rule.id, match)
    assert [str(match) for match in matches] == []


@pytest.mark.parametrize("python", LAMBDA_PYTHONS)
def test_cfn_lint_accepts_every_runtime_the_config_offers(python: str) -> None:
    """Lambda must still create functions on every runtime `lambda.python` offers. When AWS blocks
    creation on one (E2531, dates in cfn-lint's LmbdRuntimeLifecycle.json), drop it from
    config.LAMBDA_PYTHONS. W2531 (deprecated, still creatable: 3.11 from 2027-06-30) is what the
    config warns users about, so it is not a failure here."""
    text = render(make_config(lambda_=LambdaConfig(python=python))).to_json()
    matches = [m for m in lint(text, config=ManualArgs(regions=[REGION])) if m.rule.id != "W2531"]
    assert [str(match) for match in matches] == []


def test_cfn_lint_catches_a_broken_template() -> None:
    """The linter really runs on these templates: a bad value is reported."""
    body = render(make_config()).body
    body["Resources"]["Function"]["Properties"]["MemorySize"] = 64
    assert any(
        match.rule.id.startswith("E") for match in lint(to_json(body), config=ManualArgs(regions=[REGION]))
    )


# -- the main stack ----------------------------------------------------------------------------


def resources_of(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in body["Resources"].values() if r["Type"] == kind]


def test_parameters_outputs_and_marker() -> None:
    rendered = render(make_config())
    body = rendered.body
    assert set(body["Parameters"]) == {
        "ArtifactBucket",
        "LayerKey",
        "FunctionKey",
        "DatasetteSecret",
        "DeploymentId",
    }
    assert body["Parameters"]["DatasetteSecret"]["NoEcho"] is True
    # deploy gives DeploymentId a value (new only on a create or a forced deploy)
    assert body["Parameters"]["DeploymentId"]["Default"] == ""
    assert re.fullmatch(body["Parameters"]["DeploymentId"]["AllowedPattern"], "42-1-0123456789ab")
    assert set(body["Outputs"]) == {"SiteUrl", "FunctionName", "BucketName"}
    assert body["Outputs"]["SiteUrl"]["Value"] == {"Fn::GetAtt": ["FunctionUrl", "FunctionUrl"]}
    assert body["Metadata"][METADATA_KEY] == {"format": 1, "kind": "site", "version": GOLDEN_VERSION}
    assert rendered.parameters == {
        "LayerKey": f"artifacts/layer-{LAYER_SHA}.zip",
        "FunctionKey": f"artifacts/function-{FUNCTION_SHA}.zip",
    }
    assert rendered.secret_parameters == {"DatasetteSecret": "DATASETTE_SECRET"}
    assert CAPABILITIES == ("CAPABILITY_IAM",)
    assert "RoleName" not in resources_of(body, "AWS::IAM::Role")[0]  # so CAPABILITY_IAM is enough


def test_artifact_keys_follow_the_parameters_patterns() -> None:
    config = make_config()
    keys = artifact_keys(make_result(config))
    assert (keys.layer, keys.function) == (
        f"artifacts/layer-{LAYER_SHA}.zip",
        f"artifacts/function-{FUNCTION_SHA}.zip",
    )
    parameters = render(config).body["Parameters"]
    assert re.fullmatch(parameters["LayerKey"]["AllowedPattern"], keys.layer)
    assert re.fullmatch(parameters["FunctionKey"]["AllowedPattern"], keys.function)


def test_the_bucket_parameter_value_when_the_bucket_is_known() -> None:
    assert render(make_config(bucket="my-own-bucket")).parameters["ArtifactBucket"] == "my-own-bucket"
    config = make_config()
    rendered = render_template(config, make_result(config), bucket="stack-artifacts-bucket-x1")
    assert rendered.parameters["ArtifactBucket"] == "stack-artifacts-bucket-x1"
    assert re.fullmatch(rendered.body["Parameters"]["ArtifactBucket"]["AllowedPattern"], "my-own-bucket")


def test_the_function() -> None:
    config = make_config(
        log_retention_days=90,
        lambda_=LambdaConfig(python="3.12", architecture="arm64", memory=2048, timeout=45),
    )
    body = render(config, ephemeral_storage=1024).body
    (function,) = resources_of(body, "AWS::Lambda::Function")
    assert function["FunctionName"] == "golden-site"
    assert function["Handler"] == HANDLER
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    assert (function["MemorySize"], function["Timeout"]) == (2048, 45)
    assert function["EphemeralStorage"] == {"Size": 1024}
    assert function["Code"] == {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Ref": "FunctionKey"}}
    assert function["Layers"] == [{"Ref": "DependenciesLayer"}]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "LogGroup"}
    assert function["Environment"]["Variables"] == {
        "DATASETTE_SECRET": {"Ref": "DatasetteSecret"},
        "DATASETTE_LAMBDA_DEPLOYMENT_ID": {"Ref": "DeploymentId"},
    }
    assert "ReservedConcurrentExecutions" not in function
    (layer,) = resources_of(body, "AWS::Lambda::LayerVersion")
    assert layer["Content"] == {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Ref": "LayerKey"}}
    assert layer["CompatibleRuntimes"] == ["python3.12"]
    assert layer["CompatibleArchitectures"] == ["arm64"]
    (log_group,) = resources_of(body, "AWS::Logs::LogGroup")
    assert log_group["LogGroupName"] == "/aws/lambda/golden-site"
    assert log_group["RetentionInDays"] == 90


def test_reserved_concurrency() -> None:
    body = render(make_config(lambda_=LambdaConfig(reserved_concurrency=0))).body
    assert resources_of(body, "AWS::Lambda::Function")[0]["ReservedConcurrentExecutions"] == 0


def test_data_bucket_variable_only_when_a_database_is_in_s3() -> None:
    body = render(make_config(), databases=in_s3()).body
    variables = resources_of(body, "AWS::Lambda::Function")[0]["Environment"]["Variables"]
    assert variables["DATASETTE_DATA_BUCKET"] == {"Ref": "ArtifactBucket"}
    # a database whose download redirects to its S3 copy needs the bucket too
    body = render(make_config(), databases=(database("small", "bundle"), large_download())).body
    variables = resources_of(body, "AWS::Lambda::Function")[0]["Environment"]["Variables"]
    assert variables["DATASETTE_DATA_BUCKET"] == {"Ref": "ArtifactBucket"}


def test_the_databases_keys_are_parameters() -> None:
    """Their values change with the data, so they are parameters (a data-only deploy sends the same
    template); deploy sets them from the package, and the role may read exactly those objects."""
    rendered = render(make_config(), databases=keyed())
    assert {k: v for k, v in rendered.parameters.items() if k.startswith("DatabaseKey")} == {
        "DatabaseKey1": f"databases/{'4' * 64}/big.db",
        "DatabaseKey2": f"databases/{'5' * 64}/large.db",
    }
    for name, key in rendered.parameters.items():
        if name.startswith("DatabaseKey"):
            assert re.fullmatch(rendered.body["Parameters"][name]["AllowedPattern"], key)
    assert "DatabaseKey1" not in render(make_config()).body["Parameters"]
    changed = render(make_config(), databases=(*in_s3(), large_download(sha256="6" * 64)))
    assert changed.to_json() == rendered.to_json()
    assert changed.parameters["DatabaseKey2"] == f"databases/{'6' * 64}/large.db"


def test_function_url_has_both_public_permissions() -> None:
    body = render(make_config()).body
    (url,) = resources_of(body, "AWS::Lambda::Url")
    assert url["AuthType"] == "NONE"
    permissions = sorted(resources_of(body, "AWS::Lambda::Permission"), key=lambda p: p["Action"])
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "Function"},
            "Principal": "*",
            "InvokedViaFunctionUrl": True,  # only through the URL, never a direct Invoke
        },
        {
            "Action": "lambda:InvokeFunctionUrl",
            "FunctionName": {"Ref": "Function"},
            "Principal": "*",
            "FunctionUrlAuthType": "NONE",
        },
    ]
    assert not resources_of(body, "AWS::ApiGatewayV2::Api")


def test_http_api_front() -> None:
    body = render(make_config(frontend="http_api")).body
    assert not resources_of(body, "AWS::Lambda::Url")
    (api,) = resources_of(body, "AWS::ApiGatewayV2::Api")
    assert api["ProtocolType"] == "HTTP"
    # quick create: the integration, the $default route and the auto-deployed $default stage
    assert api["Target"] == {"Fn::GetAtt": ["Function", "Arn"]}
    assert not [
        r
        for r in body["Resources"].values()
        if r["Type"].startswith("AWS::ApiGatewayV2::") and r["Type"] != "AWS::ApiGatewayV2::Api"
    ]
    (permission,) = resources_of(body, "AWS::Lambda::Permission")
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*"
    }
    assert body["Outputs"]["SiteUrl"]["Value"] == {"Fn::Sub": "${HttpApi.ApiEndpoint}/"}


# -- least privilege -----------------------------------------------------------------------------


def statements(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for role in resources_of(body, "AWS::IAM::Role"):
        for policy in role.get("Policies", []):
            found.extend(policy["PolicyDocument"]["Statement"])
    assert not resources_of(body, "AWS::IAM::Policy") and not resources_of(body, "AWS::IAM::ManagedPolicy")
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("variant", ["default", "http_api", "database_in_s3", "s3_databases", "everything"])
def test_least_privilege(variant: str) -> None:
    body = json.loads(VARIANTS[variant]())
    (role,) = resources_of(body, "AWS::IAM::Role")
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert "ManagedPolicyArns" not in role  # not even AWSLambdaBasicExecutionRole (logs:* on every group)
    found = statements(body)
    for statement in found:
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in as_list(statement["Action"])), statement
        assert statement["Resource"] != "*" and "NotResource" not in statement, statement
    by_sid = {s["Sid"]: s for s in found}
    assert by_sid["WriteOwnLogs"] == {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": {
            "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${LogGroup}:*"
        },
    }
    s3 = [s for s in found if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    # exactly the objects of the databases with an S3 key, never databases/*
    keys = {"database_in_s3": 1, "everything": 1, "s3_databases": 2}.get(variant, 0)
    if keys:
        assert s3 == [
            {
                "Sid": "ReadDatabases",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [
                    {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{ArtifactBucket}}/${{DatabaseKey{n}}}"}
                    for n in range(1, keys + 1)
                ],
            }
        ]
    else:
        assert s3 == []
    assert set(by_sid) == {"WriteOwnLogs", *(["ReadDatabases"] if s3 else [])}


# -- secrets -------------------------------------------------------------------------------------


def test_secrets_never_reach_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"DATASETTE_SECRET": "sekrit-signing-4f1c", "MAPBOX_TOKEN": "pk.sekrit-mapbox-77ab"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    rendered = render(make_config(secrets=("MAPBOX_TOKEN", "DATASETTE_SECRET")))
    text = rendered.to_json()
    for value in values.values():
        assert value not in text
        assert value not in json.dumps(rendered.parameters)
    assert "sekrit" not in text
    assert rendered.secret_parameters == {
        "DatasetteSecret": "DATASETTE_SECRET",
        "SecretMapboxToken": "MAPBOX_TOKEN",
    }
    for parameter, env in rendered.secret_parameters.items():
        definition = rendered.body["Parameters"][parameter]
        assert definition["NoEcho"] is True and "Default" not in definition
        assert env in definition["Description"]
    variables = resources_of(rendered.body, "AWS::Lambda::Function")[0]["Environment"]["Variables"]
    assert variables == {
        "DATASETTE_SECRET": {"Ref": "DatasetteSecret"},
        "MAPBOX_TOKEN": {"Ref": "SecretMapboxToken"},
        "DATASETTE_LAMBDA_DEPLOYMENT_ID": {"Ref": "DeploymentId"},  # not a secret: no NoEcho needed
    }


def test_secret_parameter_names() -> None:
    assert secret_parameter_names(()) == {"DatasetteSecret": "DATASETTE_SECRET"}
    names = secret_parameter_names(("MAPBOX_TOKEN", "api_key", "API_KEY", "x", "DATASETTE_SECRET", "x"))
    assert list(names.values()) == ["DATASETTE_SECRET", "MAPBOX_TOKEN", "api_key", "API_KEY", "x"]
    assert names["SecretMapboxToken"] == "MAPBOX_TOKEN"
    assert names["SecretX"] == "x"
    # api_key and API_KEY would both be SecretApiKey: both get a hash of their own name
    colliding = [name for name, env in names.items() if env.lower() == "api_key"]
    assert len(set(colliding)) == 2 and all(re.fullmatch(r"SecretApiKey[0-9a-f]{8}", n) for n in colliding)
    assert all(re.fullmatch(r"[A-Za-z0-9]{1,255}", name) for name in names)
    long = secret_parameter_names(("A" * 300,))
    assert all(len(name) <= 255 for name in long)


# -- data-only changes, names, sizes ------------------------------------------------------------


def test_a_data_only_change_changes_only_parameter_values() -> None:
    config = make_config()
    before = render_template(config, make_result(config, databases=in_s3()))
    after = render_template(
        config,
        make_result(
            config,
            layer_sha="a" * 64,
            function_sha="b" * 64,
            databases=(database("small", "bundle", "c" * 64), database("big", "s3", "d" * 64)),
        ),
    )
    assert after.to_json() == before.to_json()
    assert after.body == before.body
    assert after.parameters != before.parameters
    assert after.parameters["FunctionKey"] == f"artifacts/function-{'b' * 64}.zip"


def test_long_stack_names() -> None:
    stack = "s" + "-very-long-stack-name" * 6  # 127 characters
    name = function_name(stack)
    assert len(name) == FUNCTION_NAME_MAX and re.fullmatch(r"[A-Za-z0-9_-]+", name)
    assert function_name(stack) != function_name(stack[:-1] + "x")
    assert function_name("short-one") == "short-one"
    assert len(bootstrap_stack_name(stack)) <= STACK_NAME_MAX
    assert bootstrap_stack_name(stack).endswith("-artifacts")
    assert bootstrap_stack_name("my-data") == "my-data-artifacts"
    body = render(make_config(stack=stack)).body
    assert resources_of(body, "AWS::Logs::LogGroup")[0]["LogGroupName"] == f"/aws/lambda/{name}"
    assert lint(to_json(body), config=ManualArgs(regions=[REGION])) == []


def test_template_sizes() -> None:
    """Deploy always uploads the template to S3 (TemplateURL, 460,800 bytes); a generous config
    still fits, and the default even fits inline (51,200 bytes)."""
    big = render(
        make_config(
            frontend="http_api",
            tags={f"tag-{i}": "v" * 256 for i in range(48)},
            secrets=tuple(f"SECRET_NUMBER_{i}" for i in range(100)),
        ),
        databases=in_s3(),
    )
    assert len(big.to_json().encode()) < TEMPLATE_URL_LIMIT
    assert len(render(make_config()).to_json().encode()) < TEMPLATE_BODY_INLINE_LIMIT


# -- tags ------------------------------------------------------------------------------------------


def tag_values(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):  # ApiGatewayV2 takes a map
        return dict(tags)
    return {tag["Key"]: tag["Value"] for tag in tags}


@pytest.mark.parametrize("variant", ["tags", "http_api", "bootstrap"])
def test_every_taggable_resource_is_tagged(variant: str) -> None:
    body = json.loads(VARIANTS[variant]())
    tagged = 0
    for logical_id, resource in body["Resources"].items():
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, resource["Type"]).schema
        if "Tags" not in schema["properties"]:
            continue
        tags = tag_values(resource["Properties"].get("Tags", {}))
        assert tags.get(TAG_STACK) == "golden-site", logical_id
        assert tags.get(TAG_VERSION) == GOLDEN_VERSION, logical_id
        if variant == "tags":
            assert {"team": "data", "cost-centre": "42", "env": "prod"}.items() <= tags.items()
        tagged += 1
    assert tagged >= 1


def test_the_tags_added_are_those_config_leaves_room_for() -> None:
    """config.py checks deploy.tags when the config loads, counting the tags this tool adds."""
    body = render(make_config(tags={"team": "data"})).body
    tags = tag_values(body["Resources"]["Function"]["Properties"]["Tags"])
    assert sorted(tags) == sorted({"team", *TOOL_TAGS})


# -- the bootstrap stack -------------------------------------------------------------------------


def test_bootstrap_bucket_is_private_encrypted_and_tls_only() -> None:
    body = bootstrap_template(make_config())
    assert body["Metadata"][METADATA_KEY]["kind"] == "artifacts"
    (bucket,) = resources_of(body, "AWS::S3::Bucket")
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert "VersioningConfiguration" not in bucket  # content-addressed keys; see bootstrap_template
    assert "BucketName" not in bucket  # CloudFormation names it: no clash with other accounts' buckets
    (policy,) = resources_of(body, "AWS::S3::BucketPolicy")
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert body["Outputs"]["BucketName"]["Value"] == {"Ref": "ArtifactBucket"}
