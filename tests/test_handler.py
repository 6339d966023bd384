"""Tests for the Lambda entry point (entrypoint/, installed and packaged as
datasette_action_entrypoint): real SQLite bundles under tmp_path, realistic function URL, HTTP API
and REST API events (datasette_action.events), the handler run in this process and in a fresh
interpreter (serve's local runtime) that sees only the bundle and Datasette's dependencies, and S3 databases served
by a real moto server on loopback. The one stand-in is `FakeDatasette10` (a Datasette 1.0 alpha
signature for `settings_kwargs`): the dev venv has Datasette 0.65 only."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import datasette
import pytest
from datasette.version import __version__ as DATASETTE_VERSION

from datasette_action.events import (
    API_HOST,
    function_url_event,
    http_api_event,
    lambda_context,
    response_body,
    response_header,
    response_headers,
    rest_event,
)
from datasette_action.package import LAMBDA_MODULES, LAMBDA_PACKAGE
from datasette_action.serve import bootstrap
from datasette_action_entrypoint import handler as handler_module
from datasette_action_entrypoint.app import SPEED_DEFAULTS, settings_kwargs
from datasette_action_entrypoint.bundle import BundleError, Environment
from datasette_action_entrypoint.handler import LambdaApp, handler, reset, text_response
from datasette_action_entrypoint.manifest import HANDLER, Manifest, ManifestDatabase, ManifestStatic
from datasette_action_entrypoint.paths import encoded_path, request_path
from datasette_action_entrypoint.units import LazyUnitRegistry

REPO = Path(__file__).resolve().parent.parent
DATASETTE_1 = not DATASETTE_VERSION.startswith("0.")
SECRET = "test-secret-not-for-production"
FAKE_COUNT = 1234  # the row count inspect_data claims for other.things (really 2)

EventBuilder = Callable[..., dict[str, Any]]
BUILDERS: dict[str, EventBuilder] = {
    "function_url": function_url_event,
    "http_api": http_api_event,
    "rest": rest_event,
}
PREFIX = {"function_url": "", "http_api": "", "rest": "/prod"}  # rest_event's default stage is prod


# --- the bundle -----------------------------------------------------------------------------------


def png_bytes() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def make_database(path: Path, tables: dict[str, tuple[str, list[tuple[Any, ...]]]]) -> dict[str, Any]:
    """Create a SQLite file; returns its Datasette inspect data (real counts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        for name, (columns, rows) in tables.items():
            conn.execute(f'create table "{name}" ({columns})')
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f'insert into "{name}" values ({marks})', rows)
    conn.close()
    data = path.read_bytes()
    return {
        "hash": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "file": path.name,
        "tables": {name: {"count": len(rows)} for name, (_, rows) in tables.items()},
    }


def manifest_database(name: str, path: Path, **extra: Any) -> ManifestDatabase:
    data = path.read_bytes()
    return ManifestDatabase(name, path.name, hashlib.sha256(data).hexdigest(), len(data), **extra)


METADATA: dict[str, Any] = {
    "title": "Lambda Test Data",
    "databases": {"fixtures": {"tables": {"places": {"units": {"distance": "m"}}}}},
}


