"""Canaries for the moto gaps datasette_action.local_aws closes: one per fix in `moto_patches` and
per resource type in `cfn_models`. Each fails once moto closes its gap upstream, and says what can
then be deleted.

A canary is a small scenario against moto's in-process mock (`mock_aws`), which reports its
symptoms (true while one shows). This file runs them all as a script, in two subprocesses at once
(a few seconds): on plain moto, without importing this project, where every symptom must show
(one that does not means moto fixed it); and after importing datasette_action.local_aws, where
none may (so each scenario is one its fix really closes). Run it by hand to see the symptoms:
`python tests/test_moto_patches.py plain` (or `patched`).
"""

from __future__ import annotations

import importlib.metadata
import io
import itertools
import json
import os
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

Symptoms = dict[str, bool]
CHANGE_SETS = itertools.count(1)
ROLE = {
    "Type": "AWS::IAM::Role",
    "Properties": {
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    },
}
TLS_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ],
}


# -- the scenarios (run in the subprocesses, inside mock_aws) ------------------------------------


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")


def refused(call: Callable[..., Any], **arguments: Any) -> bool:
    """Did an AWS call fail (not found, denied, ...)?"""
    try:
        call(**arguments)
    except ClientError:
        return True
    return False


def upload_artifacts() -> None:
    """A bucket with a function zip and two layer zips."""
    s3 = client("s3")
    s3.create_bucket(Bucket="artifacts")
    for key, name, text in [
        ("function.zip", "index.py", "def handler(event, context):\n    return 1\n"),
        ("layer-1.zip", "python/greeting.py", "GREETING = 1\n"),
        ("layer-2.zip", "python/greeting.py", "GREETING = 2\n"),
    ]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(name, text)
        s3.put_object(Bucket="artifacts", Key=key, Body=buffer.getvalue())


def function(**properties: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": "site",
            "Runtime": "python3.13",
            "Handler": "index.handler",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
            "Code": {"S3Bucket": "artifacts", "S3Key": "function.zip"},
            **properties,
        },
    }


def ssm_parameter(name: str, value: Any) -> dict[str, Any]:
    return {"Type": "AWS::SSM::Parameter", "Properties": {"Name": name, "Type": "String", "Value": value}}


def create_stack(stack: str, resources: dict[str, Any], outputs: dict[str, Any] | None = None) -> None:
    body = {"Resources": resources, "Outputs": outputs or {}}
    client("cloudformation").create_stack(
        StackName=stack, TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"]
    )


def run_change_set(stack: str, body: dict[str, Any], kind: str, **parameters: str) -> dict[str, Any]:
    """Create and execute a change set (moto's mock does both at once); the stack and its changes."""
    cf = client("cloudformation")
    name = f"{stack}-{next(CHANGE_SETS)}"
    cf.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType=kind,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    changes = cf.describe_change_set(StackName=stack, ChangeSetName=name)["Changes"]
    cf.execute_change_set(StackName=stack, ChangeSetName=name)
    found: dict[str, Any] = cf.describe_stacks(StackName=stack)["Stacks"][0]
    found["Changes"] = sorted(change["ResourceChange"]["LogicalResourceId"] for change in changes)
    found["OutputMap"] = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs") or []}
    return found


def change_set_outputs() -> Symptoms:
    def body(stack: str, value: str) -> dict[str, Any]:
        return {"Resources": {"P": ssm_parameter(stack, value)}, "Outputs": {"X": {"Value": value}}}

    created = run_change_set("created", body("created", "x"), "CREATE")
    first = body("updated", "x")
    create_stack("updated", first["Resources"], first["Outputs"])  # no change set: moto's outputs are right
    updated = run_change_set("updated", body("updated", "y"), "UPDATE")
    return {
        "a stack made by a CREATE change set has no Outputs": created["OutputMap"] != {"X": "x"},
        "an UPDATE change set keeps the old Outputs": updated["OutputMap"] != {"X": "y"},
    }


def change_set_changes() -> Symptoms:
    body = {
        "Parameters": {"Value": {"Type": "String"}},
        "Resources": {"P": ssm_parameter("p", {"Ref": "Value"})},
    }
    run_change_set("parameters", body, "CREATE", Value="1")
    updated = run_change_set("parameters", body, "UPDATE", Value="2")
    return {"a change set that changes only parameter values lists no changes": updated["Changes"] != ["P"]}


def removed_resources() -> Symptoms:
    kept = {"Kept": ssm_parameter("kept", "k")}
    both = {"Resources": {**kept, "Removed": ssm_parameter("removed", "r")}}
    run_change_set("readded", both, "CREATE")
    run_change_set("readded", {"Resources": kept}, "UPDATE")
    run_change_set("readded", both, "UPDATE")
    gone = refused(client("ssm").get_parameter, Name="removed")
    return {"a resource removed by an update and added back by the next is not created again": gone}


