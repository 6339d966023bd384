"""action.yml's install, run as the runner runs it (benchmarks/action_install.py's emulation: bash
for the `shell:` steps, `${{ }}` and `if:` evaluated, setup-python and actions/cache emulated with
this machine's Python and a local cache store), from requirements/action.txt.

The lock's wheels are downloaded once (pip, hash-checked) and every install here reads them from
that directory with no index: a real `--require-hashes` install, offline after the download.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from datasette_action.pyc import find_interpreter

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "action.txt"


def _emulation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("action_install", ROOT / "benchmarks" / "action_install.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["action_install"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


emulation = _emulation()


@pytest.fixture(scope="module")
def action(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This action as the runner downloads it (no tests, no build leftovers)."""
    return Path(emulation.export_working_tree(tmp_path_factory.mktemp("action") / "action"))


@pytest.fixture(scope="module")
def wheels(action: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wheels")
    runner = emulation.Runner(action, directory, directory)
    emulation.download(runner, directory)
    return directory


def job(action: Path, where: Path, **kwargs: Any) -> Any:
    """A fresh job: an empty RUNNER_TEMP and workspace."""
    return emulation.fresh_job(action, where, **kwargs)


def offline(wheels: Path) -> dict[str, str]:
    return {**emulation.from_wheels(wheels), "PIP_NO_INDEX": "1", "PIP_CACHE_DIR": str(wheels / "pip-cache")}


def logged(runner: Any, name: str) -> str:
    return "".join(text for step, text in runner.log if step == name)


def pins() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, version in re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^ ;\\]+)", LOCK.read_text(), re.M):
        found.setdefault(name, set()).add(version)
    return found


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    text = LOCK.read_text()
    blocks = re.split(r"\n(?=[a-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks), "a pin without hashes"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[<>=;\[ ]", requirement)[0].lower().replace(".", "-")
        for requirement in project["dependencies"]
    }
    assert names | {"pip", "setuptools"} <= set(pins())
    assert pins()["sqlean-py"] == {"3.50.4.4", "3.50.4.5"}  # per Python, as pyproject.toml says
    assert "scripts/lock" in text.split("\n", 2)[1]  # the command that refreshes it


