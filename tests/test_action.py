"""The GitHub Action, run as the runner runs it: `python -m datasette_action.action` in a
subprocess whose working directory is the workspace, with the INPUT_* variables action.yml sets,
GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, GITHUB_EVENT_NAME and GITHUB_WORKSPACE. The tests
read what the runner would: the outputs file, the summary file and the workflow commands on stdout.

Deploy and plan run against a real moto server on loopback (`local_aws`), with dummy credentials
and the endpoint-url input. action.yml and every workflow (this repository's and the examples)
are checked with check-jsonschema's built-in schemas and zizmor, offline.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

from datasette_action import action
from datasette_action.build import build
from datasette_action.cli import cli
from datasette_action.config import load_config
from datasette_action.local_aws import LocalAws
from datasette_action.package import package

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOWS = sorted([*ROOT.glob(".github/workflows/*.yml"), *ROOT.glob("examples/workflows/*.yml")])
TINY_CONFIG = """\
stack: tiny-site
region: us-east-1
databases:
  places:
    tables:
      cities:
        source: data/cities.csv
        pk: id
"""
CITIES = "id,name,population\n1,Lyon,522000\n2,Nantes,320000\n"
# Every variable the AWS credential chain reads, and those of a surrounding GitHub job.
CLEARED = re.compile(r"(AWS_|INPUT_|GITHUB_|RUNNER_|DATASETTE_SECRET$|MAPBOX_TOKEN$)")


@dataclass(frozen=True)
class ActionRun:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str

    def commands(self, name: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith(f"::{name}")]


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: name=value, or name<<DELIMITER ... DELIMITER."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, index + 1)
            outputs[name] = "\n".join(lines[index + 1 : end])
            index = end + 1
        else:
            if line:
                name, _, value = line.partition("=")
                outputs[name] = value
            index += 1
    return outputs


def run_action(
    workspace: Path,
    inputs: Mapping[str, str] | None = None,
    *,
    event: str = "push",
    env: Mapping[str, str] | None = None,
) -> ActionRun:
    runner = workspace.parent / "runner"  # the runner's files live outside the workspace
    runner.mkdir(exist_ok=True)
    output, summary = runner / "output.txt", runner / "summary.md"
    output.write_text("")
    summary.write_text("")
    empty = runner / "empty-aws-config"
    empty.write_text("")
    environment = {name: value for name, value in os.environ.items() if not CLEARED.match(name)}
    environment |= {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_EVENT_NAME": event,
        "RUNNER_TEMP": str(runner),
    }
    environment |= {
        "INPUT_" + name.upper().replace("-", "_"): value for name, value in (inputs or {}).items()
    }
    environment |= env or {}
    done = subprocess.run(
        [sys.executable, "-m", "datasette_action.action"],
        cwd=workspace,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return ActionRun(
        done.returncode,
        done.stdout,
        done.stderr,
        parse_outputs(output.read_text()),
        summary.read_text(),
    )


def make_workspace(parent: Path, config: str = TINY_CONFIG, where: str = ".") -> Path:
    workspace = parent / "workspace"
    site = workspace / where
    (site / "data").mkdir(parents=True)
    (site / "datasette-lambda.yml").write_text(config)
    (site / "data" / "cities.csv").write_text(CITIES)
    return workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project packaged once (a real pip run for the Lambda target), so each test's
    copy finds its dependency layer in the build directory's cache."""
    workspace = make_workspace(tmp_path_factory.mktemp("packaged"))
    config = load_config(workspace / "datasette-lambda.yml")
    package(config, build(config))
    return workspace


def copy_of(workspace: Path, parent: Path) -> Path:
    target = parent / "copy" / "workspace"
    shutil.copytree(workspace, target)
    return target


# -- build mode, and what every run does ------------------------------------------------------------


