"""The GitHub Action's entry point: `python -m datasette_action.action`, run by action.yml.

GitHub glue only. The inputs come from INPUT_* environment variables (action.yml passes each
`with:` value through `env:`, never into a script), the stage the mode asks for runs through the
same functions the CLI uses, and the runner is told about it through its files and commands:

    $GITHUB_OUTPUT             url, stack-name, changed, bundle-sha256, bundle-size, plan-markdown
    $GITHUB_STEP_SUMMARY       the plan report, the deploy's uploads and changes (at most 1 MiB)
    ::error file=F,line=L::    every failure, at the config (or data) line when it has one
    ::group:: ... ::endgroup:: around the long logs of the build, the package and AWS
    ::add-mask::               DATASETTE_SECRET and the config's deploy.secrets, before any output

Every failure takes one path (`die`): an annotation, a job summary section saying how to fix it,
exit status 1. On a pull_request event, mode deploy runs plan instead (and says so): a pull
request, maybe from a fork, never changes the live site.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TextIO, TypeVar

from datasette_action.build import BuildResult, build
from datasette_action.cli import describe_build, describe_deploy, describe_package
from datasette_action.config import REGION, STACK_NAME, Config, load_config
from datasette_action.deploy import DeployOptions, aws_session, deploy, has_credentials
from datasette_action.errors import (
    AwsError,
    BuildError,
    CheckError,
    ConfigError,
    CredentialsError,
    InputError,
    PackageError,
    SiteDownError,
    SourceError,
    StackFailedError,
    UserError,
)
from datasette_action.package import PackageResult, package
from datasette_action.planning import checked_plan
from datasette_action.report import deploy_markdown
from datasette_action.template import render_template

T = TypeVar("T")

MODES = ("deploy", "plan", "build")
BOOLEANS = {"true": True, "false": False}
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
OUTPUTS = ("url", "stack-name", "changed", "bundle-sha256", "bundle-size", "plan-markdown")
SECRET_VARIABLE = "DATASETTE_SECRET"
# "The maximum size of a job summary for a step is 1 MiB":
# https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands#adding-a-job-summary
SUMMARY_LIMIT = 1024 * 1024
# aws-actions/configure-aws-credentials v4.2.1, as in examples/workflows/.
CONFIGURE_AWS = "aws-actions/configure-aws-credentials@b47578312673ae6fa5b5096b330d9fbac3d116df # v4.2.1"
OIDC_HOW_TO = f"""Give the job an AWS role through OIDC (no stored keys): let the job ask GitHub for an
OIDC token, and assume the role before this step:

```yaml
permissions:
  id-token: write   # lets aws-actions/configure-aws-credentials get an OIDC token
  contents: read
steps:
  - uses: {CONFIGURE_AWS}
    with:
      role-to-assume: arn:aws:iam::123456789012:role/deploy-my-data
      aws-region: us-east-1
  - uses: org/datasette-lambda-action@v1
```

The role must trust GitHub's OIDC provider for this repository and allow what the deployer needs:
see "One-time AWS setup" in the action's README. To check a change without AWS, use `mode: plan`
(it runs offline without credentials)."""


# -- the runner's side ----------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF would end or corrupt the command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ':' and ',', which separate properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def truncate_markdown(text: str, limit: int, note: str) -> str:
    """`text` if it fits in `limit` bytes of UTF-8; else cut at a line end (never inside a
    character), an open code fence closed, and `note` appended, all within `limit`."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    tail = f"\n\n{note}\n"
    budget = limit - len(tail.encode("utf-8")) - len("\n```")
    if budget <= 0:
        return ""  # the file is full already
    head = data[:budget].decode("utf-8", "ignore")
    head = head[: head.rfind("\n")] if "\n" in head else head
    if len(re.findall(r"^\s*```", head, flags=re.MULTILINE)) % 2:
        head += "\n```"
    return head + tail