def function_properties() -> Symptoms:
    upload_artifacts()
    content = {"S3Bucket": "artifacts", "S3Key": "layer-1.zip"}
    layer = client("lambda").publish_layer_version(LayerName="deps", Content=content)["LayerVersionArn"]
    properties = {"Layers": [layer], "Architectures": ["arm64"], "EphemeralStorage": {"Size": 1024}}
    create_stack("function", {"Role": ROLE, "Function": function(**properties)})
    config = client("lambda").get_function_configuration(FunctionName="site")
    reserved = {"Role": ROLE, "Function": function(**properties, ReservedConcurrentExecutions=20)}
    client("cloudformation").update_stack(
        StackName="function", TemplateBody=json.dumps({"Resources": reserved})
    )
    concurrency = client("lambda").get_function_concurrency(FunctionName="site")
    return {
        "Layers are dropped": [found["Arn"] for found in config.get("Layers", [])] != [layer],
        "Architectures are dropped": config.get("Architectures") != ["arm64"],
        "EphemeralStorage is dropped": config.get("EphemeralStorage") != {"Size": 1024},
        "an update does not change ReservedConcurrentExecutions": concurrency.get(
            "ReservedConcurrentExecutions"
        )
        != 20,
    }


def layer_versions() -> Symptoms:
    upload_artifacts()

    def resources(key: str) -> dict[str, Any]:
        content = {"S3Bucket": "artifacts", "S3Key": key}
        return {
            "Layer": {
                "Type": "AWS::Lambda::LayerVersion",
                "Properties": {"LayerName": "deps", "Content": content},
            }
        }

    create_stack("layer", resources("layer-1.zip"), {"Arn": {"Value": {"Ref": "Layer"}}})
    outputs = client("cloudformation").describe_stacks(StackName="layer")["Stacks"][0].get("Outputs") or []
    names = [found["LayerName"] for found in client("lambda").list_layers()["Layers"]]
    body = {"Resources": resources("layer-2.zip"), "Outputs": {"Arn": {"Value": {"Ref": "Layer"}}}}
    client("cloudformation").update_stack(StackName="layer", TemplateBody=json.dumps(body))
    versions = [
        found["LatestMatchingVersion"]["Version"] for found in client("lambda").list_layers()["Layers"]
    ]
    return {
        "Ref is not the version ARN": [o["OutputValue"] for o in outputs]
        != ["arn:aws:lambda:us-east-1:123456789012:layer:deps:1"],
        "LayerName is ignored": names != ["deps"],
        "a changed Content publishes no new version": versions != [2],
    }


def bucket_policy_conditions() -> Symptoms:
    s3 = client("s3")
    s3.create_bucket(Bucket="data")
    s3.put_bucket_policy(Bucket="data", Policy=json.dumps(TLS_ONLY))
    denied = refused(s3.put_object, Bucket="data", Key="x", Body=b"x")  # https: the statement does not apply
    return {"a Deny statement with a Condition denies every request": denied}


def function_url() -> Symptoms:
    upload_artifacts()
    url = {
        "Type": "AWS::Lambda::Url",
        "Properties": {"TargetFunctionArn": {"Fn::GetAtt": ["Function", "Arn"]}},
    }
    create_stack("url", {"Role": ROLE, "Function": function(), "Url": {**url, "AuthType": "NONE"}})
    skipped = refused(client("lambda").get_function_url_config, FunctionName="site")
    return {"AWS::Lambda::Url is skipped (the function has no URL config)": skipped}


def http_api() -> Symptoms:
    upload_artifacts()
    target = {"Fn::GetAtt": ["Function", "Arn"]}
    api = {
        "Type": "AWS::ApiGatewayV2::Api",
        "Properties": {"Name": "site", "ProtocolType": "HTTP", "Target": target},
    }
    create_stack("api", {"Role": ROLE, "Function": function(), "Api": api})
    names = [found["Name"] for found in client("apigatewayv2").get_apis()["Items"]]
    return {"AWS::ApiGatewayV2::Api is skipped (no API)": names != ["site"]}


def bucket_policy() -> Symptoms:
    properties = {"Bucket": {"Ref": "Data"}, "PolicyDocument": TLS_ONLY}
    bucket = {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "data"}}
    create_stack(
        "policy", {"Data": bucket, "Policy": {"Type": "AWS::S3::BucketPolicy", "Properties": properties}}
    )
    skipped = refused(client("s3").get_bucket_policy, Bucket="data")
    return {"AWS::S3::BucketPolicy is skipped (the bucket has no policy)": skipped}