def build_bundle(root: Path, **manifest_fields: Any) -> Path:
    fixtures = make_database(
        root / "databases" / "fixtures.db",
        {
            "a/b": ("id integer primary key, name text", [(1, "slash-one"), (2, "slash-two")]),
            "places": (
                "id integer primary key, name text, kind text, size text, distance float",
                [
                    (1, "Aston", "town", "small", 800.0),
                    (2, "Bray", "city", "big", 5000.0),
                    (3, "Crewe", "town", "big", 12000.0),
                ],
            ),
        },
    )
    other = make_database(
        root / "databases" / "other.db", {"things": ("id integer, label text", [(1, "x"), (2, "y")])}
    )
    other["tables"]["things"]["count"] = FAKE_COUNT
    (root / "static").mkdir()
    (root / "static" / "site.css").write_text("body { color: #123456; }\n")
    (root / "static" / "logo.png").write_bytes(png_bytes())
    fields: dict[str, Any] = {
        "databases": (
            manifest_database("fixtures", root / "databases" / "fixtures.db"),
            manifest_database("other", root / "databases" / "other.db"),
        ),
        "inspect_data": {"fixtures": fixtures, "other": other},
        "settings": {},
        "metadata": METADATA,
        "static": (ManifestStatic("assets", "static"),),
        "version_note": "test-bundle",
    }
    fields.update(manifest_fields)
    (root / "manifest.json").write_text(Manifest(**fields).to_json())
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def served(bundle: Path) -> Iterator[Path]:
    """The module-level `handler`, pointed at the bundle through the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATASETTE_LAMBDA_ROOT", str(bundle))
        mp.setenv("DATASETTE_SECRET", SECRET)
        mp.delenv("DATASETTE_DATA_BUCKET", raising=False)
        reset()
        # Build the two Datasettes here, once: Datasette 1.0's pytest plugin closes any instance a
        # test itself creates when that test ends.
        handler(function_url_event("GET", "/-/versions.json"), None)
        handler(rest_event("GET", "/-/versions.json"), None)
        yield bundle
        reset()


def call(kind: str, path: str, method: str = "GET", **kwargs: Any) -> dict[str, Any]:
    return handler(BUILDERS[kind](method, path, **kwargs), lambda_context())


def text(response: dict[str, Any]) -> str:
    return response_body(response).decode("utf-8")


def sql_path(database: str) -> str:
    return f"/{database}/-/query" if DATASETTE_1 else f"/{database}"


# --- requests through each event source -----------------------------------------------------------


@pytest.mark.parametrize("kind", BUILDERS)
def test_pages(served: Path, kind: str) -> None:
    index = call(kind, "/")
    assert index["statusCode"] == 200
    assert "Lambda Test Data" in text(index)
    assert response_header(index, "content-type") == "text/html; charset=utf-8"

    database = call(kind, "/fixtures")
    assert database["statusCode"] == 200
    assert "places" in text(database)

    table = call(kind, "/fixtures/places")
    assert table["statusCode"] == 200
    assert "Crewe" in text(table)

    rows = json.loads(text(call(kind, "/fixtures/places.json", query="_shape=array")))
    assert [row["name"] for row in rows] == ["Aston", "Bray", "Crewe"]

    csv = call(kind, "/fixtures/places.csv")
    assert csv["statusCode"] == 200
    assert not csv["isBase64Encoded"]
    assert text(csv).splitlines()[:2] == ["id,name,kind,size,distance", "1,Aston,town,small,800.0"]

    query = call(
        kind, sql_path("fixtures") + ".json", query={"sql": "select 40 + 2 as answer", "_shape": "array"}
    )
    assert json.loads(text(query)) == [{"answer": 42}]

    versions = json.loads(text(call(kind, "/-/versions.json")))
    assert versions["datasette"]["note"] == "test-bundle"


@pytest.mark.parametrize("kind", BUILDERS)
def test_static_files_and_database_download(served: Path, kind: str) -> None:
    css = call(kind, "/assets/site.css")
    assert css["statusCode"] == 200
    assert css["isBase64Encoded"] is False
    assert text(css) == "body { color: #123456; }\n"

    png = call(kind, "/assets/logo.png")
    assert png["statusCode"] == 200
    assert png["isBase64Encoded"] is True
    assert base64.b64decode(png["body"]) == png_bytes()
    assert response_header(png, "content-type") == "image/png"

    download = call(kind, "/fixtures.db")
    assert download["statusCode"] == 200
    assert download["isBase64Encoded"] is True
    assert response_body(download) == (served / "databases" / "fixtures.db").read_bytes()


@pytest.mark.parametrize("kind", ["function_url", "rest"])
def test_percent_encoded_slash_in_a_table_name(served: Path, kind: str) -> None:
    prefix = PREFIX[kind]
    # Datasette answers %2F with a redirect to its own tilde encoding, stage prefix included.
    redirect = call(kind, "/fixtures/a%2Fb")
    assert redirect["statusCode"] == 302
    assert response_header(redirect, "location") == f"{prefix}/fixtures/a~2Fb"
    page = call(kind, "/fixtures/a~2Fb")
    assert page["statusCode"] == 200
    assert "slash-two" in text(page)
    data = json.loads(text(call(kind, "/fixtures/a~2Fb.json", query="_shape=array")))
    assert [row["name"] for row in data] == ["slash-one", "slash-two"]


TRICKY_PATHS = [
    "/fixtures/a%2Fb",
    "/fixtures/a%2Fb.json",
    "/fixtures/a~2Fb",
    "/fixtures/a%2Fb/1",
    "/fixtures/a~2Fb/1",
    "/fixtures/places/",
    "/fixtures/places/2",
    "/fixtures/no%20such%20table",
    "/no-such-database",
]


def test_paths_answered_as_a_plain_asgi_server_would(served: Path) -> None:
    """Through a function URL, tricky paths get what Datasette gives an ASGI server that sets raw_path
    (httpx's ASGITransport here, uvicorn under `datasette serve`)."""
    import asyncio

    import httpx
    from datasette.app import Datasette

    databases = [str(served / "databases" / name) for name in ("fixtures.db", "other.db")]
    direct = Datasette(immutables=databases, metadata=METADATA, settings={"suggest_facets": False})

    async def plain(paths: list[str]) -> list[tuple[int, str | None]]:
        transport = httpx.ASGITransport(app=direct.app())
        async with httpx.AsyncClient(transport=transport, base_url="https://example.com") as client:
            return [((r := await client.get(p)).status_code, r.headers.get("location")) for p in paths]

    expected = asyncio.run(plain(TRICKY_PATHS))  # which also leaves this thread with no event loop
    responses = [call("function_url", path) for path in TRICKY_PATHS]
    assert [(r["statusCode"], response_header(r, "location")) for r in responses] == expected
    assert expected[0] == (302, "/fixtures/a~2Fb")


def test_http_api_decodes_percent_encoded_slash_before_lambda(served: Path) -> None:
    """An HTTP API hands Lambda `/fixtures/a/b` for `/fixtures/a%2Fb` (see datasette_action.events): nothing
    can recover it. Datasette's own links use `a~2Fb`, which works."""
    assert call("http_api", "/fixtures/a%2Fb")["statusCode"] in (400, 404)  # table "a", row "b"
    assert call("http_api", "/fixtures/a~2Fb")["statusCode"] == 200


@pytest.mark.parametrize("kind", BUILDERS)
def test_trailing_slash_redirect_keeps_the_stage(served: Path, kind: str) -> None:
    response = call(kind, "/fixtures/places/", query="_size=1")
    assert response["statusCode"] == 302
    assert response_header(response, "location") == f"{PREFIX[kind]}/fixtures/places?_size=1"


LINK = re.compile(r'(?:href|src|action)="([^"]*)"')


def local_links(html: str, host: str) -> list[str]:
    """Every link in the page that points into the site, as a path."""
    links = []
    for link in LINK.findall(html):
        parts = urlsplit(link)
        if parts.netloc == host or (not parts.netloc and link.startswith("/")):
            links.append(parts.path)
    return links


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/fixtures",
        "/fixtures/places",
        "/fixtures/places/2",
        "/fixtures/a~2Fb",
        "/other/things",
        "/-/plugins",
    ],
)
def test_rest_links_carry_the_stage_once(served: Path, path: str) -> None:
    response = call("rest", path, query="_size=1&_facet=kind" if path == "/fixtures/places" else None)
    assert response["statusCode"] == 200
    links = local_links(text(response), API_HOST)
    assert links
    for link in links:
        assert link.startswith("/prod/"), link
        assert "/prod/prod" not in link, link


