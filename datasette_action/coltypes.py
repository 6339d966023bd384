"""Column type detection: integer, float or text, decided from every value, not a sample.

Text cells (all of CSV; JSON strings only in columns with a declared type) are checked a whole
batch-column at a time with string operations that run in C: the integer test is a handful of
`bytes.translate`/`count` calls, the float test one regular expression. Only a batch that widens
the column is looked at value by value, to remember the first value that forced the wider type
(error messages quote it).

Numbers with leading zeros ("007", "01001") stay text: they are codes (ZIP, FIPS), not
quantities. So do a leading "+", surrounding spaces, and integers of more than 18 digits.
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


DECLARED = {"integer": Kind.INTEGER, "float": Kind.FLOAT, "text": Kind.TEXT}

# At most 18 digits: always inside SQLite's 64-bit integer range.
INTEGER_CELL = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
# A whole number of more than 18 digits is text (as above) unless a point or an exponent follows.
_FLOAT = (
    r"-?(?:(?:0|[1-9][0-9]{0,17})(?:\.[0-9]*)?|[1-9][0-9]{18,}(?:\.[0-9]*|(?=[eE]))|\.[0-9]+)"
    r"(?:[eE][-+]?[0-9]+)?"
)
FLOAT_CELL = re.compile(_FLOAT)
_FLOAT_COLUMN = re.compile(f"(?:{_FLOAT})?(?:\n(?:{_FLOAT})?)*")
_DIGITS_AND_NEWLINES = b"0123456789\n"


def cell_kind(value: str) -> Kind:
    if not value:
        return Kind.EMPTY
    if INTEGER_CELL.fullmatch(value):
        return Kind.INTEGER
    if FLOAT_CELL.fullmatch(value):
        return Kind.FLOAT
    return Kind.TEXT


def all_integers(values: Sequence[str], joined: str) -> bool:
    """Whether every value is "" or a canonical integer of at most 18 digits.

    `joined` is the values joined by newlines, none of them containing one.
    """
    if not joined.isascii():
        return False
    data = b"\n" + joined.encode("ascii") + b"\n"
    rest = data.translate(None, _DIGITS_AND_NEWLINES)
    if rest.strip(b"-"):
        return False  # something other than digits and minus signs
    # every "-" starts a value, is followed by a digit other than 0
    if rest and (data.count(b"\n-") != len(rest) or data.count(b"\n-\n") or data.count(b"\n-0")):
        return False
    # the only value starting with 0 is 0 itself
    if data.count(b"\n0") != values.count("0"):
        return False
    return max(map(len, values)) <= 18


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

    def is_text(self) -> bool:
        return self.kind == Kind.TEXT

    def absorb(self, later: ColumnKind, row_offset: int) -> None:
        """Fold in what another tracker saw in later rows, which start at `row_offset`."""
        known = {w.kind for w in self.widenings}
        for widening in later.widenings:
            if widening.kind not in known:
                self.widenings.append(Widening(widening.kind, widening.value, widening.row + row_offset))
        self.widenings.sort(key=lambda w: w.kind)
        self.kind = max(self.kind, later.kind)

    def observe_text(self, values: Sequence[str], first_row: int) -> None:
        """A batch of text cells of this column, "" meaning NULL."""
        if self.kind == Kind.TEXT:
            return
        joined = "\n".join(values)
        if joined.count("\n") == len(values) - 1:  # else a value holds a newline: not a number
            if self.kind <= Kind.INTEGER and all_integers(values, joined):
                if self.kind == Kind.EMPTY and len(joined) >= len(values):
                    self.kind = Kind.INTEGER
                return
            if self.kind == Kind.FLOAT and _FLOAT_COLUMN.fullmatch(joined):
                return
        for offset, value in enumerate(values):
            self._observe(cell_kind(value), value, first_row + offset)
            if self.is_text():
                return

    def observe_value(self, value: Any, row: int, parse_text: bool) -> None:
        """One JSON value. Strings count as text unless `parse_text` (a declared type)."""
        if value is None or self.kind == Kind.TEXT:
            return
        if isinstance(value, (bool, int)):
            kind = Kind.INTEGER if -(2**63) <= value < 2**63 else Kind.TEXT
        elif isinstance(value, float):
            kind = Kind.FLOAT
        elif isinstance(value, str) and parse_text:
            kind = cell_kind(value)
        else:
            kind = Kind.TEXT
        self._observe(kind, value if isinstance(value, str) else str(value), row)

    def _observe(self, kind: Kind, value: str, row: int) -> None:
        if kind <= self.kind:
            return
        if self.kind == Kind.EMPTY and kind == Kind.INTEGER:
            self.kind = kind
            return
        for narrower in (Kind.INTEGER, Kind.FLOAT):
            if self.kind <= narrower < kind:
                self.widenings.append(Widening(narrower, value, row))
        self.kind = kind
