"""Cold start, bundle size and warm latency: this project's Lambda bundle vs a naive one.

  naive: `pip install --target DIR --platform manylinux2014_x86_64 --implementation cp
         --python-version 3.13 --only-binary=:all: datasette mangum` (pip's defaults otherwise), then
         every __pycache__ pip wrote deleted (they are for the Python running pip, and Lambda's code
         directory is read-only: no .pyc can be written there either), plus a five-line handler
         module: `Mangum(Datasette(files=[<bundle>/db.db]).app(), lifespan="off")`, Datasette's default
         settings (mutable database, no inspect data). (Datasette 0.65 has no `__call__`: the ASGI app
         is `.app()`.)
  ours:  `datasette-lambda package` for a config with the same database: the function code tree
         (`result.function.directory`) and the layer's `python/`, handler
         `datasette_action_entrypoint.handler.handler`.

Both serve the same SQLite file, built once by this project's build stage from a generated
200,000-row CSV (`benchmarks/.work/cold-start/`, kept with the naive pip tree so reruns are fast).

1. Cold start: a fresh `python3.13 -I -S -B` process per run with only that bundle on sys.path (-B is
   PYTHONDONTWRITEBYTECODE=1, which -I would ignore; no .pyc may be in the naive tree, and the runs
   must add none to either tree), timed from just before the process is spawned to the end of each of three responses to
   Lambda function URL events: `/`, `/db/t.json`, then a SQL query `/db?sql=select+count(*)+from+t`.
   Runs are interleaved (with a bare `python3.13 -I -S -B -c pass` for scale), medians reported.
   Target (the issue): ours at most 0.3x naive.
2. Size of the dependencies: the naive tree zipped (DEFLATED, as pip leaves it with its .pyc for the
   running Python, and with them stripped) vs our layer zip. Target: ours at most 0.45x naive zipped.
   This naive tree has no SQLite of its own (its handler runs the interpreter's); bundle_size.py
   also compares with one that has sqlean.py, like our layer, which is the target's baseline there.
3. Warm latency, in one python3.13 process on our bundle: our handler with function URL events vs
   the same requests to the handler's own Datasette app (built by
   `datasette_action_entrypoint.app.make_site`, the `ds.app()` inside its Mangum(RawPathApp(...)))
   called directly over ASGI with the scope an ASGI server would give it, and, to split the
   difference, that app behind a bare `Mangum(app, lifespan="off")`. Interleaved, medians per
   request, and the median of the paired differences with a 95% confidence interval. Target: the
   handler no slower than direct ASGI within noise (the interval of handler - direct reaches 0).

The machine is shared and noisy: read the ratios, not the absolute times. Needs PyPI (or pip's
cache) on the first run and a Python 3.13 (on PATH or pyenv).

    .venv/bin/python benchmarks/cold_start.py [--rounds 7] [--iterations 150]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from build_speed import make_csv
from bundle_size import TARGET_RATIO as SIZE_TARGET

from datasette_action.build import build
from datasette_action.config import load_config
from datasette_action.events import function_url_event
from datasette_action.package import PackageResult, package
from datasette_action.pyc import find_interpreter
from datasette_action.zips import tree_files, write_zip

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "cold-start"
PYTHON = "3.13"
MACHINE = "x86_64"
ROWS = 200_000
DATABASE, TABLE = "db", "t"
COLD_TARGET = 0.3
NAIVE_HANDLER = "naive_handler"
NAIVE_HANDLER_SOURCE = """\
import os
from mangum import Mangum
from datasette.app import Datasette
app = Datasette(files=[os.path.join(os.path.dirname(__file__), "db.db")]).app()
handler = Mangum(app, lifespan="off")
"""
# Flags of every measured process: isolated (no PYTHON* variables, no user site), no site-packages,
# no .pyc written (Lambda's code directory is read-only).
FLAGS = ("-I", "-S", "-B")
CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "DATASETTE_SECRET": "cold-start-benchmark",
}

# The tiny runner: started at `t0` (time.monotonic() in the parent, the same clock system-wide),
# imports the handler module, answers the events in order and prints the elapsed times and responses.
COLD_RUNNER = """\
import sys, time, json
t0, module, events_file = float(sys.argv[1]), sys.argv[2], sys.argv[3]
sys.path[:0] = sys.argv[4:]
with open(events_file) as f:
    events = json.load(f)
