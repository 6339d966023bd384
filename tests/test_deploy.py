"""deploy, plan and destroy against a real moto server on loopback (`local_aws`), whose function
URLs run the deployed code zips; the example project packaged once per module (a real pip run,
cached by pip).

Where moto cannot be brought to answer as AWS does, the test says so and uses botocore's Stubber:
a change set that fails while executing (moto applies every change set), one CloudFormation
rejects, and a bucket owned by another account (moto's HeadBucket answers 200 across accounts). States that moto never reaches
by itself but can hold (ROLLBACK_COMPLETE, UPDATE_IN_PROGRESS, UPDATE_ROLLBACK_FAILED) are set on
moto's own stack object, so the whole deploy runs against the real server.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner
from moto.cloudformation.models import cloudformation_backends

from datasette_action import deploy as d
from datasette_action import pipeline
from datasette_action.build import build
from datasette_action.checks import lint_template, smoke_test
from datasette_action.cli import cli
from datasette_action.config import Config, DeployConfig, load_config
from datasette_action.deploy import modes as deploy_modes  # the modules that own what tests patch
from datasette_action.deploy import session as deploy_session
from datasette_action.errors import AwsError, CredentialsError, StackFailedError
from datasette_action.local_aws import LocalAws
from datasette_action.output import deploy_markdown, plan_markdown
from datasette_action.package import PackageResult, package
from datasette_action.template import METADATA_KEY, Template, bootstrap_stack_name, render_template
from datasette_action_entrypoint.downloads import DOWNLOAD_LIMIT

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
FAST = d.DeployOptions(poll=0.1, timeout=30)


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path
    config: Config
    result: PackageResult

    def for_stack(self, stack: str) -> Config:
        return dataclasses.replace(self.config, stack=stack)


def _package(root: Path) -> Project:
    config = load_config(root / "datasette-lambda.yml")
    return Project(root, config, package(config, build(config)))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, example_copy: Callable[[Path], Path]) -> Project:
    return _package(example_copy(tmp_path_factory.mktemp("deploy") / "site"))


@pytest.fixture(scope="module")
def edited(project: Project) -> Project:
    """The same project with one row added to one CSV, packaged beside it (its build directory
    copied first, so the dependency layer comes from the cache: same bytes, no pip)."""
    root = project.root.parent / "site-edited"
    shutil.copytree(project.root, root)
    with (root / "data" / "states.csv").open("a") as f:
        f.write("WY,Wyoming,Cheyenne,1890\n")
    return _package(root)


def cf() -> Any:
    return boto3.client("cloudformation", region_name=REGION)


def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def stack(name: str) -> dict[str, Any]:
    found: dict[str, Any] = cf().describe_stacks(StackName=name)["Stacks"][0]
    return found


def stack_names() -> set[str]:
    return {s["StackName"] for s in cf().describe_stacks()["Stacks"]}


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.read().decode()


def b64sha256(path: Path) -> str:
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def moto_stack(name: str) -> Any:
    backend = cloudformation_backends[ACCOUNT][REGION]
    return next(s for s in backend.stacks.values() if s.name == name and s.status != "DELETE_COMPLETE")


def deploy(project: Project, stack_name: str, **options: Any) -> d.DeployResult:
    config = project.for_stack(stack_name)
    template = render_template(config, project.result)
    return d.deploy(config, project.result, template, dataclasses.replace(FAST, **options))


# -- the site's life: create, no-op, data change, plan, destroy ------------------------------------


@pytest.fixture(scope="module")
def first(local_aws: LocalAws, project: Project) -> d.DeployResult:
    return deploy(project, "site")


def test_first_deploy_creates_both_stacks_and_reports_the_outputs(first: d.DeployResult) -> None:
    assert first.changed and first.change_set.kind == "CREATE"
    assert {"site", "site-artifacts"} <= stack_names()
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack("site")["Outputs"]}
    assert first.url == outputs["SiteUrl"] and first.url.startswith("http://127.0.0.1:")
    assert first.function_name == outputs["FunctionName"] == "site"
    bootstrap = {o["OutputKey"]: o["OutputValue"] for o in stack("site-artifacts")["Outputs"]}
    assert first.bucket == outputs["BucketName"] == bootstrap["BucketName"]
    added = {(c.action, c.logical_id) for c in first.change_set.changes}
    assert {("Add", "Function"), ("Add", "DependenciesLayer"), ("Add", "FunctionUrl")} <= added
    assert [(a.role, a.uploaded) for a in first.artifacts] == [
        ("layer", True),
        ("function", True),
        ("template", True),
    ]
    assert first.health is not None and first.health.ok and first.health.status == 200


def test_the_function_runs_the_zip_we_built(first: d.DeployResult, project: Project) -> None:
    function = boto3.client("lambda", region_name=REGION).get_function(FunctionName="site")["Configuration"]
    assert function["CodeSha256"] == b64sha256(project.result.function.zip_path)
    assert function["Handler"] == project.result.handler
    uploaded = {a.role: a for a in first.artifacts}
    key = uploaded["function"].key
    assert key == f"artifacts/function-{project.result.function.sha256}.zip"
    body = s3().get_object(Bucket=first.bucket, Key=key)["Body"].read()
    assert body == project.result.function.zip_path.read_bytes()
    # the template CloudFormation was given is the one uploaded, named by its sha256
    template_key = uploaded["template"].key
    text = s3().get_object(Bucket=first.bucket, Key=template_key)["Body"].read()
    assert template_key == f"templates/{hashlib.sha256(text).hexdigest()}.json"


def test_the_site_url_answers_with_the_deployed_data(first: d.DeployResult) -> None:
    assert first.url is not None
    status, page = get(first.url)
    assert status == 200 and "census" in page
    status, text = get(first.url + "census/states.json?_shape=array&_size=max")
    assert status == 200 and len(json.loads(text)) == 7


def test_a_new_stack_gets_a_generated_datasette_secret(first: d.DeployResult) -> None:
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack("site")["Parameters"]}
    assert "DatasetteSecret" in parameters  # NoEcho: AWS shows ****; moto shows the value
    state = json.loads(s3().get_object(Bucket=first.bucket, Key="state/site.json")["Body"].read())
    assert state["databases"][0]["tables"]["states"] == 7
    assert state["artifacts"]["function"] == first.artifacts[1].sha256


def test_the_deploy_summary_in_markdown(first: d.DeployResult) -> None:
    markdown = deploy_markdown(first)
    assert markdown.startswith("# datasette-lambda deploy: `site` updated\n")
    assert f"Site: {first.url}" in markdown
    assert "| function | `artifacts/function-" in markdown and "| uploaded |" in markdown
    assert "| Add | Function | AWS::Lambda::Function |" in markdown
    assert "Health check: GET" in markdown and ": ok." in markdown


def test_plan_for_a_new_stack_lists_every_resource_and_creates_nothing(
    local_aws: LocalAws, project: Project
) -> None:
    config = project.for_stack("not-yet")
    planned = d.plan(config, project.result, render_template(config, project.result), FAST)
    assert planned.online and planned.stack_status is None and planned.changes_from == "template"
    assert {c.action for c in planned.changes} == {"Add"}
    assert {"Function", "FunctionUrl", "DependenciesLayer"} <= {c.logical_id for c in planned.changes}
    assert all(a.in_bucket is None for a in planned.artifacts)  # no bucket yet
    assert planned.deployed is None
    assert not {"not-yet", "not-yet-artifacts"} & stack_names()  # not even the bootstrap stack


def test_databases_placed_in_s3_are_uploaded_by_their_key(project: Project) -> None:
    census = dataclasses.replace(project.result.databases[0], location="s3", s3_key="databases/abc/census.db")
    result = dataclasses.replace(project.result, databases=(census,))
    template = render_template(project.config, result)
    wanted = d.planned_uploads(result, template)
    assert [(w.role, w.key) for w in wanted][:3] == [
        ("layer", f"artifacts/layer-{result.layer.sha256}.zip"),
        ("function", f"artifacts/function-{result.function.sha256}.zip"),
        ("database census", "databases/abc/census.db"),
    ]
    assert wanted[2].source == census.path and wanted[3].role == "template"
    assert wanted[3].source == template.to_json().encode() and wanted[3].size == template.size


def test_a_redeploy_with_nothing_changed_uploads_nothing_and_changes_nothing(
    first: d.DeployResult, project: Project
) -> None:
    before = stack("site")
    again = deploy(project, "site")
    assert not again.changed and again.change_set.empty
    assert again.bytes_uploaded == 0 and not any(a.uploaded for a in again.artifacts)
    assert not again.bootstrap_changed
    after = stack("site")
    assert after.get("LastUpdatedTime") == before.get("LastUpdatedTime")
    assert after["StackStatus"] == before["StackStatus"]
    assert again.url == first.url
    # the empty change set was deleted
    names = {c["ChangeSetName"] for c in cf().list_change_sets(StackName="site")["Summaries"]}
    assert again.change_set.name not in names


def deployment_id(function: str) -> str:
    configuration = boto3.client("lambda", region_name=REGION).get_function_configuration(
        FunctionName=function
    )
    value: str = configuration["Environment"]["Variables"]["DATASETTE_LAMBDA_DEPLOYMENT_ID"]
    return value


def test_a_forced_redeploy_updates_the_function_with_nothing_else_changed(
    first: d.DeployResult, project: Project
) -> None:
    before = deployment_id("site")
    assert before  # a value given at create time
    forced = deploy(project, "site", force=True, run_id="77-1")
    assert forced.changed and forced.change_set.kind == "UPDATE"
    assert ("Modify", "Function") in {(c.action, c.logical_id) for c in forced.change_set.changes}
    assert forced.bytes_uploaded == 0  # every artifact was there already
    after = deployment_id("site")
    assert after != before and after.startswith("77-1-")
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack("site")["Parameters"]}
    assert parameters["DeploymentId"] == after
    # and an ordinary deploy after it keeps that value: nothing to do
    again = deploy(project, "site")
    assert not again.changed and again.bytes_uploaded == 0
    assert deployment_id("site") == after


def test_plan_shows_the_changes_and_leaves_the_stack_alone(
    first: d.DeployResult, edited: Project, tmp_path: Path
) -> None:
    config = edited.for_stack("site")
    before = stack("site")
    change_sets = cf().list_change_sets(StackName="site")["Summaries"]
    template = render_template(config, edited.result)
    planned = d.plan(config, edited.result, template, FAST)
    assert planned.online and planned.stack_status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
    assert planned.changes_from == "change set"
    assert ("Modify", "Function") in {(c.action, c.logical_id) for c in planned.changes}
    assert {a.role: a.in_bucket for a in planned.artifacts} == {
        "layer": True,  # the dependencies did not change
        "function": False,
        "template": True,  # the zips' keys are parameters: same template body
    }
    assert planned.deployed is not None
    # nothing changed: same stack, no change set left behind
    assert stack("site").get("LastUpdatedTime") == before.get("LastUpdatedTime")
    assert cf().list_change_sets(StackName="site")["Summaries"] == change_sets
    markdown = plan_markdown(planned, edited.result, (), None)
    assert "| states | 8 | +1 rows (7 → 8) |" in markdown
    assert "| counties | 9 | unchanged |" in markdown
    assert re.search(r"\| Modify \| Function \| AWS::Lambda::Function \| (no|may be replaced|) \|", markdown)
    assert "| function |" in markdown and "new: will be uploaded" in markdown
    assert "\nThe site runs SQLite 3.50.4 (sqlean.py 3.50.4." in markdown  # the layer's, not Lambda's own


def test_a_data_only_change_uploads_only_the_function_code(
    first: d.DeployResult, project: Project, edited: Project
) -> None:
    assert edited.result.layer.sha256 == project.result.layer.sha256
    assert edited.result.function.sha256 != project.result.function.sha256
    updated = deploy(edited, "site")
    assert updated.changed and updated.change_set.kind == "UPDATE"
    assert [a.role for a in updated.artifacts if a.uploaded] == ["function"]
    assert updated.bytes_uploaded == edited.result.function.zipped_size
    assert stack("site")["StackStatus"] == "UPDATE_COMPLETE"
    function = boto3.client("lambda", region_name=REGION).get_function(FunctionName="site")["Configuration"]
    assert function["CodeSha256"] == b64sha256(edited.result.function.zip_path)
    assert updated.url is not None
    status, text = get(updated.url + "census/states.json?_shape=array&_size=max")
    assert status == 200 and len(json.loads(text)) == 8


def test_destroy_removes_the_stacks_and_the_artifacts(first: d.DeployResult, project: Project) -> None:
    # after the plan and data-change tests above: the last tests of the site's life
    gone = d.destroy(project.for_stack("site"), FAST)
    assert gone.stack_deleted and gone.bootstrap_deleted and gone.objects_deleted >= 5
    assert not {"site", "site-artifacts"} & stack_names()
    assert first.bucket not in {b["Name"] for b in s3().list_buckets()["Buckets"]}
    again = d.destroy(project.for_stack("site"), FAST)
    assert not again.stack_deleted and not again.bootstrap_deleted and again.objects_deleted == 0


# -- a database too large to download through Lambda: its download redirects to S3 -------------


@pytest.fixture(scope="module")
def large(project: Project) -> Project:
    """The example with a database over DOWNLOAD_LIMIT added (a `file:` database), for this
    machine's architecture (the layer's compiled extensions, the SQLite binding among them, must
    load in the local function process; the example's arm64 would not here)."""
    config_path = copy_project(project, "large-site", "large-site")
    with sqlite3.connect(config_path.parent / "data" / "big.db") as conn:
        conn.execute("create table blobs (b blob)")
        conn.execute("insert into blobs values (randomblob(?))", (DOWNLOAD_LIMIT,))
    conn.close()
    text = config_path.read_text().replace("databases:\n", "databases:\n  big:\n    file: data/big.db\n", 1)
    machine = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    config_path.write_text(text.replace("# architecture: arm64", f"architecture: {machine}"))
    return _package(config_path.parent)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_a_large_database_is_downloaded_from_s3_through_the_site(local_aws: LocalAws, large: Project) -> None:
    big = next(p for p in large.result.databases if p.name == "big")
    assert big.size > DOWNLOAD_LIMIT and big.location == "bundle"
    assert big.s3_key == f"databases/{big.sha256}/big.db"
    deployed = d.deploy(large.config, large.result, render_template(large.config, large.result), FAST)
    uploads = {a.role: a for a in deployed.artifacts}
    assert uploads["database big"].key == big.s3_key and uploads["database big"].uploaded
    assert "database census" not in uploads  # small enough to download through the function
    # the function's role may read that object and nothing else in the bucket
    role = cf().describe_stack_resource(StackName="large-site", LogicalResourceId="FunctionRole")
    document = boto3.client("iam").get_role_policy(
        RoleName=role["StackResourceDetail"]["PhysicalResourceId"], PolicyName="datasette-function"
    )["PolicyDocument"]
    # moto keeps the inline policy of a role made by CloudFormation as the repr of a dict
    policy = ast.literal_eval(document) if isinstance(document, str) else document
    (reads,) = [s for s in policy["Statement"] if s["Sid"] == "ReadDatabases"]
    assert (reads["Action"], reads["Resource"]) == (
        ["s3:GetObject"],
        [f"arn:aws:s3:::{deployed.bucket}/{big.s3_key}"],
    )

    assert deployed.url is not None
    with pytest.raises(urllib.error.HTTPError) as redirect:  # the site answers with a redirect ...
        urllib.request.build_opener(_NoRedirects).open(deployed.url + "big.db", timeout=60)
    assert redirect.value.code == 302 and redirect.value.headers["cache-control"] == "no-store"
    location = redirect.value.headers["location"]
    assert location.startswith(f"{local_aws.endpoint_url}/{deployed.bucket}/{big.s3_key}?")
    assert "X-Amz-Signature=" in location  # ... to a URL the function signed (moto does not check it)
    with urllib.request.urlopen(deployed.url + "big.db", timeout=60) as download:  # followed
        assert download.headers["content-disposition"] == 'attachment; filename="big.db"'
        assert download.read() == big.path.read_bytes()
    census = next(p for p in large.result.databases if p.name == "census")
    with urllib.request.urlopen(deployed.url + "census.db", timeout=60) as small:
        assert small.url == deployed.url + "census.db"  # no redirect: the function answers itself
        assert small.read() == census.path.read_bytes()

    again = d.deploy(large.config, large.result, render_template(large.config, large.result), FAST)
    assert not again.changed and again.bytes_uploaded == 0  # content-addressed: nothing uploaded twice
    d.destroy(large.config, FAST)


