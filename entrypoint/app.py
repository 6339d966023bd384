"""Datasette for one bundle and one base_url, behind Mangum. Imported on the first event only.

Works with Datasette 0.65.x (settings through `settings=`) and the 1.0 alphas (settings inside
`config=`, the parsed `datasette.yaml`): `settings_kwargs()` picks by Datasette's constructor
signature, or its version.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from mangum import Mangum
from mangum.types import Message, Receive, Scope, Send

from datasette_action_entrypoint.bundle import Bundle
from datasette_action_entrypoint.downloads import with_s3_downloads
from datasette_action_entrypoint.paths import decoded_path, request_path
from datasette_action_entrypoint.sqlite import use_bundled_sqlite
from datasette_action_entrypoint.units import lazy_unit_registry

# Changed from Datasette's defaults for Lambda; `datasette.settings` in the config wins over each.
SPEED_DEFAULTS: dict[str, Any] = {
    "suggest_facets": False,
}


def datasette_class() -> Any:
    use_bundled_sqlite()  # first: Datasette picks its sqlite3 module when it is imported
    with lazy_unit_registry():
        from datasette.app import Datasette  # type: ignore[import-untyped]
    return Datasette


def datasette_version() -> str:
    from datasette.version import __version__  # type: ignore[import-untyped]

    return str(__version__)


def settings_kwargs(datasette: Any, settings: Mapping[str, Any], version: str) -> dict[str, Any]:
    """`{"config": {"settings": ...}}` for Datasette 1.0 alphas, `{"settings": ...}` for 0.65.

    Decided by the constructor's parameters (`config=` is the parsed datasette.yaml, new in 1.0), or by
    the version when something has wrapped `__init__` in a bare `(*args, **kwargs)` (Datasette 1.0's
    own pytest plugin does)."""
    parameters = inspect.signature(datasette.__init__).parameters
    if "config" in parameters:
        uses_config = True
    elif "settings" in parameters:
        uses_config = False
    else:
        uses_config = not version.startswith("0.")
    if uses_config:
        return {"config": {"settings": dict(settings)}}
    return {"settings": dict(settings)}


def effective_settings(bundle: Bundle, base_url: str) -> dict[str, Any]:
    return {**SPEED_DEFAULTS, **bundle.manifest.settings, "base_url": base_url}


def build_datasette(bundle: Bundle, *, base_url: str, secret: str | None) -> Any:
    """A Datasette serving every database immutable, with the manifest's inspect data (so nothing is
    counted or hashed at start), metadata, static mounts, templates and plugins."""
    datasette = datasette_class()
    manifest = bundle.manifest
    ds = datasette(
        immutables=[str(path) for path in bundle.database_files],
        inspect_data=manifest.inspect_data or None,
        metadata=manifest.metadata,
        static_mounts=[(s.url_path, str(bundle.path(s.directory))) for s in manifest.static],
        template_dir=str(bundle.path(manifest.templates)) if manifest.templates else None,
        plugins_dir=str(bundle.path(manifest.plugins_dir)) if manifest.plugins_dir else None,
        version_note=manifest.version_note,
        secret=secret,
        **settings_kwargs(datasette, effective_settings(bundle, base_url), datasette_version()),
    )
    # Datasette names a database after its file; the manifest's name wins where they differ.
    for database, path in zip(manifest.databases, bundle.database_files):
        if path.stem != database.name:
            db = ds.databases[path.stem]
            ds.remove_database(path.stem)
            ds.add_database(db, name=database.name)
    return ds


class RawPathApp:
    """ASGI middleware for Datasette behind Mangum.

    - `raw_path`: the request's percent-encoded path (Mangum sets None, and Datasette then routes a
      decoded `/db/a/b` for `/db/a%2Fb`), without the stage prefix, which base_url covers.
    - `cookie`: several Cookie headers of a REST request are joined with "; ".
    - `Location`: Datasette writes its links through base_url, but the redirects it derives from the
      request path itself (`%2F` to `~2F`, dropping a trailing slash) lack the stage prefix: a root-relative
      Location that does not start with it gets it. (A database named like the stage is the one case
      this cannot tell apart.)
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("aws.event")
        if scope["type"] != "http" or not isinstance(event, dict):
            await self.app(scope, receive, send)
            return
        request = request_path(event)
        scope = {**scope, "path": decoded_path(request.path), "raw_path": request.path.encode("ascii")}
        cookie = v1_cookie_header(event)
        if cookie is not None:
            headers = [(k, v) for k, v in scope["headers"] if bytes(k).lower() != b"cookie"]
            scope["headers"] = [*headers, (b"cookie", cookie.encode("latin-1"))]
        if not request.prefix:
            await self.app(scope, receive, send)
            return
        prefix = request.prefix.encode("ascii")

        async def send_with_prefix(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message = {**message, "headers": [_prefixed(prefix, k, v) for k, v in message["headers"]]}
            await send(message)

        await self.app(scope, receive, send_with_prefix)


def v1_cookie_header(event: dict[str, Any]) -> str | None:
    """A payload 1.0 request's cookies as one `cookie` header, when the client sent several (HTTP/2
    does): Mangum joins repeated headers with ", ", which is wrong for cookies ("; ")."""
    if event.get("version") == "2.0":
        return None
    values = [
        value
        for key, values in (event.get("multiValueHeaders") or {}).items()
        if key.lower() == "cookie"
        for value in values or ()
    ]
    return "; ".join(values) if len(values) > 1 else None


def _prefixed(prefix: bytes, name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if (
        name.lower() == b"location"
        and value.startswith(b"/")
        and not value.startswith(b"//")
        and not (value == prefix or value.startswith(prefix + b"/"))
    ):
        value = prefix + value
    return name, value


def make_site(bundle: Bundle, *, base_url: str, secret: str | None, data_bucket: str | None = None) -> Mangum:
    ds = build_datasette(bundle, base_url=base_url, secret=secret)
    # Downloads of databases too large for a Lambda response redirect to their copy in S3.
    app = with_s3_downloads(ds.app(), bundle.manifest, base_url=base_url, bucket=data_bucket)
    # lifespan="off": with "auto", Mangum runs Datasette's lifespan shutdown after every event, and
    # Datasette >= 1.0a28 then closes its databases (the next warm request fails). Datasette runs its
    # own start-up on the first request anyway.
    return Mangum(RawPathApp(app), lifespan="off")
