"""The packaged bundle, run as Lambda would run it: a fresh Python process of the target version
with only the bundle's two trees (unpacked from the very zips that would be uploaded) on
sys.path, fed function URL, HTTP API and REST events; then `datasette-lambda serve` over real
HTTP, and a page opened in headless Chromium.

One real `package` run per session (pip for the Lambda platform, from PyPI with pip's cache).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from datasette_action import events
from datasette_action.build import BuildResult, build
from datasette_action.config import load_config
from datasette_action.errors import UserError
from datasette_action.package import PackageResult, package
from datasette_action.serve import (
    Bundle,
    LocalLambda,
    architecture_warning,
    binding_loads_here,
    bootstrap,
    local_binding,
    local_lambda,
    local_lambdas,
    make_server,
)
from datasette_action.sqlite import PINS, carried_sqlite
from datasette_action_entrypoint.manifest import HANDLER

# A tiny PNG (1x1), to prove binary static files survive the base64 round trip.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass(frozen=True)
class Packaged:
    root: Path
    built: BuildResult
    result: PackageResult


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory, example_copy: Callable[[Path], Path]) -> Packaged:
    """The example project plus a database with a table named "rates/2020" and static files."""
    root = example_copy(tmp_path_factory.mktemp("serve") / "project")
    (root / "data" / "rates.csv").write_text("year,rate\n2020,1.5\n2021,2.25\n")
    (root / "static").mkdir()
    (root / "static" / "site.css").write_text("body { background: #fafafa; }\n")
    (root / "static" / "pixel.png").write_bytes(PNG)
    # the example config, plus a database whose table name holds a "/", plus static files
    config_text = (root / "datasette-lambda.yml").read_text()
    config_text = config_text.replace(
        "\nmetadata: metadata.yml",
        '\n  extras:\n    tables:\n      "rates/2020":\n        source: data/rates.csv\nmetadata: metadata.yml',
    ).replace("\ndatasette:\n", "\ndatasette:\n  static: {assets: static}\n")
    # an arm64 bundle: the preview of a bundle built for another CPU (on an arm64 machine, the real one)
    config_text = config_text.replace("  # architecture: arm64", "  architecture: arm64")
    (root / "datasette-lambda.yml").write_text(config_text)
    config = load_config(root / "datasette-lambda.yml")
    built = build(config)
    return Packaged(root, built, package(config, built))


@pytest.fixture(scope="session")
def function(packaged: Packaged) -> Iterator[LocalLambda]:
    with local_lambda(packaged.result) as running:
        yield running


def get(function: LocalLambda, event: dict[str, Any]) -> tuple[int, dict[str, list[str]], bytes]:
    response = function.invoke(event)
    return response["statusCode"], events.response_headers(response), events.response_body(response)


def test_the_bundle_runs_alone_in_a_fresh_process_of_the_target_python(
    packaged: Packaged, function: LocalLambda
) -> None:
    status, _, body = get(function, events.function_url_event("GET", "/-/versions.json"))
    assert status == 200
    versions = json.loads(body)
    assert versions["python"]["version"].startswith(packaged.result.python + ".")
    # nothing from this machine's site-packages: the datasette running is the bundle's
    status, _, body = get(function, events.function_url_event("GET", "/-/versions.json"))
    assert "/site-packages/" not in body.decode()


def test_the_preview_runs_the_sqlite_lambda_will_run(packaged: Packaged, function: LocalLambda) -> None:
    """The example is an arm64 bundle: on another CPU the local run puts the same sqlean.py release,
    built for this machine, before the layer, so /-/versions still shows the layer's SQLite."""
    status, _, body = get(function, events.function_url_event("GET", "/-/versions.json"))
    assert status == 200
    sqlite = json.loads(body)["sqlite"]
    assert sqlite["version"] == packaged.result.sqlite.version == carried_sqlite(PINS["3.13"])
    assert "FTS5" in sqlite["fts_versions"]
    layer = packaged.result.layer.directory / "python"
    assert binding_loads_here(layer, "aarch64", "Linux") and not binding_loads_here(layer, "x86_64", "Linux")
    assert not binding_loads_here(layer, "aarch64", "Darwin")  # manylinux wheels load on Linux only


