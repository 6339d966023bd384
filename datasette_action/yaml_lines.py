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

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_DEFAULT_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}
# Aliases are expanded into copies (each copy has its own lines), so nested anchors ("billion
# laughs": a 497-byte file of nine levels of nine aliases) would grow without end. The values one
# file may expand to are bounded by its size: a config's cost stays proportional to its length.
EXPANSION_BASE = 10_000
EXPANSION_PER_CHARACTER = 10


def expansion_budget(text: str) -> int:
    """How many values (mapping and list items, scalars) a file of `text` may load into."""
    return EXPANSION_BASE + EXPANSION_PER_CHARACTER * len(text)


class _Budget:
    def __init__(self, text: str) -> None:
        self.size = len(text)
        self.total = self.left = expansion_budget(text)


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
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters first
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        # str(exc) spans two lines and gives a character offset; report the line instead
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"invalid YAML: unacceptable character #x{code:04x}: {exc.reason}", Location(file, line)
        ) from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"invalid YAML: {_problem(exc)}", Location(file, _line(exc))) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", Location(file)) from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is None:
        return LoadedYaml(None, lines)
    value = _convert(node, (), lines, loader, file, frozenset(), _Budget(text))
    return LoadedYaml(value, lines)


def _line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark else None


def _problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML splits some messages in two ("expected a single document" / "but found another
    document"); the second half alone makes no sense."""
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and problem.startswith("but "):
        return f"{exc.context}, {problem}"
    if exc.context and problem == "second occurrence" and exc.context_mark:
        anchor = exc.context.removesuffix("; first occurrence")
        return f"{anchor} (first defined at line {exc.context_mark.line + 1})"
    return problem


def _inside(path: KeyPath) -> str:
    return f"in {format_path(path)}" if path else "at the top level"


def _convert(
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    loader: yaml.SafeLoader,
    file: Path,
    active: frozenset[int],
    budget: _Budget,
) -> Any:
    # A mapping's caller has already recorded the key's line, which beats the value's.
    line = lines.setdefault(path, node.start_mark.line + 1)
    _spend(budget, path, lines, file)
    if id(node) in active:  # `a: &x [*x]`: the alias would expand forever
        raise ConfigError(
            f"invalid YAML: {format_path(path) or 'the document'} is an alias of a value that"
            " contains it; an anchor's value cannot refer to itself",
            Location(file, line),
        )
    if isinstance(node, yaml.CollectionNode) and node.tag != _DEFAULT_TAGS[type(node)]:
        # `!!python/object/apply:os.system [...]` or `!!set {...}` must not pass as a plain list
        raise ConfigError(
            f"invalid YAML: could not determine a constructor for the tag '{node.tag}'",
            Location(file, node.start_mark.line + 1),
        )
    if isinstance(node, yaml.MappingNode):
        return _convert_mapping(node, path, lines, loader, file, active | {id(node)}, budget)
    if isinstance(node, yaml.SequenceNode):
        active = active | {id(node)}
        return [
            _convert(item, (*path, index), lines, loader, file, active, budget)
            for index, item in enumerate(node.value)
        ]
    return _scalar(node, loader, Location(file, node.start_mark.line + 1))


def _spend(budget: _Budget, path: KeyPath, lines: Mapping[KeyPath, int], file: Path) -> None:
    """One more value loaded (or mapping merged), or the error that the file's budget is spent."""
    budget.left -= 1
    if budget.left >= 0:
        return
    # an alias's own line is lost (it is the anchor's node); anchors come before their
    # aliases, so the latest line along the path is nearest the alias being expanded
    line = max(lines.get(path[:n], 1) for n in range(len(path) + 1))
    raise ConfigError(
        f"invalid YAML: aliases expand {format_path(path) or 'the document'} past"
        f" {budget.total:,} values, the most a file of {budget.size:,} characters may load"
        " into (anchors nested in anchors, a 'billion laughs'); write the values out instead"
        " of aliases of aliases",
        Location(file, line),
    )


def _convert_mapping(
    node: yaml.MappingNode,
    path: KeyPath,
    lines: dict[KeyPath, int],
    loader: yaml.SafeLoader,
    file: Path,
    active: frozenset[int],
    budget: _Budget,
) -> dict[str, Any]:
    own: dict[str, Any] = {}
    own_lines: dict[str, int] = {}
    # Keys copied in by YAML merges (`<<: *anchor`); the mapping's own keys override them.
    merged: dict[str, Any] = {}
    merged_lines: dict[KeyPath, int] = {}
    for key_node, value_node in node.value:
        where = Location(file, key_node.start_mark.line + 1)
        if key_node.tag == _MERGE_TAG:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                _spend(budget, path, lines, file)
                if id(source) in active:
                    raise ConfigError(
                        f"invalid YAML: '<<' (merge) {_inside(path)} merges a mapping into itself",
                        where,
                    )
                if not isinstance(source, yaml.MappingNode):
                    raise ConfigError(
                        f"invalid YAML: '<<' (merge) {_inside(path)} needs an alias of a mapping"
                        " or a list of them, such as <<: *defaults",
                        where,
                    )
                source_lines: dict[KeyPath, int] = {}
                values = _convert_mapping(source, path, source_lines, loader, file, active, budget)
                added = {
                    key: values[key] for key in values if key not in merged
                }  # in `<<: [*a, *b]`, a's keys win
                merged.update(added)
                # one pass over the source's lines (not one per key: that is quadratic)
                merged_lines.update(
                    (p, n) for p, n in source_lines.items() if len(p) > len(path) and p[len(path)] in added
                )
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "a mapping" if isinstance(key_node, yaml.MappingNode) else "a list"
            raise ConfigError(f"a key {_inside(path)} is {kind}; keys must be text", where)
        if key_node.tag == _VALUE_TAG:  # a plain `=` key, as PyYAML reads it
            key: Any = key_node.value
        else:
            key = _scalar(key_node, loader, where)
        if not isinstance(key, str):
            raise ConfigError(f"key '{key_node.value}' {_inside(path)} must be text; put it in quotes", where)
        if key in own:
            raise ConfigError(
                f"duplicate key '{key}' {_inside(path)} (first defined at line {own_lines[key]})",
                where,
            )
        own_lines[key] = where.line or 1
        lines[(*path, key)] = own_lines[key]
        own[key] = _convert(value_node, (*path, key), lines, loader, file, active, budget)
    if not merged:
        return own
    depth = len(path)
    lines.update((p, n) for p, n in merged_lines.items() if p[depth] not in own)
    result = {key: own.get(key, value) for key, value in merged.items()}
    result.update(own)
    return result


def _scalar(node: yaml.Node, loader: yaml.SafeLoader, where: Location) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:  # an unknown tag such as `!foo`, bad base64 in `!!binary`
        raise ConfigError(f"invalid YAML: {_problem(exc)}", where) from None
    except (ValueError, TypeError, OverflowError) as exc:  # `2020-02-30` or `!!int abc`
        kind = node.tag.rpartition(":")[2] or node.tag
        raise ConfigError(
            f"invalid YAML: '{node.value}' is not a valid {kind} ({exc}); put it in quotes if it is text",
            where,
        ) from None
