"""The local AWS (moto's server in this process, plus this project's additions), driven as deploy
drives AWS: boto3 clients against a real server on a free 127.0.0.1 port, stacks made and changed
through change sets, function URLs fetched over real HTTP.

The functions are tiny handlers (`index.handler`, a layer module, an environment variable) run by
the same machinery as a Datasette bundle (serve.LocalLambda: a separate `python -I -S` process of
the runtime's version, here this interpreter's). A real Datasette bundle against this local AWS is
tests/test_deploy.py's job.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from datasette_action.errors import UserError
from datasette_action.local_aws import LocalAws, start_local_aws

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"  # find_python: this interpreter
HANDLER = """\
import json, os, sys, time
from urllib.parse import parse_qs
from greeting import GREETING

def meet(room, patience):
    \"\"\"Wait in the directory `room` (up to `patience` s) until a second request is in a handler.\"\"\"
    started = time.time()
    open(os.path.join(room, f"{os.getpid()}-{started}"), "w").close()
    while len(os.listdir(room)) < 2 and time.time() < started + patience:
        time.sleep(0.01)
    body = {"pid": os.getpid(), "start": started, "end": time.time()}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}

def handler(event, context):
    if event["rawPath"] == "/meet":
        query = parse_qs(event["rawQueryString"])
        return meet(query["room"][0], float(query["patience"][0]))
    if event["rawPath"] == "/fail":
        raise RuntimeError("asked to fail")
    if event["rawPath"] == "/slow":
        time.sleep(30)
    if event["rawPath"] == "/nap":
        time.sleep(0.6)
    body = {"code": CODE, "greeting": GREETING, "colour": os.environ.get("COLOUR"),
            "path": event["rawPath"], "route": event["routeKey"], "function": context.function_name,
            "isolated": not any("site-packages" in p for p in sys.path if "/runtime" not in p)}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
