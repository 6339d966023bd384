"""Column type detection: integer, float or text, decided from every value, not a sample.

Text cells (all of CSV; JSON strings only in columns with a declared type) are checked a whole
batch-column at a time, with one regular expression over the column's values joined by
newlines (it runs in C). Only a batch that widens the column is looked at value by value, to
remember the first value that forced the wider type (error messages quote it).

Numbers with leading zeros ("007", "01001") stay text: they are codes (ZIP, FIPS), not
quantities. So do a leading "+", surrounding spaces, and integers of more than 18 digits.
"""

from __future__ import annotations

import math
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

# A batch-column (its values joined by newlines, "" for an empty cell) is checked with one
# regular expression. The quantifiers are possessive: they never backtrack, which makes the
# checks two to three times faster. A possessive pattern can only match less, never more, than
# the cell patterns above: a batch it rejects (one with a float of more than 18 digits before
# its point) is looked at cell by cell.
_INTEGER_VALUE = r"(?:0|-?+[1-9][0-9]{0,17}+|-0)"
_INTEGER_COLUMN = re.compile(f"{_INTEGER_VALUE}?+(?:\n{_INTEGER_VALUE}?+)*+")
# (At most 299 digits before or after the point: a longer number may overflow or underflow.)
_FLOAT_VALUE = (
    r"-?+(?:(?:0|[1-9][0-9]{0,17}+)(?:\.[0-9]{0,299}+)?+|[1-9][0-9]{18,298}+(?:\.[0-9]{0,299}+|(?=[eE]))"
    r"|\.[0-9]{1,299}+)(?:[eE][-+]?+[0-9]++)?+"
)
_FLOAT_COLUMN = re.compile(f"(?:{_FLOAT_VALUE})?+(?:\n(?:{_FLOAT_VALUE})?+)*+")


# In a batch-column of floats without exponents, a negative zero ("-0.0", "-.0"): a "-" and then
# only zeros and points up to the end of the value (a "-" starts a value there).
_NEGATIVE_ZERO = re.compile(r"-[0.]*+(?![^\n])")


def cell_kind(value: str) -> Kind:
    if not value:
        return Kind.EMPTY
    if INTEGER_CELL.fullmatch(value):
        return Kind.INTEGER
    if FLOAT_CELL.fullmatch(value):
        return Kind.FLOAT if float_is_exact(value) else Kind.TEXT
    return Kind.TEXT


def float_is_exact(text: str) -> bool:
    """Whether a number's text survives as a REAL, up to rounding: not infinite once parsed
    (1e400), not a nonzero number that underflows to 0 (1e-400), not a negative zero ("-0.0",
    which SQLite stores as 0). A column holding such a number stays text, as written."""
    number = float(text)
    if number == 0.0:
        mantissa = text.partition("e")[0].partition("E")[0]
        return not text.startswith("-") and mantissa.strip("0.") == ""
    return math.isfinite(number)


def all_integers(joined: str) -> bool:
    """Whether every value of a batch-column is "" or an integer of at most 18 digits without a
    leading zero. `joined` is the values joined by newlines, none of them containing one."""
    return _INTEGER_COLUMN.fullmatch(joined) is not None


def has_signed_zero(joined: str) -> bool:
    """Whether a batch-column (as for all_integers) holds the value "-0"."""
    return joined == "-0" or joined.startswith("-0\n") or joined.endswith("\n-0") or "\n-0\n" in joined


def all_floats(joined: str) -> bool:
    """Whether every value of a batch-column is "" or a number (see all_integers)."""
    return _FLOAT_COLUMN.fullmatch(joined) is not None


def all_exact_floats(joined: str) -> bool:
    """all_floats, and none of them may be one a REAL cannot hold as written (float_is_exact):
    none has an exponent (1e400, 1e-400) or is a negative zero; the batch regular expression
    already refuses numbers of more than 299 digits on either side of the point. A batch-column
    that fails is checked cell by cell."""
    if "e" in joined or "E" in joined or not all_floats(joined):
        return False
    return _NEGATIVE_ZERO.search(joined) is None


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
        # "-0" counts as an integer, but SQLite stores it as 0: its text cannot be recovered
        # from a value stored with INTEGER affinity (see stage_db.converts_exactly).
        self.signed_zero = False
        # JSON true/false: a number column stores them as 1 and 0, a text column as JSON's text
        self.booleans = False

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
        self.signed_zero = self.signed_zero or later.signed_zero
        self.booleans = self.booleans or later.booleans

    def observe_text(self, values: Sequence[str], first_row: int) -> str | None:
        """A batch of text cells of this column, "" meaning NULL.

        Returns the values joined by newlines when none holds one (the loader keeps that text
        for columns it stores as numbers), else None.
        """
        if self.kind == Kind.TEXT:
            return None
        joined = "\n".join(values)
        if joined.count("\n") != len(values) - 1:  # a value holds a newline: not a number
            self._observe_each(values, first_row)
            return None
        if self.kind <= Kind.INTEGER and all_integers(joined):
            if self.kind == Kind.EMPTY and len(joined) >= len(values):
                self.kind = Kind.INTEGER
            if not self.signed_zero and has_signed_zero(joined):
                self.signed_zero = True
        elif not (self.kind == Kind.FLOAT and all_exact_floats(joined)):
            self._observe_each(values, first_row)
        return joined

    def _observe_each(self, values: Sequence[str], first_row: int) -> None:
        for offset, value in enumerate(values):
            kind = cell_kind(value)
            if kind == Kind.INTEGER and value == "-0":
                self.signed_zero = True
            self._observe(kind, value, first_row + offset)
            if self.is_text():
                return

    def observe_value(self, value: Any, row: int, parse_text: bool) -> None:
        """One JSON value. Strings count as text unless `parse_text` (a declared type)."""
        if value is None or self.kind == Kind.TEXT:
            return
        if isinstance(value, bool):
            kind = Kind.INTEGER
            self.booleans = True
        elif isinstance(value, int):
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