# -- the command line ---------------------------------------------------------------------------


def copy_project(project: Project, name: str, stack: str | None = None) -> Path:
    """A copy of the packaged project, build directory included (the layer cache: no pip)."""
    root = project.root.parent / name
    shutil.copytree(project.root, root)
    if stack:
        config = root / "datasette-lambda.yml"
        config.write_text(config.read_text().replace("stack: example-datasette", f"stack: {stack}"))
    return root / "datasette-lambda.yml"


def test_cli_deploy_json_then_destroy(local_aws: LocalAws, project: Project) -> None:
    cli_config = copy_project(project, "cli-site", "cli-site")
    runner = CliRunner()
    done = runner.invoke(cli, ["deploy", "-c", str(cli_config), "--json", "--no-health-check"])
    assert done.exit_code == 0, done.output
    output = json.loads(done.stdout)
    assert output["stack"] == "cli-site" and output["changed"] is True
    assert output["url"].startswith("http://127.0.0.1:")
    assert [(a["role"], a["status"]) for a in output["artifacts"]] == [
        ("layer", "uploaded"),
        ("function", "uploaded"),
        ("template", "uploaded"),
    ]
    assert all(len(a["sha256"]) == 64 and a["bytes"] > 0 for a in output["artifacts"])
    assert output["change_set"]["type"] == "CREATE" and output["change_set"]["changes"]
    assert output["health"] is None
    assert "Deployed cli-site" in done.stderr

    # a site that does not answer: the health check asks for a page the site has not got (404)
    check = d.health_check
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deploy_modes, "health_check", lambda url: check(url + "no-such-database", attempts=1))
        failed = runner.invoke(cli, ["deploy", "-c", str(cli_config), "--json"])
    assert failed.exit_code == 1
    error = (
        f"Error: the stack deployed, but the site does not answer: GET {output['url']}no-such-database -> 404"
    )
    assert error in failed.stderr
    # the one failure path shows what the deploy did first: its summary, and with --json its result
    assert failed.stderr.index("cli-site is up to date") < failed.stderr.index(error)
    shown = json.loads(failed.stdout)
    assert shown["stack"] == "cli-site" and shown["health"]["status"] == 404 and not shown["health"]["ok"]

    refused = runner.invoke(cli, ["destroy", "-c", str(cli_config)], input="")
    assert refused.exit_code == 1 and "pass --yes" in refused.stderr
    assert "cli-site" in stack_names()
    done = runner.invoke(cli, ["destroy", "-c", str(cli_config), "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["stack_deleted"] is True
    assert "cli-site" not in stack_names()


def test_plan_offline_without_credentials_writes_a_report(
    local_aws: LocalAws, project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A pull request from a fork: no credentials at all (the files the chain reads are empty)."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    calls: list[str] = []
    monkeypatch.setattr(d.Aws, "client", lambda self, service: calls.append(service))
    report = tmp_path / "plan.md"
    config = copy_project(project, "offline")
    done = CliRunner().invoke(cli, ["plan", "-c", str(config), "--report", str(report), "--json"])
    assert done.exit_code == 0, done.output
    assert calls == []  # not one AWS client was made
    output = json.loads(done.stdout)
    assert output["online"] is False and output["changes_from"] == "unknown"
    assert output["lint_errors"] == 0 and output["smoke_test_ok"] is True
    markdown = report.read_text()
    assert "**Offline** (no AWS credentials" in markdown
    assert "| states | 7 |" in markdown and "| counties | 9 |" in markdown
    assert "counties_fts" not in markdown  # search index tables are hidden, as Datasette hides them
    assert "| layer |" in markdown and "| unknown |" in markdown
    assert "cfn-lint: no problems" in markdown
    assert "| `/census` | 200 |" in markdown


def test_checks_lint_and_smoke_test_the_bundle(project: Project) -> None:
    template = render_template(project.config, project.result)
    assert lint_template(template, REGION) == ()
    broken = Template.of(
        {**template.body, "Resources": {"X": {"Type": "AWS::Lambda::Function", "Properties": {}}}},
        {},
        {},
    )
    assert any(p.severity == "error" for p in lint_template(broken, REGION))
    smoke = smoke_test(project.result)
    assert smoke.ok and [r.path for r in smoke.requests] == ["/", "/census"]


# -- credentials ------------------------------------------------------------------------------------


def test_no_credentials_is_one_clear_error(
    local_aws: LocalAws, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsError) as caught:
        deploy(project, "no-credentials")
    assert "no AWS credentials found" in caught.value.message
    assert "aws-actions/configure-aws-credentials" in caught.value.message
    assert "role-to-assume" in caught.value.message
    done = CliRunner().invoke(cli, ["destroy", "-c", str(project.root / "datasette-lambda.yml"), "--yes"])
    assert done.exit_code == 1
    assert done.stderr.startswith("Error: no AWS credentials found; configure AWS credentials")
    assert "Traceback" not in done.output


def test_no_region_is_a_clear_error(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(CredentialsError, match=r"no AWS region: set `region:` in the config"):
        d.aws_session(dataclasses.replace(project.config, region=None))


def test_a_wrong_region_is_one_clear_error(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS endpoint answers for a region that does not exist: one line naming it, no traceback."""
    monkeypatch.setattr(deploy_session, "RETRIES", {"mode": "standard", "max_attempts": 1})
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    wanted = "cannot reach AWS in the region 'xx-fake-9': it is not a region this botocore knows"
    with pytest.raises(AwsError) as caught:
        deploy(
            dataclasses.replace(project, config=dataclasses.replace(project.config, region="xx-fake-9")), "r"
        )
    assert caught.value.message.startswith(wanted) and "\n" not in caught.value.message
    # AWS_REGION (what configure-aws-credentials sets; botocore itself reads only
    # AWS_DEFAULT_REGION) is used, and wins over AWS_DEFAULT_REGION
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "xx-fake-9")
    with pytest.raises(AwsError) as caught:
        deploy(dataclasses.replace(project, config=dataclasses.replace(project.config, region=None)), "r")
    assert caught.value.message.startswith(wanted)
    assert "AWS_REGION" in caught.value.message


# -- stacks in the way ------------------------------------------------------------------------------


def test_a_stack_not_made_by_this_tool_is_left_alone(local_aws: LocalAws, project: Project) -> None:
    foreign = json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}})
    cf().create_stack(StackName="someone-elses", TemplateBody=foreign)
    with pytest.raises(AwsError) as caught:
        deploy(project, "someone-elses")
    assert caught.value.message.startswith(
        "the stack someone-elses already exists and was not made by datasette-lambda"
    )
    assert "nothing was changed" in caught.value.message
    assert bootstrap_stack_name("someone-elses") not in stack_names()  # checked before anything
    body = cf().get_template(StackName="someone-elses")["TemplateBody"]
    assert METADATA_KEY not in json.dumps(body)
    with pytest.raises(AwsError, match="not made by datasette-lambda"):
        d.destroy(project.for_stack("someone-elses"), FAST)
    assert "someone-elses" in stack_names()


@pytest.mark.parametrize(
    ("name", "metadata", "tags", "missing"),
    [
        ("tag-only", None, True, f"its template has no '{METADATA_KEY}' Metadata"),
        ("marker-only", {"format": 1, "kind": "site"}, False, "its tag datasette-lambda:stack is None, not"),
    ],
)
def test_a_stack_with_only_the_tag_or_only_the_marker_is_refused(
    local_aws: LocalAws, project: Project, name: str, metadata: Any, tags: bool, missing: str
) -> None:
    """Ours means the template's marker AND the stack tag: one of them alone is refused by deploy
    and destroy, the stack untouched."""
    body: dict[str, Any] = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    if metadata is not None:
        body["Metadata"] = {METADATA_KEY: metadata}
    stack_tags = [{"Key": "datasette-lambda:stack", "Value": name}] if tags else []
    cf().create_stack(StackName=name, TemplateBody=json.dumps(body), Tags=stack_tags)
    wanted = f"the stack {name} is not recognised as this site's: {missing}"
    with pytest.raises(AwsError) as caught:
        deploy(project, name)
    assert caught.value.message.startswith(wanted), caught.value.message
    assert "nothing was changed" in caught.value.message
    assert bootstrap_stack_name(name) not in stack_names()
    with pytest.raises(AwsError) as caught:
        d.destroy(project.for_stack(name), FAST)
    assert caught.value.message.startswith(wanted)
    assert name in stack_names()
    assert cf().get_template(StackName=name)["TemplateBody"] == body


def test_a_failed_first_create_is_deleted_and_created_again(local_aws: LocalAws, project: Project) -> None:
    """moto never fails a create; its stack is put in ROLLBACK_COMPLETE, as AWS leaves one."""
    deploy(project, "failed-first", health_check=False)
    old_id = stack("failed-first")["StackId"]
    moto_stack("failed-first").status = "ROLLBACK_COMPLETE"
    logged: list[str] = []
    again = deploy(project, "failed-first", health_check=False, log=logged.append)
    assert again.recreated and again.changed
    assert again.change_set.kind == "CREATE"
    assert stack("failed-first")["StackId"] != old_id
    assert stack("failed-first")["StackStatus"] == "CREATE_COMPLETE"
    assert any("ROLLBACK_COMPLETE (its first create failed): deleting it" in line for line in logged)
    assert again.bytes_uploaded == 0  # the artifacts were already in the bucket


def test_a_busy_stack_is_waited_for(local_aws: LocalAws, project: Project) -> None:
    """moto finishes every operation at once; its stack is held in UPDATE_IN_PROGRESS for a
    moment, as another deploy would hold it."""
    deploy(project, "busy", health_check=False)
    held = moto_stack("busy")
    held.status = "UPDATE_IN_PROGRESS"
    logged: list[str] = []
    timers: list[threading.Timer] = []

    def log(line: str) -> None:
        logged.append(line)
        if "is busy" in line:  # the other operation finishes a little after deploy saw it
            timers.append(threading.Timer(0.3, lambda: setattr(held, "status", "UPDATE_COMPLETE")))
            timers[-1].start()

    try:
        again = deploy(project, "busy", health_check=False, log=log)
    finally:
        for timer in timers:
            timer.cancel()
    assert not again.changed
    assert any("stack busy is busy (UPDATE_IN_PROGRESS), probably another deploy" in line for line in logged)
    held.status = "UPDATE_IN_PROGRESS"
    with pytest.raises(AwsError, match=r"the stack busy is still UPDATE_IN_PROGRESS after 0 s"):
        deploy(project, "busy", health_check=False, timeout=0.3)
    held.status = "UPDATE_COMPLETE"


def test_update_rollback_failed_stops_with_guidance(local_aws: LocalAws, project: Project) -> None:
    """A state moto never reaches by itself, set on its stack."""
    deploy(project, "stuck", health_check=False)
    moto_stack("stuck").status = "UPDATE_ROLLBACK_FAILED"
    before = {c["ChangeSetName"] for c in cf().list_change_sets(StackName="stuck")["Summaries"]}
    with pytest.raises(AwsError) as caught:
        deploy(project, "stuck", health_check=False)
    assert caught.value.message.startswith("the stack stuck is UPDATE_ROLLBACK_FAILED: an update failed")
    assert "aws cloudformation continue-update-rollback --stack-name stuck" in caught.value.message
    after = {c["ChangeSetName"] for c in cf().list_change_sets(StackName="stuck")["Summaries"]}
    assert after == before


# -- two deploys of one stack at once -------------------------------------------------------------
# Deploy A (the edited data) is stopped at one AWS call by a botocore event hook on its own session,
# where the other deploy (B, the first data, forced so that its change set is not empty) runs to the
# end, or another operation takes the stack; then A goes on. moto finishes each update at once and
# (moto_patches.fix_concurrent_updates) refuses change sets on a busy stack, and marks a stack's
# other change sets OBSOLETE when one is executed, as CloudFormation does.

RACE = "race"


@pytest.fixture(scope="module")
def race(local_aws: LocalAws, project: Project) -> d.DeployResult:
    return deploy(project, RACE, health_check=False)


def function_key(project: Project) -> str:
    return f"artifacts/function-{project.result.function.sha256}.zip"


def interrupted(
    project: Project, event: str, interrupt: Callable[[dict[str, Any]], object]
) -> d.DeployResult:
    """Deploy `project` to RACE, calling `interrupt` (with the call's parameters) the first time
    botocore emits `event` for RACE's main stack."""
    config = project.for_stack(RACE)
    aws = d.aws_session(config)
    seen: list[dict[str, Any]] = []

    def hook(params: dict[str, Any] | None = None, **_: Any) -> None:
        given = dict(params or {})
        if not seen and given.get("StackName", RACE) == RACE:
            seen.append(given)
            interrupt(given)

    aws.session.events.register(event, hook)  # before the first client
    template = render_template(config, project.result)
    return d.deploy(config, project.result, template, dataclasses.replace(FAST, health_check=False), aws=aws)


def assert_still_serving(race: d.DeployResult, project: Project) -> None:
    """The stack, the function and the state file are the other deploy's: the first data."""
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack(RACE)["Parameters"]}
    assert parameters["FunctionKey"] == function_key(project)
    function = boto3.client("lambda", region_name=REGION).get_function(FunctionName=RACE)["Configuration"]
    assert function["CodeSha256"] == b64sha256(project.result.function.zip_path)
    state = json.loads(s3().get_object(Bucket=race.bucket, Key=f"state/{RACE}.json")["Body"].read())
    assert state["databases"][0]["tables"]["states"] == 7  # not the edited 8: A wrote no state


def change_set_names() -> set[str]:
    return {c["ChangeSetName"] for c in cf().list_change_sets(StackName=RACE)["Summaries"]}


@pytest.mark.parametrize("operation", ["CreateChangeSet", "ExecuteChangeSet"])
def test_a_stack_another_deploy_took_after_the_check_is_a_clear_error(
    race: d.DeployResult, project: Project, edited: Project, operation: str
) -> None:
    """The stack was idle when A checked it, then another deploy's update began."""
    held = moto_stack(RACE)
    before = change_set_names()
    try:
        with pytest.raises(AwsError) as caught:
            interrupted(
                edited,
                f"before-parameter-build.cloudformation.{operation}",
                lambda _: setattr(held, "status", "UPDATE_IN_PROGRESS"),
            )
    finally:
        held.status = "UPDATE_COMPLETE"
    assert caught.value.message == (
        f"the stack {RACE} is UPDATE_IN_PROGRESS: another deploy is running; wait for it and run again"
        " (this deploy changed nothing)"
    )
    assert change_set_names() == before  # A's change set (if made) was deleted
    assert_still_serving(race, project)


@pytest.mark.parametrize("landed", ["OBSOLETE", "deleted"])
def test_a_change_set_made_before_another_deploy_landed_is_not_executed(
    race: d.DeployResult, project: Project, edited: Project, landed: str
) -> None:
    """B runs to the end between A's change set and its execution. CloudFormation marks A's change
    set OBSOLETE, and deletes it ("deleted": done here, as moto only marks it)."""
    names: list[str] = []

    def other_deploy(params: dict[str, Any]) -> None:
        names.append(params["ChangeSetName"])
        assert deploy(project, RACE, force=True, health_check=False).changed
        assert (
            cf().describe_change_set(StackName=RACE, ChangeSetName=names[0])["ExecutionStatus"] == "OBSOLETE"
        )
        if landed == "deleted":
            cf().delete_change_set(StackName=RACE, ChangeSetName=names[0])

    with pytest.raises(AwsError) as caught:
        interrupted(edited, "before-parameter-build.cloudformation.ExecuteChangeSet", other_deploy)
    was = "OBSOLETE" if landed == "OBSOLETE" else "deleted by CloudFormation"
    assert caught.value.message == (
        f"the stack {RACE} changed since this deploy's change set was made (another deploy landed first);"
        f" run again. Nothing of this deploy was applied (its change set {names[0]} was {was})"
    )
    assert names[0] not in change_set_names()  # deleted
    assert stack(RACE)["StackStatus"] == "UPDATE_COMPLETE"
    assert_still_serving(race, project)


def test_a_deploy_replaced_by_another_before_its_wait_ended_is_not_reported_as_deployed(
    race: d.DeployResult, project: Project, edited: Project
) -> None:
    """A's change set executes; before A's wait reads the stack, B's update lands on top of it:
    the stack is UPDATE_COMPLETE, with B's parameters."""
    with pytest.raises(AwsError) as caught:
        interrupted(
            edited,
            "after-call.cloudformation.ExecuteChangeSet",
            lambda _: deploy(project, RACE, force=True, health_check=False),
        )
    assert caught.value.message == (
        f"another deploy replaced this one's changes: the stack {RACE} (UPDATE_COMPLETE) holds parameters"
        f" that are not this deploy's (FunctionKey is {function_key(project)!r}, this deploy's is"
        f" {function_key(edited)!r}); what this deploy built is not live; run again if it should be"
    )
    assert_still_serving(race, project)


def test_check_live_compares_the_values_this_deploy_gave() -> None:
    request = d.StackRequest(
        "site",
        None,
        "{}",
        (
            {"ParameterKey": "FunctionKey", "ParameterValue": "f-1"},
            {"ParameterKey": "DeploymentId", "UsePreviousValue": True},
            {"ParameterKey": "DatasetteSecret", "ParameterValue": "s3cret"},
        ),
        {},
        no_echo=frozenset({"DatasetteSecret"}),
    )
    live = d.StackInfo("site", "UPDATE_COMPLETE", {}, frozenset(), {}, None)
    d.check_live(
        request,
        dataclasses.replace(
            live, values={"FunctionKey": "f-1", "DeploymentId": "x", "DatasetteSecret": "****"}
        ),
    )
    with pytest.raises(AwsError) as caught:
        d.check_live(
            request, dataclasses.replace(live, status="UPDATE_IN_PROGRESS", values={"FunctionKey": "f-2"})
        )
    assert caught.value.message == (
        "another deploy replaced this one's changes: the stack site (UPDATE_IN_PROGRESS) holds parameters"
        " that are not this deploy's (FunctionKey is 'f-2', this deploy's is 'f-1'); what this deploy"
        " built is not live; run again if it should be"
    )
    with pytest.raises(AwsError) as gone:
        d.check_live(request, None)
    assert gone.value.message == (
        "the stack site is gone: another operation deleted it while this deploy ran; what this deploy"
        " built is not live; run again"
    )


def test_an_execute_retried_after_it_went_through_waits_as_usual() -> None:
    """Stubber: botocore retried ExecuteChangeSet whose first try had gone through (AWS then
    answers InvalidChangeSetStatus: the change set is executing)."""
    aws, stub = stubbed("cloudformation")
    change_set = d.ChangeSet(
        "site", "cs-1", "UPDATE", (d.ResourceChange("Modify", "Function", "T", "False"),)
    )
    names = {"StackName": "site", "ChangeSetName": "cs-1"}
    stub.add_client_error("execute_change_set", "InvalidChangeSetStatus", "cannot be executed", 400, names)
    stub.add_response(
        "describe_change_set",
        {
            "ChangeSetName": "cs-1",
            "StackName": "site",
            "Status": "CREATE_COMPLETE",
            "ExecutionStatus": "EXECUTE_IN_PROGRESS",
        },
        names,
    )
    stub.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {"StackName": "site", "CreationTime": datetime.now(UTC), "StackStatus": "UPDATE_COMPLETE"}
            ]
        },
        {"StackName": "site"},
    )
    with stub:
        d.execute_change_set(aws, change_set, FAST)
    stub.assert_no_pending_responses()


# -- Stubber: answers moto cannot give ----------------------------------------------------------


def stubbed(service: str) -> tuple[d.Aws, Stubber]:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION)
    client = session.client(service, region_name=REGION)
    return d.Aws(session, REGION, None, {service: client}), Stubber(client)


def test_a_failed_update_reports_the_failing_resource_and_the_rollback() -> None:
    """Stubber: moto applies every change set, so a resource that fails to update (and
    CloudFormation's rollback) can only be answered this way. The events are AWS's shapes."""
    aws, stub = stubbed("cloudformation")
    now = datetime.now(UTC)
    change_set = d.ChangeSet(
        "site", "cs-1", "UPDATE", (d.ResourceChange("Modify", "Function", "T", "False"),)
    )
    stub.add_response("execute_change_set", {}, {"StackName": "site", "ChangeSetName": "cs-1"})
    stub.add_response(
        "describe_stacks",
        {"Stacks": [{"StackName": "site", "CreationTime": now, "StackStatus": "UPDATE_ROLLBACK_COMPLETE"}]},
        {"StackName": "site"},
    )

    def event(logical: str, kind: str, status: str, reason: str | None = None) -> dict[str, Any]:
        found = {
            "StackId": "arn:aws:cloudformation:us-east-1:1:stack/site/1",
            "EventId": f"{logical}-{status}",
            "StackName": "site",
            "LogicalResourceId": logical,
            "ResourceType": kind,
            "Timestamp": now,
            "ResourceStatus": status,
        }
        if reason:
            found["ResourceStatusReason"] = reason
        return found

    reason = 'Resource handler returned message: "Unzipped size must be smaller than 262144000 bytes"'
    stub.add_response(
        "describe_stack_events",
        {
            "StackEvents": [  # newest first, as AWS lists them
                event("site", "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE"),
                event("Function", "AWS::Lambda::Function", "UPDATE_COMPLETE"),
                event("site", "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_IN_PROGRESS", "failed"),
                event("Function", "AWS::Lambda::Function", "UPDATE_FAILED", reason),
                event("site", "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS", "User Initiated"),
            ]
        },
        {"StackName": "site"},
    )
    with stub, pytest.raises(StackFailedError) as caught:
        d.execute_change_set(aws, change_set, FAST)
    assert caught.value.message == (
        "Updating the stack site failed: it is UPDATE_ROLLBACK_COMPLETE; CloudFormation rolled the"
        " update back: the previous version is still serving\n"
        f"  Function (AWS::Lambda::Function) UPDATE_FAILED: {reason}"
    )
    stub.assert_no_pending_responses()


def test_a_rejected_change_set_is_deleted_and_its_reason_shown() -> None:
    """Stubber: a change set CloudFormation refuses (here an IAM capability it wants)."""
    aws, stub = stubbed("cloudformation")
    request = d.StackRequest("site", "https://b.s3.us-east-1.amazonaws.com/t.json", None, (), {})
    stub.add_response("create_change_set", {"Id": "arn:cs", "StackId": "arn:st"}, ANY_ARGUMENTS)
    stub.add_response(
        "describe_change_set",
        {
            "ChangeSetName": "cs-1",
            "StackName": "site",
            "Status": "FAILED",
            "ExecutionStatus": "UNAVAILABLE",
            "StatusReason": "Requires capabilities : [CAPABILITY_NAMED_IAM]",
        },
        {"StackName": "site", "ChangeSetName": "cs-1"},
    )
    stub.add_response("delete_change_set", {}, {"StackName": "site", "ChangeSetName": "cs-1"})
    with stub, pytest.raises(AwsError) as caught:
        d.create_change_set(aws, request, "UPDATE", "cs-1", FAST)
    assert caught.value.message == (
        "CloudFormation rejected the change set for the stack site: Requires capabilities :"
        " [CAPABILITY_NAMED_IAM]"
    )
    stub.assert_no_pending_responses()


ANY_ARGUMENTS = {
    "StackName": ANY,
    "ChangeSetName": ANY,
    "ChangeSetType": ANY,
    "Parameters": ANY,
    "Capabilities": ANY,
    "Tags": ANY,
    "Description": ANY,
    "TemplateURL": ANY,
}


def test_a_bucket_owned_by_another_account_is_a_clear_error() -> None:
    """Stubber: AWS answers 403 for a bucket name another account holds (moto answers 200)."""
    aws, stub = stubbed("s3")
    stub.add_client_error(
        "head_bucket", service_error_code="403", service_message="Forbidden", http_status_code=403
    )
    stub.add_client_error(
        "head_bucket", service_error_code="404", service_message="Not Found", http_status_code=404
    )
    identity = d.Identity("111122223333", "arn:aws:iam::111122223333:user/me")
    with stub:
        with pytest.raises(AwsError) as taken:
            d.check_own_bucket(aws, "data-bucket", identity)
        with pytest.raises(AwsError) as missing:
            d.check_own_bucket(aws, "data-bucket", identity)
    assert taken.value.message.startswith(
        "deploy.bucket 'data-bucket' exists but does not belong to account 111122223333 (BucketAlreadyExists"
    )
    assert missing.value.message.startswith("deploy.bucket 'data-bucket' does not exist; create it")


def test_deploy_bucket_of_ones_own_is_used_without_a_bootstrap_stack(
    local_aws: LocalAws, project: Project
) -> None:
    s3().create_bucket(Bucket="my-own-artifacts")
    s3().put_object(Bucket="my-own-artifacts", Key="unrelated.txt", Body=b"keep me")
    config = dataclasses.replace(
        project.for_stack("own-bucket"), deploy=DeployConfig(bucket="my-own-artifacts")
    )
    template = render_template(config, project.result)
    done = d.deploy(config, project.result, template, dataclasses.replace(FAST, health_check=False))
    assert done.bucket == "my-own-artifacts" and bootstrap_stack_name("own-bucket") not in stack_names()
    gone = d.destroy(config, FAST)
    assert gone.stack_deleted and not gone.bootstrap_deleted and gone.objects_deleted == 4
    keys = {o["Key"] for o in s3().list_objects_v2(Bucket="my-own-artifacts").get("Contents", [])}
    assert keys == {"unrelated.txt"}


# -- small parts --------------------------------------------------------------------------------


def test_no_changes_wording_of_aws_and_moto() -> None:
    assert d.is_no_changes(
        "The submitted information didn't contain changes. Submit different information to create a change set."
    )
    assert d.is_no_changes("No updates are to be performed.")
    assert not d.is_no_changes("Template format error: unsupported structure.")
    assert not d.is_no_changes(None)


def test_change_set_names_are_unique_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "1111")  # not read by deploy: the front doors pass run ids in
    run = pipeline.run_id({"GITHUB_RUN_ID": "9876543210", "GITHUB_RUN_ATTEMPT": "2"})
    assert run == "9876543210-2" and pipeline.run_id({"GITHUB_RUN_ID": "5"}) == "5-1"
    assert pipeline.run_id({}) is None
    names = {d.change_set_name(d.DeployOptions(run_id=run), "deploy") for _ in range(5)}
    assert len(names) == 5
    for name in names:
        assert re.fullmatch(r"[a-zA-Z][-a-zA-Z0-9]*", name) and len(name) <= 128
        assert name.startswith("datasette-lambda-deploy-9876543210-2-")
    assert re.fullmatch(r"[a-zA-Z][-a-zA-Z0-9]*", d.change_set_name(d.DeployOptions(run_id="a_b.c"), "plan"))
    assert "1111" not in d.change_set_name(d.DeployOptions(), "plan")


