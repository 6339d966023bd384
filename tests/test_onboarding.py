"""The onboarding path end to end, as a new user walks it: an empty git repository with a few data
files (no config) -> `init` -> `build` -> `setup-github` and `deploy` against the local AWS -> the
site answers with the data, and the workflows init wrote pass GitHub's schema and zizmor.

Every step goes through the command line (click's runner, cwd the repository, no options but the
ones a user would type); one repository and one deploy per module, shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner, Result
from workflow_checks import assert_valid_workflows

from datasette_action import init
from datasette_action.cli import cli
from datasette_action.config import load_config
from datasette_action.local_aws import LocalAws

ROOT = Path(__file__).resolve().parent.parent
REPO = "octo-org/city-data"
STACK = "onboarding-site"  # unique to this module: the session's other tests never use it
SUB = "token.actions.githubusercontent.com:sub"
AUD = "token.actions.githubusercontent.com:aud"

FILES = {
    "data/cities.csv": (
        "id,name,country,population\n"
        "1,Lisbon,Portugal,545796\n"
        "2,Zürich,Switzerland,421878\n"
        "3,Kraków,Poland,804237\n"
        "4,São Paulo,Brazil,11451245\n"
    ),
    "data/readings.tsv": (
        "station\tday\ttemperature\n"
        "north\t2024-01-01\t3.5\n"
        "north\t2024-01-02\t4.0\n"
        "south\t2024-01-01\t11.25\n"
    ),
    "data/people.json": json.dumps(
        [
            {"name": "Ana", "city": 1, "role": "editor"},
            {"name": "Björn", "city": 2, "role": "author"},
            {"name": "Zoë", "city": 3, "role": "author"},
        ],
        ensure_ascii=False,
    ),
    "events.jsonl": (
        '{"slug": "launch", "when": "2024-03-01", "city": 1}\n'
        '{"slug": "meetup", "when": "2024-04-12", "city": 4}\n'
    ),
}


@dataclass(frozen=True)
class Onboarded:
    root: Path
    init: Result
    build: Result
    setup: Result
    deploy: Result

    @property
    def url(self) -> str:
        url: str = json.loads(self.deploy.stdout)["url"]
        return url


def invoke(*arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments))  # stdin is not a terminal: init asks nothing


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200, url
        return response.read().decode()


@pytest.fixture(scope="module")
def onboarded(local_aws: LocalAws, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Onboarded]:
    root = tmp_path_factory.mktemp("onboarding") / "city-data"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, content in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="utf-8")
    # `gh` on PATH, not logged in (a stub: there is no GitHub here), so setup-github prints no commands
    stub = tmp_path_factory.mktemp("bin")
    (stub / "gh").write_text("#!/bin/sh\nexit 1\n")
    (stub / "gh").chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("PATH", f"{stub}{os.pathsep}{os.environ['PATH']}")
        done_init = invoke("init", "--stack", STACK, "--region", "us-east-1")
        assert done_init.exit_code == 0, done_init.output
        done_build = invoke("build")
        assert done_build.exit_code == 0, done_build.output
        setup = invoke("setup-github", "--repo", REPO, "--json")
        assert setup.exit_code == 0, setup.output
        deployed = invoke("deploy", "--json")
        assert deployed.exit_code == 0, deployed.output
        yield Onboarded(root, done_init, done_build, setup, deployed)
        gone = invoke("destroy", "--yes")
        assert gone.exit_code == 0, gone.output
        gone = invoke("setup-github", "--repo", REPO, "--destroy", "--yes")
        assert gone.exit_code == 0, gone.output


def test_init_writes_the_config_gitignore_and_workflows(onboarded: Onboarded) -> None:
    root = onboarded.root
    assert onboarded.init.stderr.splitlines()[:3] == [
        f"Found 4 data files in {root}",
        "  database city-data: tables events",
        "  database data: tables cities, people, readings",
    ]
    config = load_config(root / "datasette-lambda.yml")
    assert (config.stack, config.region, config.deploy.frontend) == (STACK, "us-east-1", "function_url")
    tables = {(db.name, t.name): t for db in config.databases for t in db.tables}
    assert sorted(tables) == [
        ("city-data", "events"),
        ("data", "cities"),
        ("data", "people"),
        ("data", "readings"),
    ]
    assert tables["data", "cities"].pk == ("id",)
    assert "/.datasette-lambda/" in (root / ".gitignore").read_text().splitlines()
    workflows = sorted(p.name for p in (root / ".github" / "workflows").glob("*.yml"))
    assert workflows == ["pr-plan.yml", "publish.yml"]
    uses = f"{init.ACTION_REPOSITORY}@{init.ACTION_TAG}"
    publish = yaml.safe_load((root / ".github/workflows/publish.yml").read_text())
    assert uses in [step.get("uses") for step in publish["jobs"]["publish"]["steps"]]
    assert f"uses: {uses}" in (root / ".github/workflows/pr-plan.yml").read_text()
    assert publish["concurrency"]["group"] == f"deploy-{STACK}"
    # git sees the files to commit, and not the build output
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".datasette-lambda" not in status
    assert {line[3:] for line in status.splitlines()} == {
        *FILES,
        ".gitignore",
        "datasette-lambda.yml",
        ".github/workflows/publish.yml",
        ".github/workflows/pr-plan.yml",
    }


def test_build_makes_the_databases(onboarded: Onboarded) -> None:
    built = sorted(p.name for p in (onboarded.root / ".datasette-lambda" / "databases").glob("*.db"))
    assert built == ["city-data.db", "data.db"]


def test_setup_github_makes_roles_trusting_the_repository(onboarded: Onboarded) -> None:
    result = json.loads(onboarded.setup.stdout)
    assert result["stack"] == f"{STACK}-github"
    assert result["variables"] == {
        "AWS_DEPLOY_ROLE_ARN": result["deploy_role_arn"],
        "AWS_PLAN_ROLE_ARN": result["plan_role_arn"],
        "AWS_REGION": "us-east-1",
    }
    for name, value in result["variables"].items():
        assert f"{name}={value}" in onboarded.setup.stderr
    iam = boto3.client("iam")
    for arn, subject in [
        (result["deploy_role_arn"], f"repo:{REPO}:environment:production"),
        (result["plan_role_arn"], f"repo:{REPO}:pull_request"),
    ]:
        role = iam.get_role(RoleName=arn.rsplit("/", 1)[1])["Role"]
        [statement] = role["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"]["Federated"] == result["provider_arn"]
        assert statement["Condition"] == {"StringEquals": {AUD: "sts.amazonaws.com", SUB: subject}}


def test_the_deployed_site_answers_with_the_data(onboarded: Onboarded) -> None:
    output = json.loads(onboarded.deploy.stdout)
    assert output["stack"] == STACK and output["changed"] is True
    assert output["health"]["ok"] is True
    stack = boto3.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    url = onboarded.url
    assert outputs["SiteUrl"] == url and url.startswith("http://127.0.0.1:")
    databases = {d["name"]: d for d in json.loads(get(url + ".json")).values()}
    assert set(databases) == {"city-data", "data"}
    index = get(url)
    assert 'href="/data"' in index and 'href="/city-data"' in index
    cities = json.loads(get(url + "data/cities.json?_shape=array"))
    assert cities == [
        {"id": 1, "name": "Lisbon", "country": "Portugal", "population": 545796},
        {"id": 2, "name": "Zürich", "country": "Switzerland", "population": 421878},
        {"id": 3, "name": "Kraków", "country": "Poland", "population": 804237},
        {"id": 4, "name": "São Paulo", "country": "Brazil", "population": 11451245},
    ]
    # the key init detected is the table's primary key: a row page by id
    row = json.loads(get(url + "data/cities/3.json?_shape=array"))
    assert row == [{"id": 3, "name": "Kraków", "country": "Poland", "population": 804237}]
    assert json.loads(get(url + "data/cities.json"))["primary_keys"] == ["id"]
    people = json.loads(get(url + "data/people.json?_shape=array&_sort=name"))
    assert [p["name"] for p in people] == ["Ana", "Björn", "Zoë"]
    readings = json.loads(get(url + "data/readings.json?_shape=array&station=south"))
    assert [(r["day"], r["temperature"]) for r in readings] == [("2024-01-01", 11.25)]
    events = json.loads(get(url + "city-data/events.json?_shape=array"))
    assert [e["slug"] for e in events] == ["launch", "meetup"]


def test_the_workflows_pass_githubs_schema_and_zizmor(onboarded: Onboarded) -> None:
    workflows = sorted(str(p) for p in (onboarded.root / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) == 2
    assert_valid_workflows(workflows)
