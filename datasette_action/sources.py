"""Reading table sources: CSV, TSV, JSON (an array of objects) and JSON Lines, streamed in batches.

Nothing here holds a whole file in memory. Readers yield batches of rows; errors carry the source
file and, where one applies, the line. Line numbers of a record are found again by re-reading the
file only when an error needs one, so the fast path does no per-row bookkeeping.
"""

from __future__ import annotations

import codecs
import csv
import glob
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import IO, Any

from datasette_action.coltypes import float_is_exact
from datasette_action.config import TableConfig, is_within
from datasette_action.errors import Location, SourceError

BATCH_ROWS = 4_000  # small enough for a batch to stay in the CPU cache
JSON_CHUNK = 1 << 20
# A JSON record larger than this is almost certainly a malformed file, not a record.
MAX_JSON_RECORD = 64 << 20
EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

csv.field_size_limit(1 << 30)  # the default (128 KB) rejects long text cells


@dataclass(frozen=True)
class SourceFile:
    path: Path
    display: Path  # how messages name it: relative to the config file as the user gave it
    format: str
    encoding: str
    delimiter: str | None

    def at(self, line: int | None = None) -> Location:
        return Location(self.display, line)


@dataclass(frozen=True)
class SourcePart:
    """A byte range of a source: the whole file, or one slice of a CSV split for parallel loading.

    A slice starts right after a record's newline; `header` is the file's header row, which
    only the first slice reads itself.
    """

    source: SourceFile
    start: int = 0
    end: int | None = None  # None: to the end of the file
    header: tuple[str, ...] | None = None

    @property
    def is_last(self) -> bool:
        return self.end is None

    @cached_property
    def first_line(self) -> int:
        """The line number at `start`: counted only when a message needs it."""
        newlines, left = 0, self.start
        with self.source.path.open("rb") as raw:
            while left > 0 and (chunk := raw.read(min(left, 1 << 20))):
                newlines += chunk.count(b"\n")
                left -= len(chunk)
        return newlines + 1


def find_sources(
    table: TableConfig, root: Path, display_root: Path, not_sources: Sequence[Path] = ()
) -> tuple[SourceFile, ...]:
    """The files a table's `source` names, sorted (so builds are reproducible). A glob does not
    match `not_sources` (resolved files and trees: the config and metadata files, an earlier
    build's output)."""
    where = table.location("source")
    key = f"source '{table.source}' (table '{table.name}')"
    if glob.has_magic(table.source):
        found = sorted(Path(p) for p in glob.glob(str(root / table.source), recursive=True))
        files = [p for p in found if p.is_file()]
        matches = [p for p in files if not is_within(p.resolve(), not_sources)]
        if not matches:
            only_own = " other than the config file, the metadata file and built output" if files else ""
            raise SourceError(f"{key} matched no files{only_own} (looked in {root})", where)
    else:
        path = root / table.source
        if not path.exists():
            raise SourceError(f"{key}: file not found (looked in {root})", where)
        if not path.is_file():
            raise SourceError(f"{key} is not a file", where)
        matches = [path]
    result = []
    for path in matches:
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise SourceError(
                f"{key}: {path.relative_to(root)} resolves to {resolved}, outside the config"
                f" file's directory ({root}); copy the data inside it",
                where,
            )
        fmt = table.format or EXTENSION_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise SourceError(
                f"{key}: cannot tell the format of {path.name} from its extension; name it"
                f" .csv, .tsv, .json, .jsonl or .ndjson, or set format: for the table",
                where,
            )
        result.append(
            SourceFile(
                path=path,
                display=display_root / path.relative_to(root),
                format=fmt,
                encoding=table.encoding,
                delimiter=table.delimiter,
            )
        )
    return tuple(result)


class _ByteRange(io.RawIOBase):
    """Reads a file from `start` up to `end`."""

    def __init__(self, raw: io.BufferedReader, start: int, end: int | None) -> None:
        raw.seek(start)
        self.raw = raw
        self.left = None if end is None else end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self.left is not None:
            view = view[: self.left]
        count = self.raw.readinto(view) or 0
        if self.left is not None:
            self.left -= count
        return count

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_text(part: SourcePart) -> IO[str]:
    source = part.source
    try:
        raw = source.path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read the file: {exc.strerror}", source.at()) from None
    if part.start == 0 and raw.read(1) == b"":
        raw.close()
        needs = {"json": "a JSON array of objects", "jsonl": "one JSON object per line"}
        raise SourceError(
            f"the file is empty; give it {needs.get(source.format, 'a header row and data')}", source.at()
        )
    # utf-8-sig drops the byte-order mark spreadsheet programs put at the start of CSV files.
    encoding = source.encoding
    if codecs.lookup(encoding).name == "utf-8" and part.start == 0:
        encoding = "utf-8-sig"
    stream = io.BufferedReader(_ByteRange(raw, part.start, part.end), buffer_size=1 << 16)
    return io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")


