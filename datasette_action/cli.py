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
from typing import Any, TypeVar

import click

from datasette_action import __version__
from datasette_action.build import BuildResult, build
from datasette_action.config import DEFAULT_CONFIG_NAME, load_config
from datasette_action.errors import UserError
from datasette_action.package import PackageResult, package
from datasette_action.serve import local_lambda, make_server
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
    config = load_config(config_path)
    built = build(config, log=_log)
    result = package(config, built, log=_log)
    for warning in (*built.warnings, *result.warnings):
        click.echo(f"Warning: {warning}", err=True)
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
