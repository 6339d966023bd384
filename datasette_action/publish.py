"""`datasette publish lambda`: Datasette's publish plugin hook, run on this project's engine.

Datasette's own publishers (`datasette/publish/cloudrun.py`) copy the databases into a temporary
directory and hand it to a cloud's build service. This one writes a datasette-lambda *project*
instead (the config, copies of the databases as `file:` databases, the metadata, static
directories, templates, one-file plugins), then runs the stages `datasette-lambda deploy` runs:
load_config -> build -> package -> render_template -> deploy. `--generate-dir DIR` writes that
project into DIR, with the two zips and the rendered template beside it, and stops there.

Plugin secrets (`--plugin-secret`) never enter the bundle, the template or the generated files:
the metadata says `{"$env": NAME}`, NAME is listed in `deploy.secrets`, and the value goes to the
deploy call only, in its options (deploy passes it to the function as a NoEcho parameter).

Only light modules (click, pluggy, yaml, packaging, this package's config) are imported at module
level: Datasette imports every installed plugin at start, so `datasette serve` should not pay for
boto3 or sqlite-utils; the stages are imported when the command runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
import yaml
from click.core import ParameterSource
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pluggy import HookimplMarker

from datasette_action.config import (
    ARCHITECTURES,
    DATABASE_NAME,
    DATASETTE_SETTINGS,
    DEFAULT_CONFIG_NAME,
    ENV_NAME,
    FRONTENDS,
    LAMBDA_PYTHONS,
    MEMORY_MAX,
    MEMORY_MIN,
    RESERVED_ENV,
    DeployConfig,
    LambdaConfig,
    frontend_problem,
    region_problem,
    stack_name_problem,
)
from datasette_action.errors import UserError
from datasette_action_entrypoint.bundle import ENV_SECRET

if TYPE_CHECKING:
    from datasette_action.pipeline import Packaged

hookimpl = HookimplMarker("datasette")  # what `from datasette import hookimpl` is, typed

SQLITE_HEADER = b"SQLite format 3\x00"  # build.SQLITE_HEADER (not imported: build pulls in sqlite-utils)
METADATA_FILE = "metadata.json"
TEMPLATE_FILE = "template.json"
DATABASES_DIR = "databases"
# Keys Datasette's publishers merge into the metadata from --title, --license, ...
METADATA_OPTIONS = ("title", "license", "license_url", "source", "source_url", "about", "about_url")

Log = Callable[[str], None]


# -- plain data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishRequest:
    """What the command line asked for, checked: everything needed to write the project."""

    files: tuple[Path, ...]  # SQLite databases; each becomes the database named by its stem
    stack: str
    region: str | None = None
    frontend: str = DeployConfig().frontend  # deploy.frontend
    lambda_: LambdaConfig = field(default_factory=LambdaConfig)
    metadata: Mapping[str, Any] = field(default_factory=dict)  # merged, secrets as {"$env": NAME}
    plugins: tuple[str, ...] = ()  # pip requirements (--install)
    datasette_version: str | None = None  # a pip specifier, from --install datasette==VERSION
    settings: Mapping[str, Any] = field(default_factory=dict)  # from --extra-options "--setting ..."
    static: tuple[tuple[str, Path], ...] = ()  # (url path, directory)
    template_dir: Path | None = None
    plugins_dir: Path | None = None
    version_note: str | None = None
    secrets: tuple[str, ...] = ()  # environment variable names, for deploy.secrets
    # Secret values (plugin secrets, --secret) by variable name: for the deploy call's
    # environment only, never written anywhere.
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class PluginSecret:
    plugin: str
    setting: str
    env: str  # the environment variable the value travels in


# -- the datasette plugin hook ------------------------------------------------------------------


@hookimpl
def publish_subcommand(publish: click.Group) -> None:
    from datasette.publish.common import (  # type: ignore[import-untyped]
        add_common_publish_arguments_and_options,
    )

    callback = add_common_publish_arguments_and_options(_lambda_options(publish_lambda))
    command = publish.command(name="lambda")(callback)
    for parameter in command.params:
        if parameter.name == "files":
            # Datasette's argument has exists=True: click would answer a missing file with a usage
            # error (exit 2). The command checks the files itself: one line, exit 1.
            parameter.type = click.Path(dir_okay=False)


def _lambda_options(function: Callable[..., None]) -> Callable[..., None]:
    defaults = LambdaConfig()
    for decorator in reversed(
        (
            click.option(
                "--stack",
                required=True,
                help="CloudFormation stack name (letters, digits and hyphens); also the function's name.",
            ),
            click.option("--region", help="AWS region, e.g. us-east-1 (default: the AWS environment's)."),
            click.option(
                "--frontend",
                type=click.Choice(FRONTENDS),
                default=DeployConfig().frontend,
                show_default=True,
                help="What serves the site: a Lambda function URL, or an API Gateway HTTP API (for"
                " regions without function URLs).",
            ),
            click.option(
                "--python",
                type=click.Choice(LAMBDA_PYTHONS),
                default=defaults.python,
                show_default=True,
                help="Lambda Python runtime.",
            ),
            click.option(
                "--architecture",
                type=click.Choice(ARCHITECTURES),
                default=defaults.architecture,
                show_default=True,
                help="Lambda architecture.",
            ),
            click.option(
                "--memory",
                type=int,
                default=defaults.memory,
                show_default=True,
                help=f"Function memory in MB, {MEMORY_MIN} to {MEMORY_MAX}.",
            ),
            click.option(
                "--endpoint-url",
                metavar="URL",
                help="Send every AWS call here (e.g. a local moto server); default: AWS_ENDPOINT_URL, else AWS.",
            ),
            click.option(
                "--generate-dir",
                type=click.Path(file_okay=False, path_type=Path),
                help="Write the project, the two zips and the CloudFormation template to this new"
                " (or empty) directory, without deploying: no AWS calls.",
            ),
            click.pass_context,
        )
    ):
        function = decorator(function)
    return function


def publish_lambda(
    ctx: click.Context,
    *,
    files: tuple[str, ...],
    metadata: TextIO | None,
    extra_options: str | None,
    branch: str | None,
    template_dir: str | None,
    plugins_dir: str | None,
    static: tuple[tuple[str, str], ...],
    install: tuple[str, ...],
    plugin_secret: tuple[tuple[str, str, str], ...],
    version_note: str | None,
    secret: str,
    stack: str,
    region: str | None,
    frontend: str,
    python: str,
    architecture: str,
    memory: int,
    endpoint_url: str | None,
    generate_dir: Path | None,
    **metadata_options: str | None,
) -> None:
    """Publish databases to Datasette running on AWS Lambda (CloudFormation)."""
    try:
        if branch:
            raise UserError(
                "--branch is not supported: the Lambda layer is made from wheels only (pip"
                " --only-binary), and a GitHub branch has none; pin a released Datasette with"
                " --install datasette==VERSION"
            )
        if generate_dir is not None and endpoint_url:
            raise UserError("--generate-dir makes no AWS calls; drop --endpoint-url (or --generate-dir)")
        databases = check_databases(files)
        check_stack(stack)
        check_region(region)
        check_frontend(frontend, region, deploying=generate_dir is None)
        check_memory(memory)
        environment: dict[str, str] = {}
        if ctx.get_parameter_source("secret") in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            # Only a secret the user chose: Datasette's default is a new random one per run, which
            # would sign everyone out on each publish; deploy keeps the stack's secret instead.
            environment[ENV_SECRET] = secret
        secrets = plugin_secrets(plugin_secret)
        plugins, datasette_version = check_install(install)
        merged = merge_metadata(
            read_metadata(metadata),
            {key: value for key, value in metadata_options.items() if value is not None},
            secrets,
        )
        environment.update({s.env: value for s, (_p, _s, value) in zip(secrets, plugin_secret)})
        request = PublishRequest(
            files=databases,
            stack=stack,
            region=region,
            frontend=frontend,
            lambda_=LambdaConfig(python=python, architecture=architecture, memory=memory),
            metadata=merged,
            plugins=plugins,
            datasette_version=datasette_version,
            settings=parse_extra_options(extra_options),
            static=check_static(static),
            template_dir=Path(template_dir).resolve() if template_dir else None,
            plugins_dir=Path(plugins_dir).resolve() if plugins_dir else None,
            version_note=version_note,
            secrets=tuple(s.env for s in secrets),
            environment=environment,
        )
        if generate_dir is not None:
            generate_project(request, generate_dir, log=_log)
        else:
            deploy_project(request, endpoint_url, log=_log)
    except UserError as error:
        _show_finished(error.result)
        raise click.ClickException(str(error)) from None


def _show_finished(result: object) -> None:
    """What a failed deploy did finish (a site deployed but not answering), before the error."""
    from datasette_action import output
    from datasette_action.pipeline import Deployed

    if isinstance(result, Deployed):
        _log(output.deploy_text(result.result))


# -- checking the command line ------------------------------------------------------------------


def check_databases(files: Sequence[str]) -> tuple[Path, ...]:
    if not files:
        raise UserError("give at least one SQLite database file to publish")
    seen: dict[str, str] = {}
    result = []
    for file in files:
        path = Path(file)
        if not path.exists():
            raise UserError(f"database file '{file}' does not exist")
        if not path.is_file():
            raise UserError(f"'{file}' is not a file; give SQLite database files")
        try:
            with path.open("rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise UserError(f"cannot read database file '{file}': {exc.strerror}") from None
        if header != SQLITE_HEADER:
            raise UserError(
                f"'{file}' is not a SQLite database; to publish CSV or JSON, build a database"
                " from it with a datasette-lambda.yml config (see datasette-lambda build)"
            )
        name = path.stem
        if not DATABASE_NAME.fullmatch(name):
            raise UserError(
                f"'{file}' would be the database '{name}'; database names here use letters, digits,"
                " '_', '-' and '.', starting with a letter or digit: rename the file"
            )
        if name.lower() in seen:
            raise UserError(
                f"'{file}' and '{seen[name.lower()]}' would both be the database '{name}'"
                " (names are not case-sensitive); rename one"
            )
        seen[name.lower()] = file
        result.append(path.resolve())
    return tuple(result)


def check_stack(stack: str) -> str:
    problem = stack_name_problem(stack)
    if problem:
        raise UserError(f"--stack {problem}")
    return stack


def check_region(region: str | None) -> str | None:
    problem = region_problem(region) if region is not None else None
    if problem:
        raise UserError(f"--region {problem}")
    return region


def check_frontend(frontend: str, region: str | None, *, deploying: bool) -> None:
    """--frontend function_url where AWS offers no function URLs, said in this command's words,
    before anything is written or built: the region given, else (to deploy) the environment's."""
    where = f"--region {region}"
    if region is None and deploying:
        from datasette_action.deploy import environment_region
        from datasette_action.pipeline import FROM_ENVIRONMENT

        region = environment_region()
        where = f"region {region} {FROM_ENVIRONMENT}"
    problem = (
        frontend_problem(frontend, region, setting="--frontend", fix="`--frontend http_api`")
        if region
        else None
    )
    if problem:
        raise UserError(f"{where}: {problem}")