class Context:
    function_name = "cold-start"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    def get_remaining_time_in_millis(self):
        return 30000
handler = __import__(module, fromlist=["handler"]).handler
marks = [time.monotonic() - t0]
responses = []
for event in events:
    responses.append(handler(event, Context()))
    marks.append(time.monotonic() - t0)
print(json.dumps({"marks": marks, "responses": responses}))
"""

# Warm latency, in one process on our bundle (argv: events file, iterations, warm-up, then sys.path).
WARM_RUNNER = """\
import asyncio, json, sys, time
from urllib.parse import unquote
events_file, iterations, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path[:0] = sys.argv[4:]
with open(events_file) as f:
    events = json.load(f)
import datasette_action_entrypoint.handler
from datasette_action_entrypoint.handler import handler
from mangum import Mangum

class Context:
    function_name = "warm"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    def get_remaining_time_in_millis(self):
        return 30000

context = Context()
handler(events[0], context)  # sets up the handler (and the thread's event loop)
loop = asyncio.get_event_loop()
# The handler's own Datasette (datasette_action_entrypoint.app.make_site): Mangum(RawPathApp(ds.app())).
site = datasette_action_entrypoint.handler._app.site_for(events[0])
app = site.app.app
assert type(site.app).__name__ == "RawPathApp", type(site.app)
bare_mangum = Mangum(app, lifespan="off")

