"""Releases: one version (datasette_action/__init__.py, which pyproject.toml reads), CHANGELOG.md,
the release checks (datasette_action/release.py) and the release workflow that runs them on a
pushed `vX.Y.Z` tag. tests/test_action.py runs check-jsonschema and zizmor over the workflow
with the others; the pedantic zizmor run of lint.yml is repeated here for this one."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from datasette_action import __version__, release
from datasette_action.release import ReleaseError, changelog_section, check_tag, is_newest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOW = ROOT / ".github/workflows/release.yml"

CHANGELOG = """\
# Changelog

Some words about the format.

## [Unreleased]

## [1.1.0] - 2027-01-10

### Added

- A new input.

## [1.0.0] - 2026-12-07

The first release.

### Added

- Everything.

[1.1.0]: https://github.com/org/datasette-lambda-action/compare/v1.0.0...v1.1.0
[1.0.0]: https://github.com/org/datasette-lambda-action/releases/tag/v1.0.0
"""


# -- one version ---------------------------------------------------------------------------------------


def test_the_version_is_written_once_and_pyproject_reads_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "datasette_action.__version__"}
    # what a build sees (setuptools reads the literal without importing the package)
    from setuptools.config.pyprojecttoml import read_configuration

    assert read_configuration(ROOT / "pyproject.toml", expand=True)["project"]["version"] == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_the_changelog_has_a_section_for_the_current_version() -> None:
    section = changelog_section((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), __version__)
    assert section.strip()
    assert not re.search(r"^## ", section, re.MULTILINE)  # one section, not the rest of the file


# -- the tag --------------------------------------------------------------------------------------------


def test_a_tag_that_matches_the_version_gives_its_major_tag() -> None:
    assert check_tag("v1.0.0", "1.0.0") == "v1"
    assert check_tag("v12.3.40", "12.3.40") == "v12"
    assert check_tag(f"v{__version__}") == "v" + __version__.split(".")[0]


def test_a_tag_that_does_not_match_the_version() -> None:
    with pytest.raises(ReleaseError) as raised:
        check_tag("v1.0.1", "1.0.0")
    assert str(raised.value) == (
        "the tag v1.0.1 does not match the package version 1.0.0 (datasette_action/__init__.py):"
        " set __version__ there to '1.0.1' and add its CHANGELOG.md section, or push the tag v1.0.0"
    )


@pytest.mark.parametrize("tag", ["1.0.0", "v1.0", "v1.0.0-rc.1", "v01.0.0", "release-1.0.0", "v1.0.0 "])
def test_a_tag_that_is_not_a_release_tag(tag: str) -> None:
    with pytest.raises(ReleaseError) as raised:
        check_tag(tag, "1.0.0")
    assert str(raised.value) == f"the tag {tag!r} is not a release tag: push a tag vX.Y.Z (v1.0.0)"


def test_a_fix_to_an_older_release_does_not_move_the_major_tag_back() -> None:
    tags = ["refs/tags/v1", "refs/tags/v1.0.0", "refs/tags/v1.1.0", "refs/tags/v2.0.0", "refs/tags/vx"]
    assert is_newest("v1.2.0", tags)
    assert is_newest("v1.1.0", tags)  # itself (the pushed tag is among the repository's)
    assert not is_newest("v1.0.1", tags)
    assert is_newest("v2.0.1", tags)
    assert is_newest("v3.0.0", [])
    assert is_newest("v1.10.0", ["v1.9.0"])  # numbers, not strings


# -- the changelog's section -------------------------------------------------------------------------------


def test_a_section_between_two_others() -> None:
    assert changelog_section(CHANGELOG, "1.1.0") == "### Added\n\n- A new input.\n"


def test_the_last_section_stops_at_the_link_definitions() -> None:
    assert changelog_section(CHANGELOG, "1.0.0") == "The first release.\n\n### Added\n\n- Everything.\n"
    assert (
        changelog_section("## 2.0.0\n\n- Plain heading, no date.\n", "2.0.0") == "- Plain heading, no date.\n"
    )


def test_a_missing_section() -> None:
    with pytest.raises(ReleaseError) as raised:
        changelog_section(CHANGELOG, "1.2.0")
    assert str(raised.value) == (
        "CHANGELOG.md has no section for 1.2.0: add `## [1.2.0] - YYYY-MM-DD` with what changed"
    )
    with pytest.raises(ReleaseError):
        changelog_section(CHANGELOG, "1.0")  # not a prefix match
    with pytest.raises(ReleaseError):
        changelog_section("### [1.2.0]\n\n- A third-level heading is not a release.\n", "1.2.0")


def test_an_empty_or_repeated_section() -> None:
    empty = CHANGELOG.replace("### Added\n\n- A new input.\n", "\n")
    with pytest.raises(ReleaseError) as raised:
        changelog_section(empty, "1.1.0")
    assert str(raised.value) == "CHANGELOG.md's section for 1.1.0 is empty: say what changed"
    with pytest.raises(ReleaseError) as raised:
        changelog_section(CHANGELOG + "\n## [1.0.0]\n\n- Again.\n", "1.0.0")
    assert str(raised.value) == "CHANGELOG.md has 2 sections for 1.0.0: keep one"


# -- the command the workflow runs --------------------------------------------------------------------------


def run_release(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != "GITHUB_ACTIONS"}
    return subprocess.run(
        [sys.executable, "-m", "datasette_action.release", *arguments],
        cwd=ROOT,
        env=environment | (env or {}),
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_command_writes_the_notes_and_the_step_outputs(tmp_path: Path) -> None:
    notes, tags = tmp_path / "notes.md", tmp_path / "tags.txt"
    tags.write_text(f"refs/tags/v{__version__}\n")
    done = run_release(f"v{__version__}", "--notes", str(notes), "--tags", str(tags))
    assert done.returncode == 0, done.stderr
    major = "v" + __version__.split(".")[0]
    assert done.stdout == f"major={major}\nmove-major=true\n"
    assert notes.read_text() == changelog_section((ROOT / "CHANGELOG.md").read_text(), __version__)
    tags.write_text(f"refs/tags/{major}.999.0\n")
    assert run_release(f"v{__version__}", "--tags", str(tags)).stdout.endswith("move-major=false\n")


def test_the_command_fails_with_an_annotation_on_the_runner(tmp_path: Path) -> None:
    done = run_release("v0.0.1", "--notes", str(tmp_path / "notes.md"), env={"GITHUB_ACTIONS": "true"})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("::error title=release check failed::the tag v0.0.1 does not match")
    assert not (tmp_path / "notes.md").exists()
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Changelog\n")
    done = run_release(f"v{__version__}", "--changelog", str(changelog))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: CHANGELOG.md has no section for {__version__}: add `## [{__version__}]" + (
        " - YYYY-MM-DD` with what changed\n"
    )


def test_the_command_needs_only_the_standard_library() -> None:
    """The release job runs it with the runner's python3 from the checkout, nothing installed."""
    code = (
        "import sys; before = set(sys.modules); import datasette_action.release; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['datasette_action']"
    assert release.ROOT == ROOT


# -- the workflow ---------------------------------------------------------------------------------------------


def workflow() -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    loaded["on"] = loaded.pop(True)  # YAML 1.1 reads the key `on` as true
    return loaded


def filter_pattern(pattern: str) -> re.Pattern[str]:
    """GitHub's tag filter syntax, the part the workflow uses: `[0-9]`, `+` (one or more of the
    character before) and everything else literal."""
    regex = "".join(
        part if part.startswith("[") or part == "+" else re.escape(part)
        for part in re.findall(r"\[[^\]]+\]|\+|[^\[+]", pattern)
    )
    return re.compile(regex)


def test_only_a_release_tag_triggers_it() -> None:
    on = workflow()["on"]
    assert on == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    [pattern] = on["push"]["tags"]
    matches = filter_pattern(pattern).fullmatch
    assert all(matches(tag) for tag in ["v1.0.0", "v10.20.300"])
    assert not any(matches(tag) for tag in ["v1", "v1.0", "1.0.0", "v1.0.0-rc.1", "v1.x.0"])


def test_the_tests_pass_before_the_release_is_made() -> None:
    jobs = workflow()["jobs"]
    assert list(jobs) == ["test", "release"]
    assert "needs" not in jobs["test"] and jobs["release"]["needs"] == "test"
    # the same steps (and pins) as the test workflow's own test job
    test_workflow = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    assert jobs["test"]["steps"] == test_workflow["jobs"]["test"]["steps"]
    assert jobs["test"]["steps"][-1]["run"] == "./scripts/test"


def test_permissions_are_the_least_each_job_needs() -> None:
    loaded = workflow()
    assert loaded["permissions"] == {"contents": "read"}
    assert "permissions" not in loaded["jobs"]["test"]
    assert loaded["jobs"]["release"]["permissions"] == {"contents": "write"}
    for job in loaded["jobs"].values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            assert "GH_TOKEN" not in step.get("env", {}) or job is loaded["jobs"]["release"]


def test_one_release_at_a_time_never_cancelled() -> None:
    concurrency = workflow()["concurrency"]
    assert concurrency == {"group": "release", "cancel-in-progress": False}


def test_no_expression_inside_a_run_script() -> None:
    """Values reach the scripts through `env:` (zizmor's template-injection rule)."""
    steps = [step for job in workflow()["jobs"].values() for step in job["steps"]]
    assert [step["name"] for step in steps if "${{" in step.get("run", "")] == []


def release_steps() -> dict[str, dict[str, Any]]:
    return {step.get("id") or step.get("name", ""): step for step in workflow()["jobs"]["release"]["steps"]}


def test_the_release_steps_check_then_release_then_move_the_major_tag() -> None:
    steps = release_steps()
    check = steps["check"]
    assert check["env"]["TAG"] == "${{ github.ref_name }}"
    assert 'python3 -m datasette_action.release "$TAG" --notes "$RUNNER_TEMP/notes.md"' in check["run"]
    assert '>> "$GITHUB_OUTPUT"' in check["run"]
    create = steps["Create the GitHub release"]
    assert create["env"] == {"GH_TOKEN": "${{ github.token }}", "TAG": "${{ github.ref_name }}"}
    assert '--notes-file "$RUNNER_TEMP/notes.md" --verify-tag' in create["run"]
    move = steps["Move the major tag to the release"]
    assert move["if"] == "steps.check.outputs.move-major == 'true'"
    assert move["env"]["MAJOR"] == "${{ steps.check.outputs.major }}"
    assert list(steps)[1:] == ["check", "Create the GitHub release", move["name"]]  # after the checkout
    assert "https://docs.github.com/en/rest/git/refs" in WORKFLOW.read_text()


def fake_gh(tmp_path: Path, existing: bool) -> Path:
    """A `gh` that logs its arguments; `gh api .../git/ref/tags/...` finds the tag or not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$GH_LOG"\n'
        f'case "$*" in "api repos/me/site/git/ref/tags/"*) exit {0 if existing else 1};; esac\n'
    )
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.mark.parametrize("existing", [True, False], ids=["moved", "created"])
def test_the_major_tag_step_updates_or_creates_the_ref(tmp_path: Path, existing: bool) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    git = ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "release"], check=True)
    subprocess.run([*git, "tag", "-a", "-m", "annotated", "v1.2.3"], check=True)
    subprocess.run([*git, "checkout", "-q", "v1.2.3"], check=True)  # as actions/checkout leaves a tag
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    log, summary = tmp_path / "gh.log", tmp_path / "summary.md"
    step = release_steps()["Move the major tag to the release"]
    environment = {
        "PATH": f"{fake_gh(tmp_path, existing)}:/usr/bin:/bin",
        "GH_LOG": str(log),
        "GITHUB_REPOSITORY": "me/site",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GH_TOKEN": "token",
        "MAJOR": "v1",
        "HOME": str(tmp_path),
    }
    subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=repository,
        env=environment,
        check=True,
    )
    calls = log.read_text().splitlines()
    assert calls[0] == "api repos/me/site/git/ref/tags/v1 --silent"
    if existing:
        assert calls[1:] == [
            f"api -X PATCH repos/me/site/git/refs/tags/v1 -f sha={sha} -F force=true --silent"
        ]
    else:
        assert calls[1:] == [f"api -X POST repos/me/site/git/refs -f ref=refs/tags/v1 -f sha={sha} --silent"]
    assert summary.read_text() == f"v1 now points at {sha}\n"


def test_zizmor_pedantic_finds_nothing_in_the_release_workflow() -> None:
    done = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--persona", "pedantic", "--no-progress", str(WORKFLOW)],
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


def test_the_actions_marketplace_name_cannot_be_an_account_name() -> None:
    """The Marketplace refuses a name that is a GitHub user's or organization's (action.yml cites
    it); account names are letters, digits and hyphens, so a name with spaces cannot be one, and
    the tool's own name (a plausible account) is not used."""
    name = yaml.safe_load((ROOT / "action.yml").read_text())["name"]
    assert " " in name.strip() and not re.fullmatch(r"[A-Za-z0-9-]+", name)
    assert name.lower() not in {"datasette-lambda", "datasette", "datasette-lambda-action"}
    assert "Datasette" in name and "Lambda" in name  # what a search for it would use
