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
import json
import os
import re
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TextIO, TypeVar

from datasette_action import output, pipeline
from datasette_action.config import Config, load_config, region_problem, stack_name_problem
from datasette_action.deploy import DeployOptions
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
    UnsafeEventError,
    UserError,
)
from datasette_action.pipeline import Built, Deployed, Packaged, Planned

T = TypeVar("T")

MODES = ("deploy", "plan", "build")
BOOLEANS = {"true": True, "false": False}
# Events about a pull request that has not landed: `mode: deploy` plans on them, never deploys.
# merge_group: a merge queue's check of a pull request before it lands; the review events run on
# the pull request's merge ref
# (https://docs.github.com/en/actions/reference/workflows-and-actions/events-that-trigger-workflows).
PULL_REQUEST_EVENTS = (
    "pull_request",
    "pull_request_target",
    "merge_group",
    "pull_request_review",
    "pull_request_review_comment",
)
# "GitHub Actions are limited to 10 warning annotations and 10 error annotations per step"
# (https://github.com/orgs/community/discussions/68471, and GitHub's documentation of the
# check-runs API): 9 warnings, then one notice that counts the rest (the log keeps them all).
WARNINGS_SHOWN = 9
OUTPUTS = ("url", "stack-name", "changed", "bundle-sha256", "bundle-size", "plan-markdown")
SECRET_VARIABLE = "DATASETTE_SECRET"
# "The maximum size of a job summary for a step is 1 MiB":
# https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands#adding-a-job-summary
SUMMARY_LIMIT = 1024 * 1024
# aws-actions/configure-aws-credentials v6.2.3 (Node 24), as in examples/workflows/.
CONFIGURE_AWS = "aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3"
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
see "One-time AWS setup" in the action's docs/deploying.md. To check a change without AWS, use `mode: plan`
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
    warnings_shown: int = 0
    warnings_held_back: int = 0

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

    def warning(self, message: str, title: str) -> None:
        """A warning annotation, while GitHub shows them (WARNINGS_SHOWN); after that a log line."""
        if self.warnings_shown < WARNINGS_SHOWN:
            self.warnings_shown += 1
            self.command("warning", message, title=title)
        else:
            self.warnings_held_back += 1
            self.log(f"Warning: {message}")

    def count_held_back(self) -> None:
        """One notice for the warnings past GitHub's limit, once the step is done."""
        if self.warnings_held_back:
            held, self.warnings_held_back = self.warnings_held_back, 0
            self.command(
                "notice",
                f"{held} more warning(s) are in the log of this step (GitHub shows {WARNINGS_SHOWN + 1}"
                " annotations of a kind per step)",
                title="datasette-lambda",
            )

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
    problem = stack_name_problem(stack_name) if stack_name is not None else None
    if problem:
        raise InputError(f"the stack-name input: {problem}")
    region = _input(env, "aws-region") or None
    problem = region_problem(region) if region is not None else None
    if problem:
        raise InputError(f"the aws-region input: {problem}")
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
            " (`datasette-lambda init` writes one; docs/configuration.md describes it)"
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
    """What a stage needs: the runner, the inputs, the loaded config, the mode it runs as, and the
    job's environment (for the secrets' values and the run id)."""

    github: GitHub
    inputs: Inputs
    config: Config
    mode: str
    note: str | None  # why the mode differs from the input, if it does
    env: Mapping[str, str] = field(repr=False)

    def outputs(self, **values: str) -> None:
        given = {name.replace("_", "-"): value for name, value in values.items()}
        self.github.set_outputs({name: given.get(name, "") for name in OUTPUTS})

    def options(self, **given: bool) -> DeployOptions:
        return DeployOptions(
            endpoint_url=self.inputs.endpoint_url,
            log=self.github.log,
            run_id=pipeline.run_id(self.env),
            secrets=pipeline.secret_values(self.config, self.env),
            **given,
        )


def build_stage(run: Run) -> None:
    with run.github.group(f"Build the databases of {run.github.shown(run.inputs.config)}"):
        built = pipeline.build(run.config, log=run.github.log)
        run.github.log(output.build_text(built))
    report(run, built)


def package_stage(run: Run) -> Packaged:
    with run.github.group("Build the databases and package them for Lambda"):
        packaged = pipeline.build_and_package(run.config, log=run.github.log)
        run.github.log(output.build_text(packaged.built))
        run.github.log(output.package_text(packaged))
    _warn(run.github, packaged.warnings)
    return packaged