def test_template_urls() -> None:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x")
    aws = d.Aws(session, "eu-west-1", None)
    assert (
        d.template_url(aws, "bkt", "templates/a.json")
        == "https://bkt.s3.eu-west-1.amazonaws.com/templates/a.json"
    )
    assert d.template_url(aws, "b.k.t", "t.json") == "https://s3.eu-west-1.amazonaws.com/b.k.t/t.json"
    assert d.template_url(d.Aws(session, "cn-north-1", None), "bkt", "t.json").endswith(
        ".amazonaws.com.cn/t.json"
    )
    local = d.Aws(session, "us-east-1", "http://127.0.0.1:5000")
    assert d.template_url(local, "bkt", "t.json") == "http://localhost:5000/bkt/t.json"
    other = d.Aws(session, "us-east-1", "https://s3.example.test")
    assert d.template_url(other, "bkt", "t.json") == "https://s3.example.test/bkt/t.json"


def test_secret_parameters() -> None:
    template = Template.of(
        {}, {"LayerKey": "l"}, {"DatasetteSecret": "DATASETTE_SECRET", "SecretToken": "TOKEN"}
    )

    def given(secrets: dict[str, str]) -> d.DeployOptions:
        return dataclasses.replace(FAST, secrets=secrets)

    new_stack = None
    existing = d.StackInfo(
        "s", "UPDATE_COMPLETE", {}, frozenset({"DatasetteSecret", "SecretToken"}), {}, None
    )
    with pytest.raises(AwsError, match=r"the secret TOKEN \(deploy.secrets\) is not set"):
        d.stack_parameters(template, "bkt", new_stack, given({}))
    created = d.stack_parameters(template, "bkt", new_stack, given({"TOKEN": "t0k"}))
    values = {p["ParameterKey"]: p.get("ParameterValue") for p in created}
    assert values["ArtifactBucket"] == "bkt" and values["LayerKey"] == "l" and values["SecretToken"] == "t0k"
    assert re.fullmatch(r"[0-9a-f]{64}", values["DatasetteSecret"] or "")  # generated once
    updated = d.stack_parameters(template, "bkt", existing, given({"TOKEN": ""}))
    assert {"ParameterKey": "DatasetteSecret", "UsePreviousValue": True} in updated
    assert {"ParameterKey": "SecretToken", "UsePreviousValue": True} in updated
    kept = d.stack_parameters(template, "bkt", existing, given({"DATASETTE_SECRET": "s3cret"}))
    assert {"ParameterKey": "DatasetteSecret", "ParameterValue": "s3cret"} in kept