def test_function_url_links_have_no_prefix(served: Path) -> None:
    links = local_links(text(call("function_url", "/fixtures/places")), "")
    assert links
    assert not [link for link in links if link.startswith("/prod")]
    assert "/fixtures/places.json" in links


def test_each_stage_gets_its_own_base_url(served: Path) -> None:
    dev = call("rest", "/fixtures", stage="dev")
    assert dev["statusCode"] == 200
    assert 'href="/dev/fixtures/places"' in text(dev)
    assert 'href="/prod/fixtures/places"' in text(call("rest", "/fixtures"))
    named = call("http_api", "/fixtures", stage="beta")
    assert 'href="/beta/fixtures/places"' in text(named)
    app = handler_module._app  # one Datasette per base_url, built once
    assert set(app._sites) == {"/", "/prod/", "/dev/", "/beta/"}
    assert app.site_for(rest_event("GET", "/x", stage="dev")) is app._sites["/dev/"]


@pytest.mark.parametrize("kind", BUILDERS)
def test_repeated_query_parameters(served: Path, kind: str) -> None:
    response = call(kind, "/fixtures/places.json", query=[("_facet", "kind"), ("_facet", "size")])
    facets = json.loads(text(response))["facet_results"]
    if DATASETTE_1:  # 1.0 alphas: {"results": {...}, "timed_out": [...]}
        facets = facets["results"]
    assert set(facets) == {"kind", "size"}


@pytest.mark.parametrize("kind", BUILDERS)
def test_cookies_round_trip(served: Path, kind: str) -> None:
    """Datasette's message flow: (0.65) a CSRF cookie out, a form POST with it back in, a signed
    message cookie out (signed with DATASETTE_SECRET), the message shown when that cookie comes back."""
    form = call(kind, "/-/messages")
    assert form["statusCode"] == 200
    fields = {"message": "hello from lambda", "message_type": "INFO"}
    cookies = []
    token = re.search(r'name="csrftoken" value="([^"]+)"', text(form))
    if not DATASETTE_1:  # 1.0 alphas check Sec-Fetch-Site/Origin instead of a token
        assert token
        fields["csrftoken"] = token[1]
        (csrf_cookie,) = response_headers(form)["set-cookie"]
        cookies.append(csrf_cookie.split(";")[0])
    posted = call(
        kind,
        "/-/messages",
        method="POST",
        cookies=cookies,
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=urlencode(fields),
    )
    assert posted["statusCode"] == 302
    assert response_header(posted, "location") == f"{PREFIX[kind]}/"
    (message_cookie,) = response_headers(posted)["set-cookie"]
    assert message_cookie.startswith("ds_messages=")
    shown = call(kind, "/", cookies=[*cookies, message_cookie.split(";")[0]])
    assert "hello from lambda" in text(shown)


def signed_actor_cookie(secret: str) -> str:
    from datasette.app import Datasette

    return "ds_actor=" + Datasette(memory=True, secret=secret).sign({"a": {"id": "root"}}, "actor")


@pytest.mark.parametrize("kind", BUILDERS)
def test_secret_comes_from_the_environment(served: Path, kind: str) -> None:
    good = json.loads(text(call(kind, "/-/actor.json", cookies=[signed_actor_cookie(SECRET)])))
    assert good["actor"] == {"id": "root"}
    forged = json.loads(text(call(kind, "/-/actor.json", cookies=[signed_actor_cookie("another")])))
    assert forged["actor"] is None


def test_rest_request_with_several_cookie_headers(served: Path) -> None:
    """HTTP/2 clients may send each cookie in its own header; REST events then list them all."""
    event = rest_event("GET", "/-/actor.json")
    event["multiValueHeaders"]["cookie"] = [signed_actor_cookie(SECRET), "theme=dark"]
    event["headers"]["cookie"] = "theme=dark"  # the single-value view keeps the last one
    assert json.loads(text(handler(event, None)))["actor"] == {"id": "root"}


