"""A burst of concurrent requests to `datasette-lambda serve`: before (one handler process, the old
listen backlog of 5) and after (the new defaults: `--concurrency` = the number of cores, backlog
`serve.BACKLOG`), in one run.

The example project (example/, copied to `benchmarks/.work/serve-burst/`) is built and packaged
once; for each setting its bundle is served on 127.0.0.1 (loopback only) and sent `--requests`
concurrent GETs of `/census/states.json?_shape=array` (each thread opens its own connection at
once, a 30-second timeout each). Printed per setting: errors (connection resets or refusals,
timeouts, non-200 answers) and the p50/p95 latency of the answered requests.

    .venv/bin/python benchmarks/serve_burst.py [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from datasette_action.build import build
from datasette_action.config import load_config
from datasette_action.package import package
from datasette_action.serve import BACKLOG, local_lambdas, make_server

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work" / "serve-burst"
PATH = "/census/states.json?_shape=array"


def burst(url: str, count: int) -> tuple[list[float], dict[str, int]]:
    """`count` requests released at once; their latencies (s) and the errors by kind."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(count)

    def one() -> None:
        start.wait()
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
                kind = None if response.status == 200 else f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            kind = f"HTTP {error.code}"
        except (OSError, urllib.error.URLError) as error:
            reason = getattr(error, "reason", error)
            kind = type(reason).__name__
        with lock:
            if kind is None:
                latencies.append(time.perf_counter() - began)
            else:
                errors[kind] = errors.get(kind, 0) + 1

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return latencies, errors


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    count = max(1, min(args.requests, 1000))  # bounded
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(ROOT / "example", WORK, ignore=shutil.ignore_patterns(".datasette-lambda"))
    config = load_config(WORK / "datasette-lambda.yml")
    result = package(config, build(config))
    cores = os.cpu_count() or 1
    settings = [("before", 1, 5), ("after", cores, BACKLOG)]
    print(f"{count} concurrent GET {PATH}, {cores} cores")
    print(f"{'':8}{'concurrency':>12}{'backlog':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}  error kinds")
    for name, concurrency, backlog in settings:
        with local_lambdas(result, concurrency) as pool:
            server = make_server(pool, 0, backlog=backlog)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_address[1]}{PATH}"
            try:
                for _ in range(concurrency * 2):  # warm every process (its cold start is not the burst)
                    with urllib.request.urlopen(url, timeout=60) as response:
                        response.read()
                latencies, errors = burst(url, count)
            finally:
                server.shutdown()
                server.server_close()
        failed = sum(errors.values())
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(errors.items())) or "-"
        print(
            f"{name:8}{concurrency:>12}{backlog:>9}{failed:>8}"
            f"{1000 * percentile(latencies, 0.5):>9.0f}{1000 * percentile(latencies, 0.95):>9.0f}  {kinds}"
        )


if __name__ == "__main__":
    main()
