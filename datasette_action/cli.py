"""The `datasette-lambda` command line: each command parses its options, calls the pipeline and
renders the result (`output`).

Human output goes to stderr; `--json` prints one JSON object describing the result on stdout.
Every failure takes one path (`_Group.invoke`): what the failed step finished, if anything, is
shown as a success would be; then "Error: <file>:<line>: <message>" and exit status 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from datasette_action import __version__, output, pipeline
from datasette_action.config import DEFAULT_CONFIG_NAME, load_config
from datasette_action.errors import UserError
from datasette_action.pipeline import Built, Deployed, Packaged, Planned

# The later stages are imported by the commands that run them: `build` then starts in ~0.1 s,
# not ~0.3 s (boto3 and cfn-lint alone take ~0.15 s to import).
if TYPE_CHECKING:
    from datasette_action.deploy import DeployOptions

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as error:
            fail(error, as_json=bool(ctx.meta.get("json")))
            ctx.exit(1)


def fail(error: UserError, *, as_json: bool) -> None:
    """The one failure path: the finished part (`error.result`) as a success shows it, then the
    error on stderr, and with --json (when nothing else was printed there) as a JSON object."""
    if error.result is not None:
        show(error.result, as_json=as_json)
    click.echo(f"Error: {error}", err=True)
    if as_json and error.result is None:
        location = error.location
        file, line = (location.file, location.line) if location else (None, None)
        click.echo(output.dumps(output.error_json(error.message, file, line), compact=True))


def show(result: object, *, as_json: bool = False) -> None:
    """A result as text (and its warnings) on stderr, and with --json as JSON on stdout."""
    for part in _text(result):
        click.echo(part, err=True)
    if as_json:
        click.echo(output.dumps(_json(result)))


def _warnings(warnings: tuple[str, ...]) -> list[str]:
    return [f"Warning: {warning}" for warning in warnings]


def _text(result: object) -> list[str]:
    from datasette_action.deploy import DestroyResult
    from datasette_action.iam import Policy

    if isinstance(result, Built):
        return [*_warnings(result.result.warnings), output.build_text(result)]
    if isinstance(result, Packaged):
        return [output.build_text(result.built), *_warnings(result.warnings), output.package_text(result)]
    if isinstance(result, Planned):
        skipped = (f"smoke test {result.smoke.skipped}",) if result.smoke.skipped else ()
        return [*_warnings(skipped), output.plan_text(result)]
    if isinstance(result, Deployed):
        return [output.deploy_text(result.result)]
    if isinstance(result, DestroyResult):
        return [output.destroy_text(result)]
    if isinstance(result, Policy):
        return [*_warnings(result.warnings), output.policy_text(result)]
    raise TypeError(f"no text for {type(result).__name__}")


def _json(result: object) -> dict[str, Any]:
    from datasette_action.deploy import DestroyResult
    from datasette_action.iam import Policy

    if isinstance(result, Built):
        return output.build_json(result)
    if isinstance(result, Packaged):
        return output.package_json(result)
    if isinstance(result, Planned):
        return output.plan_json(result)
    if isinstance(result, Deployed):
        return output.deploy_json(result.result)
    if isinstance(result, DestroyResult):
        return output.destroy_json(result)
    if isinstance(result, Policy):
        return output.policy_json(result)
    raise TypeError(f"no JSON for {type(result).__name__}")


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG_NAME,
    show_default=True,
    help="The config file; paths in it are relative to its directory.",
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
    return config_option(command)


endpoint_option = click.option(
    "--endpoint-url",
    metavar="URL",
    help="Send every AWS call to this endpoint (e.g. a local moto server); default: AWS_ENDPOINT_URL, else AWS.",
)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="datasette-lambda")
def cli() -> None:
    """Publish CSV, JSON and SQLite data as a Datasette site on AWS Lambda."""


@cli.command(name="init")
@click.option(
    "--dir",
    "root",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="The repository: where the data is looked for and the files are written.",
)
@click.option("--stack", help="CloudFormation stack name (default: from the directory's name).")
@click.option("--region", help="AWS region [default: us-east-1].")
@click.option(
    "--frontend",
    type=click.Choice(["function_url", "http_api"]),
    help="deploy.frontend (default: function_url, or http_api where a region has no function URLs).",
)
@click.option("--force", is_flag=True, help="Overwrite the files init writes when they exist.")
@click.option("--no-workflows", is_flag=True, help="Do not write the GitHub workflows.")
def init_command(
    root: Path, stack: str | None, region: str | None, frontend: str | None, force: bool, no_workflows: bool
) -> None:
    """Write a datasette-lambda.yml for the data files here, and the GitHub workflows."""
    from datasette_action import init

    # asks only at a terminal: in scripts and CI the options (or their defaults) decide
    ask = sys.stdin.isatty()
    if stack is None:
        stack = init.default_stack(root)
        stack = click.prompt("Stack name", default=stack, err=True) if ask else stack
    if region is None:
        region = (
            click.prompt("AWS region", default=init.DEFAULT_REGION, err=True) if ask else init.DEFAULT_REGION
        )
    options = init.Options(stack, region, frontend, force=force, workflows=not no_workflows)
    for line in init.summary(init.init(root, options)):
        click.echo(line, err=True)


@cli.command(name="build")
@common_options
def build_command(config_path: Path, as_json: bool) -> None:
    """Build the SQLite databases the config describes."""
    show(pipeline.build(load_config(config_path), log=_log), as_json=as_json)


@cli.command(name="package")
@common_options
def package_command(config_path: Path, as_json: bool) -> None:
    """Build the databases, then package them with Datasette as two zips for Lambda."""
    show(pipeline.build_and_package(load_config(config_path), log=_log), as_json=as_json)


@cli.command(name="serve")
@common_options
@click.option("-p", "--port", default=8001, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Handler processes answering requests side by side (default: the number of CPU cores).",
)
def serve_command(config_path: Path, as_json: bool, port: int, concurrency: int | None) -> None:
    """Build, package, then serve the packaged bundle on localhost through the Lambda handler."""
    from datasette_action.serve import architecture_warning, for_this_machine, local_lambdas, make_server

    config, note = for_this_machine(load_config(config_path))
    if note:
        click.echo(note, err=True)
    packaged = pipeline.build_and_package(config, log=_log)
    result = packaged.result
    mismatch = architecture_warning(result.architecture)
    for line in _warnings((*packaged.warnings, *([mismatch] if mismatch else []))):
        click.echo(line, err=True)
    # The function's run-time secret, as Lambda would give it from the stack's parameter.
    secret = {name: value for name, value in os.environ.items() if name == "DATASETTE_SECRET"}
    concurrency = concurrency or os.cpu_count() or 1
    with local_lambdas(result, concurrency, env=secret) as function:
        server = make_server(function, port, log=_log)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        click.echo(
            f"Serving {result.function.zip_path.name} + {result.layer.zip_path.name} at {url}", err=True
        )
        click.echo(
            f"Each request runs the Lambda handler in one of {concurrency} separate processes"
            " (--concurrency); more requests wait for a free one. Ctrl-C stops.",
            err=True,
        )
        if as_json:
            click.echo(output.dumps({"url": url, "handler": result.handler}, compact=True))
            sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
        finally:
            server.server_close()


def _options(endpoint_url: str | None, **given: Any) -> DeployOptions:
    """Deploy options from the command line and this process's environment (the secrets'
    values and, in GitHub Actions, the run id)."""
    from datasette_action.deploy import DeployOptions

    return DeployOptions(endpoint_url=endpoint_url, log=_log, run_id=pipeline.run_id(os.environ), **given)


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
def deploy_command(
    config_path: Path, as_json: bool, endpoint_url: str | None, no_health_check: bool, force: bool
) -> None:
    """Build, package and deploy the site to AWS with CloudFormation."""
    config = load_config(config_path)
    pipeline.check_region(config)
    packaged = pipeline.build_and_package(config, log=_log)
    show(packaged)
    options = _options(
        endpoint_url,
        health_check=not no_health_check,
        force=force,
        secrets=pipeline.secret_values(config, os.environ),
    )
    show(pipeline.deploy(packaged, options), as_json=as_json)


@cli.command(name="plan")
@common_options
@endpoint_option
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the Markdown report (default: <build_dir>/plan.md).",
)
def plan_command(
    config_path: Path, as_json: bool, endpoint_url: str | None, report_path: Path | None
) -> None:
    """Show what deploy would change, without changing anything; offline without credentials."""
    config = load_config(config_path)
    pipeline.check_region(config)
    packaged = pipeline.build_and_package(config, log=_log)
    show(packaged)
    report = report_path or config.build_dir / "plan.md"
    show(pipeline.plan(packaged, _options(endpoint_url), report), as_json=as_json)


@cli.command(name="destroy")
@common_options
@endpoint_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy_command(config_path: Path, as_json: bool, endpoint_url: str | None, yes: bool) -> None:
    """Delete the site: its stack, the artifacts this tool uploaded and the bootstrap stack."""
    config = load_config(config_path)
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(
                f"destroy deletes the stack {config.stack} and its artifacts; pass --yes to confirm"
            )
        click.confirm(
            f"Delete the stack {config.stack}, its artifacts and its bootstrap stack?", abort=True, err=True
        )
    show(pipeline.destroy(config, _options(endpoint_url)), as_json=as_json)


@cli.command(name="template")
@config_option
@click.option(
    "--bootstrap", is_flag=True, help="The bootstrap stack's template (the artifacts bucket) instead."
)
def template_command(config_path: Path, bootstrap: bool) -> None:
    """Print the CloudFormation template deploy would send (JSON), for review and scanners.

    The main stack's template needs the packaged bundle (its runtime, /tmp size, databases in S3),
    so the build and the package run first; --bootstrap needs neither. No AWS access."""
    from datasette_action import template as tpl

    config = load_config(config_path)
    pipeline.check_region(config)
    if bootstrap:
        if config.deploy.bucket:
            raise UserError(
                f"deploy.bucket names a bucket of your own ({config.deploy.bucket}): deploy makes no"
                " bootstrap stack, so there is no bootstrap template; leave out --bootstrap"
            )
        stack = tpl.bootstrap_stack_name(config.stack)
        template = tpl.Template.of(tpl.bootstrap_template(config), {}, {})
    else:
        packaged = pipeline.build_and_package(config, log=_log)
        show(packaged)
        stack, template = config.stack, packaged.template
    click.echo(output.template_text(template, stack, inline=bootstrap), err=True)
    click.echo(template.text, nl=False)


@cli.command(name="iam-policy")
@config_option
@endpoint_option
@click.option(
    "--plan",
    "for_plan",
    is_flag=True,
    help="The read-only policy of a role that only runs plan (pull requests), instead of the deployer's.",
)
def iam_policy_command(config_path: Path, endpoint_url: str | None, for_plan: bool) -> None:
    """Print the least-privilege IAM policy (JSON) the deploying identity needs for this config.

    Derived from AWS's resource schemas (cfn-lint's copy) for the templates' resource types, plus
    this tool's own calls; with --plan, plan's own calls only. The account comes from
    sts:GetCallerIdentity when credentials exist."""
    from datasette_action import iam

    config = load_config(config_path)
    derive = iam.plan_policy if for_plan else iam.deployer_policy
    show(derive(config, iam.locate(config, endpoint_url)), as_json=True)


@cli.command(name="setup-github")
@common_options
@endpoint_option
@click.option("--repo", required=True, metavar="OWNER/NAME", help="The GitHub repository the roles trust.")
@click.option(
    "--environment",
    metavar="NAME",
    help="The deploy environment whose jobs may assume the deploy role (default: production).",
)
@click.option("--branch", metavar="NAME", help="Trust this branch's jobs (with no environment) instead.")
@click.option("--stack", "stack", metavar="NAME", help="The roles' stack (default: <stack>-github).")
@click.option("--print", "print_only", is_flag=True, help="Print the template (JSON) and exit; no AWS call.")
@click.option("--destroy", is_flag=True, help="Delete the roles' stack (GitHub's OIDC provider is kept).")
@click.option("--yes", is_flag=True, help="With --destroy: do not ask for confirmation.")
def setup_github_command(
    config_path: Path,
    as_json: bool,
    endpoint_url: str | None,
    repo: str,
    environment: str | None,
    branch: str | None,
    stack: str | None,
    print_only: bool,
    destroy: bool,
    yes: bool,
) -> None:
    """Deploy GitHub's OIDC provider and the repository's deploy and plan roles (one stack).

    The deploy role holds exactly the policy `iam-policy` prints for this config, the plan role
    the `iam-policy --plan` one. Prints the repository variables to set (and `gh variable set`
    commands when gh is logged in; they are not run). Run again to update; --destroy removes it."""
    from datasette_action import setup_github as gh

    config = load_config(config_path)
    trusted = gh.trust(repo, environment, branch)
    name = gh.stack_name(config, stack)
    if print_only and destroy:
        raise UserError("--print and --destroy exclude each other")
    if print_only:
        region, partition = gh.region_of(config, endpoint_url)
        click.echo(gh.to_json(gh.roles_template(config, trusted, region, partition)), nl=False)
        return
    if destroy:
        if not yes:
            if not sys.stdin.isatty():
                raise UserError(f"--destroy deletes the stack {name} and its roles; pass --yes to confirm")
            click.confirm(f"Delete the stack {name} and its roles?", abort=True, err=True)
        removed = gh.remove(config, name, _options(endpoint_url))
        click.echo(gh.removed_text(removed), err=True)
        if as_json:
            click.echo(output.dumps(gh.removed_json(removed)))
        return
    result = gh.setup(config, trusted, name, _options(endpoint_url))
    commands = gh.gh_commands(result) if gh.gh_ready() else ()
    click.echo(gh.setup_text(result, commands), err=True)
    if as_json:
        click.echo(output.dumps(gh.setup_json(result, commands)))


@cli.command(name="local-aws")
@click.option("-p", "--port", default=5000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the endpoint and the environment to use as one JSON object on stdout, once listening.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Handler processes each function URL or HTTP API runs side by side, at most (default: the"
    " number of CPU cores; a function's reserved concurrency lowers it).",
)
def local_aws_command(port: int, as_json: bool, concurrency: int | None) -> None:
    """Run a stand-in for AWS on localhost (moto) that also serves deployed function URLs."""
    import signal
    import threading

    try:
        from datasette_action.local_aws import start_local_aws
    except ModuleNotFoundError as error:  # moto (or its server's dependencies) is an optional extra
        if (error.name or "").partition(".")[0] in ("datasette_action", "datasette_action_entrypoint"):
            raise
        raise UserError(
            f"local-aws needs moto's server (missing module {error.name!r}):"
            " pip install 'datasette-lambda-action[local]'"
        ) from None
    with start_local_aws(port, log=_log, concurrency=concurrency) as aws:
        hint = " ".join(f"{name}={value}" for name, value in aws.environment.items())
        click.echo(f"Local AWS (moto) at {aws.endpoint_url}", err=True)
        click.echo(f"Use it with: export {hint}", err=True)
        click.echo("  (dummy credentials: moto accepts any; no AWS account is involved)", err=True)
        click.echo(
            "Function URLs and HTTP APIs it creates are served on 127.0.0.1, each by up to"
            f" {aws.concurrency} handler processes side by side (--concurrency). Ctrl-C stops.",
            err=True,
        )
        if as_json:
            data = {"endpoint_url": aws.endpoint_url, "environment": aws.environment}
            click.echo(output.dumps(data, compact=True))
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


def main() -> None:
    cli(prog_name="datasette-lambda")


if __name__ == "__main__":
    main()
