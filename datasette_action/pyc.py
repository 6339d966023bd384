"""Byte-compiling a tree for the Lambda runtime's Python, not the one running this tool.

A .pyc is only valid for the Python minor version that wrote it, so the compiling is done by an
interpreter of the target version (`python3.13` for Lambda's python3.13), found on PATH or among
pyenv's installed versions. Without one the bundle ships without .pyc: Python then compiles
modules in memory at every cold start (slower, but correct), rather than loading wrong ones.

The .pyc use unchecked-hash invalidation (PEP 552): Python loads them without comparing them to
the source (Lambda's file times mean nothing), and, having no timestamps in them, the same source
gives the same bytes. The file names recorded in them are the runtime paths (/opt/python/... for
the layer, /var/task/... for the function code), so tracebacks on Lambda point at real files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

VERSION_CHECK = "import sys; print('%d.%d' % sys.version_info[:2])"
# unchecked-hash pyc header flags (PEP 552): bit 0 = hash-based, bit 1 = check the source.
UNCHECKED_HASH_FLAGS = 0b01


def find_interpreter(version: str) -> Path | None:
    """An interpreter that runs and reports Python `version` ("3.13"), or None."""
    name = f"python{version}"
    candidates = [Path(found)] if (found := shutil.which(name)) else []
    # pyenv's shims on PATH exist for every installed version but fail unless that version is
    # selected: look at the installed versions themselves too.
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted((pyenv_root / "versions").glob(f"{version}.*/bin/{name}"), reverse=True)
    for candidate in candidates:
        if _reports_version(candidate, version):
            return candidate
    return None


def no_interpreter_warning(python: str) -> str:
    return (
        f"python{python} was not found (on PATH or in pyenv), so the bundle has no .pyc files:"
        f" Lambda will compile every module at each cold start, which is slower. Install Python"
        f" {python} beside this tool (e.g. actions/setup-python with python-version {python}) to"
        " ship compiled files"
    )


def _reports_version(interpreter: Path, version: str) -> bool:
    try:
        done = subprocess.run(
            [str(interpreter), "-c", VERSION_CHECK], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def compile_tree(interpreter: Path, tree: Path, runtime_path: str) -> list[str]:
    """Write __pycache__/*.pyc beside every .py under `tree`, recording paths under `runtime_path`.

    Returns compileall's complaints: files that do not compile for this Python (such files fail
    on import at run time too, so they are reported, not fatal).
    """
    argv = [
        str(interpreter),
        "-s",  # no user site-packages
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
        str(tree),
        "-p",
        runtime_path,
        str(tree),
    ]
    # A fixed hash seed: the order of frozenset constants in a .pyc depends on string hashing.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode == 0:
        return []
    output = (done.stdout + done.stderr).strip().splitlines()
    return [line for line in output if line.strip()] or [f"compileall exited with status {done.returncode}"]


def pyc_flags(path: Path) -> int:
    """The flags word of a .pyc header (bytes 4-8, little-endian)."""
    with path.open("rb") as f:
        header = f.read(8)
    return int.from_bytes(header[4:8], "little")
