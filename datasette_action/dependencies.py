"""Dependencies: Datasette, mangum, the SQLite binding and the plugins, installed for Lambda -> the layer.

pip (run as a subprocess: it has no supported Python API) installs manylinux wheels for the
TARGET runtime (lambda.python, lambda.architecture), never for the machine running this tool.
What is never imported at run time is pruned, the debug sections of the compiled extensions
stripped (datasette_action/elf.py), the rest byte-compiled for the target Python, and the tree
zipped with its entries under `python/` (Lambda puts a layer's `python/` on sys.path).

The result is cached in `<build_dir>/package/deps-<key>/`, keyed by the requirements, the
target, this tool's version and the layer recipe (LAYER_RECIPE): a data-only refresh neither runs
pip nor rebuilds the zip.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from datasette_action import __version__
from datasette_action.config import Config, DatasetteConfig, version_specifier
from datasette_action.elf import Stripped, strip_tree
from datasette_action.errors import Location, PackageError
from datasette_action.pyc import compile_tree
from datasette_action.sqlite import Sqlite, build_sqlite, bundled_sqlite, mismatch_warning, requirement
from datasette_action.zips import Artifact, file_sha256, tree_size, write_named_zip

Log = Callable[[str], None]

LAYER_RUNTIME_PATH = "/opt/python"  # Lambda unpacks layers into /opt; /opt/python is on sys.path
LAYER_RECORD = "layer.json"
# Part of the cache key: bumped when the same requirements make a different layer, so that layers
# cached by an older recipe are rebuilt. 2: debug sections stripped from shared objects (elf.py).
LAYER_RECIPE = 2
# The newest glibc each Lambda runtime has, from aws-lambda-builders (SAM's build library):
# manylinux up to glibc 2.26 for cp311 (Amazon Linux 2), 2.34 for cp312-cp314 (Amazon Linux 2023).
GLIBC_CEILING: Mapping[str, int] = {"3.11": 26, "3.12": 34, "3.13": 34, "3.14": 34}
# The oldest manylinux glibc per machine: manylinux1 (2.5) on x86_64; aarch64 began at manylinux2014 (2.17).
GLIBC_FLOOR: Mapping[str, int] = {"x86_64": 5, "aarch64": 17}

# Distributions never imported while Datasette serves requests, and the top-level names each
# installs. Checked with grep on Datasette 0.65.5: nothing imports pip or setuptools (or
# pkg_resources); uvicorn and hupper are imported by datasette/cli.py (the `datasette serve`
# command, which the entry point never imports); datasette/app.py imports uvicorn only inside
# try/except ImportError, to show its version on /-/versions.
PRUNED_DISTRIBUTIONS: Mapping[str, tuple[str, ...]] = {
    "pip": ("pip",),
    "setuptools": ("setuptools", "pkg_resources", "_distutils_hack", "distutils-precedence.pth"),
    "wheel": ("wheel",),
    "uvicorn": ("uvicorn",),
    "hupper": ("hupper",),
}
# Checked by hand (above); a plugin or another library importing a pruned name keeps it.
IMPORTS_CHECKED_BY_HAND = ("datasette",)
PRUNED_SUFFIXES = (".pyi", ".c", ".h", ".pyx", ".pxd")  # type stubs and C sources
PRUNED_TOP_LEVEL = ("bin",)  # console scripts, with this machine's interpreter in their #! lines
TEST_DIRECTORIES = ("tests", "test")  # inside a package, never a top-level package


@dataclass(frozen=True)
class Target:
    """The Lambda runtime the dependencies are for."""

    python: str  # "3.13"
    architecture: str  # "x86_64" or "arm64"

    @property
    def machine(self) -> str:
        return "aarch64" if self.architecture == "arm64" else "x86_64"

    def describe(self) -> str:
        return f"Python {self.python} on manylinux {self.machine} (Lambda python{self.python}, {self.architecture})"


@dataclass(frozen=True)
class Pruned:
    distributions: tuple[str, ...]  # removed whole
    kept: tuple[tuple[str, str], ...]  # (distribution, a file that imports it): not removed
    stripped: Stripped  # the shared objects whose debug sections were removed
    removed_bytes: int  # in the files removed (the stripped sections are in `stripped`)


@dataclass(frozen=True)
class Layer:
    artifact: Artifact
    requirements: tuple[str, ...]
    compiled: bool  # whether the tree holds .pyc for the target Python
    sqlite: Sqlite  # the SQLite binding in it, which the site runs
    warnings: tuple[str, ...]


def prepare_layer(
    config: Config, package_dir: Path, interpreter: Path | None, log: Log = lambda message: None
) -> Layer:
    """The dependencies layer for `config`: from the cache when its key matches, else built.

    `interpreter` is a Python of the target version to byte-compile with (None: no .pyc).
    """
    target = Target(config.lambda_.python, config.lambda_.architecture)
    wanted = requirements(config.datasette, config.lambda_.python)
    directory = package_dir / f"deps-{layer_key(wanted, target, compiled=interpreter is not None)}"
    cached = _cached_layer(directory, package_dir)
    if cached is not None:
        artifact, cached_warnings = cached
        log(f"dependencies unchanged: reusing {artifact.zip_path.name}")
    else:
        artifact, cached_warnings = _build_layer(
            wanted, target, interpreter, directory, Location(config.path), log
        )
    _remove_stale(package_dir, directory, artifact.zip_path)
    sqlite = bundled_sqlite(directory / "python", Location(config.path))
    mismatch = mismatch_warning(build_sqlite(), sqlite)
    warnings = (*cached_warnings, mismatch) if mismatch else cached_warnings
    return Layer(artifact, wanted, interpreter is not None, sqlite, warnings)


def requirements(datasette: DatasetteConfig, python: str) -> tuple[str, ...]:
    """Datasette (pinned by datasette.version), mangum, the SQLite binding pinned for Lambda
    `python` (datasette_action.sqlite), then the plugins, as pip requirements.

    mangum or the binding listed among the plugins (`mangum==0.19.0`) replaces the default.
    """
    plugins = {canonicalize_name(Requirement(plugin).name) for plugin in datasette.plugins}
    result = [pin("datasette", datasette.version)]
    for default in ("mangum", requirement(python)):
        if canonicalize_name(Requirement(default).name) not in plugins:
            result.append(default)
    return (*result, *datasette.plugins)


def pin(name: str, version: str | None) -> str:
    """`name` with a version ("0.65.1" means ==0.65.1) or a pip specifier (">=0.65,<0.66"), as
    config loading checked it."""
    if version is None:
        return name
    spec = version_specifier(version)
    if spec is None:  # config loading refuses these (datasette.version)
        raise ValueError(f"not a version or specifier: {version!r}")
    return f"{name}{spec}"


def layer_key(wanted: tuple[str, ...], target: Target, *, compiled: bool) -> str:
    recipe = {
        "requirements": list(wanted),
        "python": target.python,
        "architecture": target.architecture,
        "compiled": compiled,
        "tool": __version__,
        "recipe": LAYER_RECIPE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def platform_tags(target: Target) -> tuple[str, ...]:
    """pip --platform values, best first: manylinux up to the runtime's glibc, then manylinux2014."""
    machine = target.machine
    newest, oldest = GLIBC_CEILING[target.python], GLIBC_FLOOR[machine]
    modern = tuple(f"manylinux_2_{minor}_{machine}" for minor in range(newest, oldest - 1, -1))
    return (*modern, f"manylinux2014_{machine}")


