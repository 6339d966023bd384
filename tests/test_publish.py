"""`datasette publish lambda`, run through Datasette's own command line (`datasette.cli.cli`), so the
plugin is found as Datasette finds it: by the `datasette` entry point of this package.

One real `--generate-dir` run (build + package, a real pip run for the Lambda platform, cached by
pip) serves most tests; the deploy test packages once more and deploys to a real moto server on
loopback (`local_aws`), whose function URL serves the deployed zips.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import datasette.cli
import pytest
from click.testing import CliRunner, Result

from datasette_action.checks import lint_template
from datasette_action.config import load_config
from datasette_action.errors import UserError
from datasette_action.local_aws import LocalAws
from datasette_action.publish import check_install, parse_extra_options, plugin_secrets
from datasette_action.template import Template

SECRET = "s3cr3t-d0-not-leak-7f1b2c"
PLUGIN = "datasette-json-html"  # a small pure-Python plugin, really installed by pip


def publish(*args: str | Path) -> Result:
    return CliRunner().invoke(datasette.cli.cli, ["publish", "lambda", *map(str, args)])


@dataclass(frozen=True)
class Inputs:
    root: Path
    database: Path
    metadata: Path
    static: Path
    templates: Path
    plugins: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    database = root / "fixtures.db"
    with sqlite3.connect(database) as conn:
        conn.execute("create table places (id integer primary key, name text)")
        conn.executemany("insert into places values (?, ?)", [(1, "Oslo"), (2, "Lima"), (3, "Pune")])
    conn.close()
    metadata = root / "metadata.yml"
    metadata.write_text(
        "title: Original title\ndescription: Places\nplugins:\n  datasette-auth-github:\n    client_id: abc\n"
    )
    static = root / "assets"
    static.mkdir()
    (static / "app.css").write_text("body { color: teal }\n")
    templates = root / "templates"
    templates.mkdir()
    (templates / "_footer.html").write_text("<p>custom footer</p>\n")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "hello.py").write_text(
        'from datasette import hookimpl\n\n\n@hookimpl\ndef extra_css_urls():\n    return ["/assets/app.css"]\n'
    )
    return Inputs(root, database, metadata, static, templates, plugins)


@dataclass(frozen=True)
class Generated:
    directory: Path
    result: Result


@pytest.fixture(scope="module")
def generated(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """The one real package run of the generate-dir tests: in a region without Lambda function
    URLs, so with an HTTP API in front (the deploy test below publishes a function URL)."""
    directory = tmp_path_factory.mktemp("generated") / "site"
    result = publish(
        inputs.database,
        "--stack",
        "my-site",
        "--region",
        "il-central-1",
        "--frontend",
        "http_api",
        "--memory",
        "512",
        "--generate-dir",
        directory,
        "-m",
        inputs.metadata,
        "--title",
        "Places of the world",
        "--license",
        "CC0",
        "--install",
        PLUGIN,
        "--plugin-secret",
        "datasette-auth-github",
        "client_secret",
        SECRET,
        "--secret",
        SECRET + "-signing",
        "--static",
        f"assets:{inputs.static}",
        "--template-dir",
        inputs.templates,
        "--plugins-dir",
        inputs.plugins,
        "--version-note",
        "published by a test",
        "--extra-options",
        "--setting default_page_size 50 --setting allow_download off",
    )
    return Generated(directory, result)


def zip_named(directory: Path, role: str) -> Path:
    (found,) = directory.glob(f"{role}-*.zip")
    return found


def test_lambda_is_one_of_datasettes_publishers() -> None:
    assert "lambda" in datasette.cli.publish.commands
    result = CliRunner().invoke(datasette.cli.cli, ["publish", "lambda", "--help"])
    assert result.exit_code == 0, result.output
    for option in (
        "--stack",
        "--frontend",
        "--generate-dir",
        "--endpoint-url",
        "--plugin-secret",
        "--install",
        "--title",
    ):
        assert option in result.output


def test_generate_dir_succeeds_without_aws(generated: Generated) -> None:
    assert generated.result.exit_code == 0, generated.result.output
    assert "no AWS calls were made" in generated.result.output
    assert "DATASETTE_AUTH_GITHUB_CLIENT_SECRET" in generated.result.output  # to set when deploying


def test_the_generated_config(generated: Generated) -> None:
    config_path = generated.directory / "datasette-lambda.yml"
    assert config_path.read_text() == (
        "# Written by `datasette publish lambda`. A datasette-lambda project: deploy it again with\n"
        f"#   datasette-lambda deploy -c {config_path}\n"
        "stack: my-site\n"
        "region: il-central-1\n"
        "databases:\n"
        "  fixtures:\n"
        "    file: databases/fixtures.db\n"
        "metadata: metadata.json\n"
        "datasette:\n"
        "  plugins:\n"
        "  - datasette-json-html\n"
        "  settings:\n"
        "    default_page_size: 50\n"
        "    allow_download: false\n"
        "  static:\n"
        "    assets: static/assets\n"
        "  templates: templates\n"
        "  plugins_dir: plugins\n"
        "  version_note: published by a test\n"
        "lambda:\n"
        "  python: '3.13'\n"
        "  architecture: x86_64\n"
        "  memory: 512\n"
        "deploy:\n"
        "  frontend: http_api\n"
        "  secrets:\n"
        "  - DATASETTE_AUTH_GITHUB_CLIENT_SECRET\n"
    )
    config = load_config(config_path)  # a valid datasette-lambda project
    assert config.stack == "my-site" and config.deploy.secrets == ("DATASETTE_AUTH_GITHUB_CLIENT_SECRET",)
    assert config.deploy.frontend == "http_api" and config.region == "il-central-1"
    assert config.datasette.version_note == "published by a test"


def test_the_metadata_is_merged_as_datasette_merges_it(generated: Generated) -> None:
    metadata = json.loads((generated.directory / "metadata.json").read_text())
    assert metadata == {
        "title": "Places of the world",  # --title wins over -m
        "description": "Places",
        "license": "CC0",
        "plugins": {
            "datasette-auth-github": {
                "client_id": "abc",
                "client_secret": {"$env": "DATASETTE_AUTH_GITHUB_CLIENT_SECRET"},
            }
        },
    }


def test_the_template_renders_and_lints(generated: Generated) -> None:
    body = json.loads((generated.directory / "template.json").read_text())
    parameters = body["Parameters"]
    assert parameters["SecretDatasetteAuthGithubClientSecret"]["NoEcho"] is True
    assert parameters["DatasetteSecret"]["NoEcho"] is True
    function = body["Resources"]["Function"]["Properties"]
    assert function["Runtime"] == "python3.13" and function["MemorySize"] == 512
    assert "HttpApi" in body["Resources"] and "FunctionUrl" not in body["Resources"]
    assert "SiteUrl" in body["Outputs"]
    errors = [p for p in lint_template(Template.of(body, {}, {}), "il-central-1") if p.severity == "error"]
    assert not errors


def test_the_zips_hold_the_database_and_the_manifest(generated: Generated, inputs: Inputs) -> None:
    for role in ("layer", "function"):
        path = zip_named(generated.directory, role)
        assert path.name == f"{role}-{hashlib.sha256(path.read_bytes()).hexdigest()}.zip"
    with zipfile.ZipFile(zip_named(generated.directory, "function")) as function:
        names = set(function.namelist())
        assert function.read("databases/fixtures.db") == inputs.database.read_bytes()
        manifest = json.loads(function.read("manifest.json"))
    assert {"static/assets/app.css", "templates/_footer.html", "plugins/hello.py"} <= names
    assert manifest["metadata"]["title"] == "Places of the world"
    assert manifest["version_note"] == "published by a test"
    assert manifest["settings"]["default_page_size"] == 50
    assert [d["name"] for d in manifest["databases"]] == ["fixtures"]


def test_install_adds_the_plugin_to_the_layer(generated: Generated) -> None:
    (record,) = generated.directory.glob(".datasette-lambda/package/deps-*/layer.json")
    assert json.loads(record.read_text())["requirements"] == [
        "datasette",
        "mangum",
        "sqlean.py==3.50.4.5",
        PLUGIN,
    ]
    with zipfile.ZipFile(zip_named(generated.directory, "layer")) as layer:
        assert any(name.startswith("python/datasette_json_html/") for name in layer.namelist())


def test_no_secret_anywhere_in_the_generated_directory(generated: Generated) -> None:
    checked = 0
    for path in generated.directory.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        checked += 1
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    assert SECRET.encode() not in archive.read(name), f"{path}!{name}"
    assert checked > 100  # the dependency tree is in there too
    assert SECRET not in generated.result.output


def test_the_generated_directory_is_a_project_datasette_lambda_repackages(generated: Generated) -> None:
    """Same inputs, same zips; the dependency layer comes from the directory's cache (no pip)."""
    from datasette_action.cli import cli

    before = sorted(p.name for p in generated.directory.glob("*.zip"))
    done = CliRunner().invoke(
        cli, ["package", "-c", str(generated.directory / "datasette-lambda.yml"), "--json"]
    )
    assert done.exit_code == 0, done.output
    artifacts = json.loads(done.stdout)["artifacts"]
    assert sorted(Path(a["path"]).name for a in artifacts) == before
    assert [a["reused"] for a in artifacts if a["role"] == "layer"] == [True]