def direct(event):
    # What an ASGI server hands the app for the same request.
    path = event["rawPath"]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": event["requestContext"]["http"]["method"], "scheme": "https",
        "path": unquote(path), "raw_path": path.encode("ascii"),
        "query_string": event["rawQueryString"].encode("ascii"), "root_path": "",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in event["headers"].items()],
        "client": (event["requestContext"]["http"]["sourceIp"], 0),
        "server": (event["headers"]["host"], 443),
    }
    messages = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        messages.append(message)
    loop.run_until_complete(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return {"statusCode": messages[0]["status"], "body": body}

modes = {
    "handler": lambda event: handler(event, context),
    "mangum": lambda event: bare_mangum(event, context),
    "direct": direct,
}
for event in events:
    for _ in range(warmup):
        for call in modes.values():
            call(event)
times = {name: [[] for _ in events] for name in modes}
names = list(modes)
for i in range(iterations):
    for e, event in enumerate(events):
        shift = (i + e) % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order
            started = time.perf_counter()
            response = modes[name](event)
            elapsed = time.perf_counter() - started
            if response["statusCode"] != 200:
                raise SystemExit(f"{name} {event['rawPath']}: status {response['statusCode']}")
            times[name][e].append(elapsed)
print(json.dumps(times))
"""


# -- data and bundles ---------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_data() -> Path:
    csv_path = WORK / f"{TABLE}.csv"
    if not csv_path.exists():
        log(f"writing {csv_path} ({ROWS:,} rows)")
        partial = csv_path.with_suffix(".partial")
        make_csv(partial, ROWS)
        partial.replace(csv_path)
    return csv_path


def build_ours(csv_path: Path) -> PackageResult:
    config_path = WORK / "datasette-lambda.yml"
    config_path.write_text(
        f"stack: cold-start\n"
        f"databases:\n  {DATABASE}:\n    tables:\n      {TABLE}: {{source: {csv_path.name}, pk: id}}\n"
        f'lambda: {{python: "{PYTHON}", architecture: {MACHINE}}}\n'
    )
    config = load_config(config_path)
    log("building and packaging ours (the layer is cached after the first run)")
    result = package(config, build(config), log=lambda message: log(f"  {message}"))
    if not result.compiled:
        log("  warning: our bundle has no .pyc (no Python 3.13 found when packaging)")
    return result


def pip_tree() -> Path:
    """The naive pip --target tree as pip's defaults leave it (.pyc for the running Python)."""
    tree = WORK / "naive-pip-default"
    argv = [sys.executable, "-m", "pip", "install", "--target", str(tree), "--quiet"]
    argv += ["--platform", f"manylinux2014_{MACHINE}", "--implementation", "cp"]
    argv += ["--python-version", PYTHON, "--only-binary=:all:", "datasette", "mangum"]
    marker = WORK / "naive-pip-default.json"
    if tree.is_dir() and marker.exists() and json.loads(marker.read_text()).get("argv") == argv[1:]:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    log("pip install for the naive bundle: " + " ".join(argv[3:]))
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pip failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    marker.write_text(json.dumps({"argv": argv[1:]}))
    return tree


def is_pyc(path: Path) -> bool:
    return path.suffix == ".pyc" or "__pycache__" in path.parts


def naive_bundle(pip_default: Path, database: Path) -> tuple[Path, dict[str, int]]:
    """The naive bundle (the pip tree without .pyc, the handler, the database) and the zipped and
    unzipped sizes of its dependencies, with and without pip's .pyc."""
    bundle = WORK / "naive"
    sizes_file = WORK / "naive-sizes.json"
    marker = (WORK / "naive-pip-default.json").read_text()
    cached = json.loads(sizes_file.read_text()) if sizes_file.exists() else {}
    if not bundle.is_dir() or cached.get("marker") != marker:
        log("making the naive bundle and zipping its dependencies (cached after the first run)")
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.copytree(pip_default, bundle, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with_pyc = write_zip(pip_default, WORK / "naive-pip-default.zip", prefix="python/")
        stripped = write_zip(bundle, WORK / "naive.zip", prefix="python/")
        cached = {
            "marker": marker,
            "pip_default_zipped": with_pyc.zipped_size,
            "pip_default_unzipped": with_pyc.unzipped_size,
            "stripped_zipped": stripped.zipped_size,
            "stripped_unzipped": stripped.unzipped_size,
        }
        sizes_file.write_text(json.dumps(cached))
    (bundle / f"{NAIVE_HANDLER}.py").write_text(NAIVE_HANDLER_SOURCE)
    target = bundle / f"{DATABASE}.db"
    target.unlink(missing_ok=True)
    try:
        os.link(database, target)
    except OSError:
        shutil.copyfile(database, target)
    return bundle, cached


def datasette_version(tree: Path) -> str:
    for line in (tree / "datasette" / "version.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def pyc_files(roots: Sequence[Path]) -> set[Path]:
    return {path for root in roots for path in tree_files(root) if is_pyc(path)}


# -- measuring -------------------------------------------------------------------------------------


def sql_path(version: str) -> str:
    """The database's SQL query page: `/db?sql=` in 0.65, `/db/-/query?sql=` in the 1.0 alphas."""
    return f"/{DATABASE}" if version.startswith("0.") else f"/{DATABASE}/-/query"


def requests(version: str) -> list[tuple[str, str | None]]:
    return [
        ("/", None),
        (f"/{DATABASE}/{TABLE}.json", None),
        (sql_path(version), f"sql=select+count(*)+from+{TABLE}"),
    ]


def write_events(version: str) -> Path:
    events = [function_url_event("GET", path, query=query) for path, query in requests(version)]
    path = WORK / "events.json"
    path.write_text(json.dumps(events))
    return path


def check_responses(name: str, responses: list[dict[str, Any]]) -> None:
    for (path, _), response in zip(requests("0"), responses):
        if response.get("statusCode") != 200:
            raise SystemExit(
                f"{name}: {path} answered {response.get('statusCode')}: {response.get('body')!r:.500}"
            )
    table = json.loads(responses[1]["body"])
    if len(table.get("rows", [])) == 0:
        raise SystemExit(f"{name}: the table JSON has no rows")
    if str(ROWS) not in responses[2]["body"]:
        raise SystemExit(f"{name}: the SQL page does not show count(*) = {ROWS}")


def cold_run(interpreter: Path, module: str | None, events: Path, paths: Sequence[Path]) -> list[float]:
    """One fresh process: seconds from spawn to the import, and to the end of each response."""
    if module is None:  # the bare interpreter, for scale
        argv = [str(interpreter), *FLAGS, "-c", "pass"]
    else:
        argv = [str(interpreter), *FLAGS, "-c", COLD_RUNNER, "", module, str(events), *map(str, paths)]
    started = time.monotonic()
    if module is None:
        subprocess.run(argv, check=True, env=CHILD_ENV)
        return [time.monotonic() - started]
    argv[argv.index("")] = repr(started)
    done = subprocess.run(argv, capture_output=True, text=True, env=CHILD_ENV, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{module} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    check_responses(module, result["responses"])
    return [float(mark) for mark in result["marks"]]


def measure_cold(
    interpreter: Path, events: Path, bundles: dict[str, tuple[str | None, list[Path]]], rounds: int
) -> dict[str, list[list[float]]]:
    # Check the read-only setup: no .pyc in the naive tree, and no run writes any anywhere.
    trees = [path for _, paths in bundles.values() for path in paths]
    before = pyc_files(trees)
    if any(bundles["naive"][1][0] in path.parents for path in before):
        raise SystemExit("the naive tree has .pyc files")
    for module, paths in bundles.values():  # untimed: fills the page cache, checks answers
        cold_run(interpreter, module, events, paths)
    runs: dict[str, list[list[float]]] = {name: [] for name in bundles}
    names = list(bundles)
    for round_ in range(rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            module, paths = bundles[name]
            runs[name].append(cold_run(interpreter, module, events, paths))
        log(
            f"  cold round {round_ + 1}/{rounds}: "
            + ", ".join(f"{n} {runs[n][-1][-1] * 1000:.0f} ms" for n in names)
        )
    if pyc_files(trees) != before:
        raise SystemExit("a run wrote .pyc files into a bundle: the read-only check failed")
    return runs


def measure_warm(
    interpreter: Path, events: Path, paths: Sequence[Path], iterations: int, warmup: int
) -> dict[str, list[list[float]]]:
    argv = [str(interpreter), *FLAGS, "-c", WARM_RUNNER, str(events), str(iterations), str(warmup)]
    done = subprocess.run(
        [*argv, *map(str, paths)], capture_output=True, text=True, env=CHILD_ENV, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"warm run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    times: dict[str, list[list[float]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return times


# -- reporting ---------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def median_ci(samples: Sequence[float]) -> tuple[float, float, float]:
    """The median and a distribution-free ~95% confidence interval for it (binomial order statistics)."""
    ordered = sorted(samples)
    n = len(ordered)
    k = max(0, int(n / 2 - 1.96 * math.sqrt(n) / 2))
    return statistics.median(ordered), ordered[k], ordered[min(n - 1, n - 1 - k)]


def report_cold(runs: dict[str, list[list[float]]], rounds: int) -> float:
    print(
        f"\n1. Cold start: python{PYTHON} {' '.join(FLAGS)}, only the bundle on sys.path, function URL events"
    )
    print(f"   median of {rounds} interleaved runs, ms from process spawn to the end of each step")
    steps = ("import", '+ "/"', f"+ /{DATABASE}/{TABLE}.json", "+ SQL = total")
    print(f"   {'':<16}" + "".join(f"{s:>18}" for s in steps) + "   every total")
    medians = {
        name: [statistics.median(run[i] for run in runs[name]) for i in range(4)]
        for name in ("naive", "ours")
    }
    for name, label in (("naive", "naive bundle"), ("ours", "ours (package)")):
        totals = " ".join(ms(run[-1]) for run in runs[name])
        print(f"   {label:<16}" + "".join(f"{ms(m):>18}" for m in medians[name]) + f"   {totals}")
    ratios = [o / n for o, n in zip(medians["ours"], medians["naive"])]
    print(f"   {'ours / naive':<16}" + "".join(f"{r:>17.2f}x" for r in ratios))
    per_round = sorted(o[-1] / n[-1] for o, n in zip(runs["ours"], runs["naive"]))
    bare = statistics.median(run[0] for run in runs["bare"])
    print(f"   total ratio round by round: {per_round[0]:.2f}x to {per_round[-1]:.2f}x")
    print(f"   (a bare python{PYTHON} {' '.join(FLAGS)} -c pass takes {ms(bare)} ms, included in both)")
    return ratios[-1]


def without_pyc(zip_path: Path) -> int:
    """The size of `zip_path` had it been written without its .pyc entries (same compression)."""
    with zipfile.ZipFile(zip_path) as archive:
        kept = [info for info in archive.infolist() if not is_pyc(Path(info.filename))]
    # Each entry: a local header (30 bytes + name) and a central directory record (46 + name); then 22.
    return sum(info.compress_size + 76 + 2 * len(info.filename.encode()) for info in kept) + 22


def report_sizes(result: PackageResult, naive: dict[str, int]) -> tuple[float, float]:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    ours_zipped, ours_unzipped = result.layer.zipped_size, result.layer.unzipped_size
    print("\n2. Dependencies, zipped (DEFLATED) and unzipped")
    rows = [
        (f"naive, pip default (.pyc {running})", naive["pip_default_zipped"], naive["pip_default_unzipped"]),
        ("naive, .pyc stripped", naive["stripped_zipped"], naive["stripped_unzipped"]),
    ]
    layer = "ours: the layer" + (f" (.pyc {PYTHON})" if result.compiled else " (no .pyc)")
    print(f"   {'':<40} {'zipped':>10} {'unzipped':>10}")
    for name, zipped, unzipped in [*rows, (layer, ours_zipped, ours_unzipped)]:
        print(f"   {name:<40} {zipped / 1e6:>7.1f} MB {unzipped / 1e6:>7.1f} MB")
    ratios = []
    for name, zipped, unzipped in rows:
        ratios.append(ours_zipped / zipped)
        print(f"   {'ours / ' + name:<40} {ours_zipped / zipped:>9.2f}x {ours_unzipped / unzipped:>9.2f}x")
    if result.compiled:
        bare = without_pyc(result.layer.zip_path)
        print(
            f"   (our layer without its .pyc would zip to {bare / 1e6:.1f} MB,"
            f" {bare / naive['stripped_zipped']:.2f}x the stripped naive zip: the .pyc make up"
            f" {(ours_zipped - bare) / 1e6:.1f} MB)"
        )
    print(
        f"   (function code, for reference: {result.function.zipped_size / 1e6:.1f} MB zipped,"
        f" {result.function.unzipped_size / 1e6:.1f} MB unzipped, nearly all of it the database)"
    )
    return ratios[0], ratios[1]


def report_warm(times: dict[str, list[list[float]]], labels: list[str], iterations: int) -> tuple[bool, str]:
    print(f"\n3. Warm requests in one python{PYTHON} process on our bundle: median ms per request")
    print(
        f"   ({iterations} interleaved iterations after warm-up; one Datasette instance, the handler's own)"
    )
    modes = (
        ("handler", "our handler (function URL event)"),
        ("mangum", "bare Mangum(app), same event"),
        ("direct", "the app over ASGI directly"),
    )
    print(f"   {'':<34}" + "".join(f"{label:>16}" for label in labels) + f"{'mean':>10}")
    medians = {name: [statistics.median(t) for t in times[name]] for name, _ in modes}
    for name, label in modes:
        row = medians[name]
        print(
            f"   {label:<34}"
            + "".join(f"{m * 1000:>16.3f}" for m in row)
            + f"{statistics.mean(row) * 1000:>10.3f}"
        )
    ratios = [h / d for h, d in zip(medians["handler"], medians["direct"])]
    ratio = sum(medians["handler"]) / sum(medians["direct"])
    print(f"   {'handler / direct':<34}" + "".join(f"{r:>15.2f}x" for r in ratios) + f"{ratio:>9.2f}x")
    # Paired differences (the same iteration, adjacent in time) cancel most of the machine's drift;
    # per iteration, averaged over the requests.
    count = len(labels)
    pairs = (
        ("handler", "direct", "handler - direct"),
        ("handler", "mangum", "  our wrapper: handler - Mangum"),
    )
    pairs += (("mangum", "direct", "  Mangum: Mangum - direct"),)
    print("   extra ms per request, paired: median [95% CI]")
    results = {}
    for a, b, label in pairs:
        diffs = [
            sum(times[a][e][i] - times[b][e][i] for e in range(count)) / count
            for i in range(len(times[a][0]))
        ]
        median, low, high = median_ci(diffs)
        results[(a, b)] = (median, low, high)
        print(f"   {label:<34}{median * 1000:>+16.3f}  [{low * 1000:+.3f}, {high * 1000:+.3f}]")
    median, low, _high = results[("handler", "direct")]
    summary = f"{ratio:.2f}x, {median * 1000:+.3f} ms/request"
    return low <= 0, summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7, help="cold starts of each bundle (default 7)")
    parser.add_argument(
        "--iterations", type=int, default=150, help="warm requests per URL and mode (default 150)"
    )
    args = parser.parse_args()
    interpreter = find_interpreter(PYTHON)
    if interpreter is None:
        raise SystemExit(f"python{PYTHON} was not found (on PATH or in pyenv)")
    WORK.mkdir(parents=True, exist_ok=True)

    csv_path = make_data()
    result = build_ours(csv_path)
    database = result.function.directory / "databases" / f"{DATABASE}.db"
    naive_tree, naive_sizes = naive_bundle(pip_tree(), database)
    ours_paths = list(result.python_path)
    versions = {"naive": datasette_version(naive_tree), "ours": datasette_version(ours_paths[-1])}
    events = write_events(versions["ours"])
    labels = ["/", f"/{DATABASE}/{TABLE}.json", "SQL count(*)"]

    print(f"python{PYTHON}: {interpreter}")
    print(
        f"Datasette {versions['naive']} (naive) / {versions['ours']} (ours); {ROWS:,}-row table,"
        f" database {database.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    bundles: dict[str, tuple[str | None, list[Path]]] = {
        "naive": (NAIVE_HANDLER, [naive_tree]),
        "ours": ("datasette_action_entrypoint.handler", ours_paths),
        "bare": (None, []),
    }
    log(f"measuring cold starts ({args.rounds} rounds)")
    runs = measure_cold(interpreter, events, bundles, args.rounds)
    log(f"measuring warm requests ({args.iterations} iterations)")
    warm = measure_warm(interpreter, events, ours_paths, args.iterations, warmup=20)

    cold_ratio = report_cold(runs, args.rounds)
    size_default, size_stripped = report_sizes(result, naive_sizes)
    warm_ok, warm_summary = report_warm(warm, labels, args.iterations)

    print("\ntargets")
    rows = [
        (f"cold start, ours <= {COLD_TARGET}x naive", f"{cold_ratio:.2f}x", cold_ratio <= COLD_TARGET),
        (
            f"deps zip, ours <= {SIZE_TARGET}x naive without sqlean.py (pip default, the issue's)",
            f"{size_default:.2f}x",
            size_default <= SIZE_TARGET,
        ),
        (
            f"deps zip, ours <= {SIZE_TARGET}x naive without sqlean.py (.pyc stripped)",
            f"{size_stripped:.2f}x",
            size_stripped <= SIZE_TARGET,
        ),
        ("warm, handler no slower than direct ASGI (within noise: 95% CI reaches 0)", warm_summary, warm_ok),
    ]
    for name, value, ok in rows:
        print(f"   {name:<74} {value:>26}   {verdict(ok)}")


if __name__ == "__main__":
    main()