def plan_stage(run: Run) -> None:
    pipeline.check_region(run.config)
    packaged = package_stage(run)
    with run.github.group("Check the template and the bundle; compare with AWS"):
        planned = pipeline.plan(packaged, run.options(), run.config.build_dir / "plan.md")
    report(run, planned)


def deploy_stage(run: Run) -> None:
    pipeline.require_credentials(run.config, run.inputs.endpoint_url)
    pipeline.check_region(run.config)
    packaged = package_stage(run)
    with run.github.group(f"Deploy the stack {run.config.stack}"):
        deployed = pipeline.deploy(
            packaged, run.options(health_check=run.inputs.health_check, force=run.inputs.force)
        )
    report(run, deployed)


STAGES: dict[str, Callable[[Run], None]] = {"build": build_stage, "plan": plan_stage, "deploy": deploy_stage}


def report(run: Run, result: object) -> None:
    """A stage's result for the runner: the log, annotations, outputs and the job summary. Also
    called with what a failed stage finished (`UserError.result`), before the error."""
    github = run.github
    if isinstance(result, Built):
        _warn(github, result.result.warnings)
        run.outputs(stack_name=run.config.stack)
        github.add_summary(output.build_markdown(result))
    elif isinstance(result, Planned):
        plan, function = result.plan, result.packaged.result.function
        github.log(result.markdown)
        if result.smoke.skipped:
            github.warning(f"smoke test {result.smoke.skipped}", title="datasette-lambda plan")
        if not plan.online:
            github.command("notice", f"plan ran {plan.note}", title="datasette-lambda plan")
        run.outputs(
            stack_name=run.config.stack,
            changed=str(bool(plan.changes)).lower() if plan.changes_from != "unknown" else "",
            bundle_sha256=function.sha256,
            bundle_size=str(function.zipped_size),
            plan_markdown=str(result.report),
        )
        github.add_summary(f"> {run.note}\n\n{result.markdown}" if run.note else result.markdown)
    elif isinstance(result, Deployed):
        deployed, function = result.result, result.packaged.result.function
        github.log(output.deploy_text(deployed))
        run.outputs(
            url=deployed.url or "",
            stack_name=deployed.stack,
            changed=str(deployed.changed).lower(),
            bundle_sha256=function.sha256,
            bundle_size=str(function.zipped_size),
        )
        github.add_summary(output.deploy_markdown(deployed))
        if deployed.health is None or deployed.health.ok:
            verb = "deployed" if deployed.changed else "unchanged (nothing to deploy)"
            github.command(
                "notice", f"{deployed.stack} {verb}: {deployed.url}", title="datasette-lambda deploy"
            )