def check_memory(memory: int) -> int:
    if not MEMORY_MIN <= memory <= MEMORY_MAX:
        raise UserError(f"--memory {memory}: Lambda allows {MEMORY_MIN} to {MEMORY_MAX} MB")
    return memory


def check_install(install: Sequence[str]) -> tuple[tuple[str, ...], str | None]:
    """--install as (plugins, Datasette's version): `datasette==0.65.1` pins Datasette itself."""
    plugins: list[str] = []
    pins: dict[str, str] = {}  # requirement -> specifier
    for requirement in install:
        try:
            parsed = Requirement(requirement)
        except InvalidRequirement:
            raise UserError(
                f"--install '{requirement}' is not a package name or pip requirement such as"
                " datasette-cluster-map or datasette-vega==0.6.2"
            ) from None
        is_datasette = canonicalize_name(parsed.name) == "datasette"
        if is_datasette and parsed.specifier and not (parsed.url or parsed.extras or parsed.marker):
            pins[requirement] = str(parsed.specifier)
        elif requirement not in plugins:
            plugins.append(requirement)
    if len(pins) > 1:
        raise UserError(f"--install pins Datasette twice ({' and '.join(pins)}); give one version")
    return tuple(plugins), next(iter(pins.values()), None)


def check_static(static: Sequence[tuple[str, str]]) -> tuple[tuple[str, Path], ...]:
    """Datasette's StaticMount type has checked each directory; mounts must differ."""
    seen: set[str] = set()
    for mount, _directory in static:
        url_path = mount.strip("/")
        if url_path in seen:
            raise UserError(f"--static: the mount '{mount}' is given twice")
        seen.add(url_path)
    return tuple((mount.strip("/"), Path(directory)) for mount, directory in static)


