"""The pipeline's own rules: what it takes from a front door's environment, and the failures that
carry the finished part of a step (shown by each front door's one failure path)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from datasette_action import cli, output, pipeline
from datasette_action.build import BuildResult, BuiltDatabase, BuiltTable
from datasette_action.config import load_config
from datasette_action.errors import Location, UserError

CONFIG = """\
stack: pipeline-test
databases:
  one:
    tables:
      things: things.csv
deploy:
  secrets: [MAPBOX_TOKEN, OTHER_TOKEN]
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    (tmp_path / "things.csv").write_text("id,name\n1,a\n")
    path = tmp_path / "datasette-lambda.yml"
    path.write_text(CONFIG)
    return path


def test_secret_values_are_the_configured_ones_that_are_set(config_path: Path) -> None:
    config = load_config(config_path)
    environ = {
        "DATASETTE_SECRET": "s3cret",
        "MAPBOX_TOKEN": "pk.1",
        "OTHER_TOKEN": "",  # empty: not given, so deploy keeps the stack's previous value
        "AWS_SECRET_ACCESS_KEY": "never-taken",
        "HOME": "/root",
    }
    assert pipeline.secret_values(config, environ) == {"DATASETTE_SECRET": "s3cret", "MAPBOX_TOKEN": "pk.1"}
    assert (
        pipeline.secret_values(
            dataclasses.replace(config, deploy=dataclasses.replace(config.deploy, secrets=())), {}
        )
        == {}
    )


def test_run_id_is_githubs_run_and_attempt() -> None:
    assert pipeline.run_id({"GITHUB_RUN_ID": "123", "GITHUB_RUN_ATTEMPT": "3"}) == "123-3"
    assert pipeline.run_id({"GITHUB_RUN_ID": "123", "GITHUB_RUN_ATTEMPT": ""}) == "123-1"
    assert pipeline.run_id({"GITHUB_RUN_ATTEMPT": "3"}) is None


def _built(tmp_path: Path) -> pipeline.Built:
    database = BuiltDatabase(
        "one",
        tmp_path / "one.db",
        "ab" * 32,
        8192,
        (BuiltTable("things", 1, (("id", "INTEGER"),), False),),
        (),
    )
    return pipeline.Built("pipeline-test", BuildResult((database,), tmp_path / "inspect-data.json", ()), 0.25)


def test_the_cli_failure_path_shows_the_finished_part_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _built(tmp_path)
    cli.fail(UserError("the checks failed", result=built), as_json=True)
    captured = capsys.readouterr()
    assert captured.err.index("Built 1 database(s)") < captured.err.index("Error: the checks failed")
    assert json.loads(captured.out) == output.build_json(built)  # the result, not an error object


def test_the_cli_failure_path_without_a_result_prints_the_error_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "datasette-lambda.yml"
    cli.fail(UserError("unknown key 'stak'", Location(config, 3)), as_json=True)
    captured = capsys.readouterr()
    assert captured.err == f"Error: {config}:3: unknown key 'stak'\n"
    assert json.loads(captured.out) == {"error": "unknown key 'stak'", "file": str(config), "line": 3}


def test_a_build_renders_the_same_through_every_rendering(tmp_path: Path) -> None:
    built = _built(tmp_path)
    assert output.build_text(built).splitlines()[0] == f"Built 1 database(s) in {tmp_path} (0.2 s)"
    assert output.build_json(built)["databases"][0]["tables"] == [
        {"name": "things", "rows": 1, "columns": {"id": "INTEGER"}, "hidden": False}
    ]
    assert "| one | things | 1 |" in output.build_markdown(built)
    assert [output.size(n) for n in (512, 4096, 5 * 1024 * 1024)] == ["512 B", "4.0 KB", "5.0 MB"]
