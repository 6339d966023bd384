"""The stage chain every front door (the CLI, the GitHub Action, `datasette publish lambda`) calls.

    build:              Config -> Built                       (the SQLite databases)
    build_and_package:  Config -> Packaged                    (+ the two zips and the template)
    plan:               Packaged -> Planned, or CheckError    (lint, smoke test, compare with AWS)
    deploy:             Packaged -> Deployed, or SiteDownError  (lint and smoke test first, then AWS)
    destroy:            Config -> DestroyResult

Before building for plan or deploy, front doors call `check_region` once they know the region
(the config's, or an input's put into the config): a config that cannot exist in the region the
AWS environment names fails then, before minutes of building. Both stages lint the template
with cfn-lint against the region actually deployed to.

Each step returns one frozen value and raises `UserError`s. The two failures that come after a
finished step (a plan whose checks fail, a deploy whose site does not answer) carry that step's
result (`error.result`), so a front door's one failure path can still show what was done.

What a front door reads from its environment (secret values, the CI run id) it passes in through
`DeployOptions`; see `secret_values` and `run_id`. The later stages are imported when first used:
`datasette-lambda build` then starts without boto3 and cfn-lint (~0.15 s).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datasette_action.build import BuildResult
from datasette_action.build import build as build_databases
from datasette_action.config import Config, frontend_problem
from datasette_action.errors import CheckError, ConfigError, CredentialsError, Location, SiteDownError
from datasette_action_entrypoint.bundle import ENV_SECRET

if TYPE_CHECKING:
    from datasette_action.checks import LintProblem, SmokeTest
    from datasette_action.deploy import DeployOptions, DeployResult, DestroyResult, PlanResult
    from datasette_action.package import PackageResult
    from datasette_action.template import Template

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class Built:
    stack: str
    result: BuildResult
    seconds: float


@dataclass(frozen=True)
class Packaged:
    config: Config
    built: Built
    result: PackageResult
    template: Template  # the main stack, rendered for this bundle
    seconds: float  # build and package together

    @property
    def warnings(self) -> tuple[str, ...]:
        return (*self.built.result.warnings, *self.result.warnings)


@dataclass(frozen=True)
class Planned:
    packaged: Packaged
    plan: PlanResult
    lint: tuple[LintProblem, ...]
    smoke: SmokeTest
    markdown: str  # the plan report
    report: Path  # where the report was written

    @property
    def lint_errors(self) -> int:
        return sum(1 for problem in self.lint if problem.severity == "error")

    @property
    def smoke_passed(self) -> bool:
        return self.smoke.ok or bool(self.smoke.skipped)

    @property
    def problems(self) -> tuple[str, ...]:
        """What makes the plan fail: template errors, a bundle that does not answer."""
        found = [f"cfn-lint found {self.lint_errors} error(s) in the template"] if self.lint_errors else []
        return (*found, *([] if self.smoke_passed else ["the bundle failed its smoke test"]))


@dataclass(frozen=True)
class Deployed:
    packaged: Packaged
    result: DeployResult


def build(config: Config, log: Log = _quiet) -> Built:
    started = time.perf_counter()
    result = build_databases(config, log=log)
    return Built(config.stack, result, time.perf_counter() - started)


def build_and_package(config: Config, log: Log = _quiet) -> Packaged:
    from datasette_action.package import package
    from datasette_action.template import render_template

    started = time.perf_counter()
    built = build(config, log)
    result = package(config, built.result, log=log)
    template = render_template(config, result)
    return Packaged(config, built, result, template, time.perf_counter() - started)


def plan(packaged: Packaged, options: DeployOptions, report: Path) -> Planned:
    """The dry run: cfn-lint on the template (offline), the bundle smoke-tested through its
    handler, the comparison with AWS (offline without credentials), the Markdown report written
    to `report`. Raises CheckError (carrying the Planned) when a check fails."""
    from datasette_action.checks import lint_template, smoke_test
    from datasette_action.deploy import plan as plan_stack
    from datasette_action.output import plan_markdown

    config, result, template = packaged.config, packaged.result, packaged.template
    lint = lint_template(template, deploy_region(config))
    smoke = smoke_test(result)
    outcome = plan_stack(config, result, template, options)
    markdown = plan_markdown(outcome, result, lint, smoke)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown, encoding="utf-8")
    planned = Planned(packaged, outcome, lint, smoke, markdown, report)
    if planned.problems:
        raise CheckError(f"{' and '.join(planned.problems)}; see {report}", result=planned)
    return planned


def deploy(packaged: Packaged, options: DeployOptions) -> Deployed:
    """Deploy the bundle: cfn-lint and the smoke test first (either failing: nothing is sent
    to AWS), then the stack. Raises SiteDownError (carrying the Deployed) when the stack deployed
    but the site does not answer its health check."""
    from datasette_action.deploy import aws_session
    from datasette_action.deploy import deploy as deploy_stack

    aws = aws_session(packaged.config, options.endpoint_url)  # CredentialsError without a region
    _lint_before_deploy(packaged.template, aws.region)
    _smoke_test_before_deploy(packaged, options)
    outcome = deploy_stack(packaged.config, packaged.result, packaged.template, options, aws=aws)
    deployed = Deployed(packaged, outcome)
    health = outcome.health
    if health is not None and not health.ok:
        raise SiteDownError(
            f"the stack deployed, but the site does not answer: GET {health.url} ->"
            f" {health.status or health.error}; see the function's logs in CloudWatch"
            f" (/aws/lambda/{outcome.function_name})",
            result=deployed,
        )
    return deployed


def _smoke_test_before_deploy(packaged: Packaged, options: DeployOptions) -> None:
    """The bundle run through its handler, as `plan` runs it: one that does not answer (a plugin
    that fails on import) stops the deploy before anything is sent, so the live site keeps
    serving. Without an interpreter of the target version it is skipped, with a warning."""
    from datasette_action.checks import smoke_test

    smoke = smoke_test(packaged.result)
    if smoke.skipped:
        options.log(f"Warning: the bundle's smoke test was {smoke.skipped}")
        return
    failed = next((request for request in smoke.requests if not request.ok), None)
    if failed is None:
        return
    answer = f"{failed.status}" if failed.status is not None else "no answer"
    cause = _first_line(failed.error or "")
    raise CheckError(
        f"the bundle failed its smoke test: GET {failed.path} -> {answer}{f': {cause}' if cause else ''};"
        " nothing was sent to AWS and the live site is unchanged (`datasette-lambda plan` runs the"
        " same test; the function's log above says why)"
    )


def _first_line(text: str) -> str:
    """The body's first non-blank line, markup stripped, at most 200 characters."""
    for line in text.splitlines():
        line = re.sub(r"<[^>]*>", "", line).strip()
        if line:
            return line[:200]
    return ""


