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
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

from datasette_action.config import TableConfig
from datasette_action.errors import Location, SourceError

BATCH_ROWS = 10_000
JSON_CHUNK = 1 << 20
# A JSON record larger than this is almost certainly a malformed file, not a record.
MAX_JSON_RECORD = 64 << 20
EXTENSION_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}

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


def find_sources(table: TableConfig, root: Path, display_root: Path) -> tuple[SourceFile, ...]:
    """The files a table's `source` names, sorted (so builds are reproducible)."""
    where = table.location("source")
    key = f"source '{table.source}' (table '{table.name}')"
    if glob.has_magic(table.source):
        matches = sorted(Path(p) for p in glob.glob(str(root / table.source), recursive=True))
        matches = [p for p in matches if p.is_file()]
        if not matches:
            raise SourceError(f"{key} matched no files (looked in {root})", where)
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


def open_text(source: SourceFile) -> IO[str]:
    try:
        raw = source.path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read the file: {exc.strerror}", source.at()) from None
    if raw.read(1) == b"":
        raw.close()
        raise SourceError("the file is empty; give it a header row and data", source.at())
    raw.seek(0)
    # utf-8-sig drops the byte-order mark spreadsheet programs put at the start of CSV files.
    encoding = "utf-8-sig" if codecs.lookup(source.encoding).name == "utf-8" else source.encoding
    return io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")


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


class CsvReader:
    """Rows of a CSV/TSV file as lists of strings; the first row is the header."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.stream = open_text(source)
        delimiter = source.delimiter or ("\t" if source.format == "tsv" else ",")
        self.reader = csv.reader(self.stream, delimiter=delimiter, strict=True)
        self.header = self._read_header()
        self.records_read = 0

    def _read_header(self) -> list[str]:
        try:
            header = next(self.reader, None)
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
                raise SourceError(f"invalid CSV: {exc}", self.source.at(self.reader.line_num)) from None
            if not batch:
                return
            if set(map(len, batch)) != {width}:  # checked per batch, in C: cheap
                batch = self._check_widths(batch, width)
            self.records_read += len(batch)
            yield batch

    def _check_widths(self, batch: list[list[str]], width: int) -> list[list[str]]:
        kept: list[list[str]] = []
        for row in batch:
            if not row:  # a blank line: csv gives [], skip it
                continue
            if len(row) != width:
                line = record_line(self.source, self.records_read + len(kept))
                raise SourceError(
                    f"expected {width} fields, as in the header, but found {len(row)};"
                    " check for a missing or extra delimiter or an unclosed quote",
                    self.source.at(line),
                )
            kept.append(row)
        return kept

    def close(self) -> None:
        self.stream.close()


def record_line(source: SourceFile, record: int) -> int:
    """The 1-based line on which data record number `record` (0-based) starts."""
    if source.format in ("json", "jsonl"):
        for index, (_, line) in enumerate(iter_json_records(source)):
            if index == record:
                return line
        return 0
    with open_text(source) as stream:
        reader = csv.reader(
            stream, delimiter=source.delimiter or ("\t" if source.format == "tsv" else ","), strict=True
        )
        next(reader)
        previous = reader.line_num
        index = 0
        for row in reader:
            if row:  # blank lines are not records
                if index == record:
                    return previous + 1
                index += 1
            previous = reader.line_num
    return previous


def iter_json_records(source: SourceFile) -> Iterator[tuple[dict[str, Any], int]]:
    """Each object of a JSON array or JSON Lines file, with the line it starts on."""
    stream = open_text(source)
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
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceError(f"invalid JSON: {exc.msg} (column {exc.colno})", source.at(number)) from None
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
    decoder = json.JSONDecoder()
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
            raise SourceError("invalid JSON: the file ends before the array is closed", source.at(buffer.line))
        if not expect_value:
            if char != ",":
                raise SourceError(f"invalid JSON: expected ',' or ']' between records, found {char!r}", source.at(buffer.line))
            buffer.advance(buffer.pos + 1)
            expect_value = True
            continue
        record, end = _decode_one(decoder, buffer, source)
        if not isinstance(record, dict):
            raise SourceError(
                f"expected a JSON array of objects, but record {count + 1} is {_json_kind(record)}",
                source.at(buffer.line),
            )
        yield record, buffer.line
        buffer.advance(end)
        count += 1
        expect_value = False


def _decode_one(decoder: json.JSONDecoder, buffer: _JsonBuffer, source: SourceFile) -> tuple[Any, int]:
    while True:
        try:
            return decoder.raw_decode(buffer.text, buffer.pos)
        except json.JSONDecodeError as exc:
            # A record cut off by the end of the buffer fails at the buffer's end (or, for a
            # string, where the string starts): read more and try again. Anything else is bad JSON.
            truncated = exc.pos >= len(buffer.text) - 1 or exc.msg.startswith("Unterminated string")
            if truncated and len(buffer.text) - buffer.pos < MAX_JSON_RECORD and buffer.more():
                continue
            line = buffer.line + buffer.text.count("\n", buffer.pos, exc.pos)
            raise SourceError(f"invalid JSON: {exc.msg}", source.at(line)) from None


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
