"""Deploy cost: what three deploys of the example site cost, against a local AWS (moto's server
with local function URLs, `datasette_action.local_aws`): no AWS account needed.

  first deploy:  bootstrap stack, uploads, CREATE change set;
  no-op:         the same package deployed again;
  data-only:     one CSV edited (a row added), packaged again (the layer comes from the cache),
                 deployed.

For each: bytes uploaded, AWS API calls made (counted with a botocore `before-call` hook, by
operation) and wall time of the deploy itself (build and package are timed apart; the health
check is off: it measures a cold start, not the deploy). Targets: the no-op uploads 0 bytes and
makes no stack update (no ExecuteChangeSet); the data-only change uploads only the function code
(never the dependency layer). Prints met / NOT met; exits 1 when a target is not met.
Needs pip's cache or PyPI for the first package (~10 s).

    python benchmarks/deploy_cost.py
"""

from __future__ import annotations

import collections
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasette_action.build import build
from datasette_action.config import load_config
from datasette_action.deploy import Aws, DeployOptions, DeployResult, aws_session, deploy
from datasette_action.local_aws import start_local_aws
from datasette_action.package import PackageResult, package
from datasette_action.template import render_template

EXAMPLE = Path(__file__).resolve().parent.parent / "example"
CREDENTIAL_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass(frozen=True)
class Measured:
    name: str
    result: DeployResult
    calls: collections.Counter[str]
    put_bytes: int  # every byte PUT to S3, the deployed-state file included
    seconds: float
    package_seconds: float


class CallCounter:
    """Counts every AWS API call a session's clients make (botocore emits `before-call.<service>.
    <Operation>` once per call, retries included) and the bytes of every S3 PUT sent (the
    Content-Length of each request `before-send`: objects, parts, the deployed-state file)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.put_bytes = 0

    def on_call(self, event_name: str, **kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}:{operation}"] += 1

    def on_send(self, request: Any, **kwargs: Any) -> None:
        if request.method == "PUT":
            self.put_bytes += int(request.headers.get("Content-Length") or 0)

    def take(self) -> tuple[collections.Counter[str], int]:
        taken = self.calls, self.put_bytes
        self.calls, self.put_bytes = collections.Counter(), 0
        return taken


def package_project(root: Path) -> tuple[Any, PackageResult, float]:
    started = time.perf_counter()
    config = load_config(root / "datasette-lambda.yml")
    result = package(config, build(config))
    return config, result, time.perf_counter() - started


def measure(name: str, root: Path, aws: Aws, counter: CallCounter, options: DeployOptions) -> Measured:
    config, result, package_seconds = package_project(root)
    counter.take()
    started = time.perf_counter()
    outcome = deploy(config, result, render_template(config, result), options, aws)
    seconds = time.perf_counter() - started
    calls, put_bytes = counter.take()
    return Measured(name, outcome, calls, put_bytes, seconds, package_seconds)


def report(runs: list[Measured]) -> bool:
    print(
        f"{'deploy':<14} {'artifacts up':>12} {'S3 PUT bytes':>12} {'AWS calls':>10} {'deploy s':>9}"
        f" {'package s':>10}  changed"
    )
    for run in runs:
        uploaded = [a.role for a in run.result.artifacts if a.uploaded]
        print(
            f"{run.name:<14} {run.result.bytes_uploaded:>12,} {run.put_bytes:>12,}"
            f" {sum(run.calls.values()):>10} {run.seconds:>9.2f} {run.package_seconds:>10.2f}"
            f"  {run.result.changed}  ({', '.join(uploaded) or 'nothing uploaded'})"
        )
    print()
    for run in runs:
        print(f"{run.name}: " + ", ".join(f"{op} {n}" for op, n in sorted(run.calls.items())))
    print()
    first, noop, data = runs
    checks = [
        ("no-op uploads 0 bytes (nothing PUT to S3)", noop.result.bytes_uploaded == noop.put_bytes == 0),
        (
            "no-op makes no stack update (no ExecuteChangeSet, changed False)",
            not noop.result.changed and noop.calls["cloudformation:ExecuteChangeSet"] == 0,
        ),
        (
            "data-only change uploads only the function code",
            [a.role for a in data.result.artifacts if a.uploaded] == ["function"],
        ),
        (
            "data-only change never uploads the dependency layer",
            not any(a.role == "layer" and a.uploaded for a in data.result.artifacts),
        ),
        ("data-only change updates the stack", data.result.changed),
    ]
    met = True
    for label, ok in checks:
        print(f"{'met' if ok else 'NOT met':>8}: {label}")
        met &= ok
    layer = next(a for a in first.result.artifacts if a.role == "layer")
    saved = layer.size / max(data.result.bytes_uploaded, 1)
    print(
        f"\nthe data-only deploy sent {data.result.bytes_uploaded:,} bytes; the layer alone is {layer.size:,} ({saved:.0f}x)"
    )
    return met


def main() -> int:
    for variable in CREDENTIAL_VARIABLES:
        os.environ.pop(variable, None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask an instance metadata service
    with tempfile.TemporaryDirectory(prefix="deploy-cost-") as work, start_local_aws() as local:
        os.environ.update(local.environment)
        root = Path(work) / "site"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".datasette-lambda"))
        aws = aws_session(load_config(root / "datasette-lambda.yml"), local.endpoint_url)
        counter = CallCounter()
        aws.session.events.register("before-call", counter.on_call)  # before the first client is made
        aws.session.events.register("before-send.s3", counter.on_send)
        options = DeployOptions(health_check=False, poll=0.2)
        runs = [measure("first deploy", root, aws, counter, options)]
        runs.append(measure("no-op", root, aws, counter, options))
        with (root / "data" / "states.csv").open("a") as f:
            f.write("WY,Wyoming,Cheyenne,1890\n")
        runs.append(measure("data-only", root, aws, counter, options))
        met = report(runs)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