def test_secret_values_come_from_the_options_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy reads no environment variable for secrets: the front doors pass them in."""
    template = Template.of({}, {}, {"DatasetteSecret": "DATASETTE_SECRET", "SecretToken": "TOKEN"})
    monkeypatch.setenv("TOKEN", "from-the-environment")
    with pytest.raises(AwsError, match=r"the secret TOKEN \(deploy.secrets\) is not set"):
        d.stack_parameters(template, "bkt", None, FAST)


def test_the_deployment_id_is_new_on_a_create_and_when_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_RUN_ID", raising=False)
    template = Template.of(
        {"Parameters": {"DeploymentId": {"Type": "String", "Default": ""}}},
        {},
        {"DatasetteSecret": "DATASETTE_SECRET"},
    )
    existing = d.StackInfo(
        "s", "UPDATE_COMPLETE", {}, frozenset({"DatasetteSecret", "DeploymentId"}), {}, None
    )

    def deployment(info: d.StackInfo | None, options: d.DeployOptions) -> dict[str, Any]:
        given = d.stack_parameters(template, "bkt", info, options)
        (found,) = [p for p in given if p["ParameterKey"] == "DeploymentId"]
        return dict(found)

    assert re.fullmatch(r"[0-9a-f]{12}", deployment(None, FAST)["ParameterValue"])
    assert deployment(existing, FAST) == {"ParameterKey": "DeploymentId", "UsePreviousValue": True}
    forced = deployment(existing, dataclasses.replace(FAST, force=True, run_id="42-1"))["ParameterValue"]
    assert re.fullmatch(r"42-1-[0-9a-f]{12}", forced)
    assert deployment(existing, dataclasses.replace(FAST, force=True))["ParameterValue"] != forced
    # a stack made before DeploymentId existed has no previous value: it gets one
    older = dataclasses.replace(existing, parameters=frozenset({"DatasetteSecret"}))
    assert "ParameterValue" in deployment(older, FAST)


def test_health_check_reports_status_and_time() -> None:
    """A local server standing in for the site: 200 is healthy, 500 is reported as it is."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Site(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 500)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        healthy = d.health_check(base, attempts=1)
        assert healthy.ok and healthy.status == 200 and healthy.error is None and healthy.seconds > 0
        broken = d.health_check(base + "broken", attempts=2, delay=0.01)
        assert not broken.ok and broken.status == 500 and broken.error == "HTTP 500 Internal Server Error"
    finally:
        server.shutdown()
        server.server_close()
    unreachable = d.health_check(base, attempts=1, timeout=2)
    assert not unreachable.ok and unreachable.status is None and unreachable.error
