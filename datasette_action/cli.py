"""The `datasette-lambda` command line. Commands only wire the stages together.

Human output goes to stderr; `--json` prints one JSON object describing the result on stdout.
A `UserError` becomes one line, "Error: <file>:<line>: <message>", and exit status 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from datasette_action import __version__
from datasette_action.build import BuildResult, build
from datasette_action.config import DEFAULT_CONFIG_NAME, Config, load_config
from datasette_action.errors import UserError

# The later stages are imported by the commands that run them: `build` then starts in ~0.1 s,
# not ~0.3 s (boto3 and cfn-lint alone take ~0.15 s to import).
if TYPE_CHECKING:
    from datasette_action.deploy import ChangeSet, DeployResult, DestroyResult, PlanResult
    from datasette_action.package import PackageResult
    from datasette_action.zips import Artifact

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as error:
            report_error(error, as_json=bool(ctx.meta.get("json")))
            ctx.exit(1)


def report_error(error: UserError, *, as_json: bool) -> None:
    click.echo(f"Error: {error}", err=True)
    if as_json:
        location = error.location
        click.echo(
            json.dumps(
                {
                    "error": error.message,
                    "file": str(location.file) if location else None,
                    "line": location.line if location else None,
                }
            )
        )


def common_options(command: F) -> F:
    command = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON object describing the result on stdout.",
        callback=lambda ctx, _param, value: ctx.meta.__setitem__("json", value) or value,
        is_eager=True,
    )(command)
    command = click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_CONFIG_NAME,
        show_default=True,
        help="The config file; paths in it are relative to its directory.",
    )(command)
    return command


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="datasette-lambda")
def cli() -> None:
    """Publish CSV, JSON and SQLite data as a Datasette site on AWS Lambda."""


@cli.command(name="build")
@common_options
def build_command(config_path: Path, as_json: bool) -> None:
    """Build the SQLite databases the config describes."""
    config = load_config(config_path)
    started = time.perf_counter()
    result = build(config, log=lambda message: click.echo(message, err=True))
    elapsed = time.perf_counter() - started
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(describe_build(result, elapsed), err=True)
    if as_json:
        click.echo(json.dumps(build_json(result, elapsed), indent=2))


def describe_build(result: BuildResult, elapsed: float) -> str:
    lines = [f"Built {len(result.databases)} database(s) in {result.inspect_data.parent} ({elapsed:.1f} s)"]
    for database in result.databases:
        lines.append(f"  {database.path.name}  {_size(database.size)}  sha256 {database.sha256[:12]}")
        for table in database.tables:
            if not table.hidden:
                lines.append(f"    {table.name:<30} {table.rows:>12,} rows")
        for view in database.views:
            lines.append(f"    {view:<30} {'(view)':>17}")
    return "\n".join(lines)


def build_json(result: BuildResult, elapsed: float) -> dict[str, Any]:
    return {
        "databases": [
            {
                "name": d.name,
                "path": str(d.path),
                "size": d.size,
                "sha256": d.sha256,
                "tables": [
                    {
                        "name": t.name,
                        "rows": t.rows,
                        "columns": dict(t.columns),
                        "hidden": t.hidden,
                    }
                    for t in d.tables
                ],
                "views": list(d.views),
            }
            for d in result.databases
        ],
        "inspect_data": str(result.inspect_data),
        "warnings": list(result.warnings),
        "seconds": round(elapsed, 3),
    }


@cli.command(name="package")
@common_options
def package_command(config_path: Path, as_json: bool) -> None:
    """Build the databases, then package them with Datasette as two zips for Lambda."""
    from datasette_action.package import package

    config = load_config(config_path)
    started = time.perf_counter()
    built = build(config, log=_log)
    build_seconds = time.perf_counter() - started
    click.echo(describe_build(built, build_seconds), err=True)
    result = package(config, built, log=_log)
    elapsed = time.perf_counter() - started
    for warning in (*built.warnings, *result.warnings):
        click.echo(f"Warning: {warning}", err=True)
    click.echo(describe_package(result, elapsed), err=True)
    if as_json:
        click.echo(json.dumps(package_json(result, built, elapsed, build_seconds), indent=2))


@cli.command(name="serve")
@common_options
@click.option("-p", "--port", default=8001, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
def serve_command(config_path: Path, as_json: bool, port: int) -> None:
    """Build, package, then serve the packaged bundle on localhost through the Lambda handler."""
    from datasette_action.package import package
    from datasette_action.serve import architecture_warning, local_lambda, make_server

    config = load_config(config_path)
    built = build(config, log=_log)
    result = package(config, built, log=_log)
    for warning in (*built.warnings, *result.warnings):
        click.echo(f"Warning: {warning}", err=True)
    mismatch = architecture_warning(result.architecture)
    if mismatch:
        click.echo(f"Warning: {mismatch}", err=True)
    with local_lambda(result, env=_passed_secrets()) as function:
        server = make_server(function, port, log=_log)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        click.echo(
            f"Serving {result.function.zip_path.name} + {result.layer.zip_path.name} at {url}", err=True
        )
        click.echo("Each request runs the Lambda handler in a separate process. Ctrl-C stops.", err=True)
        if as_json:
            click.echo(json.dumps({"url": url, "handler": result.handler}), nl=True)
            sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
        finally:
            server.server_close()


def _passed_secrets() -> dict[str, str]:
    """Run-time secrets the function would get from its environment, passed through."""
    return {name: value for name, value in os.environ.items() if name == "DATASETTE_SECRET"}


def describe_package(result: PackageResult, elapsed: float) -> str:
    compiled = "with .pyc" if result.compiled else "without .pyc"
    lines = [f"Packaged for Lambda python{result.python} {result.architecture}, {compiled} ({elapsed:.1f} s)"]
    for artifact in result.artifacts:
        reused = "  (reused)" if artifact.reused else ""
        lines.append(
            f"  {artifact.role:<8}  {artifact.zip_path}  {_size(artifact.zipped_size)} zipped,"
            f" {_size(artifact.unzipped_size)} unzipped{reused}"
        )
    lines.append(f"  handler   {result.handler}")
    for database in result.databases:
        lines.append(f"  {database.name}: {database.location}: {database.reason}")
    lines.append(f"  /tmp      {result.ephemeral_storage} MB")
    return "\n".join(lines)


def package_json(
    result: PackageResult, built: BuildResult, elapsed: float, build_seconds: float
) -> dict[str, Any]:
    return {
        "artifacts": [_artifact_json(artifact) for artifact in result.artifacts],
        "handler": result.handler,
        "python": result.python,
        "architecture": result.architecture,
        "compiled": result.compiled,
        "requirements": list(result.requirements),
        "python_path": [str(path) for path in result.python_path],
        "manifest": str(result.manifest),
        "ephemeral_storage": result.ephemeral_storage,
        "databases": [
            {
                "name": d.name,
                "file": d.file,
                "size": d.size,
                "sha256": d.sha256,
                "location": d.location,
                "s3_key": d.s3_key,
                "reason": d.reason,
            }
            for d in result.databases
        ],
        "warnings": [*built.warnings, *result.warnings],
        "build": build_json(built, build_seconds),
        "seconds": round(elapsed, 3),
    }


def _artifact_json(artifact: Artifact) -> dict[str, Any]:
    return {
        "role": artifact.role,
        "path": str(artifact.zip_path),
        "directory": str(artifact.directory),
        "sha256": artifact.sha256,
        "zipped_size": artifact.zipped_size,
        "unzipped_size": artifact.unzipped_size,
        "reused": artifact.reused,
    }


def _build_and_package(config: Config) -> tuple[BuildResult, PackageResult]:
    from datasette_action.package import package

    started = time.perf_counter()
    built = build(config, log=_log)
    click.echo(describe_build(built, time.perf_counter() - started), err=True)
    result = package(config, built, log=_log)
    for warning in (*built.warnings, *result.warnings):
        click.echo(f"Warning: {warning}", err=True)
    click.echo(describe_package(result, time.perf_counter() - started), err=True)
    return built, result


endpoint_option = click.option(
    "--endpoint-url",
    metavar="URL",
    help="Send every AWS call to this endpoint (e.g. a local moto server); default: AWS_ENDPOINT_URL, else AWS.",
)


@cli.command(name="deploy")
@common_options
@endpoint_option
@click.option("--no-health-check", is_flag=True, help="Do not request the site after deploying.")
@click.option(
    "--force",
    is_flag=True,
    help="Update the function even when nothing changed (a new DATASETTE_LAMBDA_DEPLOYMENT_ID):"
    " fresh execution environments, S3 databases downloaded again.",
)
@click.pass_context
def deploy_command(
    ctx: click.Context,
    config_path: Path,
    as_json: bool,
    endpoint_url: str | None,
    no_health_check: bool,
    force: bool,
) -> None:
    """Build, package and deploy the site to AWS with CloudFormation."""
    from datasette_action.deploy import DeployOptions, deploy
    from datasette_action.template import render_template

    config = load_config(config_path)
    _built, result = _build_and_package(config)
    options = DeployOptions(
        endpoint_url=endpoint_url, health_check=not no_health_check, force=force, log=_log
    )
    outcome = deploy(config, result, render_template(config, result), options)
    click.echo(describe_deploy(outcome), err=True)
    if as_json:
        click.echo(json.dumps(deploy_json(outcome), indent=2))
    health = outcome.health
    if health is not None and not health.ok:
        click.echo(
            f"Error: the stack deployed, but the site does not answer: GET {health.url} ->"
            f" {health.status or health.error}; see the function's logs in CloudWatch"
            f" (/aws/lambda/{outcome.function_name})",
            err=True,
        )
        ctx.exit(1)


def describe_deploy(result: DeployResult) -> str:
    if result.changed:
        head = f"Deployed {result.stack} ({result.seconds:.1f} s)"
    else:
        head = f"{result.stack} is up to date: the change set was empty ({result.seconds:.1f} s)"
    lines = [head]
    if result.recreated:
        lines.append("  (the stack had failed its first create: it was deleted and created again)")
    sent = result.bytes_uploaded
    lines.append(f"  uploaded  {_size(sent)} ({sum(a.uploaded for a in result.artifacts)} object(s))")
    for upload in result.artifacts:
        state = "uploaded" if upload.uploaded else "reused"
        lines.append(f"    {upload.role:<10} {state:<8} {_size(upload.size):>9}  {upload.key}")
    if result.url:
        lines.append(f"  url       {result.url}")
    lines.append(f"  function  {result.function_name}")
    lines.append(f"  bucket    {result.bucket}")
    if result.health is not None:
        health = result.health
        status = health.status if health.status is not None else f"no answer ({health.error})"
        lines.append(f"  health    GET {health.url} -> {status} in {health.seconds:.2f} s")
    return "\n".join(lines)


def deploy_json(result: DeployResult) -> dict[str, Any]:
    health = result.health
    return {
        "stack": result.stack,
        "region": result.region,
        "url": result.url,
        "function_name": result.function_name,
        "bucket": result.bucket,
        "changed": result.changed,
        "recreated": result.recreated,
        "bytes_uploaded": result.bytes_uploaded,
        "artifacts": [
            {
                "role": u.role,
                "key": u.key,
                "sha256": u.sha256,
                "status": "uploaded" if u.uploaded else "reused",
                "bytes": u.size,
            }
            for u in result.artifacts
        ],
        "change_set": _change_set_json(result.change_set),
        "health": None
        if health is None
        else {
            "url": health.url,
            "status": health.status,
            "ok": health.ok,
            "seconds": round(health.seconds, 3),
        },
        "outputs": dict(result.outputs),
        "seconds": round(result.seconds, 3),
    }


def _change_set_json(change_set: ChangeSet) -> dict[str, Any]:
    return {
        "name": change_set.name,
        "type": change_set.kind,
        "empty": change_set.empty,
        "changes": [
            {
                "action": c.action,
                "logical_id": c.logical_id,
                "resource_type": c.resource_type,
                "replacement": c.replacement,
            }
            for c in change_set.changes
        ],
    }


@cli.command(name="plan")
@common_options
@endpoint_option
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the Markdown report (default: <build_dir>/plan.md).",
)
@click.pass_context
def plan_command(
    ctx: click.Context, config_path: Path, as_json: bool, endpoint_url: str | None, report_path: Path | None
) -> None:
    """Show what deploy would change, without changing anything; offline without credentials."""
    from datasette_action.deploy import DeployOptions
    from datasette_action.planning import checked_plan
    from datasette_action.template import render_template

    config = load_config(config_path)
    _built, result = _build_and_package(config)
    template = render_template(config, result)
    checked = checked_plan(
        config,
        result,
        template,
        DeployOptions(endpoint_url=endpoint_url, log=_log),
        report_path or config.build_dir / "plan.md",
    )
    if checked.smoke.skipped:
        click.echo(f"Warning: smoke test {checked.smoke.skipped}", err=True)
    click.echo(checked.markdown, err=True)
    click.echo(f"Report written to {checked.report}", err=True)
    if as_json:
        click.echo(
            json.dumps(
                plan_json(checked.outcome, checked.report, checked.lint_errors, checked.smoke_passed),
                indent=2,
            )
        )
    if checked.problems:
        click.echo(f"Error: {' and '.join(checked.problems)}; see {checked.report}", err=True)
        ctx.exit(1)


def plan_json(result: PlanResult, report: Path, lint_errors: int, smoke_ok: bool) -> dict[str, Any]:
    return {
        "stack": result.stack,
        "online": result.online,
        "note": result.note,
        "stack_status": result.stack_status,
        "changes_from": result.changes_from,
        "changes": [
            {
                "action": c.action,
                "logical_id": c.logical_id,
                "resource_type": c.resource_type,
                "replacement": c.replacement,
            }
            for c in result.changes
        ],
        "artifacts": [
            {"role": a.role, "key": a.key, "sha256": a.sha256, "bytes": a.size, "in_bucket": a.in_bucket}
            for a in result.artifacts
        ],
        "lint_errors": lint_errors,
        "smoke_test_ok": smoke_ok,
        "report": str(report),
        "seconds": round(result.seconds, 3),
    }


@cli.command(name="destroy")
@common_options
@endpoint_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy_command(config_path: Path, as_json: bool, endpoint_url: str | None, yes: bool) -> None:
    """Delete the site: its stack, the artifacts this tool uploaded and the bootstrap stack."""
    from datasette_action.deploy import DeployOptions, destroy

    config = load_config(config_path)
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(
                f"destroy deletes the stack {config.stack} and its artifacts; pass --yes to confirm"
            )
        click.confirm(
            f"Delete the stack {config.stack}, its artifacts and its bootstrap stack?", abort=True, err=True
        )
    outcome = destroy(config, DeployOptions(endpoint_url=endpoint_url, log=_log))
    click.echo(describe_destroy(outcome), err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "stack": outcome.stack,
                    "stack_deleted": outcome.stack_deleted,
                    "bucket": outcome.bucket,
                    "objects_deleted": outcome.objects_deleted,
                    "bootstrap_deleted": outcome.bootstrap_deleted,
                    "seconds": round(outcome.seconds, 3),
                },
                indent=2,
            )
        )


def describe_destroy(result: DestroyResult) -> str:
    if not result.stack_deleted and not result.bootstrap_deleted and not result.objects_deleted:
        return f"Nothing to delete: there is no stack {result.stack} in {result.region}"
    lines = [f"Destroyed {result.stack} ({result.seconds:.1f} s)"]
    lines.append(f"  stack            {'deleted' if result.stack_deleted else 'not found'}")
    if result.bucket:
        lines.append(f"  objects deleted  {result.objects_deleted} from {result.bucket}")
    if result.bootstrap_deleted:
        lines.append("  bootstrap stack  deleted (with its bucket)")
    return "\n".join(lines)


@cli.command(name="local-aws")
@click.option("-p", "--port", default=5000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the endpoint and the environment to use as one JSON object on stdout, once listening.",
)
def local_aws_command(port: int, as_json: bool) -> None:
    """Run a stand-in for AWS on localhost (moto) that also serves deployed function URLs."""
    import signal
    import threading

    try:
        from datasette_action.local_aws import start_local_aws
    except ModuleNotFoundError as error:  # moto (or its server's dependencies) is an optional extra
        if (error.name or "").partition(".")[0] in ("datasette_action", "entrypoint"):
            raise
        raise UserError(
            f"local-aws needs moto's server (missing module {error.name!r}):"
            " pip install 'datasette-lambda-action[local]'"
        ) from None
    with start_local_aws(port, log=_log) as aws:
        hint = " ".join(f"{name}={value}" for name, value in aws.environment.items())
        click.echo(f"Local AWS (moto) at {aws.endpoint_url}", err=True)
        click.echo(f"Use it with: export {hint}", err=True)
        click.echo("  (dummy credentials: moto accepts any; no AWS account is involved)", err=True)
        click.echo("Function URLs and HTTP APIs it creates are served on 127.0.0.1. Ctrl-C stops.", err=True)
        if as_json:
            click.echo(json.dumps({"endpoint_url": aws.endpoint_url, "environment": aws.environment}))
            sys.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        click.echo("stopped", err=True)


def _log(message: str) -> None:
    click.echo(message, err=True)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def main() -> None:
    cli(prog_name="datasette-lambda")


if __name__ == "__main__":
    main()