def account_settings() -> Symptoms:
    upload_artifacts()
    create_stack("reserved", {"Role": ROLE, "Function": function(ReservedConcurrentExecutions=150)})
    try:
        limit = client("lambda").get_account_settings().get("AccountLimit") or {}
    except Exception:  # plain moto: no such route (an error, or a request that escapes the mock)
        limit = {}
    return {
        "GetAccountSettings does not answer": "ConcurrentExecutions" not in limit,
        "UnreservedConcurrentExecutions leaves out the reservations": (
            limit.get("ConcurrentExecutions"),
            limit.get("UnreservedConcurrentExecutions"),
        )
        != (1000, 850),
    }


def concurrent_updates() -> Symptoms:
    """Two deploys' change sets: B's executed first; then a stack held busy by another operation."""
    from moto.cloudformation.models import cloudformation_backends

    cf = client("cloudformation")
    body = json.dumps(
        {
            "Parameters": {"Value": {"Type": "String"}},
            "Resources": {"P": ssm_parameter("race", {"Ref": "Value"})},
        }
    )

    def change_set(name: str, value: str) -> bool:
        """Created? (False: refused.)"""
        return not refused(
            cf.create_change_set,
            StackName="race",
            ChangeSetName=name,
            ChangeSetType="UPDATE",
            TemplateBody=body,
            Parameters=[{"ParameterKey": "Value", "ParameterValue": value}],
        )

    cf.create_stack(
        StackName="race", TemplateBody=body, Parameters=[{"ParameterKey": "Value", "ParameterValue": "0"}]
    )
    change_set("a", "1")
    change_set("b", "2")
    cf.execute_change_set(StackName="race", ChangeSetName="b")
    status = cf.describe_change_set(StackName="race", ChangeSetName="a")["ExecutionStatus"]
    stale_executed = not refused(cf.execute_change_set, StackName="race", ChangeSetName="a")
    (stack,) = [
        s for s in cloudformation_backends["123456789012"]["us-east-1"].stacks.values() if s.name == "race"
    ]
    stack.status = "UPDATE_COMPLETE"
    change_set("c", "3")
    stack.status = "UPDATE_IN_PROGRESS"  # another operation holds it
    busy_executed = not refused(cf.execute_change_set, StackName="race", ChangeSetName="c")
    busy_created = change_set("d", "4")
    try:
        cf.describe_change_set(StackName="race", ChangeSetName="gone")
        missing = "answered"
    except ClientError as error:
        missing = error.response["Error"]["Code"]
    return {
        "DescribeChangeSet of a change set that is not there is not ChangeSetNotFound": missing
        != "ChangeSetNotFound",
        "executing a change set leaves the stack's others AVAILABLE, not OBSOLETE": status != "OBSOLETE",
        "a change set made before another was executed can still be executed": stale_executed,
        "a change set is executed on a stack that is UPDATE_IN_PROGRESS": busy_executed,
        "a change set is created for a stack that is UPDATE_IN_PROGRESS": busy_created,
    }


def oidc_provider() -> Symptoms:
    provider = {
        "Type": "AWS::IAM::OIDCProvider",
        "Properties": {
            "Url": "https://token.actions.githubusercontent.com",
            "ClientIdList": ["sts.amazonaws.com"],
        },
    }
    create_stack("oidc", {"Provider": provider})
    listed = client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    return {"AWS::IAM::OIDCProvider is skipped (the account has no OIDC provider)": not listed}


def iam_roles() -> Symptoms:
    """A role holding a managed policy, then both updated: a new trust policy and document."""
    iam = client("iam")

    def resources(service: str, action: str) -> dict[str, Any]:
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
        }
        trust = json.loads(json.dumps(ROLE["Properties"]["AssumeRolePolicyDocument"]))
        trust["Statement"][0]["Principal"] = {"Service": service}
        return {
            "Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": document}},
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": trust, "ManagedPolicyArns": [{"Ref": "Policy"}]},
            },
        }

    create_stack("roles", resources("lambda.amazonaws.com", "s3:GetObject"))
    [name] = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("roles-Role")]
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    try:
        run_change_set("roles", {"Resources": resources("ec2.amazonaws.com", "s3:PutObject")}, "UPDATE")
        updated = True
    except ClientError:
        updated = False
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    [policy] = [
        p for p in iam.list_policies(Scope="Local")["Policies"] if p["PolicyName"].startswith("roles-")
    ]
    version = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
    action = version["PolicyVersion"]["Document"]["Statement"][0]["Action"]
    if not iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.attach_role_policy(RoleName=name, PolicyArn=policy["Arn"])  # as AWS would have
    deleted = not refused(client("cloudformation").delete_stack, StackName="roles")
    left = [r for r in iam.list_roles()["Roles"] if r["RoleName"] == name]
    return {
        "a role's ManagedPolicyArns are not attached": not attached,
        "an update keeps a role's trust policy": not updated
        or trust["Statement"][0]["Principal"] != {"Service": "ec2.amazonaws.com"},
        "an update keeps a managed policy's document": not updated or action != "s3:PutObject",
        "a role holding a managed policy is not deleted with its stack": not deleted or bool(left),
    }


