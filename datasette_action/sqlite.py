"""The SQLite the site runs, and the build builds with: the sqlean.py binding, pinned per Lambda Python.

Lambda's python3.11 runtime has SQLite 3.7.17 (Amazon Linux 2: no FTS5, no JSON functions), and the
newer runtimes whatever Amazon Linux 2023 ships. So the layer carries its own SQLite, a manylinux wheel
of a maintained binding, and the entry point makes Datasette use it (`datasette_action_entrypoint.sqlite`).

Why sqlean.py (checked with `pip download --no-deps --only-binary=:all: --implementation cp` for
each Python and machine): its pinned releases (PINS) have wheels for cp311-cp314 on both x86_64 and
aarch64. The other candidate, pysqlite3-binary (0.5.4.post2, and 0.5.2 to 0.5.4 for cp312), has x86_64
wheels only: no arm64 Lambda could use it.
sqlean.py bundles SQLite itself (FTS5, JSON, math functions, R*Tree compiled in), and extension
functions of its own that stay off unless an environment variable turns them on (the entry point
makes sure they stay off, and the build refuses to run with them on).

The build uses the same binding (this tool depends on it, same pins: pyproject.toml), so every table,
search index, `sql:` step and view is made by the SQLite that will serve it: a statement the bundled
SQLite cannot run fails the build, on its line of the config, not a page in production. sqlite-utils
is given the binding's connections (`sqlite_utils.Database(conn)`); the build never relies on
sqlite-utils catching a SQLite error itself, since sqlite-utils catches its own module's
exception classes, which are the standard library's unless `pysqlite3` was importable when it was
imported.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from datasette_action.errors import BuildError, Location, PackageError
from datasette_action_entrypoint.sqlite import DISTRIBUTION, EXTENSION_VARIABLES

if TYPE_CHECKING:
    import sqlite3 as sqlite3  # the binding has the standard module's API (and no type hints)
else:
    import sqlean as sqlite3

# The binding's version per Lambda Python. 3.50.4.5 has cp311-cp314 wheels for x86_64 and aarch64,
# but built for manylinux_2_28 (glibc 2.28), which python3.11's Amazon Linux 2 (glibc 2.26) cannot
# load; 3.50.4.4, the newest with manylinux2014 (glibc 2.17) wheels, has none for cp314. Both carry
# SQLite 3.50.4 with the same compile options (checked: `pragma compile_options`, only the compiler
# differs). pyproject.toml pins this tool's own copy the same way, by the Python it runs on.
PINS: Mapping[str, str] = {"3.11": "3.50.4.4", "3.12": "3.50.4.5", "3.13": "3.50.4.5", "3.14": "3.50.4.5"}
# sqlean.py has named its releases after the SQLite they carry since 3.45.0, with a build number when
# one SQLite was packaged more than once: 3.50.4.5 is SQLite 3.50.4. Before that they were numbered
# after sqlean's own releases (0.21.8.5).
FIRST_NAMED_AFTER_SQLITE = Version("3.45.0")


@dataclass(frozen=True)
class Sqlite:
    """A SQLite binding and the SQLite it carries."""

    binding: str  # the distribution, "sqlean.py"
    binding_version: str  # "3.50.4.5"
    version: str  # SQLite's, "3.50.4"


def requirement(python: str) -> str:
    """The binding as a pip requirement for the layer of Lambda `python`."""
    return f"{DISTRIBUTION}=={PINS[python]}"


def carried_sqlite(binding_version: str) -> str | None:
    """The SQLite version a sqlean.py version carries, by sqlean.py's numbering (None: not named so)."""
    try:
        version = Version(binding_version)
    except InvalidVersion:
        return None
    if version < FIRST_NAMED_AFTER_SQLITE or len(version.release) < 3:
        return None
    return ".".join(str(part) for part in version.release[:3])


def bundled_sqlite(tree: Path, location: Location) -> Sqlite:
    """The binding installed in a layer tree (its `python/`) and its SQLite, from the binding's
    installed metadata (`*.dist-info`): the target's Python need not run here, nor its CPU."""
    version = installed_binding(tree)
    if version is None:
        raise PackageError(f"the dependencies have no {DISTRIBUTION}, the SQLite the site runs", location)
    return _described(version, location)


def installed_binding(tree: Path) -> str | None:
    """The version of the binding installed in `tree` (a layer's `python/`), if it is there."""
    wanted = canonicalize_name(DISTRIBUTION)
    for distribution in importlib.metadata.distributions(path=[str(tree)]):
        if canonicalize_name(distribution.metadata["Name"] or "") == wanted:
            return distribution.version
    return None


def build_sqlite() -> Sqlite:
    """The binding this tool builds with, and the SQLite it really runs."""
    return Sqlite(DISTRIBUTION, importlib.metadata.version(DISTRIBUTION), sqlite3.sqlite_version)


def _described(binding_version: str, location: Location) -> Sqlite:
    version = carried_sqlite(binding_version)
    if version is None:
        raise PackageError(
            f"cannot tell which SQLite {DISTRIBUTION} {binding_version} carries: releases from"
            f" {FIRST_NAMED_AFTER_SQLITE} on are named after it; pin a later one (plugins:"
            f" [{DISTRIBUTION}=={PINS['3.13']}]) or leave it out for the default",
            location,
        )
    return Sqlite(DISTRIBUTION, binding_version, version)


def check_extensions_off(environ: Mapping[str, str], location: Location) -> None:
    """The build runs plain SQLite, as the site does: sqlean.py's own functions (fileio, regexp,
    ...) must not be switched on for the build by the environment."""
    for name in sorted(environ):
        if name.startswith(EXTENSION_VARIABLES):
            raise BuildError(
                f"{name} is set in the environment: it turns on {DISTRIBUTION}'s extension functions for"
                " the build, which the site never has (its entry point turns them off), so a `sql:` step"
                " using them would build and then fail in Lambda; unset it",
                location,
            )


def mismatch_warning(built: Sqlite, bundled: Sqlite) -> str | None:
    """A warning when the build ran another SQLite than the site will (a binding installed here
    outside this tool's pins, or pinned among the plugins)."""
    if built.version == bundled.version:
        return None
    return (
        f"the databases were built with SQLite {built.version} ({built.binding} {built.binding_version}"
        f" here) but the site will run SQLite {bundled.version} ({bundled.binding}"
        f" {bundled.binding_version} in the layer): a `sql:` step or view may work in one and not the"
        f" other. Reinstall datasette-lambda-action here to get the {DISTRIBUTION} it pins, or list the"
        f" {DISTRIBUTION} installed here among the plugins"
    )
