"""Column type detection: integer, float or text, decided from every value, not a sample.

Text values (all of CSV, and JSON strings in columns with a declared type) are checked a whole
batch-column at a time: the values are joined with newlines and matched by one regular
expression, which runs in C. Only when a batch fails do we look at single values, to remember
the first one that forced the wider type (for error messages).

Numbers with leading zeros ("007", "01001") stay text: they are codes (ZIP, FIPS), not quantities.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Kind(IntEnum):
    """Ordered: a column only ever widens."""

    EMPTY = 0
    INTEGER = 1
    FLOAT = 2
    TEXT = 3


SQL_TYPES = {Kind.EMPTY: "TEXT", Kind.INTEGER: "INTEGER", Kind.FLOAT: "FLOAT", Kind.TEXT: "TEXT"}
DECLARED = {"integer": Kind.INTEGER, "float": Kind.FLOAT, "text": Kind.TEXT}

# At most 18 digits: always inside SQLite's 64-bit integer range.
_INT = r"-?(?:0|[1-9][0-9]{0,17})"
_FLOAT = r"-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
INTEGER_CELL = re.compile(_INT)
FLOAT_CELL = re.compile(_FLOAT)
_INTEGER_COLUMN = re.compile(f"(?:{_INT})?(?:\n(?:{_INT})?)*")
_FLOAT_COLUMN = re.compile(f"(?:{_FLOAT})?(?:\n(?:{_FLOAT})?)*")


@dataclass(frozen=True)
class Widening:
    """The first value that made a column wider than `kind`, and its 0-based row number."""

    kind: Kind
    value: str
    row: int


class ColumnKind:
    """Tracks the narrowest type that holds every value seen so far in one column."""

    def __init__(self) -> None:
        self.kind = Kind.EMPTY
        self.widenings: list[Widening] = []  # why it is not INTEGER, why it is not FLOAT

    def first_breaking(self, declared: Kind) -> Widening | None:
        """The first value that does not fit the declared kind, if any."""
        for widening in self.widenings:
            if widening.kind == declared:
                return widening
        return None

    def _widen(self, to: Kind, value: str, row: int) -> None:
        for kind in (Kind.INTEGER, Kind.FLOAT):
            if self.kind <= kind < to:
                self.widenings.append(Widening(kind, value, row))
        self.kind = to

    def observe_text(self, values: Sequence[str], first_row: int) -> None:
        """A batch of text cells, empty string meaning NULL."""
        if self.kind == Kind.TEXT:
            return
        joined = "\n".join(values)
        # a newline inside a value would split it in two: then the count is off, fall back
        clean = joined.count("\n") == len(values) - 1
        if self.kind <= Kind.INTEGER and clean and _INTEGER_COLUMN.fullmatch(joined):
            if self.kind == Kind.EMPTY and len(joined) > len(values) - 1:
                self.kind = Kind.INTEGER
            return
        if self.kind <= Kind.FLOAT and clean and _FLOAT_COLUMN.fullmatch(joined):
            if self.kind < Kind.FLOAT:
                self._first_value(values, first_row)
            return
        self._first_value(values, first_row)

    def _first_value(self, values: Sequence[str], first_row: int) -> None:
        """Widen value by value through a batch we know holds something wider."""
        for offset, value in enumerate(values):
            if not value:
                continue
            if INTEGER_CELL.fullmatch(value):
                target = Kind.INTEGER
            elif FLOAT_CELL.fullmatch(value):
                target = Kind.FLOAT
            else:
                target = Kind.TEXT
            if target > self.kind:
                if self.kind == Kind.EMPTY and target == Kind.INTEGER:
                    self.kind = Kind.INTEGER
                    continue
                self._widen(target, value, first_row + offset)
                if self.kind == Kind.TEXT:
                    return

    def observe_value(self, value: Any, row: int, parse_text: bool) -> None:
        """One JSON value. Strings count as text unless `parse_text` (a declared type)."""
        if value is None or self.kind == Kind.TEXT:
            return
        if isinstance(value, bool) or isinstance(value, int):
            target = Kind.INTEGER if -(2**63) <= value < 2**63 else Kind.TEXT
        elif isinstance(value, float):
            target = Kind.FLOAT
        elif isinstance(value, str) and parse_text:
            if not value:
                return
            target = (
                Kind.INTEGER
                if INTEGER_CELL.fullmatch(value)
                else Kind.FLOAT
                if FLOAT_CELL.fullmatch(value)
                else Kind.TEXT
            )
        else:
            target = Kind.TEXT
        if target > self.kind:
            if self.kind == Kind.EMPTY and target == Kind.INTEGER:
                self.kind = target
            else:
                self._widen(target, str(value) if not isinstance(value, (dict, list)) else "(nested JSON)", row)
