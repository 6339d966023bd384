"""The SQLite the site runs: the one bundled in the layer, whatever the runtime's own sqlite3 is.

Lambda's python3.11 runtime runs on Amazon Linux 2, whose SQLite is 3.7.17 (no FTS5, no JSON
functions; aws/aws-lambda-base-images#116); python3.12+ get whatever Amazon Linux 2023 ships. So the
layer carries its own SQLite: the sqlean.py binding (a drop-in `sqlite3` with SQLite compiled in; the
pins and why are in `datasette_action/sqlite.py`), and the build makes every database with the same.

Datasette imports `pysqlite3` in place of the standard `sqlite3` when it can
(datasette/utils/sqlite.py), and so does sqlite-utils (sqlite_utils/utils.py). `use_bundled_sqlite()`
registers sqlean under that name: called before Datasette is imported, every query Datasette runs, and
`/-/versions`, use the bundled SQLite. (Where Datasette was imported earlier in the same process, which
happens only outside Lambda, in a test that imports it, Datasette keeps the sqlite3 it found.)

sqlean.py can also switch on extension functions of its own (fileio, define, ...) for every connection
when a `SQLEAN_ENABLE*` environment variable asks for them: those are removed from the environment
first, so the site runs plain SQLite, as built, and fileio's readfile() can never show a visitor the
function's files or environment.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

MODULE = "sqlean"  # the binding's import name
DISTRIBUTION = "sqlean.py"  # its name on the package index
ALIAS = "pysqlite3"  # the name Datasette and sqlite-utils import in place of sqlite3
EXTENSION_VARIABLES = "SQLEAN_ENABLE"  # SQLEAN_ENABLE, SQLEAN_ENABLE_<EXTENSION>: read at each connect


def use_bundled_sqlite() -> ModuleType:
    """Import the bundled binding, its extensions off, and make it `pysqlite3`; returns it."""
    for name in [name for name in os.environ if name.startswith(EXTENSION_VARIABLES)]:
        del os.environ[name]
    binding = importlib.import_module(MODULE)
    sys.modules[ALIAS] = binding
    sys.modules[f"{ALIAS}.dbapi2"] = binding.dbapi2
    return binding