def test_build_mode_writes_outputs_and_a_summary(workspace: Path) -> None:
    run = run_action(workspace, {"mode": "build"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.outputs == {
        "url": "",
        "stack-name": "tiny-site",
        "changed": "",
        "bundle-sha256": "",
        "bundle-size": "",
        "plan-markdown": "",
    }
    assert run.summary.startswith("# datasette-lambda build: `tiny-site`\n")
    assert "| places | cities | 2 |" in run.summary
    assert (workspace / ".datasette-lambda" / "databases" / "places.db").is_file()
    # the long log is folded, and says how to do the same locally
    assert run.commands("group") == ["::group::Build the databases of datasette-lambda.yml"]
    assert run.commands("endgroup") == ["::endgroup::"]
    assert "datasette-lambda build -c datasette-lambda.yml" in run.stdout
    assert not run.commands("error")


def test_working_directory_and_stack_name_input(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, where="sites/tiny")
    run = run_action(
        workspace, {"mode": "build", "working-directory": "sites/tiny", "stack-name": "other-stack"}
    )
    assert run.returncode == 0, run.stdout
    assert run.outputs["stack-name"] == "other-stack"
    assert "datasette-lambda build -c sites/tiny/datasette-lambda.yml (with the stack" in run.stdout
    assert (workspace / "sites" / "tiny" / ".datasette-lambda" / "databases" / "places.db").is_file()


def test_secrets_are_masked_before_anything_is_printed(tmp_path: Path) -> None:
    config = TINY_CONFIG + "deploy:\n  secrets: [MAPBOX_TOKEN]\n"
    workspace = make_workspace(tmp_path, config)
    run = run_action(
        workspace,
        {"mode": "build"},
        env={"DATASETTE_SECRET": "cookie-signing-secret", "MAPBOX_TOKEN": "pk.line-one\npk.line-two"},
    )
    assert run.returncode == 0, run.stdout
    lines = run.stdout.splitlines()
    assert lines[:4] == [
        "::add-mask::cookie-signing-secret",
        "::add-mask::pk.line-one%0Apk.line-two",
        "::add-mask::pk.line-one",
        "::add-mask::pk.line-two",
    ]


# -- one way to fail: an annotation, a summary section saying how to fix it, exit 1 ------------------


def assert_failed(run: ActionRun, annotation: str) -> None:
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.commands("error") == [annotation]
    assert "**How to fix:**" in run.summary
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize("where", [".", "site"])
def test_a_config_error_is_annotated_at_its_file_and_line(tmp_path: Path, where: str) -> None:
    config = TINY_CONFIG.replace("    tables:", "    tabels:")
    workspace = make_workspace(tmp_path, config, where=where)
    run = run_action(workspace, {"mode": "build", "working-directory": where})
    file = "datasette-lambda.yml" if where == "." else f"{where}/datasette-lambda.yml"
    assert_failed(
        run,
        f"::error file={file},line=5,title=datasette-lambda build failed::"
        "unknown key 'tabels' in databases.places; did you mean 'tables'?",
    )
    assert run.summary.startswith("## datasette-lambda build failed\n")
    assert f"```text\n{file}:5: unknown key 'tabels'" in run.summary  # relative to the workspace
    assert "docs/configuration.md" in run.summary  # points at the config reference


def test_a_data_error_is_annotated_at_the_data_line(workspace: Path) -> None:
    (workspace / "data" / "cities.csv").write_text(CITIES + "3,Paris\n")
    run = run_action(workspace, {"mode": "build"})
    assert run.returncode == 1
    [annotation] = run.commands("error")
    assert annotation.startswith("::error file=data/cities.csv,line=4,title=datasette-lambda build failed::")


def test_an_unknown_mode(workspace: Path) -> None:
    run = run_action(workspace, {"mode": "publish"})
    assert_failed(
        run,
        "::error title=datasette-lambda action failed::the mode input: 'publish' is not allowed;"
        " choose one of: deploy, plan, build",
    )
    assert "docs/action.md" in run.summary


def test_a_bad_boolean_and_a_bad_stack_name(workspace: Path) -> None:
    run = run_action(workspace, {"mode": "build", "health-check": "yes"})
    assert_failed(
        run,
        "::error title=datasette-lambda build failed::the health-check input: 'yes' is not allowed;"
        " choose one of: true, false",
    )
    run = run_action(workspace, {"mode": "build", "force": "1"})
    assert_failed(
        run,
        "::error title=datasette-lambda build failed::the force input: '1' is not allowed;"
        " choose one of: true, false",
    )
    run = run_action(workspace, {"mode": "build", "stack-name": "my_stack"})
    assert run.returncode == 1
    assert (
        "the stack-name input: 'my_stack' is not a valid CloudFormation stack name"
        in run.commands("error")[0]
    )


@pytest.mark.parametrize("directory", ["..", "/", "link-out"])
def test_a_working_directory_outside_the_workspace(workspace: Path, directory: str) -> None:
    (workspace / "link-out").symlink_to(workspace.parent)
    run = run_action(workspace, {"working-directory": directory})
    assert run.returncode == 1
    [annotation] = run.commands("error")
    assert annotation.startswith(
        f"::error title=datasette-lambda deploy failed::the working-directory input: '{directory}'"
        f" is outside the workspace ({workspace.resolve()}, where actions/checkout puts the repository)"
    )
    assert not (workspace.parent / ".datasette-lambda").exists()


def test_a_missing_config(workspace: Path) -> None:
    run = run_action(workspace, {"config": "site.yml", "mode": "plan"})
    assert_failed(
        run,
        "::error title=datasette-lambda plan failed::the config input: 'site.yml' was not found in the"
        " repository's root; set `config:` to the config file's path relative to it"
        " (`datasette-lambda init` writes one; docs/configuration.md describes it)",
    )
    empty = workspace.parent / "empty"
    empty.mkdir()
    run = run_action(empty, {"mode": "plan"})
    assert "the workspace is empty; add actions/checkout before this step" in run.commands("error")[0]


def test_deploy_without_credentials_says_how_to_set_up_oidc(workspace: Path) -> None:
    run = run_action(workspace, {"mode": "deploy"})
    assert run.returncode == 1
    [annotation] = run.commands("error")
    assert annotation.startswith(
        "::error title=datasette-lambda deploy failed::deploy mode needs AWS credentials"
    )
    assert "aws-actions/configure-aws-credentials (with role-to-assume)" in annotation
    assert "`permissions: id-token: write`" in annotation
    assert "id-token: write" in run.summary and "role-to-assume: arn:aws:iam::" in run.summary
    assert "aws-actions/configure-aws-credentials@" in run.summary
    assert not (workspace / ".datasette-lambda").exists()  # failed before the build


NO_FUNCTION_URLS = (
    "AWS offers no Lambda function URLs in {region}, and deploy.frontend is function_url (the"
    " default); use `deploy.frontend: http_api` there (an API Gateway HTTP API in front of the"
    " function)"
)


def test_a_region_without_function_urls_fails_before_the_build(workspace: Path) -> None:
    """From the aws-region input (the config says us-east-1), and from the job's AWS_REGION (as
    aws-actions/configure-aws-credentials sets it) for a config without a region."""
    run = run_action(workspace, {"mode": "plan", "aws-region": "ca-west-1"})
    assert_failed(
        run,
        "::error file=datasette-lambda.yml,title=datasette-lambda plan failed::region ca-west-1: "
        + NO_FUNCTION_URLS.format(region="ca-west-1"),
    )
    config = workspace / "datasette-lambda.yml"
    config.write_text(TINY_CONFIG.replace("region: us-east-1\n", ""))
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    run = run_action(workspace, {"mode": "deploy"}, env={**credentials, "AWS_REGION": "me-central-1"})
    assert_failed(
        run,
        "::error file=datasette-lambda.yml,title=datasette-lambda deploy failed::region me-central-1"
        " (from the AWS environment: AWS_REGION, AWS_DEFAULT_REGION or the profile): "
        + NO_FUNCTION_URLS.format(region="me-central-1"),
    )
    assert not (workspace / ".datasette-lambda").exists()  # nothing was built


# -- plan and deploy -------------------------------------------------------------------------------


def test_deploy_on_a_pull_request_plans_offline(packaged: Path, tmp_path: Path) -> None:
    workspace = copy_of(packaged, tmp_path)
    run = run_action(workspace, {"mode": "deploy"}, event="pull_request")
    assert run.returncode == 0, run.stdout + run.stderr
    notices = run.commands("notice")
    assert notices[0] == (
        "::notice title=datasette-lambda::mode is deploy, but this is a pull_request event: running plan"
        " instead (a dry run that changes nothing). The site is deployed from a push to the branch it"
        " publishes."
    )
    assert notices[1].startswith("::notice title=datasette-lambda plan::plan ran offline: no AWS credentials")
    report = Path(run.outputs["plan-markdown"])
    assert report == workspace / ".datasette-lambda" / "plan.md"
    assert run.summary.startswith("> mode is deploy, but this is a pull_request event")
    assert run.summary.endswith(report.read_text())
    assert "**Offline**" in run.summary
    assert run.outputs["changed"] == ""  # unknown offline
    function_zip = next((workspace / ".datasette-lambda" / "package").glob("function-*.zip"))
    assert run.outputs["bundle-sha256"] == function_zip.stem.removeprefix("function-")
    assert run.outputs["bundle-size"] == str(function_zip.stat().st_size)


@pytest.fixture(scope="module")
def online(packaged: Path, tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws) -> Path:
    return copy_of(packaged, tmp_path_factory.mktemp("online"))


# Dummy credentials (moto takes any); the region comes from the config.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "GITHUB_RUN_ID": "42"}


@pytest.fixture(scope="module")
def plan_before(online: Path, local_aws: LocalAws) -> ActionRun:
    """mode deploy on a pull request, with credentials: a plan that compares with AWS."""
    return run_action(
        online, {"mode": "deploy", "endpoint-url": local_aws.endpoint_url}, event="pull_request", env=AWS_ENV
    )


@pytest.fixture(scope="module")
def first_deploy(online: Path, local_aws: LocalAws, plan_before: ActionRun) -> ActionRun:
    return run_action(online, {"endpoint-url": local_aws.endpoint_url}, env=AWS_ENV)


def break_datasette(workspace: Path) -> Path:
    """Give the site a one-file plugin that raises at import: Datasette cannot start. Returns
    the config file."""
    (workspace / "plugins").mkdir()
    (workspace / "plugins" / "broken.py").write_text('raise RuntimeError("this plugin is broken")\n')
    config = workspace / "datasette-lambda.yml"
    config.write_text(config.read_text() + "datasette:\n  plugins_dir: plugins\n")
    return config


def test_a_plan_whose_bundle_fails_its_smoke_test_is_shown_then_fails(packaged: Path, tmp_path: Path) -> None:
    """A one-file plugin that raises at import: Datasette cannot start in the bundle. The plan is
    still reported in full (log, outputs, summary) by the action's one failure path, and by the
    CLI's, before the error."""
    workspace = copy_of(packaged, tmp_path)
    config = break_datasette(workspace)
    report = workspace / ".datasette-lambda" / "plan.md"
    failure = f"the bundle failed its smoke test; see {report}"

    run = run_action(workspace, {"mode": "plan"})
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.outputs["plan-markdown"] == str(report) and run.outputs["bundle-sha256"]
    assert "- smoke test (the bundle run locally through its handler): **failed**" in run.summary
    assert run.summary.index("# datasette-lambda plan: `tiny-site`") < run.summary.index(
        "## datasette-lambda plan failed"
    )
    assert f"```text\n{failure}\n```" in run.summary
    assert run.commands("error") == [f"::error title=datasette-lambda plan failed::{failure}"]
    # the function's own log (what CloudWatch would hold) says why; the tool itself did not crash
    assert "RuntimeError: this plugin is broken" in run.stderr and "failed unexpectedly" not in run.stdout

    done = CliRunner().invoke(cli, ["plan", "-c", str(config), "--json"])
    assert done.exit_code == 1
    assert done.stderr.index("# datasette-lambda plan") < done.stderr.index(f"Error: {failure}")
    shown = json.loads(done.stdout)  # the plan's own JSON, not an error object
    assert shown["smoke_test_ok"] is False and shown["lint_errors"] == 0 and shown["report"] == str(report)


def test_plan_against_local_aws_before_the_first_deploy(plan_before: ActionRun) -> None:
    run = plan_before
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.outputs["changed"] == "true"
    assert "the stack tiny-site does not exist yet" in run.summary
    assert "| Add | Function | AWS::Lambda::Function |" in run.summary
    assert [notice.split("::")[1] for notice in run.commands("notice")] == ["notice title=datasette-lambda"]
    assert run.summary.endswith(Path(run.outputs["plan-markdown"]).read_text())
    assert run.outputs["url"] == ""


def test_deploy_against_local_aws(first_deploy: ActionRun, online: Path, local_aws: LocalAws) -> None:
    run = first_deploy
    assert run.returncode == 0, run.stdout + run.stderr
    url = run.outputs["url"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    assert run.outputs["stack-name"] == "tiny-site"
    assert run.outputs["changed"] == "true"
    assert re.fullmatch(r"[0-9a-f]{64}", run.outputs["bundle-sha256"])
    assert run.outputs["plan-markdown"] == ""
    assert run.summary.startswith("# datasette-lambda deploy: `tiny-site` updated")
    assert "Health check: GET " in run.summary
    assert run.commands("notice") == [f"::notice title=datasette-lambda deploy::tiny-site deployed: {url}"]
    assert "::group::Deploy the stack tiny-site" in run.stdout
    with urllib.request.urlopen(url + "places/cities.json?_shape=array", timeout=60) as response:
        assert [row["name"] for row in json.load(response)] == ["Lyon", "Nantes"]
    # the same again: nothing to deploy, the stack is not touched
    again = run_action(online, {"endpoint-url": local_aws.endpoint_url}, env=AWS_ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.outputs["changed"] == "false"
    assert again.outputs["url"] == url
    assert again.outputs["bundle-sha256"] == run.outputs["bundle-sha256"]
    assert "unchanged (empty change set)" in again.summary


def test_the_force_input_deploys_with_nothing_changed(
    first_deploy: ActionRun, online: Path, local_aws: LocalAws
) -> None:
    assert first_deploy.returncode == 0, first_deploy.stdout + first_deploy.stderr
    lambda_ = boto3.client(
        "lambda",
        region_name="us-east-1",
        endpoint_url=local_aws.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    def deployment_id() -> str:
        configuration = lambda_.get_function_configuration(FunctionName="tiny-site")
        value: str = configuration["Environment"]["Variables"]["DATASETTE_LAMBDA_DEPLOYMENT_ID"]
        return value

    before = deployment_id()
    forced = run_action(online, {"endpoint-url": local_aws.endpoint_url, "force": "true"}, env=AWS_ENV)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert forced.outputs["changed"] == "true"
    assert forced.commands("notice")[-1].endswith(f"tiny-site deployed: {forced.outputs['url']}")
    after = deployment_id()
    assert after != before and after.startswith("42-1-")  # GITHUB_RUN_ID, attempt 1
    # force: false (the default, spelled out) changes nothing
    normal = run_action(online, {"endpoint-url": local_aws.endpoint_url, "force": "false"}, env=AWS_ENV)
    assert normal.returncode == 0, normal.stdout + normal.stderr
    assert normal.outputs["changed"] == "false"
    assert deployment_id() == after


def test_a_deploy_whose_bundle_fails_its_smoke_test_sends_nothing(
    packaged: Path, tmp_path: Path, local_aws: LocalAws
) -> None:
    """Datasette cannot start in the bundle (a plugin that raises at import): deploy runs plan's
    smoke test before anything is sent, refuses with the cause, and no stack is made. (A site that
    deploys but does not answer is tests/test_deploy.py's health-check test.)"""
    workspace = copy_of(packaged, tmp_path)
    break_datasette(workspace)
    inputs = {"endpoint-url": local_aws.endpoint_url, "stack-name": "tiny-broken"}
    run = run_action(workspace, inputs, env=AWS_ENV)
    assert run.returncode == 1, run.stdout + run.stderr
    [error] = run.commands("error")
    assert error.startswith(
        "::error title=datasette-lambda deploy failed::the bundle failed its smoke test: GET / -> 500: "
    )
    assert (
        "this plugin is broken" in error and "nothing was sent to AWS and the live site is unchanged" in error
    )
    assert not any("deployed:" in notice for notice in run.commands("notice"))
    cf = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=local_aws.endpoint_url)
    names = {s["StackName"] for s in cf.list_stacks()["StackSummaries"]}
    assert "tiny-broken" not in names and "tiny-broken-artifacts" not in names


# -- the runner's formats -----------------------------------------------------------------------------


def test_workflow_command_escaping() -> None:
    assert action.escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    assert action.escape_property("a:b,c%") == "a%3Ab%2Cc%25"


def test_the_summary_is_cut_to_githubs_limit_safely() -> None:
    note = "(cut)"
    assert action.truncate_markdown("short\n", 100, note) == "short\n"
    text = "# head\n\n```text\n" + "é" * 600 + "\nline\n" * 50
    cut = action.truncate_markdown(text, 400, note)
    assert len(cut.encode("utf-8")) <= 400
    assert cut.endswith("\n```\n\n(cut)\n")  # the open code block is closed before the note
    assert cut.startswith("# head\n")
    table = "| a | b |\n|---|---|\n" + "| x | y |\n" * 1000
    cut = action.truncate_markdown(table, 1000, note)
    assert len(cut.encode()) <= 1000 and cut.endswith("| x | y |\n\n(cut)\n")


def test_the_summary_file_stays_within_the_limit(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("x" * (action.SUMMARY_LIMIT - 100))
    github = action.GitHub(open(os.devnull, "w"), tmp_path, None, summary)
    github.add_summary("y\n" * 1000)
    github.write_summary("(cut)")
    github.out.close()
    assert summary.stat().st_size <= action.SUMMARY_LIMIT


@pytest.mark.parametrize(
    "event",
    [
        "pull_request",
        "pull_request_target",
        "merge_group",
        "pull_request_review",
        "pull_request_review_comment",
    ],
)
def test_a_pull_request_never_deploys(event: str) -> None:
    mode, note = action.effective_mode("deploy", event)
    assert mode == "plan" and note is not None and f"this is a {event} event" in note
    assert action.effective_mode("build", event) == ("build", None)


@pytest.mark.parametrize("event", ["push", "schedule", "workflow_dispatch", "workflow_run", "release"])
def test_other_events_deploy(event: str) -> None:
    assert action.effective_mode("deploy", event) == ("deploy", None)


def _pull_request_payload(runner: Path, head: str | None) -> str:
    repo = None if head is None else {"full_name": head}
    path = runner / "event.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"pull_request": {"head": {"repo": repo}}, "repository": {"full_name": "me/site"}})
    )
    return str(path)


@pytest.mark.parametrize(
    ("head", "shown"),
    [("someone/site", "someone/site fork"), (None, "an unknown or deleted repository")],
)
def test_pull_request_target_from_a_fork_is_refused_before_anything_runs(
    tmp_path: Path, head: str | None, shown: str
) -> None:
    workspace = make_workspace(tmp_path)
    event_path = _pull_request_payload(tmp_path / "event", head)
    env = {
        "GITHUB_EVENT_PATH": event_path,
        "GITHUB_REPOSITORY": "me/site",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    }
    run = run_action(workspace, {"mode": "deploy"}, event="pull_request_target", env=env)
    assert run.returncode == 1, run.stdout
    [error] = run.commands("error")
    assert error == (
        f"::error title=datasette-lambda deploy failed::this is a pull_request_target event for a pull"
        f" request from {shown}: the workflow runs with me/site's secrets and a write token, and a plan"
        " would run code the pull request controls (plugins, plugins_dir, templates, sql: steps, the"
        " smoke test), so the action refuses to run. Run the plan on `pull_request` instead (a fork"
        " gets no secrets there: it plans offline), and post its report from a separate `workflow_run`"
        " job"
    )
    assert "`workflow_run`" in run.summary and "Trigger the plan with `on: pull_request`" in run.summary
    assert not (workspace / ".datasette-lambda").exists()  # nothing was built: no pull-request code ran


def test_pull_request_target_from_the_same_repository_plans(packaged: Path, tmp_path: Path) -> None:
    workspace = copy_of(packaged, tmp_path)
    env = {
        "GITHUB_EVENT_PATH": _pull_request_payload(tmp_path / "event", "me/site"),
        "GITHUB_REPOSITORY": "me/site",
    }
    run = run_action(workspace, {"mode": "deploy"}, event="pull_request_target", env=env)
    assert run.returncode == 0, run.stdout
    assert "mode is deploy, but this is a pull_request_target event: running plan" in run.stdout


def test_at_most_nine_warning_annotations_then_a_notice_with_the_count(tmp_path: Path) -> None:
    out = io.StringIO()
    github = action.GitHub(out, tmp_path, None, None)
    action._warn(github, tuple(f"w{i}" for i in range(12)))
    github.count_held_back()
    lines = out.getvalue().splitlines()
    assert lines[:9] == [f"::warning title=datasette-lambda::w{i}" for i in range(9)]
    assert lines[9:12] == ["Warning: w9", "Warning: w10", "Warning: w11"]  # the log keeps them all
    assert lines[12:] == [
        "::notice title=datasette-lambda::3 more warning(s) are in the log of this step (GitHub shows"
        " 10 annotations of a kind per step)"
    ]


# -- action.yml, the workflows and the README ---------------------------------------------------------


def action_yml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return loaded


ENGINE_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def lambda_python(workspace: Path, inputs: Mapping[str, str] | None = None) -> tuple[dict[str, str], str]:
    """action.yml's `lambda-python` step: its outputs and what it printed."""
    output = workspace.parent / "lambda-python-output.txt"
    output.write_text("")
    env = {"GITHUB_WORKSPACE": str(workspace), "GITHUB_OUTPUT": str(output)}
    env |= {"INPUT_" + name.upper().replace("-", "_"): value for name, value in (inputs or {}).items()}
    printed = io.StringIO()
    assert action.lambda_python(env, printed) == 0
    return parse_outputs(output.read_text()), printed.getvalue()


@pytest.mark.parametrize("python", ["3.12", "3.13", "3.14"])
def test_the_action_sets_up_the_configs_lambda_python_when_it_is_not_the_engines(
    tmp_path: Path, python: str
) -> None:
    config = TINY_CONFIG + f"lambda:\n  python: '{python}'\n"
    outputs, printed = lambda_python(make_workspace(tmp_path, config))
    assert outputs == {"python": python, "setup": str(python != ENGINE_PYTHON).lower()}
    assert (f"setting up Python {python}" in printed) == (python != ENGINE_PYTHON)


def test_without_lambda_python_the_runtimes_default_is_set_up(tmp_path: Path) -> None:
    outputs, _ = lambda_python(
        make_workspace(tmp_path, TINY_CONFIG, where="site"), {"working-directory": "site"}
    )
    assert outputs["python"] == load_config(tmp_path / "workspace/site/datasette-lambda.yml").lambda_.python


def test_mode_build_needs_no_runtime_python(workspace: Path) -> None:
    config = TINY_CONFIG + "lambda:\n  python: '3.12'\n"
    (workspace / "datasette-lambda.yml").write_text(config)
    outputs, _ = lambda_python(workspace, {"mode": "build"})
    assert outputs == {"python": "3.12", "setup": "false"}


@pytest.mark.parametrize(
    ("config", "inputs"),
    [(TINY_CONFIG + "lambda:\n  python: '2.7'\n", {}), (TINY_CONFIG, {"config": "missing.yml"})],
)
def test_a_config_it_cannot_read_is_left_to_the_engines_run(
    workspace: Path, config: str, inputs: dict[str, str]
) -> None:
    """No outputs, nothing printed, success: the run step then reports the error once, at its line."""
    (workspace / "datasette-lambda.yml").write_text(config)
    assert lambda_python(workspace, inputs) == ({}, "")
    failed = run_action(workspace, inputs)
    assert failed.returncode == 1 and len(failed.commands("error")) == 1


def test_action_yml_passes_every_input_through_env_and_no_expression_into_scripts() -> None:
    definition = action_yml()
    assert definition["runs"]["using"] == "composite"
    steps = definition["runs"]["steps"]
    run_step = next(step for step in steps if step.get("id") == "run")
    for name in definition["inputs"]:
        if name == "python-version":  # used by setup-python, not by the engine
            continue
        variable = "INPUT_" + name.upper().replace("-", "_")
        assert run_step["env"][variable] == f"${{{{ inputs.{name} }}}}"
    for step in steps:
        assert "${{" not in step.get("run", ""), step["name"]
        uses = step.get("uses", "")
        assert not uses or re.search(r"@[0-9a-f]{40}$", uses), uses  # pinned by commit
    outputs = definition["outputs"]
    assert tuple(outputs) == action.OUTPUTS
    for name, output in outputs.items():
        assert output["value"] == f"${{{{ steps.run.outputs.{name} }}}}"


def test_the_run_step_of_action_yml_as_the_runner_runs_it(workspace: Path) -> None:
    """action.yml's last step, its `${{ }}` expressions filled in as the runner fills them (the
    inputs given or their defaults), run by bash as GitHub runs `shell: bash` steps."""
    definition = action_yml()
    step = next(step for step in definition["runs"]["steps"] if step.get("id") == "run")
    given = {"mode": "build", "stack-name": "from-yml"}
    values = {
        f"inputs.{name}": given.get(name, spec.get("default", ""))
        for name, spec in definition["inputs"].items()
    }
    values["steps.install.outputs.bin"] = str(BIN)
    # The engine's Python is the runtime's here: the runtime's setup-python step was skipped.
    values["steps.lambda-python.outputs.python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    values["steps.runtime-python.outputs.python-path"] = ""
    expression = re.compile(r"\$\{\{ ([\w.-]+) \}\}")
    env = {
        name: expression.sub(lambda match: values[match[1]], str(value))
        for name, value in step["env"].items()
    }
    runner = workspace.parent / "runner"
    runner.mkdir()
    (runner / "output.txt").write_text("")
    environment = {name: value for name, value in os.environ.items() if not CLEARED.match(name)}
    environment |= env | {
        "PATH": "/usr/bin:/bin",  # the venv's bin comes from the step itself
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(runner / "output.txt"),
        "GITHUB_EVENT_NAME": "push",
    }
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=workspace,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert parse_outputs((runner / "output.txt").read_text())["stack-name"] == "from-yml"


def test_every_input_and_output_is_in_the_readme() -> None:
    section = (ROOT / "docs/action.md").read_text()
    definition = action_yml()
    missing = [
        name for name in (*definition["inputs"], *definition["outputs"]) if f"| `{name}` |" not in section
    ]
    assert not missing, f"inputs and outputs missing from the README's action section: {missing}"
    for name, value in definition["inputs"].items():
        if value.get("default"):
            assert f"| `{name}` | `{value['default']}` |" in section, name
    for workflow in ROOT.glob("examples/workflows/*.yml"):
        assert f"examples/workflows/{workflow.name}" in section


def test_action_and_workflows_match_githubs_schemas() -> None:
    checks = [
        ["--builtin-schema", "vendor.github-actions", str(ROOT / "action.yml")],
        ["--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
    ]
    assert [path.relative_to(ROOT).as_posix() for path in WORKFLOWS] == [
        ".github/workflows/lint.yml",
        ".github/workflows/release.yml",
        ".github/workflows/test.yml",
        "examples/workflows/pr-plan.yml",
        "examples/workflows/publish.yml",
    ]
    for arguments in checks:
        done = subprocess.run(
            [str(BIN / "check-jsonschema"), *arguments], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing() -> None:
    done = subprocess.run(
        [
            str(BIN / "zizmor"),
            "--offline",  # no network: the audits that need the GitHub API are skipped
            "--no-progress",
            "action.yml",
            *map(str, WORKFLOWS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


def test_the_readmes_oidc_roles_template_passes_cfn_lint() -> None:
    from cfnlint.api import ManualArgs, lint
    from cfnlint.decode import cfn_yaml

    page = (ROOT / "docs/deploying.md").read_text()
    section = page.split("\n## One-time AWS setup", 1)[1].split("\n## ", 1)[0]
    [template] = [
        block for block in re.findall(r"```yaml\n(.*?)```", section, re.S) if "AWSTemplate" in block
    ]
    problems = lint(template, config=ManualArgs(regions=["us-east-1"]))
    assert not problems, [str(problem) for problem in problems]
    assert "token.actions.githubusercontent.com:sub: !Sub repo:${Repository}:pull_request" in template
    # No permission is written by hand: each role holds the managed policy `iam-policy` generates
    # (`--plan` for the plan role), which tests/test_iam.py proves against the calls each mode makes.
    roles = {
        name: resource["Properties"]
        for name, resource in cfn_yaml.loads(template)["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
    }
    assert {name: properties.get("ManagedPolicyArns") for name, properties in roles.items()} == {
        "DeployRole": [{"Ref": "DeployPolicyArn"}],
        "PlanRole": [{"Ref": "PlanPolicyArn"}],
    }
    assert not any("Policies" in properties for properties in roles.values())
    assert "datasette-lambda iam-policy --plan > plan-policy.json" in section


# -- the example workflows tell one story; every action is pinned -------------------------------------

# The newest release of each action used, pinned by its commit (`git rev-list -n1 <tag>` in the
# action's repository); each of these tags' action.yml says `using: node24`.
RELEASES = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/cache": ("27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),
}
# This action in the examples: a placeholder for the release users pin, which zizmor is told about.
PLACEHOLDER = (
    "uses: org/datasette-lambda-action@v1 # zizmor: ignore[unpinned-uses]"
    " (placeholder: pin a release's commit SHA)"
)
ACTION_STEP = "org/datasette-lambda-action@v1"


def load_workflow(name: str) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((ROOT / "examples/workflows" / name).read_text())
    loaded["on"] = loaded.pop(True)  # YAML 1.1 reads the key `on` as true
    return loaded


def only_job(workflow: dict[str, Any]) -> dict[str, Any]:
    [job] = workflow["jobs"].values()
    return dict(job)


def step_index(steps: list[dict[str, Any]], test: Any) -> int:
    [index] = [index for index, step in enumerate(steps) if test(step)]
    return index


def test_publish_runs_on_push_schedule_and_by_hand_and_always_makes_the_data() -> None:
    workflow = load_workflow("publish.yml")
    assert set(workflow["on"]) == {"push", "schedule", "workflow_dispatch"}
    assert workflow["on"]["push"] == {"branches": ["main"]}
    assert [entry["cron"] for entry in workflow["on"]["schedule"]]
    job = only_job(workflow)
    steps = job["steps"]
    # Nothing is skipped per event: no condition on the job or on any step.
    assert "if" not in job
    assert [step for step in steps if "if" in step] == []
    data = step_index(steps, lambda step: step.get("id") == "data")
    credentials = step_index(steps, lambda step: "configure-aws-credentials@" in step.get("uses", ""))
    deploy = step_index(steps, lambda step: step.get("uses") == ACTION_STEP)
    assert data < credentials < deploy
    assert steps[data]["run"]
    assert steps[deploy]["with"]["mode"] == "deploy"
    assert steps[credentials]["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    # The README's OIDC roles template trusts this environment only.
    assert job["environment"]["name"] == "production"


def test_publish_is_one_run_per_stack_and_never_cancels_a_deploy() -> None:
    workflow = load_workflow("publish.yml")
    concurrency = workflow["concurrency"]
    assert concurrency["cancel-in-progress"] is False
    # The same group for every event (no `${{ github.ref }}` or event name in it), and the group
    # the README's command-line example uses for the same stack.
    assert "${{" not in concurrency["group"]
    assert "queue" not in concurrency  # a newer pending run replaces an older one: it makes the data again
    assert "concurrency" not in only_job(workflow)
    readme = (ROOT / "docs/deploying.md").read_text()
    assert f"concurrency: {{group: {concurrency['group']}, cancel-in-progress: false}}" in readme


def test_the_pull_request_plan_makes_the_data_as_publish_does() -> None:
    publish, plan = load_workflow("publish.yml"), load_workflow("pr-plan.yml")
    assert set(plan["on"]) == {"pull_request"}  # never pull_request_target
    steps = only_job(plan)["steps"]
    data = step_index(steps, lambda step: step.get("id") == "data")
    action_step = step_index(steps, lambda step: step.get("uses") == ACTION_STEP)
    assert data < action_step
    assert "if" not in steps[data]
    assert steps[action_step]["with"]["mode"] == "plan"
    publish_steps = only_job(publish)["steps"]
    [publish_data] = [step for step in publish_steps if step.get("id") == "data"]
    assert steps[data]["run"] == publish_data["run"]
    # The same Python for the data step, and the same config for the action.
    [plan_python] = [step for step in steps if "setup-python@" in step.get("uses", "")]
    [publish_python] = [step for step in publish_steps if "setup-python@" in step.get("uses", "")]
    assert plan_python == publish_python
    [publish_action] = [step for step in publish_steps if step.get("uses") == ACTION_STEP]
    assert steps[action_step]["with"]["config"] == publish_action["with"]["config"]
    # Credentials only for the repository's own branches, after the data step.
    [credentials] = [step for step in steps if "configure-aws-credentials@" in step.get("uses", "")]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in credentials["if"]
    assert data < steps.index(credentials) < action_step


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_workflows_hold_the_least_privilege(path: Path) -> None:
    workflow: dict[str, Any] = yaml.safe_load(path.read_text())
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        uses = [step.get("uses", "") for step in job["steps"]]
        needs_oidc = any("configure-aws-credentials@" in use for use in uses)
        expected = {"contents": "read", "id-token": "write"} if needs_oidc else None
        if (path.name, name) == ("release.yml", "release"):
            expected = {"contents": "write"}  # the GitHub release and the major tag (tests/test_release.py)
        assert job.get("permissions") == expected, name
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_the_readme_lists_only_example_workflows_that_exist() -> None:
    readme = (ROOT / "docs/action.md").read_text()
    named = set(re.findall(r"examples/workflows/([\w.-]+\.yml)", readme))
    assert named == {path.name for path in (ROOT / "examples/workflows").glob("*.yml")}
    for stale in ("deploy.yml", "refresh.yml"):
        assert f"`{stale}`" not in readme and f" {stale} " not in readme, stale


@pytest.mark.parametrize("path", [ROOT / "action.yml", *WORKFLOWS], ids=lambda path: path.name)
def test_every_action_is_pinned_to_its_current_release_commit(path: Path) -> None:
    # owner/repo, then perhaps the path of an action inside it (actions/cache/restore)
    pinned = re.compile(r"uses: ([\w.-]+/[\w.-]+)(?:/[\w./-]+)?@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)")
    for line in path.read_text().splitlines():
        uses = line.strip().removeprefix("- ")
        if not uses.startswith("uses:") or uses.startswith("uses: ./"):
            continue
        if path.is_relative_to(ROOT / "examples") and uses == PLACEHOLDER:
            continue
        match = pinned.fullmatch(uses)
        assert match, f"{path.name}: {uses}"
        assert RELEASES.get(match[1]) == (match[2], match[3]), f"{path.name}: {uses}"


def test_the_oidc_how_to_pins_configure_aws_credentials_as_the_examples_do() -> None:
    sha, tag = RELEASES["aws-actions/configure-aws-credentials"]
    assert action.CONFIGURE_AWS == f"aws-actions/configure-aws-credentials@{sha} # {tag}"
