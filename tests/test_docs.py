"""Keep the docs honest: every config key, command, option, module, action input and output is
documented, and every relative link in README.md and docs/ leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from datasette_action import config
from datasette_action.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = sorted(DOCS.glob("*.md"))
MARKDOWN = [ROOT / "README.md", *PAGES]

# The docs page that documents each command (its section, heading and option table live there).
COMMAND_PAGES = {
    "init": "init.md",
    "build": "building.md",
    "package": "packaging-and-serving.md",
    "serve": "packaging-and-serving.md",
    "deploy": "deploying.md",
    "plan": "deploying.md",
    "destroy": "deploying.md",
    "template": "deploying.md",
    "iam-policy": "deploying.md",
    "setup-github": "setup-github.md",
    "local-aws": "local-aws.md",
}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def config_keys() -> set[str]:
    """Every key the config parser accepts: the names in its table of keys, `config.SECTIONS`."""
    return {key.name for keys in config.SECTIONS.values() for key in keys}


def test_the_parser_accepts_the_keys_we_look_for() -> None:
    assert {"stack", "tables", "foreign_keys", "reserved_concurrency", "frontend"} <= config_keys()


def test_every_config_key_is_in_the_configuration_page() -> None:
    section = read(DOCS / "configuration.md")
    missing = sorted(key for key in config_keys() if f"{key}:" not in section and f"`{key}`" not in section)
    assert not missing, f"config keys missing from docs/configuration.md: {missing}"


# -- commands and their options ------------------------------------------------------------------


def test_every_command_has_a_docs_page() -> None:
    assert set(COMMAND_PAGES) == set(cli.commands), (
        "a command without a page in COMMAND_PAGES, or a stale one"
    )
    missing = sorted(
        name for name, page in COMMAND_PAGES.items() if f"datasette-lambda {name}" not in read(DOCS / page)
    )
    assert not missing, f"commands missing from their docs page: {missing}"


def long_flags(command: click.Command) -> list[str]:
    """Every long flag of the command's options (`--force`, `--no-health-check`), from click."""
    return [
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--")
    ]


def test_commands_have_the_options_we_look_for() -> None:
    assert {"--force", "--no-health-check", "--endpoint-url"} <= set(long_flags(cli.commands["deploy"]))


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_every_commands_help_matches_the_docs(name: str) -> None:
    """Every option `datasette-lambda NAME --help` lists is in the docs page of the command."""
    page = read(DOCS / COMMAND_PAGES[name])
    flags = long_flags(cli.commands[name])
    missing = [flag for flag in flags if not re.search(re.escape(flag) + r"(?![\w-])", page)]
    assert not missing, (
        f"options of `datasette-lambda {name}` missing from docs/{COMMAND_PAGES[name]}: {missing}"
    )


# -- the architecture table ----------------------------------------------------------------------


def table_name(path: Path, package: Path) -> str:
    """How the architecture table names a module: by its path below the package (a subpackage's
    modules with their folder, `local_aws/servers.py`), else by its file name."""
    return path.relative_to(package).as_posix() if path.is_relative_to(package) else path.name


def test_every_module_is_in_the_architecture_table() -> None:
    section = read(DOCS / "architecture.md")
    package = ROOT / "datasette_action"
    modules = [*package.glob("**/*.py"), *(ROOT / "entrypoint").glob("*.py")]
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in modules
        if not path.name.startswith("__") and f"{table_name(path, package)}`" not in section
    )
    assert not missing, f"modules missing from docs/architecture.md's table: {missing}"


def test_every_row_of_the_architecture_table_names_a_module_that_exists() -> None:
    section = read(DOCS / "architecture.md")
    named = re.findall(r"^\| `([^`|]+\.py)`", section, flags=re.MULTILINE)
    assert len(named) > 30
    stale = sorted(name for name in named if not (ROOT / name).is_file())
    assert not stale, f"rows of docs/architecture.md's table for modules that do not exist: {stale}"


# -- the README --------------------------------------------------------------------------------------


def test_the_readme_is_a_landing_page() -> None:
    assert len(README.splitlines()) <= 250
    first = README.split("\n## ", 2)[1]
    assert first.startswith("Quick start (a fresh machine, no AWS account)")
    assert "./scripts/example" in first and "./scripts/test" in first
    assert "./scripts/test" in read(ROOT / ".ci/run")  # CI runs the README's test command


def test_the_readme_links_every_docs_page() -> None:
    missing = [page.name for page in PAGES if f"](docs/{page.name})" not in README]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_every_action_input_and_output_is_in_the_readmes_table() -> None:
    definition: dict[str, Any] = yaml.safe_load(read(ROOT / "action.yml"))
    section = README.split("\n## The action's inputs and outputs", 1)[1].split("\n## ", 1)[0]
    names = [*definition["inputs"], *definition["outputs"]]
    missing = [name for name in names if f"| `{name}` |" not in section]
    assert not missing, f"action.yml inputs and outputs missing from the README's table: {missing}"
    documented = re.findall(r"^\| `([\w-]+)` \|", section, flags=re.MULTILINE)
    assert sorted(documented) == sorted(names), "the README's table has rows action.yml does not"
    for name, value in definition["inputs"].items():
        if value.get("default"):
            assert f"| `{name}` | `{value['default']}` |" in section, name


# -- links ---------------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but `-` and `_` dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def outside_code_blocks(text: str) -> str:
    """The text without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def outside_code(text: str) -> str:
    """The text without its fenced code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", outside_code_blocks(text))


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", outside_code_blocks(read(path)), flags=re.MULTILINE)
    return {slug(heading) for heading in headings}


def links(path: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", outside_code(read(path)))


def test_the_slug_is_githubs() -> None:
    assert slug("Deploying (`datasette-lambda deploy`, `plan`, `destroy`)") == (
        "deploying-datasette-lambda-deploy-plan-destroy"
    )
    assert slug("The plan role's policy (`datasette-lambda iam-policy --plan`)") == (
        "the-plan-roles-policy-datasette-lambda-iam-policy---plan"
    )


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for link in links(path):
        if re.match(r"[a-z][\w+.-]*:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(link)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(link)
    assert not broken, f"links in {path.relative_to(ROOT)} that lead nowhere: {broken}"