# -- errors: one line, exit status 1, nothing written ---------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.db", "--stack", "x"], "Error: database file 'missing.db' does not exist"),
        (["--stack", "x"], "Error: give at least one SQLite database file to publish"),
        (
            ["{db}", "--stack", "not a stack"],
            "Error: --stack 'not a stack' is not a valid CloudFormation stack name; use letters,"
            " digits and hyphens, starting with a letter, at most 128 characters",
        ),
        (
            ["{metadata}", "--stack", "x"],
            "Error: '{metadata}' is not a SQLite database; to publish CSV or JSON, build a database"
            " from it with a datasette-lambda.yml config (see datasette-lambda build)",
        ),
        (
            ["{db}", "{db}", "--stack", "x"],
            "Error: '{db}' and '{db}' would both be the database 'fixtures' (names are not"
            " case-sensitive); rename one",
        ),
        (
            ["{db}", "--stack", "x", "--region", "mars"],
            "Error: --region 'mars' is not an AWS region; use a region name such as us-east-1",
        ),
        (["{db}", "--stack", "x", "--memory", "64"], "Error: --memory 64: Lambda allows 128 to 10240 MB"),
        (
            ["{db}", "--stack", "x", "--install", "not a requirement!"],
            "Error: --install 'not a requirement!' is not a package name or pip requirement such as"
            " datasette-cluster-map or datasette-vega==0.6.2",
        ),
        (
            ["{db}", "--stack", "x", "--plugin-secret", "aws", "access-key-id", "x"],
            "Error: --plugin-secret aws access-key-id: its environment variable would be"
            " AWS_ACCESS_KEY_ID, which Lambda or this tool reserves; it cannot be passed to the function",
        ),
        (
            ["{db}", "--stack", "x", "--extra-options", "--cors"],
            "Error: --extra-options: '--cors' is not supported; only '--setting NAME VALUE'"
            " (Datasette's settings) can be passed on to Datasette on Lambda",
        ),
        (
            ["{db}", "--stack", "x", "--branch", "main"],
            "Error: --branch is not supported: the Lambda layer is made from wheels only (pip"
            " --only-binary), and a GitHub branch has none; pin a released Datasette with --install"
            " datasette==VERSION",
        ),
        (
            ["{db}", "--stack", "x", "--generate-dir", "{out}", "--endpoint-url", "http://127.0.0.1:1"],
            "Error: --generate-dir makes no AWS calls; drop --endpoint-url (or --generate-dir)",
        ),
        (
            ["{db}", "--stack", "x", "--generate-dir", "{root}"],
            "Error: --generate-dir {root} is not empty; give a new or empty directory",
        ),
    ],
)
def test_user_errors_are_one_line(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    values = {
        "db": inputs.database,
        "metadata": inputs.metadata,
        "root": inputs.root,
        "out": tmp_path / "out",
    }
    result = publish(*(a.format(**values) for a in arguments))
    assert result.exit_code == 1
    assert result.output.splitlines() == [message.format(**values)]
    assert isinstance(result.exception, SystemExit)
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


@pytest.mark.parametrize("given", ["--region", "AWS_REGION", "--generate-dir"])
def test_a_region_without_function_urls_fails_before_the_build(
    inputs: Inputs, no_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """Said with this command's option (`--frontend`), before anything is written or built."""
    work = tmp_path / "work"  # (no_aws keeps an empty AWS config in tmp_path)
    work.mkdir()
    monkeypatch.chdir(work)
    if given == "AWS_REGION":
        monkeypatch.setenv("AWS_REGION", "il-central-1")
        arguments = []
        where = (
            "region il-central-1 (from the AWS environment: AWS_REGION, AWS_DEFAULT_REGION or the profile)"
        )
    else:
        arguments = ["--region", "il-central-1"]
        arguments += ["--generate-dir", str(work / "out")] if given == "--generate-dir" else []
        where = "--region il-central-1"
    result = publish(inputs.database, "--stack", "x", *arguments)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: {where}: AWS offers no Lambda function URLs in il-central-1, and --frontend is"
        " function_url (the default); use `--frontend http_api` there (an API Gateway HTTP API in"
        " front of the function)"
    ]
    assert list(work.iterdir()) == []  # nothing written, nothing built


def test_generate_dir_needs_no_region(inputs: Inputs, no_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --region, a generated project is checked when it is deployed (in the region of
    that moment), not against the environment's region now."""
    from datasette_action.publish import check_frontend

    monkeypatch.setenv("AWS_REGION", "il-central-1")
    check_frontend("function_url", None, deploying=False)  # no error
    with pytest.raises(UserError, match="use `--frontend http_api` there"):
        check_frontend("function_url", None, deploying=True)
    check_frontend("http_api", "il-central-1", deploying=True)


def test_extra_options_become_typed_settings() -> None:
    assert parse_extra_options("--setting sql_time_limit_ms 3000 --setting force_https_urls on") == {
        "sql_time_limit_ms": 3000,
        "force_https_urls": True,
    }
    with pytest.raises(UserError, match="'page_size' is not a Datasette setting"):
        parse_extra_options("--setting page_size 5")
    with pytest.raises(UserError, match="takes a whole number, got 'many'"):
        parse_extra_options("--setting max_returned_rows many")
    with pytest.raises(UserError, match="needs a NAME and a VALUE"):
        parse_extra_options("--setting max_returned_rows")


def test_install_pins_datasette_itself_through_datasette_version() -> None:
    assert check_install(["datasette-vega", "datasette==0.65.1", "datasette-vega"]) == (
        ("datasette-vega",),
        "==0.65.1",
    )
    assert check_install(["Datasette>=0.65,<0.66"]) == ((), "<0.66,>=0.65")
    assert check_install(["datasette"]) == (("datasette",), None)  # no pin: nothing to move
    with pytest.raises(UserError, match="pins Datasette twice"):
        check_install(["datasette==0.65.1", "datasette==0.65.2"])


def test_plugin_secret_variables_are_named_as_datasette_names_them() -> None:
    secrets = plugin_secrets([("datasette-auth-github", "client_secret", "x"), ("my.plugin", "key", "y")])
    assert [s.env for s in secrets] == ["DATASETTE_AUTH_GITHUB_CLIENT_SECRET", "MY_PLUGIN_KEY"]
    with pytest.raises(UserError, match="would share the environment variable MY_PLUGIN_KEY"):
        plugin_secrets([("my.plugin", "key", "y"), ("my-plugin", "key", "z")])


# -- a real deploy, to moto on loopback ----------------------------------------------------------------


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def test_publish_deploys_to_a_local_aws(inputs: Inputs, local_aws: LocalAws) -> None:
    endpoint = local_aws.endpoint_url  # given on the command line, as a user would
    result = publish(
        inputs.database,
        "--stack",
        "published",
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint,
        "--title",
        "Deployed places",
        "--plugin-secret",
        "datasette-auth-github",
        "client_secret",
        SECRET,
    )
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert "DATASETTE_AUTH_GITHUB_CLIENT_SECRET" not in os.environ  # set for the deploy call only
    cloudformation = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=endpoint)
    (stack,) = cloudformation.describe_stacks(StackName="published")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["SiteUrl"].startswith("http://127.0.0.1:") and outputs["SiteUrl"] in result.output
    # The secret reached the function through its (NoEcho) parameter, not through the metadata.
    function = boto3.client("lambda", region_name="us-east-1", endpoint_url=endpoint)
    variables = function.get_function_configuration(FunctionName="published")["Environment"]["Variables"]
    assert variables["DATASETTE_AUTH_GITHUB_CLIENT_SECRET"] == SECRET
    metadata = get_json(outputs["SiteUrl"] + "-/metadata.json")
    assert metadata["title"] == "Deployed places"
    secret_config = metadata["plugins"]["datasette-auth-github"]["client_secret"]
    assert secret_config == {"$env": "DATASETTE_AUTH_GITHUB_CLIENT_SECRET"}
    rows = get_json(outputs["SiteUrl"] + "fixtures/places.json?_shape=array")
    assert [row["name"] for row in rows] == ["Oslo", "Lima", "Pune"]


def test_a_published_site_that_fails_its_smoke_test_sends_nothing(
    inputs: Inputs, local_aws: LocalAws, tmp_path: Path
) -> None:
    """A one-file plugin that raises at import: the smoke test fails before anything is sent."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text('raise RuntimeError("this plugin is broken")\n')
    endpoint = local_aws.endpoint_url
    result = publish(
        inputs.database, "--stack", "broken", "--endpoint-url", endpoint, "--plugins-dir", plugins
    )
    assert result.exit_code == 1, result.output
    assert "Error: the bundle failed its smoke test: GET / -> 500: " in result.stderr
    assert "this plugin is broken" in result.stderr and "Deployed broken" not in result.stderr
    assert "nothing was sent to AWS and the live site is unchanged" in result.stderr
    cf = boto3.client("cloudformation", region_name="us-east-1", endpoint_url=endpoint)
    assert "broken" not in {s["StackName"] for s in cf.list_stacks()["StackSummaries"]}
