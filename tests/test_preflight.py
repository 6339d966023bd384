"""What would fail on a real account, found before anything is built, uploaded or changed (issue
10, parts 2 and 4): a function URL in a region without them (from the config or from the AWS
environment), cfn-lint in the region deployed to, deploy.bucket in another region, a reserved
concurrency the account cannot give, a log group of the function's name the stack does not own,
and databases in S3 too slow to arrive within the function's timeout.

The front doors run for real: the `datasette-lambda` command (CliRunner, in this process) against
moto's server on loopback (`local_aws`), on a tiny project packaged once per module (a real pip run,
cached by pip; each test's copy keeps the build directory, so pip does not run again).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner, Result

from datasette_action import deploy as d
from datasette_action import package as package_module
from datasette_action import pipeline
from datasette_action.build import build
from datasette_action.cli import cli
from datasette_action.config import Config, load_config
from datasette_action.errors import CheckError, ConfigError, PackageError
from datasette_action.local_aws import LocalAws
from datasette_action.package import MB, DatabasePlacement, check_download_time, package

NO_URL = (
    "AWS offers no Lambda function URLs in {region}, and deploy.frontend is function_url (the"
    " default); use `deploy.frontend: http_api` there (an API Gateway HTTP API in front of the"
    " function)"
)
FROM_ENVIRONMENT = "(from the AWS environment: AWS_REGION, AWS_DEFAULT_REGION or the profile)"
CITIES = "id,name\n1,Lyon\n2,Nantes\n"


def config_text(stack: str, region: str | None = "us-east-1", extra: str = "") -> str:
    head = f"stack: {stack}\n" + (f"region: {region}\n" if region else "")
    return head + "databases:\n  places:\n    tables:\n      cities: data/cities.csv\n" + extra


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project, packaged once: its build directory holds the dependency layer."""
    root = tmp_path_factory.mktemp("preflight") / "site"
    (root / "data").mkdir(parents=True)
    (root / "data" / "cities.csv").write_text(CITIES)
    (root / "datasette-lambda.yml").write_text(config_text("site"))
    config = load_config(root / "datasette-lambda.yml")
    package(config, build(config))
    return root


