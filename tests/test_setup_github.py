"""`datasette-lambda setup-github`: the template (golden, cfn-lint, the trust conditions), and
the stack's life against the local AWS: create, update, reuse of the account's OIDC provider,
destroy. The GitHub CLI is a stub script on PATH (there is no GitHub here): it records how it was
called, so the tests see that only `gh auth status` runs.

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_setup_github.py   # after an intended change
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from datasette_action import iam
from datasette_action import setup_github as gh
from datasette_action import template as template_module
from datasette_action.cli import cli
from datasette_action.config import Config, DatasetteConfig, DeployConfig, LambdaConfig, load_config
from datasette_action.local_aws import LocalAws

GOLDEN = Path(__file__).parent / "golden" / "github-roles.json"
UPDATE_GOLDEN = bool(os.environ.get("UPDATE_GOLDEN"))
REPO = "octo-org/my-data"
SUB = "token.actions.githubusercontent.com:sub"
AUD = "token.actions.githubusercontent.com:aud"


def make_config(stack: str = "golden-site") -> Config:
    return Config(
        path=Path("datasette-lambda.yml"),
        root=Path("."),
        stack=stack,
        region="us-east-1",
        databases=(),
        metadata=None,
        metadata_file=None,
        datasette=DatasetteConfig(None, {}, (), (), None, None),
        lambda_=LambdaConfig(),
        deploy=DeployConfig(),
    )


def conditions(role: dict[str, Any]) -> dict[str, Any]:
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    return dict(statement["Condition"])


# -- the template, offline --------------------------------------------------------------------------


def test_golden_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_module, "TOOL_VERSION", "0.0.0")
    text = gh.to_json(gh.roles_template(make_config(), gh.trust(REPO), "us-east-1"))
    if UPDATE_GOLDEN:
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "github-roles.json differs from the golden file; if intended, regenerate (see the module docstring)"
    )


@pytest.mark.parametrize("trusted", [gh.trust(REPO), gh.trust(REPO, branch="main")])
def test_the_template_passes_cfn_lint(trusted: gh.Trust) -> None:
    from cfnlint.api import ManualArgs, lint

    body = gh.to_json(gh.roles_template(make_config(), trusted, "eu-west-1"))
    problems = [str(p) for p in lint(body, config=ManualArgs(regions=["eu-west-1"]))]
    # W3037 (an IAM action cfn-lint does not know) stays for permissions AWS's resource schemas
    # list for their handlers (lambda:AssociateRuntimeAlias, s3:DeleteBucketEncryption), which
    # cfn-lint's own list of IAM actions lags behind: the deployer's policy grants them on purpose.
    schemas = iam.deployer_policy(make_config(), iam.Target("eu-west-1", iam.PLACEHOLDER_ACCOUNT, "aws"))
    from_schemas = {p.permission.partition(":")[2].lower() for p in schemas.permissions}
    unknown = [p for p in problems if p.startswith("[W3037") and p.split("'")[1] in from_schemas]
    assert not [p for p in problems if p not in unknown], problems


def test_the_trust_conditions_are_exact() -> None:
    resources = gh.roles_template(make_config(), gh.trust(REPO), "us-east-1")["Resources"]
    expected = {AUD: "sts.amazonaws.com", SUB: f"repo:{REPO}:environment:production"}
    assert conditions(resources["DeployRole"]) == {"StringEquals": expected}
    plan = {AUD: "sts.amazonaws.com", SUB: f"repo:{REPO}:pull_request"}
    assert conditions(resources["PlanRole"]) == {"StringEquals": plan}
    by_branch = gh.roles_template(make_config(), gh.trust(REPO, branch="main"), "us-east-1")["Resources"]
    assert conditions(by_branch["DeployRole"])["StringEquals"][SUB] == f"repo:{REPO}:ref:refs/heads/main"
    staging = gh.roles_template(make_config(), gh.trust(REPO, environment="staging"), "us-east-1")
    assert conditions(staging["Resources"]["DeployRole"])["StringEquals"][SUB] == (
        f"repo:{REPO}:environment:staging"
    )


def test_the_policies_are_iam_policys_with_the_account_filled_in_by_cloudformation() -> None:
    resources = gh.roles_template(make_config(), gh.trust(REPO), "us-east-1")["Resources"]
    target = iam.Target("us-east-1", iam.PLACEHOLDER_ACCOUNT)
    for logical_id, policy in [
        ("DeployPolicy", iam.deployer_policy(make_config(), target)),
        ("PlanPolicy", iam.plan_policy(make_config(), target)),
    ]:
        document = resources[logical_id]["Properties"]["PolicyDocument"]
        filled = json.loads(
            json.dumps(document), object_hook=lambda d: d["Fn::Sub"] if set(d) == {"Fn::Sub"} else d
        )
        assert json.dumps(filled).replace("${AWS::AccountId}", iam.PLACEHOLDER_ACCOUNT) == json.dumps(
            policy.document
        )
    assert resources["DeployRole"]["Properties"]["ManagedPolicyArns"] == [{"Ref": "DeployPolicy"}]
    assert resources["PlanRole"]["Properties"]["ManagedPolicyArns"] == [{"Ref": "PlanPolicy"}]
    assert resources["GitHubOidc"]["DeletionPolicy"] == "Retain"
    assert "ThumbprintList" not in resources["GitHubOidc"]["Properties"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--repo", "octo-org"],
            "--repo 'octo-org' is not a GitHub repository: give OWNER/NAME, e.g. octo-org/my-data",
        ),
        (
            ["--repo", "-bad/x"],
            "--repo '-bad/x' is not a GitHub repository: give OWNER/NAME, e.g. octo-org/my-data",
        ),
        (
            ["--repo", REPO, "--branch", "main", "--environment", "prod"],
            "--environment and --branch exclude each other: the deploy role trusts a job of one"
            " environment, or one branch's jobs that name no environment",
        ),
        (
            ["--repo", REPO, "--branch", "refs/heads/main"],
            "--branch 'refs/heads/main': give the branch's name (e.g. main), not its ref",
        ),
        (
            ["--repo", REPO, "--environment", "a b"],
            "--environment 'a b' cannot be trusted exactly: give a name of at most 255 characters"
            " without spaces, ':', '*' or '?'",
        ),
    ],
)
def test_bad_options_are_one_line_errors(
    example_project: Path, no_aws: None, arguments: list[str], message: str
) -> None:
    done = CliRunner().invoke(
        cli, ["setup-github", "-c", str(example_project / "datasette-lambda.yml"), *arguments, "--print"]
    )
    assert done.exit_code == 1
    assert done.stderr == f"Error: {message}\n"


def test_print_makes_no_aws_call(
    example_project: Path, no_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No credentials, and an endpoint nothing listens on: any AWS call would fail.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    path = example_project / "datasette-lambda.yml"
    done = CliRunner().invoke(cli, ["setup-github", "-c", str(path), "--repo", REPO, "--print"])
    assert done.exit_code == 0, done.output
    expected = gh.roles_template(load_config(path), gh.trust(REPO), "us-east-1")
    assert json.loads(done.stdout) == expected


def test_without_credentials_it_says_how_to_configure_them(example_project: Path, no_aws: None) -> None:
    done = CliRunner().invoke(
        cli, ["setup-github", "-c", str(example_project / "datasette-lambda.yml"), "--repo", REPO]
    )
    assert done.exit_code == 1
    assert done.stderr.startswith("Error: no AWS credentials found; configure AWS credentials:")
    assert done.stderr.count("\n") == 1


# -- the stack, against the local AWS ---------------------------------------------------------------


@pytest.fixture
def project(local_aws: LocalAws, example_copy: Callable[[Path], Path], tmp_path: Path) -> Path:
    return example_copy(tmp_path / "example") / "datasette-lambda.yml"


@pytest.fixture
def fake_gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], Path]]:
    """`gh` on PATH (a stub: no GitHub here) exiting with the given status; returns its call log."""

    def install(status: int) -> Path:
        folder = tmp_path / "bin"
        folder.mkdir(exist_ok=True)
        log = tmp_path / "gh-calls.txt"
        script = folder / "gh"
        script.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit {status}\n')
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        return log

    yield install


def run(path: Path, *arguments: str) -> Result:
    return CliRunner().invoke(cli, ["setup-github", "-c", str(path), "--repo", REPO, *arguments, "--json"])


def role(arn: str) -> dict[str, Any]:
    answer: dict[str, Any] = boto3.client("iam").get_role(RoleName=arn.rsplit("/", 1)[1])["Role"]
    return answer


def attached_document(role_arn: str) -> Any:
    client = boto3.client("iam")
    [attached] = client.list_attached_role_policies(RoleName=role_arn.rsplit("/", 1)[1])["AttachedPolicies"]
    policy = client.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
    version = client.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"])
    return version["PolicyVersion"]["Document"]


def trust_conditions(role_arn: str) -> tuple[str, dict[str, Any]]:
    [statement] = role(role_arn)["AssumeRolePolicyDocument"]["Statement"]
    return statement["Principal"]["Federated"], statement["Condition"]


def providers() -> list[str]:
    found = boto3.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    return [str(p["Arn"]) for p in found]


def test_create_update_and_destroy(project: Path, fake_gh: Callable[[int], Path]) -> None:
    assert providers() == []
    gh_log = fake_gh(1)  # on PATH, not logged in: no gh commands
    done = run(project)
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    account = boto3.client("sts").get_caller_identity()["Account"]
    provider = f"arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com"
    assert providers() == [provider]
    assert result["stack"] == "example-datasette-github"
    assert result["provider_arn"] == provider and result["provider_reused"] is False
    assert result["changed"] is True and result["created"] is True
    assert result["gh_commands"] == []
    assert gh_log.read_text() == "auth status\n"
    assert result["variables"] == {
        "AWS_DEPLOY_ROLE_ARN": result["deploy_role_arn"],
        "AWS_PLAN_ROLE_ARN": result["plan_role_arn"],
        "AWS_REGION": "us-east-1",
    }
    assert f"AWS_DEPLOY_ROLE_ARN={result['deploy_role_arn']}" in done.stderr
    assert "account " + account + "): created" in done.stderr
    # The trust: GitHub's provider, the audience and the exact subjects.
    assert trust_conditions(result["deploy_role_arn"]) == (
        provider,
        {"StringEquals": {AUD: "sts.amazonaws.com", SUB: f"repo:{REPO}:environment:production"}},
    )
    assert trust_conditions(result["plan_role_arn"]) == (
        provider,
        {"StringEquals": {AUD: "sts.amazonaws.com", SUB: f"repo:{REPO}:pull_request"}},
    )
    # The policies: what iam-policy (and --plan) compute for this account, to the character.
    config = load_config(project)
    target = iam.Target("us-east-1", account)
    assert attached_document(result["deploy_role_arn"]) == iam.deployer_policy(config, target).document
    assert attached_document(result["plan_role_arn"]) == iam.plan_policy(config, target).document

    # Again, unchanged: nothing to do; with gh logged in, the commands (printed, not run).
    gh_log = fake_gh(0)
    gh_log.unlink()
    again = run(project)
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["changed"] is False and second["created"] is False
    assert "): up to date" in again.stderr
    assert second["provider_reused"] is False  # the stack's own provider stays in it
    assert second["gh_commands"] == [
        f"gh variable set AWS_DEPLOY_ROLE_ARN --repo {REPO} --body {result['deploy_role_arn']}",
        f"gh variable set AWS_PLAN_ROLE_ARN --repo {REPO} --body {result['plan_role_arn']}",
        f"gh variable set AWS_REGION --repo {REPO} --body us-east-1",
    ]
    assert gh_log.read_text() == "auth status\n"

    # A changed config: the new policy; --branch: the new trust.
    project.write_text(project.read_text() + "deploy:\n  frontend: http_api\n")
    changed = run(project, "--branch", "main")
    assert changed.exit_code == 0, changed.output
    third = json.loads(changed.stdout)
    assert third["changed"] is True and third["deploy_role_arn"] == result["deploy_role_arn"]
    assert third["created"] is False
    new_policy = iam.deployer_policy(load_config(project), target).document
    assert new_policy != iam.deployer_policy(config, target).document
    assert attached_document(third["deploy_role_arn"]) == new_policy
    _, deploy_trust = trust_conditions(third["deploy_role_arn"])
    assert deploy_trust["StringEquals"][SUB] == f"repo:{REPO}:ref:refs/heads/main"
    assert "must name no `environment:`" in changed.stderr

    # --destroy: the stack and its roles go; GitHub's provider stays (other roles may trust it).
    gone = CliRunner().invoke(cli, ["setup-github", "-c", str(project), "--repo", REPO, "--destroy", "--yes"])
    assert gone.exit_code == 0, gone.output
    assert f"kept GitHub's OIDC provider {provider}" in gone.stderr
    names = [r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]]
    assert not [name for name in names if name.startswith("example-datasette-github")]
    stacks = boto3.client("cloudformation").list_stacks()["StackSummaries"]
    assert {s["StackStatus"] for s in stacks if s["StackName"] == "example-datasette-github"} <= {
        "DELETE_COMPLETE"
    }
    assert providers() == [provider]
    nothing = CliRunner().invoke(
        cli, ["setup-github", "-c", str(project), "--repo", REPO, "--destroy", "--yes"]
    )
    assert nothing.exit_code == 0
    assert "nothing to delete" in nothing.stderr


def test_the_accounts_provider_is_reused(project: Path) -> None:
    client = boto3.client("iam")
    if not providers():
        client.create_open_id_connect_provider(
            Url="https://token.actions.githubusercontent.com", ClientIDList=["sts.amazonaws.com"]
        )
    [existing] = providers()
    done = run(project, "--stack", "reuse-github")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["provider_reused"] is True and result["provider_arn"] == existing
    assert providers() == [existing]
    federated, _ = trust_conditions(result["deploy_role_arn"])
    assert federated == existing
    assert "using the account's GitHub OIDC provider" in done.stderr
    gone = CliRunner().invoke(
        cli,
        ["setup-github", "-c", str(project), "--repo", REPO, "--stack", "reuse-github", "--destroy", "--yes"],
    )
    assert gone.exit_code == 0, gone.output
    assert "kept" not in gone.stderr
    assert providers() == [existing]


def test_a_stack_it_did_not_make_is_refused(project: Path) -> None:
    cf = boto3.client("cloudformation")
    body = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    cf.create_stack(StackName="someone-elses", TemplateBody=json.dumps(body))
    for extra in ([], ["--destroy", "--yes"]):
        done = run(project, "--stack", "someone-elses", *extra)
        assert done.exit_code == 1
        assert "already exists and was not made by datasette-lambda" in done.stderr
    assert cf.describe_stacks(StackName="someone-elses")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_destroy_without_a_terminal_needs_yes(project: Path) -> None:
    done = CliRunner().invoke(cli, ["setup-github", "-c", str(project), "--repo", REPO, "--destroy"])
    assert done.exit_code == 1
    assert done.stderr == (
        "Error: --destroy deletes the stack example-datasette-github and its roles; pass --yes to confirm\n"
    )