def read_metadata(file: TextIO | None) -> dict[str, Any]:
    """-m: JSON or YAML, as Datasette reads it."""
    if file is None:
        return {}
    name = getattr(file, "name", "metadata")
    text = file.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"-m {name}: neither JSON nor YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"-m {name}: metadata must be a mapping (JSON object), got {type(data).__name__}")
    return data


def plugin_secrets(values: Sequence[tuple[str, str, str]]) -> tuple[PluginSecret, ...]:
    """One environment variable per --plugin-secret, named as Datasette's publishers name them:
    `datasette-auth-github client_secret` -> DATASETTE_AUTH_GITHUB_CLIENT_SECRET."""
    result: list[PluginSecret] = []
    for plugin, setting, _value in values:
        env = re.sub(r"[^A-Za-z0-9_]", "_", f"{plugin}_{setting}").upper()
        if not ENV_NAME.fullmatch(env):
            raise UserError(
                f"--plugin-secret {plugin} {setting}: its environment variable would be {env}, which"
                " does not start with a letter (Lambda's variable names are [a-zA-Z][a-zA-Z0-9_]+);"
                " publish with a datasette-lambda.yml config instead, naming the"
                ' variable yourself in deploy.secrets and the metadata ({"$env": "NAME"})'
            )
        if env == ENV_SECRET or env in RESERVED_ENV:
            raise UserError(
                f"--plugin-secret {plugin} {setting}: its environment variable would be {env}, which"
                " Lambda or this tool reserves; it cannot be passed to the function"
            )
        twin = next((s for s in result if s.env == env), None)
        if twin is not None:
            raise UserError(
                f"--plugin-secret {plugin} {setting} and {twin.plugin} {twin.setting} would share the"
                f" environment variable {env}; give each secret once"
            )
        result.append(PluginSecret(plugin, setting, env))
    return tuple(result)