"""
TLS_ONLY = {  # the bootstrap stack's statement; moto alone denied every request because of it
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [{"Fn::GetAtt": ["Data", "Arn"]}, {"Fn::Sub": "${Data.Arn}/*"}],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ],
}


@pytest.fixture(scope="module")
def aws(local_aws: LocalAws) -> LocalAws:
    """The local AWS (conftest.py), with the bucket these tests put their artifacts in."""
    client("s3", local_aws).create_bucket(Bucket="artifacts")
    return local_aws


def client(service: str, aws: LocalAws) -> Any:
    return boto3.client(service, endpoint_url=aws.endpoint_url, region_name="us-east-1")


def upload(aws: LocalAws, key: str, files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    client("s3", aws).put_object(Bucket="artifacts", Key=key, Body=buffer.getvalue())
    return key


def code(aws: LocalAws, version: int) -> str:
    return upload(aws, f"function-{version}.zip", {"index.py": f"CODE = {version}\n{HANDLER}"})


def layer(aws: LocalAws, greeting: str) -> str:
    return upload(aws, f"layer-{greeting}.zip", {"python/greeting.py": f"GREETING = {greeting!r}\n"})


def template(
    name: str,
    *,
    frontend: str = "url",
    public_invoke: bool = True,
    colour: str = "blue",
    timeout: int = 10,
    reserved: int | None = None,
) -> dict[str, Any]:
    """A small stack shaped like ours: bucket + policy, role, layer, function, a frontend."""
    resources: dict[str, Any] = {
        # (a resource without Properties would always show as modified: moto adds them to the old JSON)
        "Data": {"Type": "AWS::S3::Bucket", "Properties": {"Tags": [{"Key": "site", "Value": name}]}},
        "DataPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {"Bucket": {"Ref": "Data"}, "PolicyDocument": TLS_ONLY},
        },
        "Role": {
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
        },
        "Deps": {
            "Type": "AWS::Lambda::LayerVersion",
            "Properties": {
                "LayerName": f"{name}-deps",
                "CompatibleRuntimes": [RUNTIME],
                "Content": {"S3Bucket": "artifacts", "S3Key": {"Ref": "LayerKey"}},
            },
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": name,
                "Runtime": RUNTIME,
                "Handler": "index.handler",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"S3Bucket": "artifacts", "S3Key": {"Ref": "FunctionKey"}},
                "Layers": [{"Ref": "Deps"}],
                "Architectures": ["arm64"],
                "EphemeralStorage": {"Size": 1024},
                "Environment": {"Variables": {"COLOUR": colour}},
                "Timeout": timeout,
            },
        },
    }
    if reserved is not None:
        resources["Function"]["Properties"]["ReservedConcurrentExecutions"] = reserved
    outputs: dict[str, Any] = {
        "FunctionName": {"Value": {"Ref": "Function"}},
        "LayerArn": {"Value": {"Ref": "Deps"}},
    }
    if frontend == "url":
        resources["Url"] = {
            "Type": "AWS::Lambda::Url",
            "Properties": {"TargetFunctionArn": {"Fn::GetAtt": ["Function", "Arn"]}, "AuthType": "NONE"},
        }
        resources["UrlPermission"] = permission("lambda:InvokeFunctionUrl", "*", FunctionUrlAuthType="NONE")
        if public_invoke:
            resources["InvokePermission"] = permission(
                "lambda:InvokeFunction", "*", InvokedViaFunctionUrl=True
            )
        outputs["SiteUrl"] = {"Value": {"Fn::GetAtt": ["Url", "FunctionUrl"]}}
    elif frontend == "http_api":
        resources["Api"] = {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": name,
                "ProtocolType": "HTTP",
                "Target": {"Fn::GetAtt": ["Function", "Arn"]},
            },
        }
        resources["ApiPermission"] = permission(
            "lambda:InvokeFunction",
            "apigateway.amazonaws.com",
            SourceArn={
                "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*"
            },
        )
        outputs["SiteUrl"] = {"Value": {"Fn::Sub": "${Api.ApiEndpoint}/"}}
        outputs["ApiId"] = {"Value": {"Ref": "Api"}}
    return {
        "Parameters": {"FunctionKey": {"Type": "String"}, "LayerKey": {"Type": "String"}},
        "Resources": resources,
        "Outputs": outputs,
    }


def permission(action: str, principal: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "FunctionName": {"Ref": "Function"},
            "Action": action,
            "Principal": principal,
            **extra,
        },
    }


def deploy(aws: LocalAws, stack: str, body: dict[str, Any], kind: str, **parameters: str) -> dict[str, Any]:
    """Create a change set, wait for it, execute it, wait for the stack: as deploy does."""
    cf = client("cloudformation", aws)
    change_set = f"{stack}-{time.monotonic_ns()}"
    cf.create_change_set(
        StackName=stack,
        ChangeSetName=change_set,
        ChangeSetType=kind,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    cf.get_waiter("change_set_create_complete").wait(StackName=stack, ChangeSetName=change_set)
    described = cf.describe_change_set(StackName=stack, ChangeSetName=change_set)
    cf.execute_change_set(StackName=stack, ChangeSetName=change_set)
    waiter = "stack_create_complete" if kind == "CREATE" else "stack_update_complete"
    cf.get_waiter(waiter).wait(StackName=stack, WaiterConfig={"Delay": 1})
    found: dict[str, Any] = cf.describe_stacks(StackName=stack)["Stacks"][0]
    found["Changes"] = {c["ResourceChange"]["LogicalResourceId"] for c in described["Changes"]}
    return found


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def fetch(url: str) -> tuple[int, dict[str, Any] | str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def test_a_create_change_set_gives_outputs_and_a_url_that_runs_the_code(aws: LocalAws) -> None:
    stack = deploy(
        aws, "site", template("site"), "CREATE", FunctionKey=code(aws, 1), LayerKey=layer(aws, "hello")
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    out = outputs(stack)  # moto alone returned no Outputs after executing a CREATE change set
    assert out["FunctionName"] == "site"
    assert out["LayerArn"] == "arn:aws:lambda:us-east-1:123456789012:layer:site-deps:1"
    assert out["SiteUrl"].startswith("http://127.0.0.1:") and out["SiteUrl"].endswith("/")
    assert out["SiteUrl"] in aws.function_urls()

    status, body = fetch(out["SiteUrl"] + "some/path%2Fencoded?x=1")
    assert status == 200
    assert body == {
        "code": 1,
        "greeting": "hello",
        "colour": "blue",
        "path": "/some/path%2Fencoded",
        "route": "$default",
        "function": "site",
        "isolated": True,
    }
    # what deploy can observe through the APIs
    lam = client("lambda", aws)
    assert lam.get_function_url_config(FunctionName="site")["FunctionUrl"] == out["SiteUrl"]
    config = lam.get_function_configuration(FunctionName="site")
    assert [layer["Arn"] for layer in config["Layers"]] == [out["LayerArn"]]
    assert config["Architectures"] == ["arm64"] and config["EphemeralStorage"] == {"Size": 1024}
    bucket = client("cloudformation", aws).describe_stack_resource(StackName="site", LogicalResourceId="Data")
    name = bucket["StackResourceDetail"]["PhysicalResourceId"]
    s3 = client("s3", aws)
    assert "DenyInsecureTransport" in s3.get_bucket_policy(Bucket=name)["Policy"]
    s3.put_object(Bucket=name, Key="db/x.db", Body=b"x")  # the TLS-only policy does not block moto
    assert s3.get_object(Bucket=name, Key="db/x.db")["Body"].read() == b"x"


def test_an_update_with_new_code_layer_and_environment_is_served_at_the_same_url(aws: LocalAws) -> None:
    first = deploy(
        aws, "redeploy", template("redeploy"), "CREATE", FunctionKey=code(aws, 1), LayerKey=layer(aws, "hi")
    )
    url = outputs(first)["SiteUrl"]
    assert fetch(url)[1]["code"] == 1  # type: ignore[index]
    # new parameter values only, as a data or code change deploys: the same template
    second = deploy(
        aws, "redeploy", template("redeploy"), "UPDATE", FunctionKey=code(aws, 2), LayerKey=layer(aws, "bye")
    )
    assert second["Changes"] == {"Function", "Deps"}  # moto alone listed none
    assert outputs(second)["SiteUrl"] == url
    assert outputs(second)["LayerArn"].endswith(":layer:redeploy-deps:2")
    status, body = fetch(url)
    assert status == 200 and body["code"] == 2 and body["greeting"] == "bye"  # type: ignore[index]
    # a template change: the environment
    deploy(
        aws,
        "redeploy",
        template("redeploy", colour="green"),
        "UPDATE",
        FunctionKey=code(aws, 2),
        LayerKey=layer(aws, "bye"),
    )
    assert fetch(url)[1]["colour"] == "green"  # type: ignore[index]


def test_a_failing_or_slow_handler_gives_502_and_the_next_request_works(aws: LocalAws) -> None:
    stack = deploy(
        aws,
        "failing",
        template("failing", timeout=1),
        "CREATE",
        FunctionKey=code(aws, 1),
        LayerKey=layer(aws, "x"),
    )
    url = outputs(stack)["SiteUrl"]
    assert fetch(url)[0] == 200  # warm: the next request gets the function's own timeout
    status, body = fetch(url + "fail")
    assert status == 502 and "Internal Server Error" in str(body)
    started = time.monotonic()
    assert fetch(url + "slow") == (502, "Task timed out after 1 seconds")
    assert time.monotonic() - started < 5
    assert fetch(url)[0] == 200  # a fresh process (a cold start)


def test_requests_queued_in_a_burst_do_not_time_out_the_one_being_answered(
    aws: LocalAws, processes: Callable[[int], None]
) -> None:
    """Each request takes 0.6 s of a 1 s timeout; four at once queue for the two processes. The
    timeout counts from each request's turn, so all four are answered."""
    processes(2)
    stack = deploy(
        aws,
        "queued",
        template("queued", timeout=1),
        "CREATE",
        FunctionKey=code(aws, 1),
        LayerKey=layer(aws, "q"),
    )
    url = outputs(stack)["SiteUrl"]
    assert fetch(url)[0] == 200  # warm: a cold start has its own allowance
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda _: fetch(url + "nap")[0], range(4)))
    assert statuses == [200, 200, 200, 200]


