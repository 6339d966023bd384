"""Bundle size: the dependencies of a Datasette site on Lambda, naive vs this project's layer.

  naive: `pip install --target DIR --platform manylinux2014_<machine> --implementation cp
         --python-version X.Y --only-binary=:all: datasette mangum`, zipped as it is (no
         pruning) with the same deterministic zip writer, twice:
         - as pip does it by default: pip adds .pyc for the Python RUNNING pip (useless on
           Lambda unless it is the target version); this is what the issue measured;
         - with --no-compile: no .pyc at all;
  ours:  the layer `datasette-lambda package` makes for the same target (pruned, .pyc for the
         target Python when that interpreter is available).

Prints zipped and unzipped sizes side by side and the ratios. Target (the packaging issue): our
zipped layer at most 0.45x the naive zip. Needs the network (PyPI) or pip's cache.

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
from datasette_action.dependencies import Target, prepare_layer
from datasette_action.pyc import find_interpreter
from datasette_action.zips import write_zip

TARGET_RATIO = 0.45


def naive(target: Target, work: Path, *, compile: bool) -> tuple[int, int]:
    name = "naive" if compile else "naive-no-compile"
    tree = work / name
    argv = [sys.executable, "-m", "pip", "install", "--target", str(tree), "--quiet"]
    argv += ["--platform", f"manylinux2014_{target.machine}", "--implementation", "cp"]
    argv += ["--python-version", target.python, "--only-binary=:all:", "datasette", "mangum"]
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
    work = Path(tempfile.mkdtemp(prefix="bundle-size-"))
    try:
        plain = naive(target, work, compile=True)
        no_pyc = naive(target, work, compile=False)
        our_zipped, our_unzipped, compiled = ours(target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    label = "ours (pruned, .pyc)" if compiled else "ours (pruned, no .pyc)"
    rows = [
        (f"naive, pip default (.pyc {running})", *plain),
        ("naive, --no-compile (no .pyc)", *no_pyc),
        (label, our_zipped, our_unzipped),
    ]
    print(f"dependencies for {target.describe()}")
    print(f"{'':<36} {'zipped':>10} {'unzipped':>10}")
    for name, zipped, unzipped in rows:
        print(f"{name:<36} {zipped / 1e6:>7.1f} MB {unzipped / 1e6:>7.1f} MB")
    for name, zipped, unzipped in rows[:2]:
        ratio = our_zipped / zipped
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(
            f"ours / {name:<29} {ratio:>9.2f}x {our_unzipped / unzipped:>9.2f}x"
            f"   ({verdict} the {TARGET_RATIO}x zipped target)"
        )


if __name__ == "__main__":
    main()
