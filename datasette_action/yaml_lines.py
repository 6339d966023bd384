"""Load YAML into plain Python values while remembering the line of every key and item.

PyYAML's `safe_load` forgets where values came from and silently keeps the last of two
duplicate keys; config errors must name the line, and a duplicated table must be an error,
so we walk PyYAML's node tree ourselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from datasette_action.errors import ConfigError, Location

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedYaml:
    """A parsed document and the 1-based line of each value, by key path."""

    value: Any
    lines: Mapping[KeyPath, int]


def format_path(path: KeyPath) -> str:
    """('databases', 'census', 'indexes', 1) -> 'databases.census.indexes[1]'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_yaml(text: str, file: Path) -> LoadedYaml:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", Location(file, line)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", Location(file)) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is None:
        return LoadedYaml(None, lines)
    value = _convert(node, (), lines, loader, file)
    return LoadedYaml(value, lines)


def _convert(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], loader: yaml.SafeLoader, file: Path
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            where = Location(file, key_node.start_mark.line + 1)
            if not isinstance(key, str):
                raise ConfigError(
                    f"{format_path(path) or 'top level'}: key {key!r} must be text", where
                )
            if key in result:
                first = lines[(*path, key)]
                raise ConfigError(
                    f"duplicate key '{key}' in {format_path(path) or 'the top level'}"
                    f" (first defined at line {first})",
                    where,
                )
            result[key] = _convert(value_node, (*path, key), lines, loader, file)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, index), lines, loader, file)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)