def pip_argv(target: Target, wanted: tuple[str, ...], destination: Path) -> list[str]:
    """The pip command line: this interpreter's pip, binary wheels for the target only."""
    argv = [sys.executable, "-m", "pip", "install", "--target", str(destination)]
    for tag in platform_tags(target):
        argv += ["--platform", tag]
    argv += ["--implementation", "cp", "--python-version", target.python, "--only-binary=:all:"]
    # --no-compile: pip would write .pyc for the Python running it, which is not the target's.
    argv += ["--no-compile", "--no-input", "--disable-pip-version-check", "--quiet"]
    return [*argv, *wanted]


def install(target: Target, wanted: tuple[str, ...], destination: Path, location: Location) -> None:
    _run_pip(pip_argv(target, wanted, destination), target.describe(), location)


def install_for_this_machine(python: str, wanted: tuple[str, ...], destination: Path) -> None:
    """Binary wheels of `wanted` (without their dependencies) for Python `python` on this machine's
    own platform, not Lambda's: for running locally a bundle whose compiled parts are built for
    another CPU."""
    argv = [sys.executable, "-m", "pip", "install", "--target", str(destination), "--no-deps"]
    argv += ["--implementation", "cp", "--python-version", python, "--only-binary=:all:"]
    argv += ["--no-compile", "--no-input", "--disable-pip-version-check", "--quiet", *wanted]
    _run_pip(argv, f"Python {python} on this machine ({platform.system()} {platform.machine()})", None)


