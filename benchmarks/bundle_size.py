"""Bundle size: the dependencies of a Datasette site on Lambda, naive vs this project's layer.

  naive: `pip install --target DIR --platform <tags> --implementation cp --python-version X.Y
         --only-binary=:all: <packages>`, zipped as it is (no pruning) with the same
         deterministic zip writer, for two sets of packages:
         - `datasette mangum`, `--platform manylinux2014_<machine>`: what the packaging issue
           measured, before the layer carried a SQLite of its own;
         - `datasette mangum sqlean.py==<our pin>`, with our layer's --platform tags (sqlean.py
           3.50.4.5 has manylinux_2_28 wheels, no manylinux2014 ones): the same contents as our
           layer. Since issue 10 the site needs a bundled SQLite (Lambda's python3.11 runtime has
           SQLite 3.7.17), so a naive bundle that works carries one too: the like-for-like baseline;
         and each twice:
         - as pip does it by default: pip adds .pyc for the Python RUNNING pip (useless on
           Lambda unless it is the target version); this is what the issue measured;
         - with --no-compile: no .pyc at all;
  ours:  the layer `datasette-lambda package` makes for the same target (pruned, debug sections
         stripped from the shared objects, .pyc for the target Python when that interpreter is
         available).

Prints zipped and unzipped sizes and ratios against both baselines side by side. Target (the
packaging issue): our zipped layer at most 0.45x the naive zip as pip leaves it by default,
measured against the like-for-like baseline (with sqlean.py); the ratio and verdict against the
issue's original baseline (without it) are printed too. Needs the network (PyPI) or pip's cache.

    python benchmarks/bundle_size.py [--python 3.13] [--architecture x86_64]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from datasette_action.config import load_config
from datasette_action.dependencies import Target, platform_tags, prepare_layer
from datasette_action.pyc import find_interpreter
from datasette_action.sqlite import requirement
from datasette_action.zips import write_zip

TARGET_RATIO = 0.45
Baseline = tuple[tuple[str, ...], tuple[str, ...]]  # pip requirements, pip --platform values


def naive(target: Target, baseline: Baseline, work: Path, *, compile: bool) -> tuple[int, int]:
    packages, platforms = baseline
    name = f"naive-{len(packages)}" + ("" if compile else "-no-compile")
    tree = work / name
    argv = [sys.executable, "-m", "pip", "install", "--target", str(tree), "--quiet"]
    for platform in platforms:
        argv += ["--platform", platform]
    argv += ["--implementation", "cp", "--python-version", target.python, "--only-binary=:all:", *packages]
    if not compile:
        argv.append("--no-compile")
    subprocess.run(argv, check=True, stderr=subprocess.DEVNULL)
    written = write_zip(tree, work / f"{name}.zip", prefix="python/")
    return written.zipped_size, written.unzipped_size


def ours(target: Target, work: Path) -> tuple[int, int, bool]:
    config_path = work / "project" / "datasette-lambda.yml"
    config_path.parent.mkdir()
    config_path.write_text(
        textwrap.dedent(
            f"""\
            stack: bundle-size
            databases: {{d: {{tables: {{t: t.csv}}}}}}
            lambda: {{python: "{target.python}", architecture: {target.architecture}}}
            """
        )
    )
    config = load_config(config_path)
    interpreter = find_interpreter(target.python)
    layer = prepare_layer(config, config.build_dir / "package", interpreter)
    return layer.artifact.zipped_size, layer.artifact.unzipped_size, layer.compiled


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", default="3.13", choices=("3.11", "3.12", "3.13", "3.14"))
    parser.add_argument("--architecture", default="x86_64", choices=("x86_64", "arm64"))
    args = parser.parse_args()
    target = Target(args.python, args.architecture)
    baselines: tuple[Baseline, Baseline] = (
        (("datasette", "mangum"), (f"manylinux2014_{target.machine}",)),
        (("datasette", "mangum", requirement(target.python)), platform_tags(target)),
    )
    work = Path(tempfile.mkdtemp(prefix="bundle-size-"))
    try:
        sizes = {
            compile: [naive(target, baseline, work, compile=compile) for baseline in baselines]
            for compile in (True, False)
        }
        our_zipped, our_unzipped, compiled = ours(target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    labels = {True: f"naive, pip default (.pyc {running})", False: "naive, --no-compile (no .pyc)"}
    old, like_for_like = (" ".join(packages) for packages, _platforms in baselines)
    print(f"dependencies for {target.describe()}")
    print(f"naive baselines: A = {old} (the issue's), B = {like_for_like} (like for like)")
    print(f"{'':<36}" + "".join(f"{c + ' zipped':>12}{c + ' unzipped':>12}" for c in "AB"))
    for compile, label in labels.items():
        print(f"{label:<36}" + "".join(f"{mb(z):>12}{mb(u):>12}" for z, u in sizes[compile]))
    our_label = "ours (pruned, stripped, " + (".pyc)" if compiled else "no .pyc)")
    print(f"{our_label:<36}{mb(our_zipped):>12}{mb(our_unzipped):>12}")
    for compile, label in labels.items():
        ratios = "".join(f"{our_zipped / z:>11.2f}x{our_unzipped / u:>11.2f}x" for z, u in sizes[compile])
        print(f"{'ours / ' + label.removesuffix(f' (.pyc {running})'):<36}{ratios}")
    ratio_a, ratio_b = (our_zipped / zipped for zipped, _unzipped in sizes[True])
    print(f"target (the packaging issue): ours zipped <= {TARGET_RATIO}x naive as pip leaves it by default")
    for name, ratio in (
        (f"B, like for like (with {baselines[1][0][-1]})", ratio_b),
        ("A, the issue's baseline (no SQLite of its own)", ratio_a),
    ):
        print(f"   {name:<50}{ratio:>6.2f}x   {verdict(ratio)}")


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def verdict(ratio: float) -> str:
    return "met" if ratio <= TARGET_RATIO else "NOT met"


if __name__ == "__main__":
    main()