def merge_metadata(
    metadata: Mapping[str, Any], options: Mapping[str, str], secrets: Sequence[PluginSecret]
) -> dict[str, Any]:
    """The -m metadata, then --title and the rest over it, then each plugin secret as
    `{"$env": NAME}` (Datasette's publishers merge in this order too)."""
    extra: dict[str, Any] = {key: options[key] for key in METADATA_OPTIONS if options.get(key) is not None}
    if secrets:
        plugins: dict[str, Any] = {}
        for secret in secrets:
            plugins.setdefault(secret.plugin, {})[secret.setting] = {"$env": secret.env}
        extra["plugins"] = plugins
    return _merge(dict(metadata), extra)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def parse_extra_options(extra_options: str | None) -> dict[str, Any]:
    """`--extra-options` holds `datasette serve` options; the Lambda's Datasette is configured by
    the manifest, so only its settings (`--setting NAME VALUE`) can be passed on."""
    if not extra_options:
        return {}
    try:
        words = shlex.split(extra_options)
    except ValueError as exc:
        raise UserError(f"--extra-options: cannot split {extra_options!r}: {exc}") from None
    settings: dict[str, Any] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if word != "--setting":
            raise UserError(
                f"--extra-options: '{word}' is not supported; only '--setting NAME VALUE' (Datasette's"
                " settings) can be passed on to Datasette on Lambda"
            )
        if index + 2 >= len(words):
            raise UserError("--extra-options: '--setting' needs a NAME and a VALUE")
        name, value = words[index + 1], words[index + 2]
        settings[name] = _setting(name, value)
        index += 3
    return settings