CANARIES: dict[str, Callable[[], Symptoms]] = {
    "moto_patches.fix_change_set_outputs": change_set_outputs,
    "moto_patches.fix_concurrent_updates": concurrent_updates,
    "moto_patches.fix_change_set_changes": change_set_changes,
    "moto_patches.fix_removed_resources": removed_resources,
    "moto_patches.fix_function_properties": function_properties,
    "moto_patches.fix_layer_versions": layer_versions,
    "moto_patches.fix_bucket_policy_conditions": bucket_policy_conditions,
    "moto_patches.fix_account_settings": account_settings,
    "moto_patches.fix_iam_roles": iam_roles,
    "cfn_models.FunctionUrl": function_url,
    "cfn_models.HttpApi": http_api,
    "cfn_models.BucketPolicy": bucket_policy,
    "cfn_models.OidcProvider": oidc_provider,
}


def observe() -> dict[str, dict[str, Any]]:
    """Each canary's symptoms, or the error that stopped its scenario."""
    from moto import mock_aws

    warnings.simplefilter("ignore")  # moto warns about each resource type it skips
    results: dict[str, dict[str, Any]] = {}
    for name, scenario in CANARIES.items():
        try:
            with mock_aws():
                results[name] = {"symptoms": scenario()}
        except Exception as error:
            results[name] = {"error": repr(error)}
    return results


# -- the tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def observed() -> dict[str, dict[str, dict[str, Any]]]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # mock_aws sets its own
    processes = {
        mode: subprocess.Popen(
            [sys.executable, __file__, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for mode in ("plain", "patched")
    }
    results = {}
    try:
        for mode, process in processes.items():
            output, errors = process.communicate(timeout=120)
            assert process.returncode == 0, f"the {mode} canaries did not run:\n{errors}"
            results[mode] = json.loads(output)
    finally:
        for process in processes.values():
            process.kill()  # nothing to do for one that has finished
            process.wait()
    return results


def symptoms(observed: dict[str, dict[str, dict[str, Any]]], mode: str, name: str) -> Symptoms:
    result = observed[mode][name]
    assert "error" not in result, f"the canary for {name} failed on {mode} moto: {result['error']}"
    found: Symptoms = result["symptoms"]
    return found


def test_every_fix_and_model_has_a_canary() -> None:
    from datasette_action.local_aws import cfn_models, moto_patches

    fixes = {f"moto_patches.{fix.__name__}" for fix in moto_patches.PATCHES}
    models = {f"cfn_models.{model.__name__}" for model in cfn_models.MODELS}
    assert set(CANARIES) == fixes | models


@pytest.mark.parametrize("name", CANARIES)
def test_plain_moto_still_has_the_gap(observed: dict[str, dict[str, dict[str, Any]]], name: str) -> None:
    fixed = [symptom for symptom, shows in symptoms(observed, "plain", name).items() if not shows]
    assert not fixed, (
        f"moto {importlib.metadata.version('moto')} no longer shows the gap: {'; '.join(fixed)}."
        f" Delete {name} from datasette_action/local_aws/ (or narrow it to what moto still gets wrong)"
        f" and this canary, then run tests/test_local_aws.py."
    )


@pytest.mark.parametrize("name", CANARIES)
def test_the_fix_closes_the_gap(observed: dict[str, dict[str, dict[str, Any]]], name: str) -> None:
    shown = [symptom for symptom, shows in symptoms(observed, "patched", name).items() if shows]
    assert not shown, (
        f"with datasette_action.local_aws imported, moto still shows: {'; '.join(shown)} ({name})"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["patched"]:
        import datasette_action.local_aws  # noqa: F401  (registers the models, applies the fixes)
    elif sys.argv[1:] != ["plain"]:
        sys.exit(f"usage: python {sys.argv[0]} plain|patched")
    assert ("datasette_action.local_aws" in sys.modules) == (sys.argv[1] == "patched")
    print(json.dumps(observe()))