@pytest.fixture
def processes(aws: LocalAws) -> Iterator[Callable[[int], None]]:
    """Set how many processes each endpoint runs (`--concurrency`) for one test."""
    before = aws.concurrency

    def set_concurrency(count: int) -> None:
        aws.concurrency = count

    yield set_concurrency
    aws.concurrency = before


def meet_twice(url: str, room: Path, patience: float) -> list[dict[str, Any]]:
    """Two requests at once to a handler that waits for the other (up to `patience` s): the time
    each spent in a handler, and the process it ran in, earliest first."""
    room.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: fetch(f"{url}meet?room={room}&patience={patience}"), range(2)))
    assert [status for status, _ in answers] == [200, 200]
    return sorted((body for _, body in answers if isinstance(body, dict)), key=lambda body: body["start"])


def test_concurrent_requests_run_in_processes_side_by_side(
    aws: LocalAws, processes: Callable[[int], None], tmp_path: Path
) -> None:
    """With --concurrency 2, a second request at once gets a second process (started on demand:
    one request alone started only one), and both are in their handlers at the same time."""
    processes(2)
    stack = deploy(
        aws,
        "sidebyside",
        template("sidebyside"),
        "CREATE",
        FunctionKey=code(aws, 1),
        LayerKey=layer(aws, "s"),
    )
    url = outputs(stack)["SiteUrl"]
    assert fetch(url)[0] == 200
    first, second = meet_twice(url, tmp_path / "together", patience=8)
    assert first["pid"] != second["pid"]
    assert second["start"] < first["end"]  # the second began before the first ended: they overlap
    # one at a time again: the processes already running answer, no third one starts
    pids = {body["pid"] for body in meet_twice(url, tmp_path / "again", patience=8)}
    assert pids == {first["pid"], second["pid"]}
    # --concurrency 1: the same burst is answered one request after the other, by one process
    processes(1)
    first, second = meet_twice(url, tmp_path / "alone", patience=0.3)
    assert first["pid"] == second["pid"]
    assert first["end"] <= second["start"]


