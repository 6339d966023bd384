"""The action's install, run as the runner runs it, timed: the one before the lock (commit 5311d5d's
action.yml, BEFORE) and this one.

The steps of action.yml up to the engine's (`id: run`) run in order: `shell: bash` steps by bash
with their `${{ }}` filled in as the runner fills them (inputs, `steps.<id>.outputs`, `runner.*`),
`if:` conditions evaluated, and the `uses:` steps emulated: setup-python answers with this
machine's Python, actions/cache/restore and actions/cache/save copy the directory from and to a
local store (GitHub's cache service is not here: a restore's download and untar are timed on
their own, as a copy), and the pip cache is the directory PIP_CACHE_DIR names. Then the engine is
started (`python -P -c "import datasette_action.action"`), so a figure runs from the first
install step to the engine importing.

Figures, in one run:
  (a) before, cold pip cache: commit 5311d5d's action.yml and source (`git archive 5311d5d`), the
      last before the lock;
  (b) this action, cold pip cache (nothing cached: the lock's wheels are downloaded);
  (c) this action, warm pip cache, environment cache missed;
  (d) this action, warm environment cache (restored by actions/cache/restore);
  (e) this action used a second time in the same job (the environment is already there).
Target (issue 12): (d) <= 3 s, (b) <= 60% of (a); (a)'s and (b)'s CPU time is printed too (steadier
than their wall time, which the network moves). pip on this machine may be unable to cache
downloads (a proxy that strips the caching headers): then (c) is measured with the wheels (b)
downloaded in a local --find-links directory, which is what a warm cache spares: the download.

    python benchmarks/action_install.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datasette_action.pyc import find_interpreter

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / ".work" / "action_install"
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
# The variables of the surrounding job and this machine's pip settings are not the runner's.
CLEARED = re.compile(r"(INPUT_|GITHUB_|RUNNER_|PIP_|UV_|VIRTUAL_ENV$|PYTHONPATH$|PYTHONDONTWRITEBYTECODE$)")


@dataclass
class Runner:
    """One job on an emulated runner: its RUNNER_TEMP, workspace, caches and step results."""

    action_path: Path
    temp: Path
    workspace: Path
    python: Path = Path(getattr(sys, "_base_executable", sys.executable))
    os: str = "Linux"
    arch: str = "X64"
    inputs: Mapping[str, str] = field(default_factory=dict)
    cache_store: Path | None = None  # actions/cache's service: key -> directory
    env: Mapping[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)  # (step name, what it printed or did)
    restore_seconds: float = 0.0
    save_seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the last timed() run

    def context(self) -> dict[str, str]:
        definition = load(self.action_path)
        values = {
            f"inputs.{name}": self.inputs.get(name, str(spec.get("default", "")))
            for name, spec in definition["inputs"].items()
        }
        values |= {"runner.os": self.os, "runner.arch": self.arch}
        for step, outputs in self.outputs.items():
            values |= {f"steps.{step}.outputs.{name}": value for name, value in outputs.items()}
        return values

    def fill(self, text: str) -> str:
        values = self.context()
        return EXPRESSION.sub(lambda match: values.get(match[1], ""), text)

    def condition(self, text: str) -> bool:
        """`a == 'x' && b != 'y'` as the runner evaluates it (missing outputs are '')."""
        values = self.context()
        text = EXPRESSION.sub(lambda match: match[1], text)  # `${{ x }}` is `x` in an if:
        python = re.sub(r"[a-z][\w-]*(\.[\w-]+)+", lambda match: repr(values.get(match[0], "")), text)
        python = python.replace("&&", " and ").replace("||", " or ").replace("!cancelled()", "True")
        return bool(eval(python, {}))  # the expressions are action.yml's own

    def environment(self) -> dict[str, str]:
        environment = {name: value for name, value in os.environ.items() if not CLEARED.match(name)}
        return environment | {
            "PIP_CONFIG_FILE": os.devnull,  # no machine-wide pip settings: a runner has none
            "GITHUB_ACTION_PATH": str(self.action_path),
            "GITHUB_WORKSPACE": str(self.workspace),
            "RUNNER_TEMP": str(self.temp),
            "RUNNER_OS": self.os,
            "RUNNER_ARCH": self.arch,
            **self.env,
        }

    def run_steps(self, stop_before: str | None = "run", after: str = "") -> bool:
        """The steps up to `stop_before` (an id), or those after the step `after`; False when one
        failed (the rest are skipped)."""
        steps = load(self.action_path)["runs"]["steps"]
        if after:
            steps = steps[[step.get("id") for step in steps].index(after) + 1 :]
        for step in steps:
            name, step_id = step["name"], step.get("id", "")
            if stop_before is not None and step_id == stop_before:
                return True
            if "if" in step and not self.condition(step["if"]):
                self.log.append((name, "skipped"))
                continue
            outputs = self.uses(step) if "uses" in step else self.shell(step)
            if outputs is None and step.get("continue-on-error") is True:
                outputs = {}  # the runner goes on; the step's outputs are empty
            if outputs is None:
                return False
            if step_id:
                self.outputs[step_id] = outputs
        return True

    def shell(self, step: dict[str, Any]) -> dict[str, str] | None:
        output = self.temp / "_github_output"
        output.write_text("")
        env = {name: self.fill(str(value)) for name, value in step.get("env", {}).items()}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=self.workspace,
            env=self.environment() | env | {"GITHUB_OUTPUT": str(output)},
            capture_output=True,
            text=True,
            check=False,
        )
        self.log.append((step["name"], done.stdout + done.stderr))
        return parse_outputs(output.read_text()) if done.returncode == 0 else None

    def uses(self, step: dict[str, Any]) -> dict[str, str] | None:
        action = step["uses"].split("@")[0]
        given = {name: self.fill(str(value)) for name, value in step.get("with", {}).items()}
        if action == "actions/setup-python":
            # The engine's Python is this runner's; another (the Lambda runtime's) one this machine has.
            python = self.python if step.get("id") == "python" else find_interpreter(given["python-version"])
            if python is None:
                self.log.append((step["name"], f"no Python {given['python-version']} on this machine"))
                return None
            version = subprocess.run(
                [str(python), "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            self.log.append((step["name"], f"Python {version} at {python}"))
            return {"python-path": str(python), "python-version": version}
        stored = self.cache_store / given["key"] if self.cache_store else None
        if action == "actions/cache/restore":
            hit = stored is not None and stored.exists()
            if hit and stored is not None:
                started = time.perf_counter()
                restore(stored, Path(given["path"]))
                self.restore_seconds += time.perf_counter() - started
            self.log.append((step["name"], f"cache {'hit' if hit else 'miss'}: {given['key']}"))
            return {"cache-hit": str(hit).lower()}
        if action == "actions/cache/save":
            if stored is not None and not stored.exists():
                started = time.perf_counter()
                save(Path(given["path"]), stored)
                self.save_seconds += time.perf_counter() - started
            self.log.append((step["name"], f"saved {given['key']}"))
            return {}
        # actions/cache for pip's downloads: the directory PIP_CACHE_DIR names is what it restores.
        self.log.append((step["name"], f"pip cache at {given['path']}"))
        return {"cache-hit": "false"}


def save(directory: Path, stored: Path) -> None:
    """actions/cache/save: a tar of the directory (GitHub's is zstd-compressed and uploaded)."""
    stored.mkdir(parents=True)
    with tarfile.open(stored / "cache.tar", "w") as tar:
        tar.add(directory, arcname=".")


def restore(stored: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(stored / "cache.tar") as tar:
        tar.extractall(directory, filter="tar")


def load(action_path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((action_path / "action.yml").read_text())
    return loaded


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: name=value, or name<<DELIMITER ... DELIMITER."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        name, equals, value = lines[index].partition("=")
        if "<<" in lines[index] and not equals:
            name, delimiter = lines[index].split("<<", 1)
            end = lines.index(delimiter, index + 1)
            outputs[name] = "\n".join(lines[index + 1 : end])
            index = end
        elif equals:
            outputs[name] = value
        index += 1
    return outputs


def engine_starts(runner: Runner) -> None:
    """The run step's interpreter, as it starts the engine, up to the engine's module imported
    with what a plan or a deploy loads (boto3, cfn-lint): .pyc written or not shows here."""
    python = Path(runner.outputs["install"]["bin"]) / "python"
    subprocess.run(
        [str(python), "-P", "-c", "import datasette_action.action, boto3, cfnlint.api"],
        cwd=runner.workspace,
        env=runner.environment(),
        check=True,
    )


# -- the benchmark ----------------------------------------------------------------------------------


# The last commit whose action.yml resolved and installed pyproject.toml (no lock): the baseline.
BEFORE = "5311d5d"


def export_head(target: Path) -> Path:
    """The baseline action: commit BEFORE's tree, as the runner downloads it for a `uses:` pinned to it."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def export_working_tree(target: Path) -> Path:
    """This action as released: its files, without this checkout's build leftovers."""
    ignore = shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "tests", "benchmarks")
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def timed(runner: Runner) -> float:
    """Seconds from the first step to the engine imported, less the emulated cache restore. The
    CPU seconds of the processes the steps ran (user + system, all waited for) go in
    runner.cpu_seconds: steadier than wall time on a shared machine, and free of the network."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    if not runner.run_steps():
        raise SystemExit("\n".join(f"{name}: {text}" for name, text in runner.log))
    engine_starts(runner)
    figure = time.perf_counter() - started - runner.restore_seconds
    runner.cpu_seconds = _children_cpu() - cpu_before
    runner.run_steps(stop_before=None, after="run")  # the save, after the engine
    return figure


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_job(action: Path, job: Path, **kwargs: Any) -> Runner:
    shutil.rmtree(job, ignore_errors=True)
    (job / "temp").mkdir(parents=True)
    (job / "workspace").mkdir()
    return Runner(action, job / "temp", job / "workspace", **kwargs)


CPU_A = "    (a)'s CPU time, user + system"
CPU_B = "    (b)'s CPU time, user + system"


def one_round(today: Path, action: Path, work: Path) -> dict[str, float]:
    shutil.rmtree(work / "pip", ignore_errors=True)
    shutil.rmtree(work / "store", ignore_errors=True)
    cold = {"PIP_CACHE_DIR": str(work / "pip" / "cold-today")}
    baseline = fresh_job(today, work / "job", env=cold)
    figures = {"(a) today, cold pip cache": timed(baseline)}
    figures[CPU_A] = baseline.cpu_seconds

    new_cold = {"PIP_CACHE_DIR": str(work / "pip" / "new")}
    runner = fresh_job(action, work / "job", env=new_cold, cache_store=work / "store")
    figures["(b) new, cold pip cache"] = timed(runner)
    figures[CPU_B] = runner.cpu_seconds
    run_steps_save(runner)
    figures["    (then its save, a local tar, after the engine; GitHub's adds an upload)"] = (
        runner.save_seconds
    )

    warm = dict(new_cold)
    if not any((work / "pip" / "new").rglob("*.body")) and not any((work / "pip" / "new").rglob("*.whl")):
        # pip cached nothing (no caching headers here): spare the download as a warm cache would.
        wheels = work / "wheels"
        if not wheels.exists():
            download(runner, wheels)
        warm |= from_wheels(wheels)
    figures["(c) new, warm pip cache"] = timed(fresh_job(action, work / "job", env=warm))

    runner = fresh_job(action, work / "job", env=new_cold, cache_store=work / "store")
    figures["(d) new, warm environment cache"] = timed(runner)
    figures["    (its restore, a local untar; GitHub's adds a download)"] = runner.restore_seconds
    second = Runner(action, runner.temp, runner.workspace, env=new_cold, cache_store=work / "store")
    figures["(e) new, second use in the same job"] = timed(second)
    return figures


def run_steps_save(runner: Runner) -> None:
    """The save step ran in run_steps already (it comes before the engine's); check it stored."""
    assert runner.cache_store is not None and any(runner.cache_store.iterdir()), runner.log


def download(runner: Runner, wheels: Path) -> None:
    """The lock's wheels and uv's, into `wheels` (hash-checked), for installs with no index."""
    for lock in ("action.txt", "uv.txt"):
        subprocess.run(
            [
                str(runner.python),
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary",
                ":all:",
                "--dest",
                str(wheels),
                "-r",
                str(runner.action_path / "requirements" / lock),
            ],
            env=runner.environment(),
            check=True,
        )


def from_wheels(wheels: Path) -> dict[str, str]:
    """pip and uv reading the downloaded wheels only: no index, no network."""
    return {"PIP_FIND_LINKS": str(wheels), "UV_FIND_LINKS": str(wheels), "UV_OFFLINE": "1"}


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    today = export_head(WORK / "today")
    action = export_working_tree(WORK / "action")
    rounds = [one_round(today, action, WORK) for _ in range(args.rounds)]
    medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    out(f"Install, first step to the engine imported (median of {args.rounds}; every round below):")
    for name, seconds in medians.items():
        out(f"  {name:<60} {seconds:6.2f} s   {' '.join(f'{r[name]:.2f}' for r in rounds)}")
    ratio = medians["(b) new, cold pip cache"] / medians["(a) today, cold pip cache"]
    each = " ".join(f"{r['(b) new, cold pip cache'] / r['(a) today, cold pip cache']:.0%}" for r in rounds)
    out(f"  new cold / today cold: {ratio:.0%} of the medians; each round: {each} (target <= 60%)")
    cpu = medians[CPU_B] / medians[CPU_A]
    each = " ".join(f"{r[CPU_B] / r[CPU_A]:.0%}" for r in rounds)
    out(f"  the same in CPU time: {cpu:.0%} of the medians; each round: {each}")
    out(f"  warm environment cache: {medians['(d) new, warm environment cache']:.2f} s (target <= 3 s)")
    return medians


if __name__ == "__main__":
    main()
