"""Build speed: a 1,000,000-row, 8-column mixed-type CSV loaded by

  (a) this project (`datasette-lambda build`, type detection on),
  (b) the sqlite3 command line's `.import` into a typed table (the practical floor),
  (c) `sqlite-utils insert --csv` (type detection on; ~70 s, run once, skip with --quick).

Runs (a) and (b) interleaved, several rounds, and prints the median times, the ratio to (b), the
CPU time (user + system, workers included: (a) spreads its work over the cores, so its CPU time
is larger than its wall time) and peak memory (the largest resident set of the process and its
workers). The machine is shared and noisy: read the ratios, not the absolute times. Target
(issue 2): (a) at most 1.5x (b), peak memory under 200 MB.

    python benchmarks/build_speed.py [--rows N] [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
BIN = Path(sys.executable).parent
COLUMNS = ["id", "name", "category", "amount", "ratio", "count", "code", "note"]
TYPED_SCHEMA = (
    "CREATE TABLE rows (id INTEGER, name TEXT, category TEXT, amount INTEGER, ratio REAL,"
    " count INTEGER, code TEXT, note TEXT);"
)


def make_csv(path: Path, rows: int) -> None:
    """Mixed types: integers (some negative, some empty), floats, text, zero-padded codes."""
    rng = random.Random(42)
    categories = ["alpha", "beta", "gamma", "delta", "epsilon"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(rows):
            writer.writerow(
                [
                    i,
                    f"name {i}",
                    rng.choice(categories),
                    rng.randint(-100_000, 100_000),
                    f"{rng.random() * 1000:.3f}",
                    rng.randint(0, 50) if i % 10 else "",
                    f"{rng.randint(0, 99_999):05d}",
                    'some text, "quoted"' if i % 3 == 0 else ("" if i % 3 == 1 else "plain"),
                ]
            )


@dataclass(frozen=True)
class Run:
    seconds: float  # wall time
    cpu: float  # user + system seconds, with the workers it waited for
    peak_mb: float  # the largest resident set among them


def run(argv: list[str], cwd: Path, stdin: bytes | None = None) -> Run:
    """One run of a command, measured with the workers it waits for."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stderr is not None
    if stdin:
        process.stdin.write(stdin)
    process.stdin.close()
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({process.returncode}): {errors.decode()[-2000:]}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def ours(csv_path: Path) -> Run:
    config = WORK / "datasette-lambda.yml"
    config.write_text(
        f"stack: bench\ndatabases:\n  bench:\n    tables:\n      rows:\n        source: {csv_path.name}\n"
    )
    shutil.rmtree(WORK / ".datasette-lambda", ignore_errors=True)
    return run([str(BIN / "datasette-lambda"), "build", "-c", str(config)], WORK)


def sqlite3_cli(csv_path: Path) -> Run:
    database = WORK / "cli.db"
    database.unlink(missing_ok=True)
    script = f"{TYPED_SCHEMA}\n.mode csv\n.import --skip 1 {csv_path.name} rows\n"
    return run(["sqlite3", str(database)], WORK, stdin=script.encode())


def sqlite_utils_cli(csv_path: Path) -> Run:
    database = WORK / "sqlite-utils.db"
    database.unlink(missing_ok=True)
    return run([str(BIN / "sqlite-utils"), "insert", str(database), "rows", csv_path.name, "--csv"], WORK)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip sqlite-utils (about 70 s)")
    args = parser.parse_args()
    if not shutil.which("sqlite3"):
        raise SystemExit("the sqlite3 command line is needed: apt-get install sqlite3")
    WORK.mkdir(exist_ok=True)
    csv_path = WORK / f"mixed-{args.rows}.csv"
    if not csv_path.exists():
        print(f"writing {csv_path.name} ...", file=sys.stderr)
        make_csv(csv_path, args.rows)
    size_mb = csv_path.stat().st_size / 1e6
    print(f"{args.rows:,} rows x {len(COLUMNS)} columns, {size_mb:.1f} MB CSV, {os.cpu_count()} cores")

    runs: dict[str, list[Run]] = {"ours": [], "sqlite3": []}
    for _ in range(args.rounds):  # interleaved, so both see the same machine
        for name, tool in (("sqlite3", sqlite3_cli), ("ours", ours)):
            runs[name].append(tool(csv_path))
    if not args.quick:
        runs["sqlite-utils"] = [sqlite_utils_cli(csv_path)]

    floor = statistics.median(r.seconds for r in runs["sqlite3"])
    labels = {
        "ours": "(a) datasette-lambda build",
        "sqlite3": "(b) sqlite3 CLI .import (typed)",
        "sqlite-utils": "(c) sqlite-utils insert --csv",
    }
    print(f"{'tool':<34}{'median s':>10}  {'runs':>30}{'x sqlite3':>11}{'cpu s':>8}{'peak MB':>9}")
    for name, measured in runs.items():
        times = " ".join(f"{r.seconds:.2f}" for r in measured)
        median = statistics.median(r.seconds for r in measured)
        cpu = statistics.median(r.cpu for r in measured)
        peak = max(r.peak_mb for r in measured)
        print(
            f"{labels[name]:<34}{median:>10.2f}  {times:>30}{median / floor:>10.2f}x{cpu:>8.2f}{peak:>9.0f}"
        )
    ratio = statistics.median(r.seconds for r in runs["ours"]) / floor
    peak = max(r.peak_mb for r in runs["ours"])
    print(
        f"target: (a) <= 1.5x (b): {'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}x);"
        f" peak memory < 200 MB: {'met' if peak < 200 else 'NOT met'} ({peak:.0f} MB)"
    )


if __name__ == "__main__":
    main()