def test_event_mangum_cannot_read(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    response = handler({"httpMethod": "GET", "path": "/", "requestContext": {}}, None)
    assert response["statusCode"] == 500
    assert response["body"] == "The request could not be handled; the function's log has the details.\n"
    assert "datasette-lambda: request failed: RuntimeError" in capsys.readouterr().err
    assert call("function_url", "/")["statusCode"] == 200  # one bad event does not stop the function


def test_units_filter_and_display(served: Path) -> None:
    """`?distance__gt=2km` is converted to the column's unit (m) by pint, through the lazy registry."""
    response = call("function_url", "/fixtures/places.json", query={"distance__gt": "2km", "_shape": "array"})
    if DATASETTE_1:
        pytest.skip("Datasette 1.0 alphas have no units")
    assert [row["name"] for row in json.loads(text(response))] == ["Bray", "Crewe"]
    assert "12.0&nbsp;km" in text(call("function_url", "/fixtures/places"))


def test_inspect_data_is_used_not_recomputed(served: Path) -> None:
    tables = json.loads(text(call("function_url", "/other.json")))["tables"]
    assert [(t["name"], t["count"]) for t in tables] == [("things", FAKE_COUNT)]


def test_facet_suggestions_off_by_default(served: Path, tmp_path: Path) -> None:
    assert SPEED_DEFAULTS == {"suggest_facets": False}
    extra = "_extra=suggested_facets"  # 1.0 alphas include it on request only
    off = json.loads(text(call("function_url", "/fixtures/places.json", query=extra)))
    assert off["suggested_facets"] == []
    on = LambdaApp({"DATASETTE_LAMBDA_ROOT": str(build_bundle(tmp_path, settings={"suggest_facets": True}))})
    suggested = json.loads(text(on(function_url_event("GET", "/fixtures/places.json", query=extra), None)))[
        "suggested_facets"
    ]
    assert "kind" in [facet["name"] for facet in suggested]


def test_manifest_base_url_wins_over_the_stage(tmp_path: Path) -> None:
    app = LambdaApp({"DATASETTE_LAMBDA_ROOT": str(build_bundle(tmp_path, base_url="/data/"))})
    response = app(rest_event("GET", "/data/fixtures"), None)
    assert response["statusCode"] == 200
    assert 'href="/data/fixtures/places"' in text(response)
    assert app.base_url(rest_event("GET", "/")) == "/data/"


def test_non_http_event_is_rejected(served: Path) -> None:
    response = handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
    assert response["statusCode"] == 400
    assert response["body"].startswith("Not an HTTP event")


@pytest.mark.parametrize("unescaped", [False, True])
def test_oversized_response_is_explained(unescaped: bool) -> None:
    big = {"statusCode": 200, "headers": {}, "body": "x" * (7 * 1024 * 1024), "isBase64Encoded": False}
    response = handler_module._within_limit(big, unescaped)
    assert response["statusCode"] == 502
    assert "6 MB response limit" in response["body"]
    small = {"statusCode": 200, "body": "ok"}
    assert handler_module._within_limit(small, unescaped) is small
    near = {"statusCode": 200, "body": "x" * (5 * 1024 * 1024)}  # fits as plain ASCII ...
    assert handler_module._within_limit(near, unescaped) is near
    # ... but 1 M "λ" are 6 MB as \u03bb escapes (python3.11), 2 MB as UTF-8 (python3.12+)
    greek = {"statusCode": 200, "body": "λ" * (1024 * 1024 + 1)}
    assert handler_module._within_limit(greek, unescaped)["statusCode"] == (200 if unescaped else 502)
    # one character past U+FFFF: a surrogate pair when escaped (12 bytes), 4 bytes of UTF-8
    emoji = {"statusCode": 200, "body": "\U0001f600" * (600 * 1024)}
    assert handler_module._within_limit(emoji, unescaped)["statusCode"] == (200 if unescaped else 502)
    assert handler_module.sent_size(emoji, unescaped=unescaped) == len(
        json.dumps(emoji, ensure_ascii=not unescaped).encode()
    )


def test_handler_string_matches_the_module() -> None:
    module, _, function = HANDLER.rpartition(".")
    assert module == handler_module.__name__
    assert getattr(handler_module, function) is handler


# --- set-up failures ------------------------------------------------------------------------------


def failing_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], **environ: str
) -> tuple[list[dict[str, Any]], str]:
    """Two requests to a LambdaApp over tmp_path; returns the responses and what went to stderr."""
    app = LambdaApp({"DATASETTE_LAMBDA_ROOT": str(tmp_path), **environ})
    responses = [app(function_url_event("GET", "/"), None), app(rest_event("GET", "/fixtures"), None)]
    return responses, capsys.readouterr().err


def assert_explained(responses: list[dict[str, Any]], stderr: str, message: str) -> None:
    for response in responses:
        assert response["statusCode"] == 500
        assert response["headers"]["content-type"] == "text/plain; charset=utf-8"
        assert response["body"] == message + "\n"
    assert stderr.count(message) == 1, stderr


def test_missing_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    responses, stderr = failing_app(tmp_path, capsys)
    assert_explained(
        responses,
        stderr,
        f"datasette-lambda: {tmp_path / 'manifest.json'} is missing: the function code is not a "
        "datasette-lambda bundle (set DATASETTE_LAMBDA_ROOT to the bundle root when running it elsewhere)",
    )


def test_unreadable_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.json").write_text('{"format": 1, "databases": []}')
    responses, stderr = failing_app(tmp_path, capsys)
    assert_explained(
        responses,
        stderr,
        f"datasette-lambda: {tmp_path / 'manifest.json'} could not be read: missing field 'inspect_data'",
    )


def test_database_missing_from_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_bundle(tmp_path)
    (tmp_path / "databases" / "other.db").unlink()
    responses, stderr = failing_app(tmp_path, capsys)
    assert_explained(
        responses, stderr, "datasette-lambda: database 'other': databases/other.db is not in the bundle"
    )


def test_datasette_failing_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_bundle(tmp_path, plugins_dir="plugins")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "broken.py").write_text("raise RuntimeError('plugin exploded')\n")
    responses, stderr = failing_app(tmp_path, capsys)
    message = "datasette-lambda: Datasette could not start: RuntimeError: plugin exploded"
    assert_explained(responses, stderr, message)
    assert "Traceback" in stderr  # unexpected errors keep their traceback in the log


def test_text_response_shape() -> None:
    assert text_response(503, "down") == {
        "statusCode": 503,
        "headers": {"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"},
        "body": "down\n",
        "isBase64Encoded": False,
    }


# --- paths ----------------------------------------------------------------------------------------