def test_full_text_search_and_json_functions_answer_through_the_handler(function: LocalLambda) -> None:
    """FTS5 (Datasette's ?_search= over the example's counties_fts, bm25()) and the JSON functions,
    some newer than this machine's own SQLite 3.40 (jsonb: 3.45, concat_ws: 3.44)."""
    status, _, body = get(
        function,
        events.function_url_event("GET", "/census/counties.json", query="_search=Bay+Minette&_shape=array"),
    )
    assert status == 200 and [row["name"] for row in json.loads(body)] == ["Baldwin County"]
    sql = (
        "select l.name, concat_ws(', ', c.name, c.state) as place, l.tags ->> '$[0]' as first,"
        " json_array_length(jsonb(l.tags)) as tags, bm25(counties_fts) < 0 as ranked"
        " from landmarks l join json_each(l.tags) t on t.value = 'art deco'"
        " join counties c on c.fips = l.county"
        " join counties_fts on counties_fts.rowid = c.rowid and counties_fts match 'county'"
        " order by l.id"
    )
    status, _, body = get(
        function,
        events.function_url_event("GET", "/census.json", query=urlencode({"sql": sql, "_shape": "array"})),
    )
    assert status == 200, body
    assert json.loads(body) == [
        {
            "name": "Golden Gate Bridge",
            "place": "San Francisco County, CA",
            "first": "bridge",
            "tags": 2,
            "ranked": 1,
        },
        {
            "name": "Empire State Building",
            "place": "New York County, NY",
            "first": "skyscraper",
            "tags": 2,
            "ranked": 1,
        },
    ]


def test_sqlean_extensions_stay_off_whatever_the_functions_environment_says(packaged: Packaged) -> None:
    """sqlean.py turns its extension functions on for every connection when SQLEAN_ENABLE* is set;
    the entry point removes those first: no readfile() showing a visitor the function's files."""
    sql = urlencode({"sql": "select readfile('/etc/hostname') as f", "_shape": "array"})
    with local_lambda(packaged.result, env={"SQLEAN_ENABLE": "1", "SQLEAN_ENABLE_FILEIO": "1"}) as function:
        status, _, body = get(function, events.function_url_event("GET", "/census.json", query=sql))
    assert status == 400 and "no such function: readfile" in body.decode()


def test_every_database_and_table_page_answers_a_function_url_event(
    packaged: Packaged, function: LocalLambda
) -> None:
    status, _, body = get(function, events.function_url_event("GET", "/"))
    assert status == 200 and b"Example US data" in body
    for database in packaged.built.databases:
        status, _, _ = get(function, events.function_url_event("GET", f"/{database.name}"))
        assert status == 200, database.name
        for table in database.tables:
            path = f"/{database.name}/{tilde(table.name)}"
            status, _, body = get(function, events.function_url_event("GET", path))
            assert status == 200, path
            status, headers, body = get(
                function, events.function_url_event("GET", path + ".json", query="_shape=objects")
            )
            assert status == 200, path
            assert len(json.loads(body)["rows"]) == min(table.rows, 50)
            status, headers, body = get(function, events.function_url_event("GET", path + ".csv"))
            assert status == 200, path
            assert headers["content-type"][0].startswith("text/plain") or "csv" in headers["content-type"][0]
            assert body.decode().count("\n") == min(table.rows, 50) + 1


def test_sql_queries_static_files_and_the_database_download(
    packaged: Packaged, function: LocalLambda
) -> None:
    status, _, body = get(
        function,
        events.function_url_event(
            "GET", "/census.json", query="sql=select+count(*)+as+n+from+counties&_shape=array"
        ),
    )
    assert status == 200 and json.loads(body) == [{"n": 9}]
    status, _, body = get(function, events.function_url_event("GET", "/assets/pixel.png"))
    assert status == 200 and body == PNG
    status, _, body = get(function, events.function_url_event("GET", "/assets/site.css"))
    assert status == 200 and b"background" in body
    status, _, body = get(function, events.function_url_event("GET", "/census.db"))
    census = next(d for d in packaged.built.databases if d.name == "census")
    assert status == 200 and body == census.path.read_bytes()


