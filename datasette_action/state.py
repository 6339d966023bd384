"""The deployed-state manifest: what a deploy put live, kept beside the artifacts as
`state/<stack>.json` so a later `plan` can say what changed (tables, row counts, hashes).

Pure: `DeployedState` from a `PackageResult`, to and from JSON, and the difference of two states.
`deploy/` reads and writes it in S3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datasette_action.package import PackageResult
from datasette_action_entrypoint.manifest import load_manifest

STATE_FORMAT = 1


def state_key(stack: str) -> str:
    return f"state/{stack}.json"


@dataclass(frozen=True)
class DatabaseState:
    name: str
    sha256: str
    size: int
    location: str  # "bundle" or "s3"
    tables: Mapping[str, int]  # table name -> rows (Datasette's inspect data; views are not counted)


@dataclass(frozen=True)
class DeployedState:
    stack: str
    databases: tuple[DatabaseState, ...]
    artifacts: Mapping[str, str]  # role ("layer", "function") -> sha256
    keys: tuple[str, ...] = ()  # every object key this stack's deploys wrote, for `destroy`

    def to_json(self) -> str:
        data = {
            "format": STATE_FORMAT,
            "stack": self.stack,
            "databases": [
                {
                    "name": d.name,
                    "sha256": d.sha256,
                    "size": d.size,
                    "location": d.location,
                    "tables": dict(d.tables),
                }
                for d in self.databases
            ],
            "artifacts": dict(self.artifacts),
            "keys": sorted(self.keys),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


class StateFormatError(ValueError):
    """The state file in the bucket is not one this version can read."""


def state_from_json(text: str) -> DeployedState:
    try:
        data: Any = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateFormatError(f"unknown state format {data.get('format')!r}")
        return DeployedState(
            stack=str(data["stack"]),
            databases=tuple(
                DatabaseState(
                    name=str(d["name"]),
                    sha256=str(d["sha256"]),
                    size=int(d["size"]),
                    location=str(d["location"]),
                    tables={str(t): int(n) for t, n in d["tables"].items()},
                )
                for d in data["databases"]
            ),
            artifacts={str(k): str(v) for k, v in data["artifacts"].items()},
            keys=tuple(str(k) for k in data.get("keys", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateFormatError(str(exc)) from None


def state_from_package(stack: str, result: PackageResult, keys: tuple[str, ...] = ()) -> DeployedState:
    """What deploying `result` puts live: the manifest's inspect data gives the row counts."""
    manifest = load_manifest(result.manifest)
    databases = []
    for placement in result.databases:
        inspect = manifest.inspect_data.get(placement.name, {})
        tables = {name: int(info.get("count") or 0) for name, info in inspect.get("tables", {}).items()}
        databases.append(
            DatabaseState(placement.name, placement.sha256, placement.size, placement.location, tables)
        )
    artifacts = {artifact.role: artifact.sha256 for artifact in result.artifacts}
    return DeployedState(stack, tuple(databases), artifacts, keys)


# -- what changed -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableChange:
    name: str
    change: str  # "added", "removed", "rows" (row count changed) or "same"
    rows_before: int | None
    rows_after: int | None

    @property
    def delta(self) -> int | None:
        if self.rows_before is None or self.rows_after is None:
            return None
        return self.rows_after - self.rows_before


@dataclass(frozen=True)
class DatabaseChange:
    name: str
    change: str  # "added", "removed", "changed" (sha256 differs) or "same"
    sha256_before: str | None
    sha256_after: str | None
    size_before: int | None
    size_after: int | None
    tables: tuple[TableChange, ...]


def compare_states(before: DeployedState | None, after: DeployedState) -> tuple[DatabaseChange, ...]:
    """Database by database, table by table: `after` (about to be deployed) against `before`
    (deployed; None when nothing is, or it cannot be read: then everything is "added")."""
    old = {d.name: d for d in before.databases} if before else {}
    changes = []
    for database in after.databases:
        previous = old.pop(database.name, None)
        if previous is None:
            tables = tuple(TableChange(t, "added", None, n) for t, n in visible_tables(database.tables))
            changes.append(
                DatabaseChange(database.name, "added", None, database.sha256, None, database.size, tables)
            )
            continue
        same = previous.sha256 == database.sha256
        changes.append(
            DatabaseChange(
                database.name,
                "same" if same else "changed",
                previous.sha256,
                database.sha256,
                previous.size,
                database.size,
                _table_changes(previous.tables, database.tables),
            )
        )
    for gone in old.values():
        tables = tuple(TableChange(t, "removed", n, None) for t, n in visible_tables(gone.tables))
        changes.append(DatabaseChange(gone.name, "removed", gone.sha256, None, gone.size, None, tables))
    return tuple(changes)


def _table_changes(before: Mapping[str, int], after: Mapping[str, int]) -> tuple[TableChange, ...]:
    old = dict(visible_tables(before))
    result = []
    for name, rows in visible_tables(after):
        if name not in old:
            result.append(TableChange(name, "added", None, rows))
        else:
            previous = old.pop(name)
            result.append(TableChange(name, "same" if previous == rows else "rows", previous, rows))
    result.extend(TableChange(name, "removed", rows, None) for name, rows in old.items())
    return tuple(result)


def visible_tables(tables: Mapping[str, int]) -> list[tuple[str, int]]:
    """The tables a visitor sees: without the shadow tables of full-text search indexes
    (`<t>_fts`, `<t>_fts_data`, ...), which Datasette hides."""
    names = set(tables)
    return [
        (name, rows)
        for name, rows in sorted(tables.items())
        if not any(name == f"{t}_fts" or name.startswith(f"{t}_fts_") for t in names if t != name)
    ]