def test_request_paths() -> None:
    assert request_path(function_url_event("GET", "/db/a%2Fb")).path == "/db/a%2Fb"
    assert request_path(function_url_event("GET", "/db/%CE%BB")).base_url == "/"
    rest = request_path(rest_event("GET", "/db/a%2Fb", stage="live"))
    assert (rest.prefix, rest.path, rest.base_url) == ("/live", "/db/a%2Fb", "/live/")
    # a REST API on a custom domain: the stage is not in the URL
    custom = rest_event("GET", "/db", stage="live")
    custom["requestContext"]["path"] = "/db"
    assert request_path(custom).base_url == "/"
    # an HTTP API delivers decoded paths, named stages included; they are re-encoded for Datasette
    named = request_path(http_api_event("GET", "/db/%CE%BB%20x", stage="beta"))
    assert (named.prefix, named.path) == ("/beta", "/db/%CE%BB%20x")
    assert request_path(http_api_event("GET", "/")).path == "/"
    assert request_path(rest_event("GET", "/", stage="prod")).path == "/"


def test_encoded_path_keeps_escapes_and_encodes_the_rest() -> None:
    assert encoded_path("/db/a%2Fb") == "/db/a%2Fb"
    assert encoded_path("/db/50% off?#") == "/db/50%25%20off%3F%23"
    assert encoded_path("/db/λ~t:1@x") == "/db/%CE%BB~t:1@x"


# --- Datasette versions and the lazy unit registry ------------------------------------------------


class FakeDatasette10:
    """Datasette 1.0 alpha's constructor signature (only `config=` matters here)."""

    def __init__(
        self, files: Any = None, immutables: Any = None, config: Any = None, settings: Any = None
    ) -> None:
        pass


def test_settings_go_where_each_datasette_reads_them() -> None:
    from datasette.app import Datasette

    settings = {"suggest_facets": False}
    config = {"config": {"settings": settings}}
    assert settings_kwargs(FakeDatasette10, settings, "1.0a41") == config
    assert settings_kwargs(Datasette, settings, DATASETTE_VERSION) == (
        config if DATASETTE_1 else {"settings": settings}
    )

    class Wrapped:  # a constructor wrapped as (*args, **kwargs): the version decides
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    assert settings_kwargs(Wrapped, settings, "1.0a41") == config
    assert settings_kwargs(Wrapped, settings, "0.65.5") == {"settings": settings}


def test_lazy_unit_registry_builds_on_first_use() -> None:
    built: list[str] = []

    class Registry:
        def __init__(self, name: str) -> None:
            built.append(name)
            self.name = name

        def __call__(self, value: str) -> str:
            return f"{value} in {self.name}"

    lazy = LazyUnitRegistry(Registry, "units")
    assert not lazy.built and built == []
    assert lazy("5km") == "5km in units"
    assert lazy.name == "units"
    assert built == ["units"]  # built once


# --- databases in S3 (a real moto server on loopback) ---------------------------------------------


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="data-bucket")
    try:
        yield client
    finally:
        server.stop()


def s3_bundle(root: Path) -> tuple[Path, bytes]:
    """A bundle whose `fixtures` database lives in S3 (removed from the bundle)."""
    build_bundle(root / "bundle")
    local = root / "bundle" / "databases" / "fixtures.db"
    data = local.read_bytes()
    manifest = json.loads((root / "bundle" / "manifest.json").read_text())
    manifest["databases"][0].update(location="s3", s3_key="databases/abc/fixtures.db")
    (root / "bundle" / "manifest.json").write_text(json.dumps(manifest))
    local.unlink()
    return root / "bundle", data