def test_reserved_concurrency_caps_the_processes_and_zero_throttles(
    aws: LocalAws, processes: Callable[[int], None], tmp_path: Path
) -> None:
    processes(2)
    stack = deploy(
        aws,
        "reserved",
        template("reserved", reserved=1),
        "CREATE",
        FunctionKey=code(aws, 1),
        LayerKey=layer(aws, "r"),
    )
    url = outputs(stack)["SiteUrl"]
    first, second = meet_twice(url, tmp_path / "one", patience=0.3)
    assert first["pid"] == second["pid"]  # one process at most, so one request after the other
    assert first["end"] <= second["start"]
    lam = client("lambda", aws)
    lam.put_function_concurrency(FunctionName="reserved", ReservedConcurrentExecutions=0)
    status, body = fetch(url)
    assert status == 429 and json.loads(str(body)) == {"Message": "Rate Exceeded."}
    lam.delete_function_concurrency(FunctionName="reserved")  # no reservation: --concurrency's 2
    first, second = meet_twice(url, tmp_path / "two", patience=8)
    assert first["pid"] != second["pid"] and second["start"] < first["end"]


def test_a_new_code_version_replaces_every_process(
    aws: LocalAws, processes: Callable[[int], None], tmp_path: Path
) -> None:
    processes(2)
    stack = deploy(
        aws, "versions", template("versions"), "CREATE", FunctionKey=code(aws, 1), LayerKey=layer(aws, "v")
    )
    url = outputs(stack)["SiteUrl"]
    old = {body["pid"] for body in meet_twice(url, tmp_path / "old", patience=8)}
    assert len(old) == 2
    deploy(
        aws, "versions", template("versions"), "UPDATE", FunctionKey=code(aws, 2), LayerKey=layer(aws, "v")
    )
    assert fetch(url)[1]["code"] == 2  # type: ignore[index]
    new = {body["pid"] for body in meet_twice(url, tmp_path / "new", patience=8)}
    assert len(new) == 2 and not new & old
    for pid in old:  # the old version's processes are gone (closed, then reaped)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_one_local_aws_per_process(aws: LocalAws) -> None:
    with pytest.raises(UserError, match=f"already running in this process at {aws.endpoint_url}"):
        start_local_aws()