def decode_error(source: SourceFile) -> SourceError:
    """Find the first undecodable byte: its offset and line, for the message."""
    decoder = codecs.getincrementaldecoder(source.encoding)(errors="strict")
    offset = 0
    newlines = 0
    with source.path.open("rb") as raw:
        while chunk := raw.read(1 << 16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.start is relative to the decoder's pending bytes plus this chunk
                pending = len(exc.object) - len(chunk)
                bad = offset - pending + exc.start
                line = newlines + chunk[: max(exc.start - pending, 0)].count(b"\n") + 1
                byte = exc.object[exc.start : exc.start + 1].hex()
                return SourceError(
                    f"byte 0x{byte} at offset {bad} cannot be decoded as {source.encoding};"
                    " set encoding: (for example latin-1 or cp1252) on this table",
                    source.at(line),
                )
            offset += len(chunk)
            newlines += chunk.count(b"\n")
    return SourceError(f"the file ends inside a {source.encoding} character", source.at())


def _csv_reader(stream: IO[str], source: SourceFile) -> Any:
    delimiter = source.delimiter or ("\t" if source.format == "tsv" else ",")
    return csv.reader(stream, delimiter=delimiter, strict=True)


class CsvReader:
    """Rows of a CSV/TSV file (or one part of it) as lists of strings."""

    def __init__(self, part: SourcePart) -> None:
        self.part = part
        self.source = part.source
        self.stream = open_text(part)
        self.reader = _csv_reader(self.stream, self.source)
        try:
            self.header = list(part.header) if part.header is not None else self._read_header()
        except BaseException:  # nobody else can close the file: this object is never returned
            self.stream.close()
            raise
        self.records_read = 0

    def _read_header(self) -> list[str]:
        try:
            header: list[str] | None = next(self.reader, None)
        except UnicodeDecodeError:
            raise decode_error(self.source) from None
        except csv.Error as exc:
            raise SourceError(f"invalid CSV: {exc}", self.source.at(self.reader.line_num)) from None
        if not header or header == [""]:
            raise SourceError("the first row must be a header naming the columns", self.source.at(1))
        for index, name in enumerate(header):
            if not name.strip():
                raise SourceError(
                    f"column {index + 1} of the header has no name; give every column a name",
                    self.source.at(1),
                )
        return header

    def batches(self, size: int = BATCH_ROWS) -> Iterator[list[list[str]]]:
        width = len(self.header)
        while True:
            try:
                batch = list(islice(self.reader, size))
            except UnicodeDecodeError:
                raise decode_error(self.source) from None
            except csv.Error as exc:
                if not self.part.is_last and "unexpected end of data" in str(exc):
                    # The part boundary fell inside a quoted field (a stray quote earlier
                    # fooled the split): the caller loads the file again in one piece.
                    raise MisalignedSplit() from None
                line = self.part.first_line - 1 + self.reader.line_num
                raise SourceError(f"invalid CSV: {exc}", self.source.at(line)) from None
            if not batch:
                return
            if set(map(len, batch)) != {width}:  # checked per batch, in C: cheap
                batch = self._check_widths(batch, width)
            self.records_read += len(batch)
            yield batch

    def _check_widths(self, batch: list[list[str]], width: int) -> list[list[str]]:
        kept: list[list[str]] = []
        for row in batch:
            if not row:  # a blank line: csv gives []
                if width == 1:
                    kept.append([""])  # in a one-column file, an empty cell
                continue
            if len(row) != width:
                line = record_line(self.part, self.records_read + len(kept))
                raise SourceError(
                    f"expected {width} fields, as in the header, but found {len(row)};"
                    " check for a missing or extra delimiter or an unclosed quote",
                    self.source.at(line),
                )
            kept.append(row)
        return kept

    def close(self) -> None:
        self.stream.close()


class MisalignedSplit(Exception):
    """A CSV part did not end on a record boundary."""


def record_line(part: SourcePart, record: int) -> int:
    """The 1-based line on which data record number `record` (0-based, within `part`) starts."""
    source = part.source
    if source.format in ("json", "jsonl"):
        for index, (_, line) in enumerate(iter_json_records(source)):
            if index == record:
                return line
        return 0
    with open_text(part) as stream:
        reader = _csv_reader(stream, source)
        header = next(reader) if part.start == 0 else part.header
        single_column = header is not None and len(header) == 1
        offset = part.first_line - 1
        previous: int = reader.line_num
        index = 0
        for row in reader:
            if row or single_column:  # blank lines are not records, except empty single cells
                if index == record:
                    return offset + previous + 1
                index += 1
            previous = reader.line_num
    return offset + previous


def split_csv(source: SourceFile, part_bytes: int) -> tuple[SourcePart, ...]:
    """Cut a CSV file into parts of about `part_bytes` at record boundaries, for parallel loading.

    The cut depends only on the file, never on the machine: the parts are loaded and appended
    in order, and the same parts give the same database bytes on any number of cores.

    A newline ends a record when an even number of quote characters comes before it (quotes
    inside quoted fields are doubled). A stray quote in an unquoted field breaks that rule;
    then a part ends inside a field, which its reader notices (MisalignedSplit).
    Only byte-compatible encodings are split; anything else loads as one part.
    """
    whole = (SourcePart(source),)
    size = source.path.stat().st_size
    if size < 2 * part_bytes or codecs.lookup(source.encoding).name not in _SPLITTABLE:
        return whole
    with source.path.open("rb") as raw:
        head = b""
        while header_line := raw.readline():
            head += header_line
            if head.count(b'"') % 2 == 0:
                break
        try:
            text = head.decode(
                "utf-8-sig" if codecs.lookup(source.encoding).name == "utf-8" else source.encoding
            )
            header = tuple(next(_csv_reader(io.StringIO(text, newline=""), source)))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            return whole  # loaded in one piece, its reader reports the problem
        header_end = len(head)
        count = max(1, (size - header_end) // part_bytes)
        targets = iter([header_end + (size - header_end) * k // count for k in range(1, count)])
        parts: list[SourcePart] = []
        start = 0  # of the part being cut; the first part reads the header itself
        # One pass over the file: `quotes` counts the quote characters before `offset`.
        offset, quotes = header_end, 0
        target = next(targets, None)
        while target is not None and (chunk := raw.read(1 << 20)):
            search_from = 0
            while target is not None:
                boundary = _even_newline(chunk, max(target - offset, search_from), quotes)
                if boundary is None:
                    break  # in a later chunk
                if offset + boundary < size:  # not a boundary at the end of the file
                    parts.append(SourcePart(source, start, offset + boundary, None if start == 0 else header))
                    start = offset + boundary
                search_from = boundary  # two targets in one record: the next record's end
                target = next(targets, None)
            quotes += chunk.count(b'"')
            offset += len(chunk)
    parts.append(SourcePart(source, start, None, None if start == 0 else header))
    return tuple(parts)


_SPLITTABLE = {"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15"}


def _even_newline(chunk: bytes, start: int, quotes_before: int) -> int | None:
    """The offset just after the first newline at or after `start` with an even quote count
    before it, or None if this chunk has none."""
    index = chunk.find(b"\n", start)
    while index != -1:
        if (quotes_before + chunk.count(b'"', 0, index)) % 2 == 0:
            return index + 1
        index = chunk.find(b"\n", index + 1)
    return None


@dataclass(frozen=True, slots=True)
class NumberText:
    """A JSON number a float cannot hold as written (1e400, 1e-400, -0.0), kept as its text."""

    text: str

    def __str__(self) -> str:
        return self.text


def _json_float(text: str) -> float | NumberText:
    number = float(text)
    if number != 0.0 and number - number == 0.0:  # finite and nonzero: the common case, fast
        return number
    return NumberText(text) if not float_is_exact(text) else number


class _NotJson(Exception):
    """NaN, Infinity or -Infinity: Python's json reads them, JSON (RFC 8259) has no such values."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(name)


def _not_json(name: str, source: SourceFile, line: int) -> SourceError:
    return SourceError(
        f"invalid JSON: {name} is not a JSON value (JSON has no NaN or Infinity); write null, or"
        f' "{name}" as a string',
        source.at(line),
    )


# Numbers are read exactly (see NumberText); NaN and Infinity are refused, not read as floats.
_DECODER = json.JSONDecoder(parse_float=_json_float, parse_constant=_refuse_constant)


def iter_json_records(source: SourceFile) -> Iterator[tuple[dict[str, Any], int]]:
    """Each object of a JSON array or JSON Lines file, with the line it starts on."""
    stream = open_text(SourcePart(source))
    try:
        if source.format == "jsonl":
            yield from _jsonl_records(stream, source)
        else:
            yield from _json_array_records(stream, source)
    except UnicodeDecodeError:
        raise decode_error(source) from None
    finally:
        stream.close()


def _jsonl_records(stream: IO[str], source: SourceFile) -> Iterator[tuple[dict[str, Any], int]]:
    found = False
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            # without its line ending: else an error at the end of the line is "column 1" of the next
            record = _DECODER.decode(text.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            raise SourceError(f"invalid JSON: {exc.msg} (column {exc.colno})", source.at(number)) from None
        except _NotJson as exc:
            raise _not_json(str(exc), source, number) from None
        except RecursionError:
            raise SourceError(TOO_DEEP, source.at(number)) from None
        if not isinstance(record, dict):
            raise SourceError(
                f"expected a JSON object on each line, found {_json_kind(record)}", source.at(number)
            )
        found = True
        yield record, number
    if not found:
        raise SourceError("the file holds no records (only blank lines)", source.at())


class _JsonBuffer:
    """A sliding window over a JSON text stream that keeps track of line numbers."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.text = ""
        self.pos = 0
        self.line = 1  # the line at self.pos
        self.eof = False

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.stream.read(JSON_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    def skip_space(self) -> str:
        """Move past whitespace; the next character, or '' at the end of the input."""
        while True:
            end = _SPACE.match(self.text, self.pos)
            self.advance(end.end() if end else self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""


_SPACE = re.compile(r"[ \t\r\n]*")


def _json_array_records(stream: IO[str], source: SourceFile) -> Iterator[tuple[dict[str, Any], int]]:
    buffer = _JsonBuffer(stream)
    first = buffer.skip_space()
    if first != "[":
        kind = {"{": "an object", "": "nothing"}.get(first, "something else")
        raise SourceError(
            f"expected a JSON array of objects ([{{...}}, ...]), found {kind}; for one object per"
            " line name the file .jsonl",
            source.at(buffer.line),
        )
    buffer.advance(buffer.pos + 1)
    expect_value = True
    count = 0
    while True:
        char = buffer.skip_space()
        if char == "]" and (count == 0 or not expect_value):
            buffer.advance(buffer.pos + 1)
            if buffer.skip_space():
                raise SourceError("invalid JSON: extra data after the closing ]", source.at(buffer.line))
            if count == 0:
                raise SourceError("the JSON array is empty: no records, so no columns", source.at())
            return
        if char == "":
            raise SourceError(
                "invalid JSON: the file ends before the array is closed", source.at(buffer.line)
            )
        if not expect_value:
            if char != ",":
                raise SourceError(
                    f"invalid JSON: expected ',' or ']' between records, found {char!r}",
                    source.at(buffer.line),
                )
            buffer.advance(buffer.pos + 1)
            expect_value = True
            continue
        record, end = _decode_one(buffer, source)
        if not isinstance(record, dict):
            raise SourceError(
                f"expected a JSON array of objects, but record {count + 1} is {_json_kind(record)}",
                source.at(buffer.line),
            )
        yield record, buffer.line
        buffer.advance(end)
        count += 1
        expect_value = False


def _decode_one(buffer: _JsonBuffer, source: SourceFile) -> tuple[Any, int]:
    while True:
        try:
            return _DECODER.raw_decode(buffer.text, buffer.pos)
        except json.JSONDecodeError as exc:
            # A record cut off by the end of the buffer fails at the buffer's end (or, for a
            # string, where the string starts): read more and try again. Anything else is bad JSON.
            truncated = exc.pos >= len(buffer.text) - 1 or exc.msg.startswith("Unterminated string")
            if truncated and len(buffer.text) - buffer.pos < MAX_JSON_RECORD and buffer.more():
                continue
            line = buffer.line + buffer.text.count("\n", buffer.pos, exc.pos)
            raise SourceError(f"invalid JSON: {exc.msg}", source.at(line)) from None
        except RecursionError:
            raise SourceError(TOO_DEEP, source.at(buffer.line)) from None
        except _NotJson as exc:
            raise _not_json(str(exc), source, buffer.line) from None


TOO_DEEP = "a record nests lists or objects too deeply to be read (Python's recursion limit); flatten it"


def _json_kind(value: Any) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "null",
        dict: "an object",
    }.get(type(value), "a value")
