"""The bundle manifest: what `datasette-lambda package` writes and the Lambda entry point reads.

Standard library only: this module runs inside Lambda. `manifest.json` sits at the root of the
function code (the app artifact); every path in it is relative to that root.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = 1
HANDLER = "datasette_action_entrypoint.handler.handler"  # Lambda's Handler setting: module.function


@dataclass(frozen=True)
class ManifestDatabase:
    name: str  # the Datasette database name (URL path)
    file: str  # file name: under `databases/` in the bundle, or under /tmp when in S3
    sha256: str
    size: int
    location: str = "bundle"  # "bundle" (inside the function code) or "s3" (loaded into /tmp)
    s3_key: str | None = None  # the object key in the bucket named by $DATASETTE_DATA_BUCKET


@dataclass(frozen=True)
class ManifestStatic:
    url_path: str  # served at /<url_path>/
    directory: str


@dataclass(frozen=True)
class Manifest:
    databases: tuple[ManifestDatabase, ...]
    inspect_data: dict[str, Any]  # Datasette's inspect data, by database name
    settings: dict[str, Any]  # Datasette settings (the defaults this project changes included)
    metadata: dict[str, Any] | None = None
    static: tuple[ManifestStatic, ...] = ()
    templates: str | None = None
    plugins_dir: str | None = None
    base_url: str | None = None  # None: "/" or, behind a REST API stage, "/<stage>/"
    version_note: str | None = None
    format: int = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def load_manifest(path: Path) -> Manifest:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: manifest format {data.get('format')!r}, expected {FORMAT}")
    return Manifest(
        databases=tuple(ManifestDatabase(**d) for d in data["databases"]),
        inspect_data=data["inspect_data"],
        settings=data["settings"],
        metadata=data.get("metadata"),
        static=tuple(ManifestStatic(**s) for s in data.get("static", ())),
        templates=data.get("templates"),
        plugins_dir=data.get("plugins_dir"),
        base_url=data.get("base_url"),
        version_note=data.get("version_note"),
        format=data["format"],
        extra=data.get("extra", {}),
    )