def _warn(github: GitHub, warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        github.warning(warning, title="datasette-lambda")


# -- one way to fail ------------------------------------------------------------------------------


DATA_HINT = (
    "Fix the data file (or the config entry that reads it) named above; `datasette-lambda build` shows"
    " the same error locally."
)
# What to do about each kind of error, most specific first ({mode}: the mode that failed).
HOW_TO_FIX: tuple[tuple[type[UserError], str], ...] = (
    (
        InputError,
        "Change the step's `with:` inputs; the action's docs/action.md lists each input and what it allows.",
    ),
    (CredentialsError, OIDC_HOW_TO),
    (
        UnsafeEventError,
        "Trigger the plan with `on: pull_request` rather than `pull_request_target`; to comment on a"
        " fork's pull request, use a second workflow on `workflow_run` that reads the plan's artifact"
        " (see the action's docs/action.md).",
    ),
    (
        ConfigError,
        "Fix the config file where the annotation points; the action's docs/configuration.md"
        " describes every key. `datasette-lambda {mode}` shows the same error locally.",
    ),
    (SourceError, DATA_HINT),
    (BuildError, DATA_HINT),
    (PackageError, "Follow the message; `datasette-lambda package` shows the same error locally."),
    (
        CheckError,
        "The plan report (the job summary, and the plan-markdown file) lists cfn-lint's problems and"
        " the smoke test's answers (a deploy stopped by cfn-lint lists them in the message above);"
        " `datasette-lambda plan` shows the same locally.",
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
        "Follow the message. The action's docs/deploying.md lists the AWS calls each mode makes"
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
    github.count_held_back()
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


def refuse_unsafe_event(env: Mapping[str, str]) -> None:
    """pull_request_target runs with this repository's secrets and a token that can write, on
    pull requests from anyone; the plan would run what the pull request controls (plugins,
    plugins_dir, templates, sql: steps, the smoke test). Refused unless the pull request comes
    from this repository itself
    (https://docs.github.com/en/actions/reference/workflows-and-actions/events-that-trigger-workflows#pull_request_target,
    https://securitylab.github.com/resources/github-actions-preventing-pwn-requests/)."""
    if env.get("GITHUB_EVENT_NAME") != "pull_request_target":
        return
    base = env.get("GITHUB_REPOSITORY", "")
    head = _head_repository(env.get("GITHUB_EVENT_PATH"))
    if head and head == base:
        return
    raise UnsafeEventError(
        f"this is a pull_request_target event for a pull request from {head or 'an unknown or deleted'}"
        f" {'fork' if head else 'repository'}: the workflow runs with {base or 'this repository'}'s"
        " secrets and a write token, and a plan would run code the pull request controls (plugins,"
        " plugins_dir, templates, sql: steps, the smoke test), so the action refuses to run. Run the"
        " plan on `pull_request` instead (a fork gets no secrets there: it plans offline), and post"
        " its report from a separate `workflow_run` job"
    )


def _head_repository(event_path: str | None) -> str | None:
    """The full name of the repository a pull request comes from, from the event's payload."""
    if not event_path:
        return None
    try:
        payload = json.loads(Path(event_path).read_text(encoding="utf-8"))
        head = payload["pull_request"]["head"]["repo"]
        return str(head["full_name"]) if isinstance(head, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare(github: GitHub, env: Mapping[str, str]) -> Run:
    """Refuse unsafe events, mask the secrets, read the inputs and the config, decide the mode."""
    refuse_unsafe_event(env)
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
    return Run(github, inputs, config, mode, note, env)


def _attempt(github: GitHub, mode: str, step: Callable[[], T], run: Run | None = None) -> T:
    try:
        return step()
    except UserError as error:
        if run is not None and error.result is not None:
            report(run, error.result)
        die(github, error, mode)
    except Exception as exc:  # a bug: show the traceback, then fail the same way
        with github.group("Traceback"):
            github.log(traceback.format_exc())
        bug = UserError(
            f"datasette-lambda failed unexpectedly ({type(exc).__name__}: {exc}). This is a bug:"
            " please report it with the traceback in the log"
        )
        die(github, bug, mode)


def lambda_python(env: Mapping[str, str], out: TextIO) -> int:
    """`python -m datasette_action.action lambda-python`: action.yml's step between the install and
    the engine. It writes the config's `lambda.python` as the output `python`, and `setup=true` when
    the engine's own Python is another version: the action then sets that Python up too, because the
    bundle's .pyc files and its smoke test need the runtime's version (pyc.find_interpreter). It
    says nothing when the inputs or the config cannot be read: the engine's run reports those, once."""
    github = GitHub.from_env(env, out)
    try:
        inputs = read_inputs(env, github.workspace)
        config = load_for_action(inputs)
    except UserError:
        return 0
    engine = f"{sys.version_info.major}.{sys.version_info.minor}"
    # A build packages nothing: it needs no second Python.
    setup = inputs.mode != "build" and config.lambda_.python != engine
    github.set_outputs({"python": config.lambda_.python, "setup": str(setup).lower()})
    if setup:
        github.log(
            f"lambda.python is {config.lambda_.python} and datasette-lambda runs on Python {engine}:"
            f" setting up Python {config.lambda_.python} to compile and smoke-test the bundle"
        )
    return 0


def main(env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    github = GitHub.from_env(env, out or sys.stdout)
    requested = _input(env, "mode", "deploy")
    run = _attempt(github, requested if requested in MODES else "action", lambda: prepare(github, env))
    _attempt(github, run.mode, lambda: STAGES[run.mode](run), run)
    github.count_held_back()
    github.write_summary(_cut_note(run.mode))
    return 0


if __name__ == "__main__":
    sys.exit(lambda_python(os.environ, sys.stdout) if sys.argv[1:] == ["lambda-python"] else main())