def test_a_public_url_without_the_invoke_function_permission_is_forbidden(aws: LocalAws) -> None:
    """AWS's rule since October 2025: lambda:InvokeFunctionUrl alone gives 403."""
    stack = deploy(
        aws,
        "no-invoke",
        template("no-invoke", public_invoke=False),
        "CREATE",
        FunctionKey=code(aws, 1),
        LayerKey=layer(aws, "x"),
    )
    status, body = fetch(outputs(stack)["SiteUrl"])
    assert status == 403 and json.loads(str(body)) == {"Message": "Forbidden"}


def test_an_http_api_made_by_quick_create(aws: LocalAws) -> None:
    stack = deploy(
        aws,
        "api",
        template("api", frontend="http_api"),
        "CREATE",
        FunctionKey=code(aws, 1),
        LayerKey=layer(aws, "hey"),
    )
    out = outputs(stack)
    status, body = fetch(out["SiteUrl"] + "a%2Fb")
    assert status == 200
    assert body["path"] == "/a/b"  # type: ignore[index]  # API Gateway decodes the path
    assert body["greeting"] == "hey"  # type: ignore[index]
    api = client("apigatewayv2", aws).get_api(ApiId=out["ApiId"])
    assert api["ApiEndpoint"] + "/" == out["SiteUrl"]
    routes = client("apigatewayv2", aws).get_routes(ApiId=out["ApiId"])["Items"]
    assert [route["RouteKey"] for route in routes] == ["$default"]
    client("cloudformation", aws).delete_stack(StackName="api")
    assert out["SiteUrl"] not in aws.function_urls()
    with pytest.raises(ClientError):
        client("apigatewayv2", aws).get_api(ApiId=out["ApiId"])


def test_removing_the_url_and_deleting_the_stack_stop_the_server(aws: LocalAws) -> None:
    stack = deploy(
        aws, "going", template("going"), "CREATE", FunctionKey=code(aws, 1), LayerKey=layer(aws, "x")
    )
    url = outputs(stack)["SiteUrl"]
    assert fetch(url)[0] == 200
    lam = client("lambda", aws)
    # an update without the URL: its config goes, the function stays
    deploy(
        aws,
        "going",
        template("going", frontend="none"),
        "UPDATE",
        FunctionKey=code(aws, 1),
        LayerKey=layer(aws, "x"),
    )
    with pytest.raises(ClientError) as gone:
        lam.get_function_url_config(FunctionName="going")
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert url not in aws.function_urls()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)
    # and back, then the whole stack deleted
    stack = deploy(
        aws, "going", template("going"), "UPDATE", FunctionKey=code(aws, 1), LayerKey=layer(aws, "x")
    )
    url = outputs(stack)["SiteUrl"]
    assert fetch(url)[0] == 200
    cf = client("cloudformation", aws)
    cf.delete_stack(StackName="going")
    cf.get_waiter("stack_delete_complete").wait(StackName="going", WaiterConfig={"Delay": 1})
    assert url not in aws.function_urls()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)
    with pytest.raises(ClientError):
        lam.get_function(FunctionName="going")


def test_the_local_aws_command_prints_its_endpoint_and_stops_cleanly() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datasette_action",
            "local-aws",
            "--port",
            "0",
            "--json",
            "--concurrency",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    ) as process:
        try:
            assert process.stdout is not None
            started = json.loads(process.stdout.readline())
            endpoint = started["endpoint_url"]
            assert started["environment"]["AWS_ENDPOINT_URL"] == endpoint
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            assert s3.list_buckets()["Buckets"] == []
        finally:
            process.send_signal(signal.SIGINT)
            _, errors = process.communicate(timeout=30)
    assert process.returncode == 0
    assert f"export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=testing" in errors
    assert "each by up to 3 handler processes side by side (--concurrency)" in errors


def test_without_moto_the_command_says_what_to_install() -> None:
    hide_moto = (
        "import sys; sys.modules['moto'] = None; from datasette_action.cli import main;"
        " sys.argv = ['datasette-lambda', 'local-aws']; main()"
    )
    result = subprocess.run([sys.executable, "-c", hide_moto], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "pip install 'datasette-lambda-action[local]'" in result.stderr
    assert "Traceback" not in result.stderr