def _lint_before_deploy(template: Template, region: str) -> None:
    """cfn-lint's errors for the deploy's region stop the deploy before anything is sent."""
    from datasette_action.checks import lint_template

    errors = [problem for problem in lint_template(template, region) if problem.severity == "error"]
    if errors:
        listed = "".join(f"\n  {p.rule} (template line {p.line}): {p.message}" for p in errors)
        raise CheckError(
            f"cfn-lint found {len(errors)} error(s) in the template for {region}; nothing was sent to"
            f" AWS (`datasette-lambda plan` shows the template's problems too):{listed}"
        )


def deploy_region(config: Config) -> str | None:
    """The region plan and deploy work in: `config.region` (the config's `region:`, which the
    action's aws-region input and publish's --region set), else the AWS environment's
    (AWS_REGION, AWS_DEFAULT_REGION, the profile's); None when nothing names one. No AWS call."""
    if config.region:
        return config.region
    from datasette_action.deploy import environment_region

    return environment_region()


FROM_ENVIRONMENT = "(from the AWS environment: AWS_REGION, AWS_DEFAULT_REGION or the profile)"


def check_region(config: Config) -> str | None:
    """`deploy_region`, checked against the config before anything is built or sent: the
    config's own region was checked when it loaded, a region from elsewhere is checked here
    (deploy.frontend function_url where AWS offers no function URLs). Front doors call it for
    plan and deploy, once the config holds what their inputs say."""
    region = deploy_region(config)
    problem = frontend_problem(config.deploy.frontend, region) if region else None
    if problem:
        source = "" if config.region else f" {FROM_ENVIRONMENT}"
        raise ConfigError(f"region {region}{source}: {problem}", Location(config.path))
    return region


def destroy(config: Config, options: DeployOptions) -> DestroyResult:
    from datasette_action.deploy import destroy as destroy_stack

    return destroy_stack(config, options)


def require_credentials(config: Config, endpoint_url: str | None) -> None:
    """Fail before the build (minutes of it) when a deploy could not reach AWS anyway."""
    from datasette_action.deploy import aws_session, has_credentials

    aws = aws_session(config, endpoint_url)  # CredentialsError without a region
    if not has_credentials(aws):
        raise CredentialsError(
            "deploy mode needs AWS credentials and this job has none; nothing was built or sent"
            " to AWS. Add aws-actions/configure-aws-credentials (with role-to-assume) before this"
            " step, and `permissions: id-token: write` to the job"
        )


# -- what front doors take from their environment ------------------------------------------------


def secret_values(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """The values of DATASETTE_SECRET and `deploy.secrets` found (non-empty) in `environ`: what
    deploy gives the stack's NoEcho parameters. Nothing else is taken."""
    names = dict.fromkeys((ENV_SECRET, *config.deploy.secrets))
    return {name: environ[name] for name in names if environ.get(name)}


def run_id(environ: Mapping[str, str]) -> str | None:
    """GitHub's run id and attempt ("1234-2"), which make change set names traceable to a run:
    https://docs.github.com/en/actions/reference/workflows-and-actions/variables (GITHUB_RUN_ID,
    GITHUB_RUN_ATTEMPT)."""
    run = environ.get("GITHUB_RUN_ID")
    return f"{run}-{environ.get('GITHUB_RUN_ATTEMPT') or '1'}" if run else None