def test_a_table_with_a_slash_in_its_name_requested_as_percent_2f(function: LocalLambda) -> None:
    status, headers, _ = get(function, events.function_url_event("GET", "/extras/rates%2F2020"))
    assert status in (301, 302) and headers["location"][0].endswith("/extras/rates~2F2020")
    status, _, body = get(
        function, events.function_url_event("GET", "/extras/rates~2F2020.json", query="_shape=array")
    )
    assert status == 200 and json.loads(body) == [
        {"rowid": 1, "year": 2020, "rate": 1.5},
        {"rowid": 2, "year": 2021, "rate": 2.25},
    ]


def test_http_api_and_rest_events_reach_the_same_site(function: LocalLambda) -> None:
    status, _, body = get(
        function, events.http_api_event("GET", "/census/counties.json", query="_shape=array")
    )
    assert status == 200 and len(json.loads(body)) == 9
    status, _, body = get(function, events.rest_event("GET", "/census/counties", stage="prod"))
    assert status == 200
    page = body.decode()
    assert 'href="/prod/census"' in page or 'href="/prod/census/' in page
    assert "/prod/prod/" not in page


def test_the_serve_http_server_turns_requests_into_events(function: LocalLambda) -> None:
    server = make_server(function, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(
            f"{base}/census/counties.json?_shape=array&_facet=state&_facet=seat"
        ) as r:
            assert r.status == 200
            assert len(json.load(r)) == 9
        with urllib.request.urlopen(f"{base}/assets/pixel.png") as r:
            assert r.read() == PNG
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/no-such-database")
        assert missing.value.code == 404
        missing.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_function_url_events_keep_the_raw_path_and_split_cookies() -> None:
    event = events.http_request_event(
        "GET",
        "/db/a%2Fb?x=1&x=2",
        [("Cookie", "a=1; b=2"), ("Accept", "text/html"), ("Accept", "*/*")],
        b"",
        host="127.0.0.1:8001",
    )
    assert event["rawPath"] == "/db/a%2Fb"
    assert event["rawQueryString"] == "x=1&x=2"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["accept"] == "text/html,*/*"
    assert "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["path"] == "/db/a/b"  # decoded, as AWS sends it
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert "body" not in event and event["isBase64Encoded"] is False


ECHO_HANDLER = """\
import sys

def handler(event, context):
    print("noise from the app")  # must not reach the responses
    if event.get("fail"):
        raise RuntimeError("the handler failed")
    return {"statusCode": 200, "body": event["rawPath"], "function": context.function_name, "path": sys.path}
"""


def test_the_local_runtime_runs_any_handler_with_only_its_paths(tmp_path: Path, capfd: Any) -> None:
    """serve's stdlib runtime (the bundle's own handler by default): one event per line, prints to
    stderr, a failing handler answered 502 as Lambda does, nothing but the bundle and the standard
    library on sys.path."""
    (tmp_path / "echo.py").write_text(ECHO_HANDLER)
    function = LocalLambda(Bundle(paths=(tmp_path,), python=Path(sys.executable), handler="echo.handler"))
    try:
        first = function.invoke(events.function_url_event("GET", "/a"))
        failed = function.invoke({"fail": True})
        second = function.invoke(events.function_url_event("GET", "/b"))
    finally:
        function.close()
    assert (first["statusCode"], first["body"], first["function"]) == (200, "/a", "datasette-local")
    assert (second["statusCode"], second["body"]) == (200, "/b")
    assert failed == {
        "statusCode": 502,
        "headers": {"content-type": "application/json"},
        "body": '{"Message": "Internal Server Error"}',
    }
    assert first["path"][0] == str(tmp_path)
    assert not [p for p in first["path"] if "site-packages" in p or p.startswith(str(Path.cwd()))]
    err = capfd.readouterr().err
    assert err.count("noise from the app") == 3 and "RuntimeError: the handler failed" in err
    assert HANDLER in bootstrap((tmp_path,), HANDLER) and "echo.handler" not in bootstrap(
        (tmp_path,), HANDLER
    )


def test_serve_command_serves_the_example(example_project: Path) -> None:
    project = example_project
    with subprocess.Popen(
        [sys.executable, "-m", "datasette_action", "serve", "--port", "0", "--json"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            line = process.stdout.readline()
            assert line, process.stderr.read()
            url = json.loads(line)["url"]
            with urllib.request.urlopen(url + "census/states.json?_shape=array") as r:
                assert [row["code"] for row in json.load(r)][:2] == ["AL", "AZ"]
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_ctrl_c_stops_serve_cleanly(example_project: Path) -> None:
    """SIGINT (Ctrl-C) reaches serve and its handler processes: a clean exit, no traceback."""
    with subprocess.Popen(
        [sys.executable, "-m", "datasette_action", "serve", "--port", "0", "--json", "--concurrency", "2"],
        cwd=example_project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's Ctrl-C signals
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            line = process.stdout.readline()
            assert line, process.stderr.read()
            with urllib.request.urlopen(json.loads(line)["url"]) as r:
                assert r.status == 200
            os.killpg(process.pid, signal.SIGINT)
            _out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in err.splitlines()


def test_a_burst_of_concurrent_requests_all_get_answers(packaged: Packaged) -> None:
    """50 requests at once to a pool of 2 handler processes: every one queues and gets its 200."""
    with local_lambdas(packaged.result, 2) as pool:
        server = make_server(pool, 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/census/states.json?_shape=array"

        def fetch(_: int) -> int:
            with urllib.request.urlopen(url, timeout=60) as r:
                r.read()
                return int(r.status)

        try:
            with ThreadPoolExecutor(50) as executor:
                statuses = list(executor.map(fetch, range(50)))
        finally:
            server.shutdown()
            server.server_close()
    assert statuses == [200] * 50


def test_concurrency_below_one_is_a_clear_error(packaged: Packaged) -> None:
    with pytest.raises(UserError, match=r"^--concurrency must be at least 1, got 0$"):
        with local_lambdas(packaged.result, 0):
            pass


def tilde(name: str) -> str:
    """Datasette's tilde encoding of a table name in a URL."""
    from urllib.parse import quote

    safe = "".join(c if c.isalnum() or c in "_-" else quote(c, safe="").replace("%", "~") for c in name)
    return safe


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    chromium() is None and not os.environ.get("CI"), reason="Debian's chromium is not installed"
)
def test_a_browser_follows_a_link_from_the_index_to_a_table(function: LocalLambda, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    assert executable, "CI installs chromium (.ci/run): it must be there"
    server = make_server(function, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            page = browser.new_page()
            stylesheets: list[int] = []
            page.on(
                "response",
                lambda r: stylesheets.append(r.status) if urlsplit(r.url).path.endswith(".css") else None,
            )
            page.goto(base + "/")
            assert page.title().startswith("Example US data")
            page.click("text=census")
            page.click("a[href='/census/counties']")
            page.wait_for_load_state("load")
            assert page.url == base + "/census/counties"
            assert page.locator("table.rows-and-columns tbody tr").count() == 9
            assert stylesheets and all(status == 200 for status in stylesheets)
            # Datasette's stylesheet really applied: its table cells have padding
            padding = page.eval_on_selector("table.rows-and-columns td", "e => getComputedStyle(e).padding")
            assert padding not in ("", "0px")
            screenshot = tmp_path / "counties.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            if os.environ.get("SCREENSHOT_DIR"):  # keep it, e.g. as a CI artifact
                shutil.copyfile(screenshot, Path(os.environ["SCREENSHOT_DIR"]) / "counties.png")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_datasette_1_0_alpha_bundle_serves_warm_requests(tmp_path: Path) -> None:
    """Datasette 1.0 alphas take settings through config= and close their databases on lifespan
    shutdown: the bundle must answer a second, warm request too (FACTS: lifespan trap)."""
    (tmp_path / "data.csv").write_text("id,name\n1,one\n2,two\n")
    (tmp_path / "datasette-lambda.yml").write_text(
        "stack: alpha\n"
        "databases:\n  d:\n    tables:\n      t: {source: data.csv, pk: id}\n"
        'datasette:\n  version: "1.0a41"\n  settings: {default_page_size: 1}\n'
    )
    config = load_config(tmp_path / "datasette-lambda.yml")
    result = package(config, build(config))
    assert "datasette==1.0a41" in result.requirements
    with local_lambda(result) as running:
        for _ in range(2):  # cold, then warm
            status, _, body = get(running, events.function_url_event("GET", "/d/t.json"))
            assert status == 200, body[:500]
            data = json.loads(body)
            assert data["rows"] == [{"id": 1, "name": "one"}]  # default_page_size reached it
        status, _, body = get(running, events.function_url_event("GET", "/-/versions.json"))
        assert json.loads(body)["datasette"]["version"] == "1.0a41"


def test_serving_a_bundle_built_for_another_cpu_warns() -> None:
    assert architecture_warning("x86_64", machine="x86_64") is None
    assert architecture_warning("arm64", machine="aarch64") is None
    warning = architecture_warning("arm64", machine="x86_64")
    assert warning is not None and warning.startswith(
        "this bundle is built for arm64 (lambda.architecture) and this machine is x86_64"
    )
    assert architecture_warning("arm64", machine="riscv64") is None  # unknown: say nothing


def test_a_busy_port_is_a_clear_error(function: LocalLambda) -> None:
    first = make_server(function, 0)
    try:
        port = first.server_address[1]
        with pytest.raises(UserError) as caught:
            make_server(function, port)
        assert str(caught.value).startswith(f"cannot listen on 127.0.0.1:{port}: ")
        assert str(caught.value).endswith("pass another port with -p (or -p 0 for any free port)")
    finally:
        first.server_close()


def test_the_binding_for_this_machine_is_installed_once_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle for another CPU runs locally on the same SQLite release built for this machine:
    pip runs on the first local run only (a per-user cache), so later runs work offline."""
    from datasette_action import serve as serve_module

    installs: list[Path] = []
    real_install = serve_module.install_for_this_machine

    def counted(python: str, wanted: tuple[str, ...], destination: Path) -> None:
        installs.append(destination)  # a spy: the real pip install still runs
        real_install(python, wanted, destination)

    monkeypatch.setattr(serve_module, "install_for_this_machine", counted)
    version = PINS["3.13"]
    first = local_binding("3.13", version, cache=tmp_path)
    again = local_binding("3.13", version, cache=tmp_path)
    assert first == again and len(installs) == 1
    assert list((first / "sqlean").glob("_sqlite3*.so")) and (first.parent / first.name).is_dir()
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no scratch directory left


def test_serve_previews_a_config_without_an_architecture_on_this_machines_cpu(tmp_path: Path) -> None:
    from datasette_action.config import load_config
    from datasette_action.serve import for_this_machine

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a\n1\n")
    base = "stack: s\ndatabases: {d: {tables: {t: data/x.csv}}}\n"
    (tmp_path / "unset.yml").write_text(base)
    (tmp_path / "set.yml").write_text(base + "lambda: {architecture: x86_64}\n")
    unset, set_ = load_config(tmp_path / "unset.yml"), load_config(tmp_path / "set.yml")
    preview, note = for_this_machine(unset, machine="aarch64")
    assert preview.lambda_.architecture == "arm64" and unset.lambda_.architecture == "x86_64"
    assert note == (
        "previewing for this machine's arm64 (the config does not set lambda.architecture; a deploy"
        " packages for x86_64)"
    )
    assert for_this_machine(unset, machine="x86_64") == (unset, None)
    assert for_this_machine(set_, machine="aarch64") == (set_, None)  # the config insists
    assert for_this_machine(unset, machine="riscv64") == (unset, None)  # no Lambda CPU: as written