def test_database_from_s3(tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    root, data = s3_bundle(tmp_path)
    s3.put_object(Bucket="data-bucket", Key="databases/abc/fixtures.db", Body=data)
    environ = {
        "DATASETTE_LAMBDA_ROOT": str(root),
        "DATASETTE_LAMBDA_TMP": str(tmp_path / "tmp"),
        "DATASETTE_DATA_BUCKET": "data-bucket",
    }
    first = LambdaApp(environ)
    rows = json.loads(
        text(first(function_url_event("GET", "/fixtures/places.json", query="_shape=array"), None))
    )
    assert len(rows) == 3
    assert (tmp_path / "tmp" / "fixtures.db").read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["fixtures.db"]  # no partial files left

    # A new cold start on the same /tmp reuses the verified file: the object is no longer needed.
    s3.delete_object(Bucket="data-bucket", Key="databases/abc/fixtures.db")
    again = LambdaApp(environ)
    assert again(rest_event("GET", "/fixtures/a~2Fb"), None)["statusCode"] == 200

    # A different /tmp must download again, and the object is gone: the error says so.
    gone = LambdaApp({**environ, "DATASETTE_LAMBDA_TMP": str(tmp_path / "tmp2")})
    response = gone(function_url_event("GET", "/"), None)
    assert response["statusCode"] == 500
    assert response["body"] == (
        "datasette-lambda: could not download s3://data-bucket/databases/abc/fixtures.db: "
        "404: no such object (was the database uploaded?)\n"
    )
    capsys.readouterr()


def test_s3_object_with_the_wrong_content(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root, data = s3_bundle(tmp_path)
    s3.put_object(Bucket="data-bucket", Key="databases/abc/fixtures.db", Body=b"not the database")
    app = LambdaApp(
        {
            "DATASETTE_LAMBDA_ROOT": str(root),
            "DATASETTE_LAMBDA_TMP": str(tmp_path / "tmp"),
            "DATASETTE_DATA_BUCKET": "data-bucket",
        }
    )
    response = app(function_url_event("GET", "/"), None)
    assert response["statusCode"] == 500
    actual = hashlib.sha256(b"not the database").hexdigest()
    expected = hashlib.sha256(data).hexdigest()
    assert response["body"] == (
        f"datasette-lambda: database 'fixtures': s3://data-bucket/databases/abc/fixtures.db has sha256 {actual}, "
        f"the manifest expects {expected}: the object was replaced after packaging; deploy again\n"
    )
    assert list((tmp_path / "tmp").iterdir()) == []
    assert capsys.readouterr().err.count("has sha256") == 1


def test_a_killed_downloads_leftovers_are_removed_before_the_next(
    tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invocation killed mid-download (a timeout) leaves its partial file, and the one boto3's
    transfer writes beside it, in /tmp, which outlives it; the next cold start clears them."""
    root, data = s3_bundle(tmp_path)
    s3.put_object(Bucket="data-bucket", Key="databases/abc/fixtures.db", Body=data)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    for leftover in (".fixtures.db.4242.part", ".fixtures.db.4242.part.1a2b3c4d", "fixtures.db"):
        (tmp / leftover).write_bytes(data[:1000])  # cut short
    (tmp / ".other.db.4242.part").write_bytes(b"x")  # another database's: left alone
    app = LambdaApp(
        {
            "DATASETTE_LAMBDA_ROOT": str(root),
            "DATASETTE_LAMBDA_TMP": str(tmp),
            "DATASETTE_DATA_BUCKET": "data-bucket",
        }
    )
    assert app(function_url_event("GET", "/fixtures/places.json"), None)["statusCode"] == 200
    assert sorted(p.name for p in tmp.iterdir()) == [".other.db.4242.part", "fixtures.db"]
    assert (tmp / "fixtures.db").read_bytes() == data
    capsys.readouterr()


def test_too_little_room_in_tmp_is_a_readable_error(
    tmp_path: Path, s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full /tmp cannot be made here without privileges: shutil.disk_usage is replaced (the
    one stand-in) to report 10 bytes free."""
    from datasette_action_entrypoint import bundle

    root, data = s3_bundle(tmp_path)
    s3.put_object(Bucket="data-bucket", Key="databases/abc/fixtures.db", Body=data)
    real = bundle.shutil.disk_usage
    monkeypatch.setattr(bundle.shutil, "disk_usage", lambda path: real(path)._replace(free=10))
    tmp = tmp_path / "tmp"
    app = LambdaApp(
        {
            "DATASETTE_LAMBDA_ROOT": str(root),
            "DATASETTE_LAMBDA_TMP": str(tmp),
            "DATASETTE_DATA_BUCKET": "data-bucket",
        }
    )
    response = app(function_url_event("GET", "/"), None)
    assert response["statusCode"] == 500
    assert response["body"] == (
        f"datasette-lambda: database 'fixtures' needs {len(data):,} bytes in {tmp} to download"
        " s3://data-bucket/databases/abc/fixtures.db, and 10 are free: give the function more ephemeral"
        " storage (lambda.ephemeral_storage; package sizes it for the databases plus 64 MB, so"
        " something else, such as a plugin, is filling it)\n"
    )
    assert list(tmp.iterdir()) == []  # nothing was downloaded
    capsys.readouterr()


def test_s3_database_without_a_bucket(tmp_path: Path) -> None:
    root, _ = s3_bundle(tmp_path)
    env = Environment.from_environ({"DATASETTE_LAMBDA_ROOT": str(root)}, default_root=REPO)
    assert env.bucket is None and env.tmp_dir == Path("/tmp")
    from datasette_action_entrypoint.bundle import load_bundle

    with pytest.raises(BundleError, match="DATASETTE_DATA_BUCKET is not set"):
        load_bundle(env)


# --- database downloads too large for a Lambda response: a redirect to S3 (moto on loopback) ------
# moto accepts presigned URLs without checking their signatures: what AWS checks (SigV4 with the
# function's credentials, the expiry, the role's s3:GetObject on the key) is not proven here.


def keyed_bundle(root: Path, s3: Any, **manifest_fields: Any) -> tuple[Path, bytes, str]:
    """The test bundle with `fixtures` given an S3 key and its object in the bucket, as `package`
    and deploy do for a database over DOWNLOAD_LIMIT (the handler redirects for any database with
    a key, whatever its size: package decides which get one)."""
    build_bundle(root, **manifest_fields)
    data = (root / "databases" / "fixtures.db").read_bytes()
    key = f"databases/{hashlib.sha256(data).hexdigest()}/fixtures.db"
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["databases"][0]["s3_key"] = key
    (root / "manifest.json").write_text(json.dumps(manifest))
    s3.put_object(Bucket="data-bucket", Key=key, Body=data)
    return root, data, key


def data_app(root: Path, **environ: str) -> LambdaApp:
    return LambdaApp({"DATASETTE_LAMBDA_ROOT": str(root), "DATASETTE_DATA_BUCKET": "data-bucket", **environ})


def follow(url: str, method: str = "GET") -> tuple[int, Any, bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as answer:
        return answer.status, answer.headers, answer.read()


@pytest.mark.parametrize("kind", BUILDERS)
def test_a_download_too_large_for_lambda_redirects_to_s3(tmp_path: Path, s3: Any, kind: str) -> None:
    root, data, key = keyed_bundle(tmp_path, s3)
    app = data_app(root)
    response = app(BUILDERS[kind]("GET", "/fixtures.db"), lambda_context())
    assert response["statusCode"] == 302
    assert response_header(response, "cache-control") == "no-store"
    location = response_header(response, "location")
    assert location is not None
    url = urlsplit(location)
    assert f"{url.scheme}://{url.netloc}" == os.environ["AWS_ENDPOINT_URL"]  # moto, path-style
    assert url.path == f"/data-bucket/{key}"
    signed = parse_qs(url.query)
    assert signed["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and signed["X-Amz-Expires"] == ["300"]
    assert signed["response-content-disposition"] == ['attachment; filename="fixtures.db"']
    status, headers, body = follow(location)
    assert (status, body) == (200, data)
    assert headers["content-disposition"] == 'attachment; filename="fixtures.db"'
    # a database without an S3 key is downloaded from the function as before; pages are untouched
    other = app(BUILDERS[kind]("GET", "/other.db"), None)
    assert other["statusCode"] == 200
    assert response_body(other) == (root / "databases" / "other.db").read_bytes()
    page = app(BUILDERS[kind]("GET", "/fixtures"), None)
    assert page["statusCode"] == 200 and "places" in text(page)


def test_a_head_request_redirects_to_a_head_url(tmp_path: Path, s3: Any) -> None:
    root, data, _ = keyed_bundle(tmp_path, s3)
    response = data_app(root)(function_url_event("HEAD", "/fixtures.db"), None)
    assert response["statusCode"] == 302 and response_body(response) == b""
    location = response_header(response, "location")
    assert location is not None
    status, headers, body = follow(location, "HEAD")
    assert (status, headers["content-length"], body) == (200, str(len(data)), b"")


def test_datasette_still_decides_who_may_download(tmp_path: Path, s3: Any) -> None:
    """Only Datasette's own 200 becomes a redirect: its allow_download setting, its ETag's 304 and
    its 404 for an unknown database stand."""
    root, _, _ = keyed_bundle(tmp_path / "off", s3, settings={"allow_download": False})
    assert data_app(root)(function_url_event("GET", "/fixtures.db"), None)["statusCode"] == 403
    root, data, _ = keyed_bundle(tmp_path / "on", s3)
    app = data_app(root)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'  # the inspect data's hash
    cached = app(function_url_event("GET", "/fixtures.db", headers={"if-none-match": etag}), None)
    assert cached["statusCode"] == 304 and response_header(cached, "location") is None
    assert app(function_url_event("GET", "/nope.db"), None)["statusCode"] == 404


def test_the_redirect_behind_a_base_url_and_for_a_tilde_encoded_name(tmp_path: Path, s3: Any) -> None:
    root, _, key = keyed_bundle(tmp_path / "base", s3, base_url="/data/")
    response = data_app(root)(rest_event("GET", "/data/fixtures.db"), None)
    assert response["statusCode"] == 302
    assert urlsplit(response_header(response, "location") or "").path == f"/data-bucket/{key}"
    # a database named "census.2020" is downloaded at /census~2E2020.db (Datasette's tilde encoding)
    dotted = tmp_path / "dotted"
    inspect = make_database(dotted / "databases" / "census.2020.db", {"t": ("x integer", [(1,)])})
    database = manifest_database(
        "census.2020", dotted / "databases" / "census.2020.db", s3_key="databases/abc/census.2020.db"
    )
    manifest = Manifest(databases=(database,), inspect_data={"census.2020": inspect}, settings={})
    (dotted / "manifest.json").write_text(manifest.to_json())
    response = data_app(dotted)(http_api_event("GET", "/census~2E2020.db"), None)
    assert response["statusCode"] == 302
    assert urlsplit(response_header(response, "location") or "").path == (
        "/data-bucket/databases/abc/census.2020.db"
    )


def test_a_url_that_cannot_be_signed_is_explained(
    tmp_path: Path, no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """No credentials at all (Lambda always gives the function its role's): a 502 that says why."""
    build_bundle(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["databases"][0]["s3_key"] = "databases/abc/fixtures.db"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    response = data_app(tmp_path)(function_url_event("GET", "/fixtures.db"), None)
    message = (
        "datasette-lambda: could not sign a URL for s3://data-bucket/databases/abc/fixtures.db:"
        " Unable to locate credentials"
    )
    assert (response["statusCode"], response["body"]) == (502, message + "\n")
    assert capsys.readouterr().err.count(message) == 1


def test_without_boto3_datasette_answers_itself(
    tmp_path: Path, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As under `serve`, whose bundle has no boto3 (simulated here: this venv has it), the download
    is Datasette's own; the handler's size check then judges it (this one is small)."""
    from datasette_action_entrypoint import downloads

    def no_boto3() -> Any:
        raise ImportError("No module named 'boto3'")

    monkeypatch.setattr(downloads, "default_presigner", no_boto3)
    root, data, _ = keyed_bundle(tmp_path, s3)
    response = data_app(root)(function_url_event("GET", "/fixtures.db"), None)
    assert response["statusCode"] == 200 and response_body(response) == data


# --- the response size as each runtime sends it ---------------------------------------------------


@pytest.mark.parametrize(
    ("execution_env", "python", "unescaped"),
    [
        ("AWS_Lambda_python3.11", (3, 13), False),  # Lambda's runtime, not the interpreter, decides
        ("AWS_Lambda_python3.12", (3, 11), True),
        ("AWS_Lambda_python3.13", (3, 13), True),
        ("AWS_Lambda_python3.14", (3, 14), True),
        (None, (3, 11), False),  # outside Lambda (serve, local-aws): the interpreter's version
        (None, (3, 13), True),
        ("AWS_Lambda_nodejs22.x", (3, 11), False),
    ],
)
def test_which_runtimes_send_non_ascii_unescaped(
    execution_env: str | None, python: tuple[int, int], unescaped: bool
) -> None:
    assert handler_module.keeps_non_ascii(execution_env, python) is unescaped


@pytest.mark.parametrize(("runtime", "status"), [("python3.13", 200), ("python3.11", 502)])
def test_a_utf8_heavy_csv_is_measured_as_the_runtime_sends_it(
    tmp_path: Path, runtime: str, status: int
) -> None:
    """1.5 million "λ": 3 MB as UTF-8 (python3.12+ send that), 9 MB as \\u03bb escapes (3.11)."""
    words = "λ" * 1_500_000
    inspect = make_database(tmp_path / "databases" / "greek.db", {"words": ("word text", [(words,)])})
    database = manifest_database("greek", tmp_path / "databases" / "greek.db")
    manifest = Manifest(databases=(database,), inspect_data={"greek": inspect}, settings={})
    (tmp_path / "manifest.json").write_text(manifest.to_json())
    app = LambdaApp({"DATASETTE_LAMBDA_ROOT": str(tmp_path), "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}"})
    response = app(function_url_event("GET", "/greek/words.csv"), None)
    assert response["statusCode"] == status
    if status == 200:
        assert text(response).splitlines() == ["rowid,word", f"1,{words}"]
    else:
        assert text(response).startswith("The response (9,00")
        assert "larger than AWS Lambda's 6 MB response limit" in text(response)
        assert "a CSV of fewer rows" in text(response)


# --- a fresh process: only the bundle and the dependencies on sys.path ----------------------------

SITE_PACKAGES = Path(datasette.__file__).resolve().parent.parent

# Run after serve's local runtime has answered the events, in the same process (its `handler`, `json`
# and `sys`): was pint's registry built, and does it work? argv[1]: a unit-filter event, or "".
PROBE = textwrap.dedent(
    """
    if sys.argv[1]:
        import datasette.views.base as base
        ureg = getattr(base, "ureg", None)  # Datasette 1.0 alphas have no units
        probe = {"registry": type(ureg).__name__, "built_before": getattr(ureg, "built", None)}
        if ureg is not None:
            probe["pint_imported_before"] = "datasette.vendored.pint" in sys.modules
            probe["units"] = json.loads(handler(json.loads(sys.argv[1]), None)["body"])["filtered_table_rows_count"]
            probe["built_after"] = ureg.built
        print(json.dumps(probe))
    """
)


def run_fresh(
    root: Path, paths: list[Path], events: list[dict[str, Any]], probe: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATASETTE_", "PYTHON"))}
    environ["DATASETTE_SECRET"] = SECRET
    program = bootstrap(paths, HANDLER) + PROBE
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program, json.dumps(probe) if probe else ""],
        input="".join(json.dumps(event) + "\n" for event in events),
        capture_output=True,
        text=True,
        cwd=root,
        env=environ,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def lambda_root(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle as Lambda's code root: the Lambda modules copied in as package does, no
    DATASETTE_LAMBDA_ROOT needed."""
    root = tmp_path_factory.mktemp("task") / "task"
    shutil.copytree(bundle, root)
    (root / LAMBDA_PACKAGE).mkdir()
    for module in LAMBDA_MODULES:
        shutil.copyfile(REPO / "entrypoint" / f"{module}.py", root / LAMBDA_PACKAGE / f"{module}.py")
    return root


def test_fresh_process(lambda_root: Path) -> None:
    events = [
        function_url_event("GET", "/"),
        rest_event("GET", "/fixtures/a%2Fb"),
        rest_event("GET", "/fixtures/a~2Fb.json", query="_shape=array"),
        http_api_event("GET", "/fixtures/places.csv"),
        function_url_event("GET", "/assets/logo.png"),
        function_url_event("GET", "/-/actor.json", cookies=[signed_actor_cookie(SECRET)]),
    ]
    # REPO too: this project is installed in the dev venv in editable mode (a .pth file, which
    # -S skips), and Datasette loads its `datasette publish lambda` plugin from the entry point
    units = function_url_event("GET", "/fixtures/places.json", query="distance__gt=2km")
    *responses, probe = run_fresh(lambda_root, [lambda_root, SITE_PACKAGES, REPO], events, units)
    assert [r["statusCode"] for r in responses] == [200, 302, 200, 200, 200, 200]
    assert "Lambda Test Data" in text(responses[0])
    assert response_header(responses[1], "location") == "/prod/fixtures/a~2Fb"
    assert [row["name"] for row in json.loads(text(responses[2]))] == ["slash-one", "slash-two"]
    assert text(responses[3]).startswith("id,name,kind,size,distance")
    assert response_body(responses[4]) == png_bytes()
    assert json.loads(text(responses[5]))["actor"] == {"id": "root"}
    if DATASETTE_1:
        assert probe == {"registry": "NoneType", "built_before": None}
    else:
        assert probe == {
            "registry": "LazyUnitRegistry",
            "built_before": False,
            "pint_imported_before": False,  # not even imported until a unit filter needs it
            "units": 2,
            "built_after": True,
        }


def test_fresh_process_without_dependencies(lambda_root: Path) -> None:
    """Missing dependencies (a layer not attached) give an explanation, not an import traceback."""
    responses = run_fresh(
        lambda_root, [lambda_root], [function_url_event("GET", "/"), rest_event("GET", "/")]
    )
    assert [r["statusCode"] for r in responses] == [500, 500]
    assert responses[0]["body"] == (
        "datasette-lambda: Datasette could not start: ModuleNotFoundError: No module named 'mangum'\n"
    )