def _run_pip(argv: list[str], where: str, location: Location | None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackageError(pip_failure(f"{done.stdout}\n{done.stderr}", where), location)


def pip_failure(output: str, target: Target | str) -> str:
    """pip's output on failure -> one line naming the requirement, the platform and the Python."""
    where = target.describe() if isinstance(target, Target) else target
    missing = re.search(r"satisfies the requirement (.+?) \(from versions: (.*?)\)", output)
    if missing:
        requirement, versions = missing.group(1), missing.group(2).strip()
        if versions == "none":
            return (
                f"cannot install '{requirement}' for {where}: pip found no wheel for it. Either no"
                " package has that name on the index, or it publishes no binary wheel for this"
                " platform and Python (source distributions cannot be built for Lambda here);"
                " check the name, or change lambda.python or lambda.architecture"
            )
        found = [v.strip() for v in versions.split(",")]
        shown = ", ".join(found[-8:]) + (f" (and {len(found) - 8} older)" if len(found) > 8 else "")
        return (
            f"cannot install '{requirement}' for {where}: no version matches; versions with a wheel"
            f" for this platform: {shown}"
        )
    full = re.search(r"No space left on device|Disk quota exceeded|File too large", output)
    if full:
        return (
            f"pip ran out of disk space installing the dependencies for {where} ({full.group(0)});"
            " free some space under build_dir and the temporary directory, or set build_dir to a"
            " disk with room"
        )
    conflict = re.search(r"The conflict is caused by:\n(.*?)(?:\n\s*\n|$)", output, re.S)
    if conflict:
        causes = "; ".join(line.strip() for line in conflict.group(1).splitlines() if line.strip())
        return f"cannot install the dependencies together for {where}: {causes}"
    errors = [
        line.removeprefix("ERROR:").strip() for line in output.splitlines() if line.startswith("ERROR:")
    ]
    lines = errors or [line.strip() for line in output.splitlines() if line.strip()] or ["no output"]
    return f"pip failed to install the dependencies for {where}: {lines[-1]}"


def prune(tree: Path) -> Pruned:
    """Remove what Lambda never imports from a pip --target tree, and the debug sections of its
    shared objects; keep every *.dist-info that remains (pluggy finds Datasette plugins through
    their entry points)."""
    before = tree_size(tree)
    importers = _importers(tree, {name for names in PRUNED_DISTRIBUTIONS.values() for name in names})
    removed, kept = [], []
    for distribution, names in PRUNED_DISTRIBUTIONS.items():
        importer = next((importers[name] for name in names if name in importers), None)
        if importer is not None:
            kept.append((distribution, importer))
            continue
        found = [tree / name for name in names if (tree / name).exists()] + _dist_infos(tree, distribution)
        if found:
            removed.append(distribution)
        for path in found:
            _remove(path)
    for name in PRUNED_TOP_LEVEL:
        _remove(tree / name)
    _prune_files(tree)
    removed_bytes = before - tree_size(tree)
    return Pruned(tuple(removed), tuple(kept), strip_tree(tree), removed_bytes)


def _importers(tree: Path, names: set[str]) -> dict[str, str]:
    """For each module name, a kept file that imports it (the checked-by-hand packages aside)."""
    modules = sorted(n for n in names if not n.endswith(".pth"))
    pattern = re.compile(rf"^[ \t]*(?:from|import)[ \t]+({'|'.join(map(re.escape, modules))})\b", re.M)
    skip = {*IMPORTS_CHECKED_BY_HAND, *names}
    found: dict[str, str] = {}
    for path in sorted(tree.rglob("*.py")):
        relative = path.relative_to(tree)
        if relative.parts[0] in skip or relative.parts[0].endswith(".dist-info"):
            continue
        for match in pattern.finditer(path.read_text(encoding="utf-8", errors="replace")):
            found.setdefault(match.group(1), relative.as_posix())
    return found


def _dist_infos(tree: Path, distribution: str) -> list[Path]:
    return [
        entry
        for entry in sorted(tree.glob("*.dist-info"))
        if canonicalize_name(entry.name.removesuffix(".dist-info").split("-")[0]) == distribution
    ]


def _prune_files(tree: Path) -> None:
    for directory, dirs, files in os.walk(tree, topdown=True):
        here = Path(directory)
        nested = here != tree
        for name in list(dirs):
            if name == "__pycache__" or (nested and name in TEST_DIRECTORIES):
                shutil.rmtree(here / name)
                dirs.remove(name)
        for name in files:
            if name.endswith(PRUNED_SUFFIXES):
                (here / name).unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _build_layer(
    wanted: tuple[str, ...],
    target: Target,
    interpreter: Path | None,
    directory: Path,
    location: Location,
    log: Log,
) -> tuple[Artifact, tuple[str, ...]]:
    package_dir = directory.parent
    package_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".deps-", dir=package_dir))
    try:
        tree = scratch / "python"
        log(f"installing {' '.join(wanted)} for {target.describe()}")
        install(target, wanted, tree, location)
        pruned = prune(tree)
        _log_pruned(pruned, log)
        warnings: tuple[str, ...] = ()
        if interpreter is not None:
            log(f"compiling the dependencies with {interpreter}")
            problems = compile_tree(interpreter, tree, LAYER_RUNTIME_PATH)
            if problems:
                warnings = (f"{len(problems)} line(s) of compile errors in the dependencies: {problems[0]}",)
        written = write_named_zip(tree, package_dir, "layer", prefix="python/")
        record = {
            "zip": written.path.name,
            "sha256": written.sha256,
            "zipped_size": written.zipped_size,
            "unzipped_size": written.unzipped_size,
            "requirements": list(wanted),
            "warnings": list(warnings),
        }
        (scratch / LAYER_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(scratch, directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    artifact = Artifact(
        "layer", written.path, directory, written.sha256, written.zipped_size, written.unzipped_size, False
    )
    return artifact, warnings


def _log_pruned(pruned: Pruned, log: Log) -> None:
    removed = ", ".join(pruned.distributions) or "nothing whole"
    log(f"pruned {pruned.removed_bytes / 1e6:.1f} MB ({removed}; tests, stubs, caches, scripts)")
    for distribution, importer in pruned.kept:
        log(f"kept {distribution}: imported by {importer}")
    stripped = pruned.stripped
    if stripped.files:
        count = len(stripped.files)
        log(f"stripped debug sections from {count} shared object(s): {stripped.saved_bytes / 1e6:.1f} MB")
    for path, why in stripped.left:
        log(f"left {path} unstripped: {why}")


def _cached_layer(directory: Path, package_dir: Path) -> tuple[Artifact, tuple[str, ...]] | None:
    """The cached layer in `directory`, if it is complete and its zip is intact."""
    try:
        record = json.loads((directory / LAYER_RECORD).read_text())
        zip_path = package_dir / record["zip"]
        if not (directory / "python").is_dir() or file_sha256(zip_path) != record["sha256"]:
            return None
        artifact = Artifact(
            "layer",
            zip_path,
            directory,
            record["sha256"],
            zip_path.stat().st_size,
            record["unzipped_size"],
            True,
        )
        return artifact, tuple(record["warnings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_stale(package_dir: Path, keep_directory: Path, keep_zip: Path) -> None:
    """Drop layers made for other requirements or targets: the cache holds the current one."""
    for entry in package_dir.iterdir():
        stale_tree = entry.name.startswith(("deps-", ".deps-")) and entry != keep_directory
        stale_zip = entry.name.startswith("layer-") and entry.suffix == ".zip" and entry != keep_zip
        if stale_tree or stale_zip:
            _remove(entry)