@pytest.fixture
def project(packaged: Path, tmp_path: Path) -> Callable[..., Path]:
    """A copy of the packaged project with its own config text: project(stack, region, extra)."""

    def make(stack: str, region: str | None = "us-east-1", extra: str = "", name: str = "site") -> Path:
        root = tmp_path / name
        shutil.copytree(packaged, root)
        path = root / "datasette-lambda.yml"
        path.write_text(config_text(stack, region, extra))
        return path

    return make


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def stack_names() -> set[str]:
    stacks = boto3.client("cloudformation", region_name="us-east-1").describe_stacks()["Stacks"]
    return {s["StackName"] for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"}


# -- regions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "variable"), [("plan", "AWS_REGION"), ("deploy", "AWS_DEFAULT_REGION")])
def test_a_region_from_the_environment_without_function_urls_fails_before_the_build(
    no_aws: None, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, command: str, variable: str
) -> None:
    config = project("no-urls", region=None)
    shutil.rmtree(config.parent / ".datasette-lambda")  # the copy's: what a build would make again
    monkeypatch.setenv(variable, "il-central-1")
    done = run(command, "-c", config)
    assert done.exit_code == 1
    message = NO_URL.format(region="il-central-1")
    assert done.stderr == f"Error: {config}: region il-central-1 {FROM_ENVIRONMENT}: {message}\n"
    assert not (config.parent / ".datasette-lambda").exists()  # nothing was built


def test_the_region_check_passes_an_http_api_and_names_the_region(
    no_aws: None, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "il-central-1")
    config = load_config(project("http-api", region=None, extra="deploy:\n  frontend: http_api\n"))
    assert pipeline.check_region(config) == "il-central-1"
    assert pipeline.check_region(dataclasses.replace(config, region="us-west-2")) == "us-west-2"
    monkeypatch.delenv("AWS_REGION")
    assert pipeline.check_region(config) is None  # plan then runs offline, deploy says "no region"
    # a region put into the config by a front door's input (the action's aws-region) is checked too
    function_url = dataclasses.replace(
        config, deploy=dataclasses.replace(config.deploy, frontend="function_url")
    )
    with pytest.raises(ConfigError) as caught:
        pipeline.check_region(dataclasses.replace(function_url, region="me-central-1"))
    assert str(caught.value) == f"{config.path}: region me-central-1: {NO_URL.format(region='me-central-1')}"


def packaged_in(config_path: Path, region: str) -> pipeline.Packaged:
    """The project packaged, with `region` put into its config afterwards (past the config's own
    check): what a front door would hand the pipeline if the region check were skipped."""
    packaged = pipeline.build_and_package(load_config(config_path))
    return dataclasses.replace(packaged, config=dataclasses.replace(packaged.config, region=region))


def test_plan_lints_the_template_for_the_region_it_deploys_to(
    no_aws: None, project: Callable[..., Path], tmp_path: Path
) -> None:
    """A function URL template is fine for us-east-1 and wrong for il-central-1, where
    CloudFormation has no AWS::Lambda::Url: the offline plan lints for the config's region."""
    config_path = project("lint-region")
    options = d.DeployOptions()
    fine = pipeline.plan(packaged_in(config_path, "us-east-1"), options, tmp_path / "us.md")
    assert fine.lint_errors == 0
    with pytest.raises(CheckError) as caught:
        pipeline.plan(packaged_in(config_path, "il-central-1"), options, tmp_path / "il.md")
    planned = caught.value.result
    assert isinstance(planned, pipeline.Planned)
    [problem] = [p for p in planned.lint if p.severity == "error"]
    assert (problem.rule, problem.message) == (
        "E3006",
        "Resource type 'AWS::Lambda::Url' does not exist in 'il-central-1'",
    )
    assert "E3006" in (tmp_path / "il.md").read_text()


def test_deploy_lints_for_its_region_before_any_aws_call(
    no_aws: None, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    calls: list[str] = []
    monkeypatch.setattr(d.Aws, "client", lambda self, service: calls.append(service))
    packaged = packaged_in(project("lint-deploy"), "il-central-1")
    lines = packaged.template.to_json().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if '"AWS::Lambda::Url"' in text)
    with pytest.raises(CheckError) as caught:
        pipeline.deploy(packaged, d.DeployOptions())
    assert caught.value.message == (
        "cfn-lint found 1 error(s) in the template for il-central-1; nothing was sent to AWS"
        " (`datasette-lambda plan` shows the template's problems too):\n"
        f"  E3006 (template line {line}): Resource type 'AWS::Lambda::Url' does not exist in 'il-central-1'"
    )
    assert calls == []  # not one AWS client was made


def test_a_region_cfn_lint_does_not_know_is_linted_as_us_east_1_with_a_warning(
    no_aws: None, project: Callable[..., Path], tmp_path: Path
) -> None:
    from datasette_action.checks import lint_template

    template = pipeline.build_and_package(load_config(project("new-region"))).template
    [note] = lint_template(template, "xx-new-1")
    assert note.severity == "warning" and note.rule == "region"
    assert note.message.endswith(
        "has no resource schemas for the region xx-new-1: the template was checked against"
        " us-east-1's (a newer cfn-lint may know it)"
    )


# -- the account and its resources, against the local AWS -----------------------------------------


def test_deploy_bucket_in_another_region_stops_before_any_upload(
    local_aws: LocalAws, project: Callable[..., Path]
) -> None:
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="far-artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    config = project("far-bucket", extra="deploy:\n  bucket: far-artifacts\n")
    expected = (
        "Error: deploy.bucket 'far-artifacts' is in eu-west-1, but this deploy is to us-east-1, and"
        " Lambda reads code only from a bucket in the function's own region; nothing was uploaded."
        " Use a bucket in us-east-1 (aws s3 mb s3://NAME --region us-east-1), remove deploy.bucket to"
        " let this tool create one, or deploy to the bucket's region\n"
    )
    for command in ("deploy", "plan"):
        done = run(command, "-c", config, "--no-health-check" if command == "deploy" else "--json")
        assert done.exit_code == 1
        assert done.stderr.endswith(expected)
    listed = boto3.client("s3", region_name="eu-west-1").list_objects_v2(Bucket="far-artifacts")
    assert listed.get("KeyCount") == 0
    assert "far-bucket" not in stack_names()


def concurrency_error(wanted: int, left: int, unreserved: int, most: int, own: int = 0) -> str:
    replaced = f"; this function already reserves {own}, which this deploy replaces" if own else ""
    return (
        f"lambda.reserved_concurrency: {wanted} would leave {left} unreserved concurrent executions in"
        " the account in us-east-1, and Lambda keeps at least 100 for functions without a reservation."
        f" The account (lambda:GetAccountSettings): ConcurrentExecutions 300, UnreservedConcurrentExecutions"
        f" {unreserved}{replaced}. Reserve at most {most}, remove lambda.reserved_concurrency, or ask AWS"
        " for a higher quota (Service Quotas: AWS Lambda, Concurrent executions); nothing was changed"
    )


def test_reserved_concurrency_is_checked_against_the_account(
    local_aws: LocalAws, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account with a quota of 300 (moto's own MOTO_LAMBDA_CONCURRENCY_QUOTA, which the local
    AWS's GetAccountSettings reports) and nothing else reserved."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "300")

    def reserving(count: int) -> Path:
        return project("reserved", extra=f"lambda:\n  reserved_concurrency: {count}\n", name=f"r{count}")

    done = run("deploy", "-c", (config := reserving(250)), "--no-health-check")
    assert done.exit_code == 1
    assert done.stderr.endswith(f"Error: {config}: {concurrency_error(250, 50, 300, 200)}\n")
    assert not {"reserved", "reserved-artifacts"} & stack_names()  # not even the bootstrap stack

    done = run("deploy", "-c", reserving(150), "--no-health-check")
    assert done.exit_code == 0, done.output
    # On an update the function's own reservation (150) comes back: 200 leaves 150 + 150 - 200.
    done = run("plan", "-c", reserving(200))
    assert done.exit_code == 0, done.output
    done = run("plan", "-c", (config := reserving(201)))
    assert done.exit_code == 1
    assert done.stderr.endswith(f"Error: {config}: {concurrency_error(201, 99, 150, 200, own=150)}\n")


def test_a_log_group_the_stack_does_not_own_stops_the_deploy(
    local_aws: LocalAws, project: Callable[..., Path]
) -> None:
    logs = boto3.client("logs", region_name="us-east-1")
    logs.create_log_group(logGroupName="/aws/lambda/old-site")  # an earlier function's
    logs.create_log_group(logGroupName="/aws/lambda/old-site-2")  # a neighbour: no matter
    config = project("old-site")
    expected = (
        "Error: the log group /aws/lambda/old-site already exists in us-east-1, and the stack old-site"
        " does not own it (an earlier function of the same name made it), so CloudFormation could not"
        " create the stack's LogGroup; nothing was changed. Delete it (its logs go with it): aws logs"
        " delete-log-group --log-group-name /aws/lambda/old-site --region us-east-1; or import it into"
        " the stack as LogGroup (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/resource-import.html)\n"
    )
    for command in ("plan", "deploy"):
        done = run(command, "-c", config)
        assert done.exit_code == 1
        assert done.stderr.endswith(expected)
    assert not {"old-site", "old-site-artifacts"} & stack_names()

    logs.delete_log_group(logGroupName="/aws/lambda/old-site")  # as the message says
    done = run("deploy", "-c", config, "--no-health-check")
    assert done.exit_code == 0, done.output
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/old-site")["logGroups"]
    assert "/aws/lambda/old-site" in {g["logGroupName"] for g in groups}  # now the stack's own
    done = run("deploy", "-c", config, "--no-health-check")  # so it is no obstacle
    assert done.exit_code == 0, done.output


# -- databases in S3: the download at cold start --------------------------------------------------


def placed(name: str, size: int, location: str = "s3") -> DatabasePlacement:
    return DatabasePlacement(
        name, f"{name}.db", Path(f"/build/{name}.db"), "a" * 64, size, location, None, ""
    )


def loaded(tmp_path: Path, extra: str) -> Config:
    path = tmp_path / "datasette-lambda.yml"
    path.write_text(config_text("s", extra=extra))
    return load_config(path)


MORE_MEMORY = "lambda.memory (more memory brings more CPU and network, up to one vCPU at 1,769 MB)"
MORE_TIME = "lambda.timeout (at most 900 s; Lambda bills only the time used)"


@pytest.mark.parametrize(
    ("settings", "size", "seconds", "rate", "fixes"),
    [
        ("memory: 1024\n  timeout: 30", 2000, 43, 49, f"Raise {MORE_TIME}, or {MORE_MEMORY}; or publish"),
        ("memory: 2048\n  timeout: 20", 2000, 25, 85, f"Raise {MORE_TIME}; or publish"),
        ("memory: 128\n  timeout: 900", 10_000, 1705, 6, f"Raise {MORE_MEMORY}; or publish"),
    ],
)
def test_databases_in_s3_that_cannot_arrive_within_the_timeout_are_an_error(
    tmp_path: Path, settings: str, size: int, seconds: int, rate: int, fixes: str
) -> None:
    config = loaded(tmp_path, f"lambda:\n  {settings}\n")
    with pytest.raises(PackageError) as caught:
        check_download_time(config, [placed("big", size * MB), placed("small", MB, "bundle")])
    timeout = config.lambda_.timeout
    assert str(caught.value) == (
        f"{config.path}: the databases in S3 (big {size:,}.0 MB) are downloaded inside the first request"
        f" of each new execution environment: about {seconds:,} s at a conservative {rate} MB/s for"
        f" {config.lambda_.memory:,} MB of memory, longer than lambda.timeout ({timeout} s): every cold"
        f" start would time out before the site answers. {fixes} smaller databases"
    )


def test_an_http_api_gives_up_on_a_slow_first_request_with_a_warning(tmp_path: Path) -> None:
    databases = [placed("a", 1000 * MB), placed("b", 500 * MB)]
    http_api = loaded(tmp_path, "lambda:\n  timeout: 60\ndeploy:\n  frontend: http_api\n")
    assert check_download_time(http_api, databases) == [
        "the databases in S3 (a 1,000.0 MB, b 500.0 MB) are downloaded inside the first request of"
        " each new execution environment: about 32 s at a conservative 49 MB/s for 1,024 MB of"
        " memory, longer than the 30 s an HTTP API waits: that first request gets an error from API"
        f" Gateway while the download goes on, and later requests are served; raise {MORE_MEMORY}, or"
        " use deploy.frontend: function_url (no 30 s limit)"
    ]
    function_url = loaded(tmp_path, "lambda:\n  timeout: 60\n")
    assert check_download_time(function_url, databases) == []
    assert check_download_time(http_api, [placed("a", 1000 * MB, "bundle")]) == []  # nothing to download


def test_package_fails_when_its_s3_database_cannot_arrive_in_time(
    packaged: Path, project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lowered limits (monkeypatched: a real 250 MB database and a slow network would make a slow
    test): the database goes to S3, and the network is 1,000 bytes a second."""
    original = load_config(packaged / "datasette-lambda.yml")
    result = package(original, build(original))  # the layer is cached: no pip
    [database] = result.databases
    code = result.function.unzipped_size - database.size + package_module.MANIFEST_ALLOWANCE
    monkeypatch.setattr(package_module, "UNZIPPED_LIMIT", result.layer.unzipped_size + code + 100)
    monkeypatch.setattr(package_module, "S3_CONNECTION_THROUGHPUT", 1000)
    config = project("slow", extra="lambda:\n  memory: 2048\n  timeout: 1\n")
    done = run("package", "-c", config)
    assert done.exit_code == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith(
        f"Error: {config}: the databases in S3 (places 0.0 MB) are downloaded inside the first request"
        f" of each new execution environment: about {-(-database.size // 1000):,} s at a conservative 0 MB/s"
    )
    assert last.endswith(
        f"longer than lambda.timeout (1 s): every cold start would time out before the site answers. Raise {MORE_TIME}; or publish smaller databases"
    )