def _setting(name: str, value: str) -> Any:
    kind = DATASETTE_SETTINGS.get(name)
    if kind is None:
        raise UserError(
            f"--extra-options: '{name}' is not a Datasette setting; choose one of:"
            f" {', '.join(DATASETTE_SETTINGS)}"
        )
    if kind is bool:
        words = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
        if value.lower() not in words:
            raise UserError(f"--extra-options: setting {name} takes on or off, got '{value}'")
        return words[value.lower()]
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise UserError(f"--extra-options: setting {name} takes a whole number, got '{value}'") from None
    return value


# -- the project --------------------------------------------------------------------------------


def write_project(request: PublishRequest, root: Path, *, link: bool) -> Path:
    """Write the datasette-lambda project for `request` into `root`; returns its config file.

    `link`: hard-link the databases and directories where the file system allows (a temporary
    project); otherwise copy them (a generated directory, which outlives the command).
    """
    place: Callable[[str | Path, str | Path], object] = _link_or_copy if link else shutil.copy2
    try:
        (root / DATABASES_DIR).mkdir(parents=True, exist_ok=True)
        databases: dict[str, Any] = {}
        for file in request.files:
            target = root / DATABASES_DIR / file.name
            place(file, target)
            wal = file.with_name(f"{file.name}-wal")
            if wal.exists():  # the build copies a WAL database through SQLite's backup API, WAL included
                place(wal, target.with_name(f"{target.name}-wal"))
            databases[file.stem] = {"file": f"{DATABASES_DIR}/{file.name}"}
        config: dict[str, Any] = {"stack": request.stack}
        if request.region:
            config["region"] = request.region
        config["databases"] = databases
        if request.metadata:
            (root / METADATA_FILE).write_text(_metadata_json(request.metadata), encoding="utf-8")
            config["metadata"] = METADATA_FILE
        datasette: dict[str, Any] = {}
        if request.datasette_version is not None:
            datasette["version"] = request.datasette_version
        if request.plugins:
            datasette["plugins"] = list(request.plugins)
        if request.settings:
            datasette["settings"] = dict(request.settings)
        if request.static:
            datasette["static"] = {}
            for url_path, directory in request.static:
                relative = _static_directory(url_path, datasette["static"].values())
                shutil.copytree(directory, root / relative, copy_function=place)
                datasette["static"][url_path] = relative
        if request.template_dir is not None:
            shutil.copytree(request.template_dir, root / "templates", copy_function=place)
            datasette["templates"] = "templates"
        if request.plugins_dir is not None:
            shutil.copytree(request.plugins_dir, root / "plugins", copy_function=place)
            datasette["plugins_dir"] = "plugins"
        if request.version_note is not None:
            datasette["version_note"] = request.version_note
        if datasette:
            config["datasette"] = datasette
        config["lambda"] = {
            "python": request.lambda_.python,
            "architecture": request.lambda_.architecture,
            "memory": request.lambda_.memory,
        }
        config["deploy"] = {"frontend": request.frontend}
        if request.secrets:
            config["deploy"]["secrets"] = list(request.secrets)
        path = root / DEFAULT_CONFIG_NAME
        path.write_text(_config_yaml(config, path), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the project in {root}: {exc}") from None
    return path


def _config_yaml(config: Mapping[str, Any], path: Path) -> str:
    head = (
        "# Written by `datasette publish lambda`. A datasette-lambda project: deploy it again with\n"
        f"#   datasette-lambda deploy -c {path}\n"
    )
    return head + yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True, default_flow_style=False)


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    try:
        return json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"-m: the metadata cannot be written as JSON ({exc}); quote dates and other values that are"
            " not text, numbers, true/false, lists or mappings"
        ) from None