def test_install_from_the_lock_then_the_cache_hits_and_a_second_use_reuses_it(
    action: Path, wheels: Path, tmp_path: Path
) -> None:
    store = tmp_path / "cache-service"
    first = job(action, tmp_path / "job", env=offline(wheels), cache_store=store)
    assert first.run_steps(), first.log
    install = yaml.safe_load((action / "action.yml").read_text())["runs"]["steps"]
    [script] = [step["run"] for step in install if step.get("id") == "install"]
    assert "--require-hashes" in script and "requirements/action.txt" in script
    assert "requirements/uv.txt" in script  # uv, itself hash-checked, installs the lock
    assert first.outputs["install"]["installed"] == "true"
    assert logged(first, "Restore the datasette-lambda environment").startswith("cache miss")
    bin_dir = Path(first.outputs["install"]["bin"])
    versions = subprocess.run(
        [
            str(bin_dir / "python"),
            "-P",
            "-m",
            "pip",
            "list",
            "--format=freeze",
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = dict(line.lower().split("==") for line in versions.split())
    for name in ("boto3", "botocore", "cfn-lint", "pyyaml", "sqlite-utils"):
        assert {installed[name]} == pins()[name], name
    assert first.run_steps(stop_before=None, after="run")  # the save, after the engine
    assert any(store.iterdir())

    # The same job uses the action again: nothing restored, nothing installed.
    again = emulation.Runner(action, first.temp, first.workspace, env=offline(wheels), cache_store=store)
    assert again.run_steps(), again.log
    assert again.outputs["key"]["installed"] == "true"
    assert logged(again, "Restore the datasette-lambda environment") == "skipped"
    assert again.outputs["install"]["installed"] == "false"
    assert "is installed" in logged(again, "Install datasette-lambda")

    # A later job on the same key: the cache hits and pip does not run (no index, no wheels).
    later = job(action, tmp_path / "job", env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}, cache_store=store)
    assert later.run_steps(), later.log
    assert later.outputs["venv-cache"] == {"cache-hit": "true"}
    assert logged(later, "Restore the pip cache") == "skipped"
    assert later.outputs["install"]["installed"] == "false"
    assert later.outputs["key"]["key"] == first.outputs["key"]["key"]

    # The engine: run by the venv's python, by its full path, with -P: a yaml.py in the workspace
    # (the working directory) is not what `import yaml` finds.
    (later.workspace / "yaml.py").write_text("raise SystemExit('the workspace shadowed PyYAML')\n")
    (later.workspace / "data").mkdir()
    (later.workspace / "data" / "cities.csv").write_text("id,name\n1,Lyon\n")
    (later.workspace / "datasette-lambda.yml").write_text(
        "stack: tiny-site\nregion: us-east-1\ndatabases:\n  places:\n    tables:\n"
        "      cities:\n        source: data/cities.csv\n        pk: id\n"
    )
    later.inputs = {"mode": "build"}
    later.env = {**later.env, "PATH": "/usr/bin:/bin", "GITHUB_EVENT_NAME": "push"}
    [run] = [step for step in install if step.get("id") == "run"]
    outputs = later.shell(run)
    assert outputs is not None, later.log[-1]
    assert outputs.get("stack-name") == "tiny-site", (outputs, later.log[-1])


def test_the_configs_lambda_python_is_set_up_and_named_on_path_for_the_engine(
    action: Path, wheels: Path, tmp_path: Path
) -> None:
    """lambda.python is not the engine's Python: the action sets it up, and the engine's run finds
    it as python3.X on PATH (pyc.find_interpreter, which compiles and smoke-tests the bundle)."""
    engine = f"{sys.version_info.major}.{sys.version_info.minor}"
    others = [
        version for version in ("3.12", "3.13", "3.14") if version != engine and find_interpreter(version)
    ]
    if not others:
        pytest.skip("this machine has no Python other than the engine's")
    runtime = others[0]
    runner = job(action, tmp_path / "job", env=offline(wheels))
    (runner.workspace / "data").mkdir()
    (runner.workspace / "data" / "cities.csv").write_text("id,name\n1,Lyon\n")
    (runner.workspace / "datasette-lambda.yml").write_text(
        f"stack: tiny-site\nregion: us-east-1\nlambda:\n  python: '{runtime}'\ndatabases:\n  places:\n"
        "    tables:\n      cities:\n        source: data/cities.csv\n"
    )
    runner.inputs = {"mode": "plan"}
    assert runner.run_steps(), runner.log
    assert runner.outputs["lambda-python"] == {"python": runtime, "setup": "true"}
    set_up = Path(runner.outputs["runtime-python"]["python-path"])
    # The run step as action.yml has it, but its last line asks the engine's own lookup instead of
    # running the engine; no pyenv to fall back on.
    [run] = [step for step in load_steps(action) if step.get("id") == "run"]
    script, engine_line = run["run"].rstrip("\n").rsplit("\n", 1)
    assert engine_line.endswith("-m datasette_action.action")
    lookup = f"from datasette_action.pyc import find_interpreter; print(find_interpreter('{runtime}'))"
    probe = {**run, "run": f'{script}\n{engine_line.removesuffix("-m datasette_action.action")}-c "{lookup}"'}
    runner.env = {**runner.env, "PATH": "/usr/bin:/bin", "PYENV_ROOT": str(tmp_path / "no-pyenv")}
    assert runner.shell(probe) is not None, runner.log[-1]
    found = Path(runner.log[-1][1].strip())
    assert found.name == f"python{runtime}"
    assert found.resolve() == set_up.resolve()

    # A runtime Python that cannot be set up (none here: the emulated setup-python fails): the
    # run goes on without it, and the engine's lookup finds none (it then warns, and ships no .pyc).
    missing = next((v for v in ("3.14", "3.13", "3.12") if v != engine and not find_interpreter(v)), None)
    if missing is not None:
        lacking = same_job(runner, tmp_path / "lacking-workspace")
        config_file = lacking.workspace / "datasette-lambda.yml"
        config_file.write_text(config_file.read_text().replace(f"'{runtime}'", f"'{missing}'"))
        lacking.inputs = {"mode": "plan"}
        assert lacking.run_steps(), lacking.log
        assert lacking.outputs["lambda-python"] == {"python": missing, "setup": "true"}
        assert lacking.outputs["runtime-python"] == {}
        lookup = f"from datasette_action.pyc import find_interpreter; print(find_interpreter('{missing}'))"
        engine_line_missing = engine_line.removesuffix("-m datasette_action.action") + f'-c "{lookup}"'
        lacking.env = {**lacking.env, "PATH": "/usr/bin:/bin", "PYENV_ROOT": str(tmp_path / "no-pyenv")}
        assert lacking.shell({**run, "run": f"{script}\n{engine_line_missing}"}) is not None, lacking.log[-1]
        assert lacking.log[-1][1].strip() == "None"

    # The same config built only: no second Python.
    build = same_job(runner, tmp_path / "build-workspace")
    build.inputs = {"mode": "build"}
    assert build.run_steps(), build.log
    assert build.outputs["lambda-python"]["setup"] == "false"
    assert logged(build, "Set up the Lambda runtime's Python") == "skipped"


def same_job(runner: Any, workspace: Path) -> Any:
    """The action used again in `runner`'s job (its environment is installed), on a copy of its
    workspace."""
    shutil.copytree(runner.workspace, workspace)
    env = {name: value for name, value in runner.env.items() if name not in ("PATH", "PYENV_ROOT")}
    return emulation.Runner(runner.action_path, runner.temp, workspace, env=env)


def load_steps(action: Path) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = yaml.safe_load((action / "action.yml").read_text())["runs"]["steps"]
    return steps


def test_a_changed_lock_or_python_misses_the_cache(action: Path, tmp_path: Path) -> None:
    store = tmp_path / "cache-service"
    first = job(action, tmp_path / "job", cache_store=store)
    assert first.run_steps(stop_before="install")
    key = first.outputs["key"]["key"]
    assert re.fullmatch(r"datasette-lambda-venv-Linux-X64-py3\.\d+\.\d+-[0-9a-f]{64}", key), key
    (store / key).mkdir(parents=True)  # as if saved
    with tarfile.open(store / key / "cache.tar", mode="w"):
        pass
    same = job(action, tmp_path / "job", cache_store=store)
    assert same.run_steps(stop_before="install")
    assert same.outputs["venv-cache"] == {"cache-hit": "true"}

    changed = tmp_path / "changed"
    shutil.copytree(action, changed)
    lock = changed / "requirements" / "action.txt"
    lock.write_text(lock.read_text().replace("boto3==", "boto3===", 1))
    for runner in (
        job(changed, tmp_path / "job", cache_store=store),
        job(action, tmp_path / "job", cache_store=store, arch="ARM64"),
    ):
        assert runner.run_steps(stop_before="install")
        assert runner.outputs["key"]["key"] != key
        assert runner.outputs["venv-cache"] == {"cache-hit": "false"}
    # Another Python: another version if this machine has one, else this venv's (another path).
    others = [found for version in ("3.12", "3.13", "3.14") if (found := find_interpreter(version))]
    for python in [*others[:1], Path(sys.executable)]:
        runner = job(action, tmp_path / "job", cache_store=store, python=python)
        assert runner.run_steps(stop_before="install")
        assert runner.outputs["key"]["key"] != key


@pytest.mark.parametrize(("runner_os", "arch"), [("Windows", "X64"), ("macOS", "ARM64"), ("Linux", "ARM")])
def test_a_runner_other_than_linux_fails_the_first_step_with_one_error(
    action: Path, tmp_path: Path, runner_os: str, arch: str
) -> None:
    runner = job(action, tmp_path / "job", os=runner_os, arch=arch)
    assert not runner.run_steps()
    [(step, text)] = runner.log  # nothing after it ran
    assert step == "Check the runner"
    errors = [line for line in text.splitlines() if line.startswith("::error")]
    assert errors == [
        "::error title=datasette-lambda::datasette-lambda runs on Linux runners (x86_64 or arm64),"
        f" not on {runner_os} {arch}: use runs-on: ubuntu-latest or ubuntu-24.04-arm"
    ]
