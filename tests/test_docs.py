"""Keep the README honest: every config key and every command is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from datasette_action import config
from datasette_action.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def config_keys() -> set[str]:
    """Every key the config parser accepts: the names in its table of keys, `config.SECTIONS`."""
    return {key.name for keys in config.SECTIONS.values() for key in keys}


def test_the_parser_accepts_the_keys_we_look_for() -> None:
    assert {"stack", "tables", "foreign_keys", "reserved_concurrency", "frontend"} <= config_keys()


def test_every_config_key_is_in_the_readme_config_section() -> None:
    section = README.split("## The config file", 1)[1].split("\n## ", 1)[0]
    missing = sorted(key for key in config_keys() if f"{key}:" not in section and f"`{key}`" not in section)
    assert not missing, f"config keys missing from the README's config section: {missing}"


def test_every_command_is_in_the_readme() -> None:
    missing = sorted(name for name in cli.commands if f"datasette-lambda {name}" not in README)
    assert not missing, f"commands missing from the README: {missing}"


def table_name(path: Path, package: Path) -> str:
    """How the architecture table names a module: by its path below the package (a subpackage's
    modules with their folder, `local_aws/servers.py`), else by its file name."""
    return path.relative_to(package).as_posix() if path.is_relative_to(package) else path.name


def test_every_module_is_in_the_readme_architecture_table() -> None:
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    package = ROOT / "datasette_action"
    modules = [*package.glob("**/*.py"), *(ROOT / "entrypoint").glob("*.py")]
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in modules
        if not path.name.startswith("__") and f"{table_name(path, package)}`" not in section
    )
    assert not missing, f"modules missing from the README's architecture table: {missing}"


def test_every_row_of_the_architecture_table_names_a_module_that_exists() -> None:
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^\| `([^`|]+\.py)`", section, flags=re.MULTILINE)
    assert len(named) > 30
    stale = sorted(name for name in named if not (ROOT / name).is_file())
    assert not stale, f"rows of the README's architecture table for modules that do not exist: {stale}"