def _static_directory(url_path: str, taken: Iterable[str]) -> str:
    """static/<url path as a file name>, unique among the mounts."""
    base = "static/" + (re.sub(r"[^A-Za-z0-9_-]", "_", url_path) or "_root")
    used = set(taken)
    candidate, number = base, 1
    while candidate in used:
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def _link_or_copy(source: Path | str, destination: Path | str) -> None:
    try:
        os.link(source, destination)  # databases can be large: no copy when on the same disk
    except OSError:
        shutil.copy2(source, destination)


# -- running the stages -------------------------------------------------------------------------


def generate_project(request: PublishRequest, directory: Path, log: Log) -> None:
    """The project, its two zips and its template in `directory`; nothing is sent to AWS."""
    from datasette_action import pipeline
    from datasette_action.config import load_config

    if directory.exists() and any(directory.iterdir()):
        raise UserError(f"--generate-dir {directory} is not empty; give a new or empty directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--generate-dir {directory}: cannot create it: {exc.strerror}") from None
    config_path = write_project(request, directory, link=False)
    packaged = pipeline.build_and_package(load_config(config_path), log=log)
    _log_packaged(packaged, log)
    written = [config_path]
    for artifact in packaged.result.artifacts:
        target = directory / artifact.zip_path.name
        _link_or_copy(artifact.zip_path, target)
        written.append(target)
    template_path = directory / TEMPLATE_FILE
    template_path.write_text(packaged.template.to_json(), encoding="utf-8")
    written.append(template_path)
    lines = [f"Generated {directory} (no AWS calls were made):"]
    lines += [f"  {path.name}" for path in written]
    lines.append(f"Deploy it with: datasette-lambda deploy -c {config_path}")
    if request.secrets:
        lines.append(f"  with {', '.join(request.secrets)} set in the environment (deploy.secrets)")
    log("\n".join(lines))


def deploy_project(request: PublishRequest, endpoint_url: str | None, log: Log) -> None:
    """Write the project in a temporary directory, build, package and deploy it. The secrets'
    values go to deploy as options, from this process's environment and the command line."""
    from datasette_action import output, pipeline
    from datasette_action.config import load_config
    from datasette_action.deploy import DeployOptions

    with tempfile.TemporaryDirectory(prefix="datasette-publish-lambda-") as scratch:
        root = Path(scratch)
        try:
            config = load_config(write_project(request, root, link=True))
            pipeline.check_region(config)
            packaged = pipeline.build_and_package(config, log=log)
            _log_packaged(packaged, log)
            options = DeployOptions(
                endpoint_url=endpoint_url,
                log=log,
                run_id=pipeline.run_id(os.environ),
                secrets={**pipeline.secret_values(config, os.environ), **request.environment},
            )
            deployed = pipeline.deploy(packaged, options)
        except UserError as error:
            raise _without_scratch(error, root) from None
    log(output.deploy_text(deployed.result))


def _log_packaged(packaged: Packaged, log: Log) -> None:
    from datasette_action import output

    log(output.build_text(packaged.built))
    for warning in packaged.warnings:
        log(f"Warning: {warning}")
    log(output.package_text(packaged))


def _without_scratch(error: UserError, root: Path) -> UserError:
    """An error pointing into the temporary project (gone once the command ends) keeps its
    message only."""
    location = error.location
    if location is not None and location.file.resolve().is_relative_to(root.resolve()):
        return UserError(error.message, result=error.result)
    return error


def _log(message: str) -> None:
    click.echo(message, err=True)