@dataclass
class GitHub:
    """Workflow commands on stdout, the outputs file and the step summary file. Outside
    GitHub Actions (no GITHUB_OUTPUT or GITHUB_STEP_SUMMARY) both are printed instead."""

    out: TextIO
    workspace: Path
    output_file: Path | None
    summary_file: Path | None
    summary: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, env: Mapping[str, str], out: TextIO) -> GitHub:
        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        workspace = Path(env.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()
        return cls(out, workspace, path("GITHUB_OUTPUT"), path("GITHUB_STEP_SUMMARY"))

    def log(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()

    def command(self, name: str, message: str = "", **properties: str | int | None) -> None:
        given = ",".join(
            f"{key}={escape_property(str(value))}" for key, value in properties.items() if value is not None
        )
        self.log(f"::{name}{' ' + given if given else ''}::{escape_data(message)}")

    def mask(self, value: str | None) -> None:
        """Mask a secret in every later line of the log: the whole value and, for a multi-line
        value, each line (GitHub matches masks line by line)."""
        if not value or not value.strip():
            return
        self.command("add-mask", value)
        lines = [line.strip() for line in value.splitlines()]
        for line in lines if len(lines) > 1 else ():
            if line:
                self.command("add-mask", line)

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.command("group", title)
        try:
            yield
        finally:
            self.command("endgroup")

    def relative(self, path: Path) -> str | None:
        """A path as annotations want it (relative to the workspace, with /), or None outside it."""
        try:
            return path.resolve().relative_to(self.workspace).as_posix()
        except ValueError:
            return None

    def shown(self, path: Path) -> str:
        """A path for the log: relative to the workspace when inside it."""
        return self.relative(path) or str(path)

    def set_outputs(self, outputs: Mapping[str, str]) -> None:
        if self.output_file is None:
            for name, value in outputs.items():
                self.log(f"output {name}={value}")
            return
        with self.output_file.open("a", encoding="utf-8") as f:
            for name, value in outputs.items():
                delimiter = f"ghadelimiter_{uuid.uuid4()}"  # never in a value: values may span lines
                f.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")

    def add_summary(self, markdown: str) -> None:
        self.summary.append(markdown.rstrip() + "\n")

    def write_summary(self, note: str) -> None:
        """Append the summary to the step summary file, cut to GitHub's 1 MiB (with `note`
        saying where the rest is)."""
        text = "\n".join(self.summary)
        self.summary.clear()
        if not text:
            return
        if self.summary_file is None:
            with self.group("Job summary"):
                self.log(text)
            return
        used = self.summary_file.stat().st_size if self.summary_file.exists() else 0
        with self.summary_file.open("a", encoding="utf-8") as f:
            f.write(truncate_markdown(text, SUMMARY_LIMIT - used, note))


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    mode: str
    config: Path  # absolute, an existing file
    working_directory: Path  # absolute, inside the workspace
    stack_name: str | None
    aws_region: str | None
    endpoint_url: str | None
    health_check: bool
    force: bool = False


def _input(env: Mapping[str, str], name: str, default: str = "") -> str:
    """An input as action.yml passes it: INPUT_<NAME> with - as _ (empty means the default)."""
    return env.get("INPUT_" + name.upper().replace("-", "_"), "").strip() or default


def _choice(env: Mapping[str, str], name: str, default: str, choices: Sequence[str]) -> str:
    value = _input(env, name, default)
    if value not in choices:
        raise InputError(f"the {name} input: '{value}' is not allowed; choose one of: {', '.join(choices)}")
    return value


def read_inputs(env: Mapping[str, str], workspace: Path) -> Inputs:
    mode = _choice(env, "mode", "deploy", MODES)
    health_check = BOOLEANS[_choice(env, "health-check", "true", tuple(BOOLEANS))]
    force = BOOLEANS[_choice(env, "force", "false", tuple(BOOLEANS))]
    working_directory = _working_directory(_input(env, "working-directory", "."), workspace)
    stack_name = _input(env, "stack-name") or None
    if stack_name is not None and not STACK_NAME.fullmatch(stack_name):
        raise InputError(
            f"the stack-name input: '{stack_name}' is not a valid CloudFormation stack name; use"
            " letters, digits and hyphens, starting with a letter, at most 128 characters"
        )
    region = _input(env, "aws-region") or None
    if region is not None and not REGION.fullmatch(region):
        raise InputError(f"the aws-region input: '{region}' is not an AWS region name such as us-east-1")
    endpoint = _input(env, "endpoint-url") or None
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint):
        raise InputError(
            f"the endpoint-url input: '{endpoint}' is not an http:// or https:// URL"
            " (leave it empty to use AWS itself)"
        )
    config = _config_path(_input(env, "config", "datasette-lambda.yml"), working_directory, workspace)
    return Inputs(mode, config, working_directory, stack_name, region, endpoint, health_check, force)


def _working_directory(value: str, workspace: Path) -> Path:
    resolved = (workspace / value).resolve()  # an absolute value replaces the workspace
    if not resolved.is_relative_to(workspace):
        raise InputError(
            f"the working-directory input: '{value}' is outside the workspace ({workspace}, where"
            " actions/checkout puts the repository); use a directory of the repository, relative"
            " to its root"
        )
    if not resolved.is_dir():
        raise InputError(
            f"the working-directory input: '{value}' is not a directory of the workspace; use a"
            " directory of the repository, relative to its root (did actions/checkout run first?)"
        )
    return resolved


def _config_path(value: str, working_directory: Path, workspace: Path) -> Path:
    path = working_directory / value
    if path.is_file():
        return path
    where = working_directory.relative_to(workspace).as_posix()
    place = "the repository's root" if where == "." else f"the working directory '{where}'"
    if path.is_dir():
        problem = "is a directory; name the config file itself"
    elif not any(workspace.iterdir()):
        problem = "was not found: the workspace is empty; add actions/checkout before this step"
    else:
        problem = (
            f"was not found in {place}; set `config:` to the config file's path relative to it"
            " (see the README's config section to write one)"
        )
    raise InputError(f"the config input: '{value}' {problem}")


def load_for_action(inputs: Inputs) -> Config:
    """The config, with the stack-name and aws-region inputs in place of its own values."""
    config = load_config(inputs.config)
    if inputs.stack_name:
        config = dataclasses.replace(config, stack=inputs.stack_name)
    if inputs.aws_region:
        config = dataclasses.replace(config, region=inputs.aws_region)
    return config


# -- the stages -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What a stage needs: the runner, the inputs, the loaded config, the mode it runs as."""

    github: GitHub
    inputs: Inputs
    config: Config
    mode: str
    note: str | None  # why the mode differs from the input, if it does

    def outputs(self, **values: str) -> None:
        given = {name.replace("_", "-"): value for name, value in values.items()}
        self.github.set_outputs({name: given.get(name, "") for name in OUTPUTS})


def build_stage(run: Run) -> None:
    with run.github.group(f"Build the databases of {run.github.shown(run.inputs.config)}"):
        started = time.perf_counter()
        built = build(run.config, log=run.github.log)
        run.github.log(describe_build(built, time.perf_counter() - started))
    _warn(run.github, built.warnings)
    run.outputs(stack_name=run.config.stack)
    run.github.add_summary(build_markdown(run.config.stack, built))


def build_and_package(run: Run) -> tuple[BuildResult, PackageResult]:
    with run.github.group("Build the databases and package them for Lambda"):
        started = time.perf_counter()
        built = build(run.config, log=run.github.log)
        run.github.log(describe_build(built, time.perf_counter() - started))
        result = package(run.config, built, log=run.github.log)
        run.github.log(describe_package(result, time.perf_counter() - started))
    _warn(run.github, (*built.warnings, *result.warnings))
    return built, result


def plan_stage(run: Run) -> None:
    _built, result = build_and_package(run)
    template = render_template(run.config, result)
    with run.github.group("Check the template and the bundle; compare with AWS"):
        options = DeployOptions(endpoint_url=run.inputs.endpoint_url, log=run.github.log)
        checked = checked_plan(run.config, result, template, options, run.config.build_dir / "plan.md")
        outcome, markdown, report = checked.outcome, checked.markdown, checked.report
        run.github.log(markdown)
    if checked.smoke.skipped:
        run.github.command("warning", f"smoke test {checked.smoke.skipped}", title="datasette-lambda plan")
    if not outcome.online:
        run.github.command("notice", f"plan ran {outcome.note}", title="datasette-lambda plan")
    run.outputs(
        stack_name=run.config.stack,
        changed=str(bool(outcome.changes)).lower() if outcome.online else "",
        bundle_sha256=result.function.sha256,
        bundle_size=str(result.function.zipped_size),
        plan_markdown=str(report),
    )
    run.github.add_summary(f"> {run.note}\n\n{markdown}" if run.note else markdown)
    if checked.problems:
        raise CheckError(f"{' and '.join(checked.problems)}; see the job summary or {report}")


def deploy_stage(run: Run) -> None:
    require_credentials(run.config, run.inputs.endpoint_url)
    _built, result = build_and_package(run)
    with run.github.group(f"Deploy the stack {run.config.stack}"):
        options = DeployOptions(
            endpoint_url=run.inputs.endpoint_url,
            health_check=run.inputs.health_check,
            force=run.inputs.force,
            log=run.github.log,
        )
        outcome = deploy(run.config, result, render_template(run.config, result), options)
        run.github.log(describe_deploy(outcome))
    run.outputs(
        url=outcome.url or "",
        stack_name=outcome.stack,
        changed=str(outcome.changed).lower(),
        bundle_sha256=result.function.sha256,
        bundle_size=str(result.function.zipped_size),
    )
    run.github.add_summary(deploy_markdown(outcome))
    health = outcome.health
    if health is not None and not health.ok:
        raise SiteDownError(
            f"the stack deployed, but the site does not answer: GET {health.url} ->"
            f" {health.status or health.error}; see the function's logs in CloudWatch"
            f" (/aws/lambda/{outcome.function_name})"
        )
    verb = "deployed" if outcome.changed else "unchanged (nothing to deploy)"
    run.github.command("notice", f"{outcome.stack} {verb}: {outcome.url}", title="datasette-lambda deploy")


def require_credentials(config: Config, endpoint_url: str | None) -> None:
    """Fail before the build (minutes of it) when a deploy could not reach AWS anyway."""
    aws = aws_session(config, endpoint_url)  # CredentialsError without a region
    if not has_credentials(aws):
        raise CredentialsError(
            "deploy mode needs AWS credentials and this job has none; nothing was built or sent"
            " to AWS. Add aws-actions/configure-aws-credentials (with role-to-assume) before this"
            " step, and `permissions: id-token: write` to the job"
        )


STAGES: dict[str, Callable[[Run], None]] = {"build": build_stage, "plan": plan_stage, "deploy": deploy_stage}


def build_markdown(stack: str, built: BuildResult) -> str:
    lines = [f"# datasette-lambda build: `{stack}`", "", "| database | table | rows |", "|---|---|---:|"]
    for database in built.databases:
        for table in database.tables:
            if not table.hidden:
                lines.append(f"| {database.name} | {table.name} | {table.rows:,} |")
        lines += [f"| {database.name} | {view} (view) | |" for view in database.views]
    lines.append("")
    for database in built.databases:
        lines.append(f"- `{database.path.name}`: {database.size:,} bytes, sha256 `{database.sha256[:12]}`")
    lines += [f"- warning: {warning}" for warning in built.warnings]
    return "\n".join(lines) + "\n"


def _warn(github: GitHub, warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        github.command("warning", warning, title="datasette-lambda")


# -- one way to fail ------------------------------------------------------------------------------


DATA_HINT = (
    "Fix the data file (or the config entry that reads it) named above; `datasette-lambda build` shows"
    " the same error locally."
)
# What to do about each kind of error, most specific first ({mode}: the mode that failed).
HOW_TO_FIX: tuple[tuple[type[UserError], str], ...] = (
    (
        InputError,
        "Change the step's `with:` inputs; the README's section \"The GitHub Action\" lists each input"
        " and what it allows.",
    ),
    (CredentialsError, OIDC_HOW_TO),
    (
        ConfigError,
        'Fix the config file where the annotation points; the README\'s section "The config file"'
        " describes every key. `datasette-lambda {mode}` shows the same error locally.",
    ),
    (SourceError, DATA_HINT),
    (BuildError, DATA_HINT),
    (PackageError, "Follow the message; `datasette-lambda package` shows the same error locally."),
    (
        CheckError,
        "The plan report (the job summary, and the plan-markdown file) lists cfn-lint's problems and"
        " the smoke test's answers; `datasette-lambda plan` shows the same locally.",
    ),
    (
        SiteDownError,
        "The new version is live but does not answer: its logs in CloudWatch say why (often a plugin"
        " that fails to import, or too little memory). Fix it and deploy again; `health-check: false`"
        " skips this check.",
    ),
    (
        StackFailedError,
        "CloudFormation's reasons are listed above; fix their cause and deploy again. `mode: plan`"
        " previews a change without making it.",
    ),
    (
        AwsError,
        'Follow the message. The README\'s section "Deploying" lists the AWS calls each mode makes'
        " and the IAM policy the deploying role needs.",
    ),
)


def how_to_fix(error: UserError, mode: str) -> str:
    for kind, hint in HOW_TO_FIX:
        if isinstance(error, kind):
            return hint.replace("{mode}", mode)
    return "Follow the message above; the job summary has the details."


def die(github: GitHub, error: UserError, mode: str) -> NoReturn:
    """The one failure path: an annotation (at the file and line when known), a summary section
    saying how to fix it, exit status 1."""
    location = error.location
    file = github.relative(location.file) if location else None
    message = error.message if file else str(error)
    line = location.line if location and file else None
    github.command("error", message, file=file, line=line, title=f"datasette-lambda {mode} failed")
    where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
    fence = "```"
    shown = f"{where}{message}".replace(fence, "'''")
    github.add_summary(
        f"## datasette-lambda {mode} failed\n\n{fence}text\n{shown}\n{fence}\n\n"
        f"**How to fix:** {how_to_fix(error, mode)}"
    )
    github.write_summary(_cut_note(mode))
    raise SystemExit(1)


def _cut_note(mode: str) -> str:
    return (
        f"_(cut here: the summary is over GitHub's 1 MiB limit for a step; the workflow log of the"
        f" datasette-lambda {mode} step has it all.)_"
    )


# -- the entry point ------------------------------------------------------------------------------


def effective_mode(mode: str, event: str) -> tuple[str, str | None]:
    """On a pull request, deploy means plan: the change is previewed, never made live."""
    if mode == "deploy" and event in PULL_REQUEST_EVENTS:
        return "plan", (
            f"mode is deploy, but this is a {event} event: running plan instead (a dry run that"
            " changes nothing). The site is deployed from a push to the branch it publishes."
        )
    return mode, None


def prepare(github: GitHub, env: Mapping[str, str]) -> Run:
    """Mask the secrets, read the inputs and the config, and decide the mode."""
    github.mask(env.get(SECRET_VARIABLE))
    inputs = read_inputs(env, github.workspace)
    config = load_for_action(inputs)
    for name in config.deploy.secrets:
        github.mask(env.get(name))
    mode, note = effective_mode(inputs.mode, env.get("GITHUB_EVENT_NAME", ""))
    if note:
        github.command("notice", note, title="datasette-lambda")
    overridden = (
        " (with the stack and region from the inputs)" if inputs.stack_name or inputs.aws_region else ""
    )
    github.log(
        f"datasette-lambda {mode}: stack {config.stack}. Locally, from the repository's root, the same is:"
        f" datasette-lambda {mode} -c {github.shown(inputs.config)}{overridden}"
    )
    return Run(github, inputs, config, mode, note)


def _attempt(github: GitHub, mode: str, step: Callable[[], T]) -> T:
    try:
        return step()
    except UserError as error:
        die(github, error, mode)
    except Exception as exc:  # a bug: show the traceback, then fail the same way
        with github.group("Traceback"):
            github.log(traceback.format_exc())
        bug = UserError(
            f"datasette-lambda failed unexpectedly ({type(exc).__name__}: {exc}). This is a bug:"
            " please report it with the traceback in the log"
        )
        die(github, bug, mode)


def main(env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    github = GitHub.from_env(env, out or sys.stdout)
    requested = _input(env, "mode", "deploy")
    run = _attempt(github, requested if requested in MODES else "action", lambda: prepare(github, env))
    _attempt(github, run.mode, lambda: STAGES[run.mode](run))
    github.write_summary(_cut_note(run.mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
