"""`datasette-lambda init`: a starting config, .gitignore entry and workflows for a repository.

It finds the data files under a directory (CSV, TSV, JSON, JSON Lines, SQLite), groups them into
databases, names the tables after the files, detects a primary key where a column has a value in
every row and no value twice, and writes `datasette-lambda.yml` with every other key of the config
(`config.SECTIONS`) commented out at its default. It adds the build directory to `.gitignore` and
writes the publishing and pull-request plan workflows (the action's examples/workflows, kept here
verbatim: a test compares them) into `.github/workflows/`, using this action by its release tag.

Nothing here prompts or prints: the command line asks for what is missing and renders `InitResult`.
Every file is read with the build's own readers (`sources`), so a file the build would refuse is
left out (and said so) instead of written into a config that cannot build.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import unicodedata
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from datasette_action import __version__
from datasette_action.config import (
    DEFAULT_BUILD_DIR,
    DEFAULT_CONFIG_NAME,
    FUNCTION_URL_UNSUPPORTED,
    SECTIONS,
    Key,
    frontend_problem,
    region_problem,
    stack_name_problem,
)
from datasette_action.errors import SourceError, UserError
from datasette_action.sources import (
    EXTENSION_FORMATS,
    CsvReader,
    NumberText,
    SourceFile,
    SourcePart,
    iter_json_records,
)

# This action on GitHub, and the release tag the workflows use: `v` and the major version of this
# package (a release moves its major tag, v1, to itself, as GitHub's actions do).
ACTION_REPOSITORY = "datasette-lambda/datasette-lambda-action"
ACTION_TAG = f"v{__version__.split('.')[0]}"
DEFAULT_REGION = "us-east-1"
SQLITE_EXTENSIONS = (".db", ".sqlite", ".sqlite3")
SQLITE_MAGIC = b"SQLite format 3\x00"  # https://www.sqlite.org/fileformat.html#the_database_header
# Directories never searched: besides hidden ones (.git, .venv, .github, .datasette-lambda) and any
# holding a virtual environment (a pyvenv.cfg file).
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})
# Primary key detection reads at most this many records of a file, and tracks the values of at
# most its first PK_COLUMNS columns (as 64-bit hashes: a collision only costs a key, never a
# build): bounded at about 60 bytes a value, 150 MB at worst.
PK_MAX_ROWS = 500_000
PK_COLUMNS = 5
FETCH_SCRIPT = "scripts/fetch_data.py"  # the examples' data step; without it the data is committed
WORKFLOWS_DIR = ".github/workflows"


@dataclass(frozen=True)
class Table:
    name: str
    source: str  # relative to the directory, as the config says it (glob characters escaped)
    pk: str | None
    pk_note: str  # why this key, or why none


@dataclass(frozen=True)
class Database:
    name: str
    file: str | None  # a SQLite file, published as it is
    tables: tuple[Table, ...] = ()


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Found:
    """What a directory holds: the databases init would write, and the files it left out."""

    databases: tuple[Database, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class Options:
    stack: str
    region: str = DEFAULT_REGION
    frontend: str | None = None  # None: function_url, or http_api where the region has no function URLs
    force: bool = False
    workflows: bool = True


@dataclass(frozen=True)
class Written:
    path: str  # relative to the directory
    action: str  # "wrote", "overwrote", "kept" (exists; --force overwrites), "updated", "unchanged"


@dataclass(frozen=True)
class InitResult:
    root: Path
    found: Found
    files: tuple[Written, ...]
    fetch_script: bool  # whether the workflows make the data with scripts/fetch_data.py


# -- the front door's defaults and checks ---------------------------------------------------------


def default_stack(root: Path) -> str:
    """A stack name from the directory's name: ASCII letters, digits and hyphens, from a letter."""
    ascii_name = unicodedata.normalize("NFKD", root.resolve().name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9]+", "-", ascii_name).strip("-").lower()
    if not name[:1].isalpha():
        name = f"site-{name}" if name else "datasette-site"
    return name[:128].rstrip("-")


def check_options(options: Options) -> str:
    """The frontend to write, once the stack, region and frontend are known to be valid."""
    for problem in (stack_name_problem(options.stack), region_problem(options.region)):
        if problem:
            raise UserError(problem)
    frontend = options.frontend
    if frontend is None:
        return "http_api" if options.region in FUNCTION_URL_UNSUPPORTED else "function_url"
    problem = frontend_problem(frontend, options.region, setting="--frontend", fix="`--frontend http_api`")
    if problem:
        raise UserError(problem)
    return frontend


# -- finding the data -----------------------------------------------------------------------------


def data_files(root: Path) -> Iterator[Path]:
    """The files with a data extension under `root`, sorted, outside hidden directories, virtual
    environments, node_modules and the build directory; symlinked directories are not followed."""
    extensions = {*EXTENSION_FORMATS, *SQLITE_EXTENSIONS}
    for top, dirs, files in os.walk(root):
        here = Path(top)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in SKIPPED_DIRS
            and d != DEFAULT_BUILD_DIR
            and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                yield here / name


def find(root: Path) -> Found:
    """The databases to write for the data under `root` (a directory)."""
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; pass --dir a directory holding the data")
    root = root.resolve()
    skipped: list[Skipped] = []
    sqlite_files: list[Path] = []
    text_files: list[Path] = []
    for path in data_files(root):
        rel = path.relative_to(root).as_posix()
        if not path.resolve().is_relative_to(root):
            skipped.append(Skipped(rel, f"a link to {path.resolve()}, outside {root}"))
        elif path.suffix.lower() in SQLITE_EXTENSIONS:
            problem = _sqlite_problem(path)
            if problem:
                skipped.append(Skipped(rel, problem))
            else:
                sqlite_files.append(path)
        else:
            text_files.append(path)
    groups = _group(root, sorted(text_files))
    databases: list[Database] = []
    db_names: set[str] = set()
    for group, paths in groups:
        tables: list[Table] = []
        table_names: set[str] = set()
        for path, parts in paths:
            rel = path.relative_to(root).as_posix()
            try:
                pk, note = detect_pk(path, rel)
            except SourceError as error:
                skipped.append(Skipped(rel, error.message))
                continue
            name = _unique(table_name("_".join(parts)), table_names)
            tables.append(Table(name, glob.escape(rel), pk, note))
        if tables:
            databases.append(Database(_unique(database_name(group), db_names), None, tuple(tables)))
    for path in sqlite_files:
        name = _unique(database_name(path.stem), db_names)
        databases.append(Database(name, path.relative_to(root).as_posix()))
    if not databases:
        left_out = f" ({len(skipped)} left out: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise UserError(
            f"no data files found in {root}{left_out}; init looks for .csv, .tsv, .json, .jsonl,"
            " .ndjson and SQLite (.db, .sqlite, .sqlite3) files"
        )
    return Found(tuple(databases), tuple(sorted(skipped, key=lambda s: s.path)))


def _sqlite_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the file: {exc.strerror}") from None
    return None if head == SQLITE_MAGIC else "not a SQLite database (its header says otherwise)"


def _group(root: Path, paths: list[Path]) -> list[tuple[str, list[tuple[Path, tuple[str, ...]]]]]:
    """One database per directory below the files' common directory, named after it; files in
    the common directory itself make one database named after `root` (the repository), first.
    Each file's table name parts are its path below its database's directory, less the extension."""
    if not paths:
        return []
    common = Path(os.path.commonpath([p.parent for p in paths]))
    groups: dict[str, list[tuple[Path, tuple[str, ...]]]] = {}
    for path in paths:
        parts = path.relative_to(common).parts
        group, rest = ("", parts) if len(parts) == 1 else (parts[0], parts[1:])
        groups.setdefault(group, []).append((path, (*rest[:-1], Path(rest[-1]).stem)))
    return [(group or root.name, files) for group, files in sorted(groups.items())]


def database_name(text: str) -> str:
    """A name `config.DATABASE_NAME` accepts: letters (any script), digits, `_` and `-`."""
    return re.sub(r"[^\w-]+", "_", text).strip("_-") or "data"


def table_name(text: str) -> str:
    """A table name the config accepts (not empty, not `sqlite_...`), tidied for URLs."""
    name = re.sub(r"[^\w-]+", "_", text).strip("_") or "table"
    return f"t_{name}" if name.lower().startswith("sqlite_") else name


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... : unique among `taken` ignoring case (SQLite's and the
    config's rule), which it joins. `_internal` is Datasette's own database."""
    candidate, number = name, 1
    while candidate.lower() in taken or candidate == "_internal":
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate.lower())
    return candidate


# -- primary keys ---------------------------------------------------------------------------------


def detect_pk(path: Path, display: str) -> tuple[str | None, str]:
    """Of the first PK_COLUMNS columns, those with a value in every record, no value twice and no
    fractional number, the first named `id`, else the first with an identifier's name (`city_id`,
    `code`), else the first; read as the build reads the file; and a note saying why. A
    SourceError when the build's reader refuses the file (as the build would)."""
    source = SourceFile(path, Path(display), EXTENSION_FORMATS[path.suffix.lower()], "utf-8", None)
    columns, records = _records(source)
    alive = {column: set[int]() for column in columns[:PK_COLUMNS] if _distinct(column, columns)}
    count = 0
    try:
        for record in records:
            if count == PK_MAX_ROWS:
                return None, f"not detected: the file has more than {PK_MAX_ROWS:,} records to check"
            count += 1
            for column in list(alive):
                value = record.get(column)
                key = _key(value)
                if key is None or key in alive[column] or _fractional(value):
                    del alive[column]
                else:
                    alive[column].add(key)
            if not alive:
                break
    finally:
        records.close()  # closes the file when the loop stops early
    if count == 0:
        return None, "none detected: the file has no records"
    if not alive:
        return (
            None,
            f"none detected: each of the first {min(len(columns), PK_COLUMNS)} columns is empty,"
            " repeats a value or holds fractional numbers",
        )
    pk = min(alive, key=lambda column: _key_rank(column))  # the first of the best-named
    return pk, f"detected: no value missing or repeated in {count:,} record{'s' if count != 1 else ''}"


# Names that say "identifier" (`id`, `city_id`, `ISBN`, `code`...), preferred over a column that
# happens to be unique in the data as it is now (a `name`, a date) and may not stay so.
_KEY_WORD = re.compile(r"(^|[_\W])(id|key|code|slug|uuid|guid|isbn|iso|sku|ref)$")  # of the lowercased name
_CAMEL_ID = re.compile(r"[a-z]Id$|ID$")  # `cityId`, `CityID`


def _key_rank(column: str) -> int:
    """0 for `id`, 1 for another identifier-like name, 2 for the rest."""
    if column.lower() == "id":
        return 0
    return 1 if _KEY_WORD.search(column.lower()) or _CAMEL_ID.search(column) else 2


def _fractional(value: Any) -> bool:
    """A number with a fractional part (`21.5`, or text reading as one): a measurement, never a key
    to pick (two rows may well share it tomorrow)."""
    if isinstance(value, bool) or value is None:
        return False
    try:
        number = float(str(value)) if isinstance(value, str | NumberText) else float(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return math.isfinite(number) and not number.is_integer()


def _distinct(column: str, columns: list[str]) -> bool:
    """Whether no other column has the same name but for case (SQLite's names ignore case)."""
    return sum(1 for c in columns if c.lower() == column.lower()) == 1


def _records(source: SourceFile) -> tuple[list[str], Generator[dict[str, Any], None, None]]:
    """The column names (a JSON file's: its first record's keys) and the records, as mappings."""
    if source.format in ("csv", "tsv"):
        reader = CsvReader(SourcePart(source))

        def csv_rows() -> Generator[dict[str, Any], None, None]:
            try:
                for batch in reader.batches():
                    for row in batch:
                        yield dict(zip(reader.header, row, strict=True))
            finally:
                reader.close()

        return reader.header, csv_rows()
    records = cast(Generator[tuple[dict[str, Any], int], None, None], iter_json_records(source))

    def json_rows(first: dict[str, Any] | None) -> Generator[dict[str, Any], None, None]:
        try:
            if first is None:
                return
            yield first
            for record, _ in records:
                yield record
        finally:
            records.close()

    first = next(records, None)
    return (list(first[0]), json_rows(first[0])) if first else ([], json_rows(None))


def _key(value: Any) -> int | None:
    """A hash standing for a key value, None for no value. Numbers, and text that reads as one,
    hash as their float: `1`, `1.0` and `01` count as the same (the build may store them as one
    number), so a column is only ever too strict, never a key the build refuses."""
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    if isinstance(value, str | NumberText):
        try:
            number = float(str(value))
        except ValueError:
            return hash(("text", str(value)))
    else:  # int, float or bool
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            return hash(("text", str(value)))
    return hash(("number", number)) if math.isfinite(number) else hash(("text", str(value)))


# -- the config file ------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_.][A-Za-z0-9_./-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
COMMENT_COLUMN = 44


def scalar(text: str) -> str:
    """A YAML scalar for `text`: as it is when YAML reads it back as that string, else quoted."""
    if (
        _PLAIN.fullmatch(text)
        and text.lower() not in _YAML_WORDS
        and text.lower()[:4] not in (".inf", ".nan")
    ):
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted one


def _line(indent: int, text: str, note: str = "", *, commented: bool = False) -> str:
    body = " " * indent + ("# " if commented else "") + text
    return f"{body.ljust(COMMENT_COLUMN - 1)} # {note}" if note else body


def _default(key: Key) -> str:
    value = key.absent()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return scalar(value)
    if isinstance(value, dict):
        return "{}"
    return ""  # none (an empty list is not a value these keys take)


def _commented(section: str, indent: int, written: Iterable[str]) -> list[str]:
    """The keys of `section` not in `written`, commented out at their defaults; a key that is a
    section of its own (datasette, lambda, deploy) with its keys below it."""
    lines = []
    for key in SECTIONS[section]:
        if key.name in written:
            continue
        if key.name in SECTIONS:
            lines.append(_line(indent, f"{key.name}:", key.doc, commented=True))
            lines += _commented(key.name, indent + 2, ())
        else:
            lines.append(_line(indent, f"{key.name}: {_default(key)}".rstrip(), key.doc, commented=True))
    return lines


def config_text(found: Found, options: Options, frontend: str) -> str:
    lines = [
        f"# Written by `datasette-lambda init` (datasette-lambda {__version__}): every key is in the",
        "# action's docs/configuration.md. The commented-out keys are the others, at their defaults:",
        "# uncomment one to change it. Check the config with `datasette-lambda build`.",
        _line(0, f"stack: {scalar(options.stack)}", "CloudFormation stack name"),
        _line(0, f"region: {scalar(options.region)}", "AWS region"),
        "databases:",
    ]
    for db in found.databases:
        lines.append(f"  {scalar(db.name)}:")
        if db.file:
            lines.append(
                _line(4, f"file: {scalar(db.file)}", "an existing SQLite database, published as it is")
            )
            lines += _commented("databases.<db>", 4, ("file", "tables"))
            continue
        lines.append("    tables:")
        for table in db.tables:
            lines.append(f"      {scalar(table.name)}:")
            lines.append(f"        source: {scalar(table.source)}")
            if table.pk:
                lines.append(_line(8, f"pk: {scalar(table.pk)}", table.pk_note))
            else:
                lines.append(_line(8, "pk:", f"primary key column(s): {table.pk_note}", commented=True))
            lines += _commented("tables.<t>", 8, ("source", "pk"))
        lines += _commented("databases.<db>", 4, ("file", "tables"))
    lines += _commented("", 0, ("stack", "region", "databases", "deploy"))
    if frontend == "function_url":
        lines += _commented(
            "", 0, ("stack", "region", "databases", "metadata", "datasette", "lambda", "build_dir")
        )
    else:
        lines.append(_line(0, "deploy:", "the deploy section"))
        lines.append(_line(2, f"frontend: {frontend}", "no Lambda function URLs in this region"))
        lines += _commented("deploy", 2, ("frontend",))
    return "\n".join(lines) + "\n"


# -- .gitignore and the workflows -----------------------------------------------------------------


def gitignore_text(current: str | None) -> str | None:
    """.gitignore with the build directory listed; None when it already is."""
    entry = f"/{DEFAULT_BUILD_DIR}/"
    listed = {DEFAULT_BUILD_DIR, f"{DEFAULT_BUILD_DIR}/", f"/{DEFAULT_BUILD_DIR}", entry}
    if current is not None and listed & {line.strip() for line in current.splitlines()}:
        return None
    start = "" if not current else current if current.endswith("\n") else current + "\n"
    return f"{start}# datasette-lambda's build output\n{entry}\n"


def _replace(text: str, old: str, new: str, count: int) -> str:
    if text.count(old) != count:  # the examples changed: this module must follow them
        raise AssertionError(f"expected {old!r} {count} time(s) in the example workflow")
    return text.replace(old, new)


def workflow_text(example: str, name: str, options: Options, *, fetch_script: bool) -> str:
    """An example workflow for this repository: this action by its release tag, the region and
    the stack's concurrency group; without scripts/fetch_data.py, no data step and no schedule."""
    text = _replace(
        example,
        "org/datasette-lambda-action@v1 # zizmor: ignore[unpinned-uses] (placeholder: pin a release's commit SHA)",
        f"{ACTION_REPOSITORY}@{ACTION_TAG} # zizmor: ignore[unpinned-uses] (a release tag: pin its commit SHA)",
        1,
    )
    text = text.replace("org/datasette-lambda-action@<sha>", f"{ACTION_REPOSITORY}@<sha>")
    text = _replace(text, "vars.AWS_REGION || 'us-east-1'", f"vars.AWS_REGION || '{options.region}'", 1)
    text = _replace(text, "config: datasette-lambda.yml", f"config: {DEFAULT_CONFIG_NAME}", 1)
    if name == "publish.yml":
        text = _replace(text, "group: deploy-my-data", f"group: deploy-{options.stack}", 1)
    head = [
        f"# Written by `datasette-lambda init` (datasette-lambda {__version__}) from the action's",
        f"# examples/workflows/{name}.",
    ]
    if not fetch_script:
        text = _drop_data_step(text)
        schedule = (
            ", and so is the schedule (commented out). Add both" if name == "publish.yml" else ". Add it"
        )
        head += [
            f"# No {FETCH_SCRIPT} was found, so the data is what the repository commits: the data",
            f"# step (`Make the data`) is left out{schedule} back to make fresh data in every run.",
        ]
        if name == "publish.yml":
            text = _replace(
                text,
                '  schedule:\n    - cron: "17 6 * * *" # every day at 06:17 UTC\n',
                '  # schedule:\n  #   - cron: "17 6 * * *" # every day at 06:17 UTC\n',
                1,
            )
            text = _replace(text, "name: Make the data and deploy it", "name: Deploy", 1)
    return "\n".join(head) + "\n" + text


def _drop_data_step(text: str) -> str:
    lines = text.splitlines(keepends=True)
    [start] = [i for i, line in enumerate(lines) if line == "      - name: Make the data\n"]
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("      - "))
    return "".join(lines[:start] + lines[end:])


# -- writing --------------------------------------------------------------------------------------


def init(root: Path, options: Options) -> InitResult:
    """Find the data under `root` and write the config, the .gitignore entry and the workflows;
    an existing file is kept unless `options.force`."""
    frontend = check_options(options)
    found = find(root)
    root = root.resolve()
    fetch_script = (root / FETCH_SCRIPT).is_file()
    planned = [(DEFAULT_CONFIG_NAME, config_text(found, options, frontend))]
    if options.workflows:
        for name, example in EXAMPLE_WORKFLOWS.items():
            text = workflow_text(example, name, options, fetch_script=fetch_script)
            planned.append((f"{WORKFLOWS_DIR}/{name}", text))
    files = [_write(root, rel, text, force=options.force) for rel, text in planned]
    files.append(_write_gitignore(root))
    return InitResult(root, found, tuple(files), fetch_script)


def _write(root: Path, rel: str, text: str, *, force: bool) -> Written:
    path = root / rel
    exists = path.exists()
    if exists and not force:
        return Written(rel, "kept")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the file: {exc.strerror}") from None
    return Written(rel, "overwrote" if exists else "wrote")


def _write_gitignore(root: Path) -> Written:
    path = root / ".gitignore"
    try:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        text = gitignore_text(current)
        if text is None:
            return Written(".gitignore", "unchanged")
        path.write_text(text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot update the file: {exc}") from None
    return Written(".gitignore", "wrote" if current is None else "updated")


def summary(result: InitResult) -> list[str]:
    """What init found and did, as lines for the terminal."""
    databases = result.found.databases
    count = sum(len(db.tables) or 1 for db in databases)
    lines = [f"Found {count} data file{'s' if count != 1 else ''} in {result.root}"]
    for db in databases:
        what = db.file or "tables " + ", ".join(table.name for table in db.tables)
        lines.append(f"  database {db.name}: {what}")
    lines += [f"  left out {skipped.path}: {skipped.reason}" for skipped in result.found.skipped]
    for written in result.files:
        if written.action == "kept":
            lines.append(f"kept {written.path}: it exists (--force overwrites it)")
        elif written.path == ".gitignore" and written.action != "unchanged":
            lines.append(f"{written.action} .gitignore (/{DEFAULT_BUILD_DIR}/)")
        else:
            lines.append(f"{written.action} {written.path}")
    return [
        *lines,
        "Next: datasette-lambda build, then datasette-lambda serve to see the site; then",
        "datasette-lambda setup-github --repo OWNER/NAME for the AWS roles the workflows use.",
    ]


# The action's examples/workflows, verbatim (tests/test_init.py checks they are the same).
EXAMPLE_WORKFLOWS = {
    "publish.yml": """# Publish the site: on every push to main, every day, and by hand. One workflow for all three, and
# every run does the same thing: make the data, then deploy it.
#
# The data step runs on every event, so a push never deploys data older than the last scheduled
# run, and a scheduled run never deploys code older than the last push: whichever run comes last
# deploys the latest code with freshly made data. The generated data is not committed (list it in
# .gitignore); the site is its only copy. The deploy is content-addressed (databases, code and
# dependencies are named by their sha256): when the result is byte for byte what is live, nothing
# is uploaded, the CloudFormation change set is empty, the stack is not touched and `changed` is
# false. If your data is only what you commit, delete the data step and the schedule.
#
# Copy to .github/workflows/ in your data repository. One-time setup (the action's
# docs/deploying.md, "One-time AWS setup"): an IAM role that trusts GitHub's OIDC provider for this repository's
# `production` environment, with the deployer's policy; its ARN in the repository variable
# AWS_DEPLOY_ROLE_ARN; optionally a secret DATASETTE_SECRET (otherwise the first deploy makes one
# and keeps it). Two GitHub traps (docs/action.md, "Publishing and refreshing the data"): in a public
# repository the schedule stops after 60 days without activity, and a required reviewer on the
# `production` environment holds every scheduled run until someone approves it.
name: publish
on:
  push:
    branches: [main]
  schedule:
    - cron: "17 6 * * *" # every day at 06:17 UTC
  workflow_dispatch:
permissions:
  contents: read
# One run per stack at a time (the same group as any other deploy of this stack), and a running
# deploy is never cancelled: CloudFormation would finish or roll back on its own anyway. GitHub
# keeps one run pending per group and cancels an older pending run when a newer one arrives; no
# data is lost by that, because the newer run makes the data again from the newer commit.
concurrency:
  group: deploy-my-data
  cancel-in-progress: false
jobs:
  publish:
    name: Make the data and deploy it
    runs-on: ubuntu-24.04
    permissions:
      contents: read
      id-token: write # lets configure-aws-credentials exchange GitHub's OIDC token for the role
    environment:
      name: production
      url: ${{ steps.site.outputs.url }}
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
        with:
          python-version: "3.13"
      - name: Make the data
        id: data
        # Your own step, the same in pr-plan.yml: download the sources, write data/*.csv (or
        # .json, .jsonl, .db). If it fails, nothing is deployed and the site keeps its data.
        run: python scripts/fetch_data.py
      - uses: aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3
        with:
          role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}
          aws-region: ${{ vars.AWS_REGION || 'us-east-1' }} # the variable setup-github prints
      - name: Build, package and deploy (nothing when nothing changed)
        id: site
        # Pin the commit of the release you use, e.g. org/datasette-lambda-action@<sha> # v1.2.3
        uses: org/datasette-lambda-action@v1 # zizmor: ignore[unpinned-uses] (placeholder: pin a release's commit SHA)
        env:
          DATASETTE_SECRET: ${{ secrets.DATASETTE_SECRET }}
        with:
          config: datasette-lambda.yml
          mode: deploy
      - name: Say what happened
        env:
          CHANGED: ${{ steps.site.outputs.changed }}
          URL: ${{ steps.site.outputs.url }}
        run: |
          if [ "$CHANGED" = true ]; then
            echo "::notice::Published at $URL"
          else
            echo "::notice::Nothing changed: nothing was deployed ($URL)"
          fi
""",
    "pr-plan.yml": """# Preview a pull request's change: a dry run that never changes the live site.
#
# It makes the data with the same step as publish.yml, so the plan previews what publishing the
# pull request would deploy. From a fork (no secrets, no OIDC token, a read-only GITHUB_TOKEN) the
# plan runs fully offline: the build, the package and its Lambda size limits, the CloudFormation
# template linted with cfn-lint, and the bundle smoke-tested through its Lambda handler. From a
# branch of this repository, with a read-only plan role in the repository variable
# AWS_PLAN_ROLE_ARN, it also creates, describes and deletes a change set, and compares the tables
# and row counts with what is deployed. Either way the Markdown report is the job summary, and its
# path is the `plan-markdown` output. Use `pull_request`, never `pull_request_target`: the action
# refuses a fork's pull_request_target, which would run the pull request's code with this
# repository's secrets.
name: plan
on:
  pull_request:
permissions:
  contents: read
concurrency:
  group: plan-${{ github.event.pull_request.number }}
  cancel-in-progress: true
jobs:
  plan:
    name: Plan the deploy
    runs-on: ubuntu-24.04
    permissions:
      contents: read
      id-token: write # for branches of this repository; a fork's pull request gets no token
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
        with:
          python-version: "3.13"
      - name: Make the data
        id: data
        # The same step as in publish.yml. It runs before any credentials are configured.
        run: python scripts/fetch_data.py
      - name: AWS credentials (not for forks)
        if: github.event.pull_request.head.repo.full_name == github.repository && vars.AWS_PLAN_ROLE_ARN != ''
        uses: aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3
        with:
          role-to-assume: ${{ vars.AWS_PLAN_ROLE_ARN }}
          aws-region: ${{ vars.AWS_REGION || 'us-east-1' }} # the variable setup-github prints
      - name: Plan
        id: plan
        uses: org/datasette-lambda-action@v1 # zizmor: ignore[unpinned-uses] (placeholder: pin a release's commit SHA)
        with:
          config: datasette-lambda.yml
          mode: plan
""",
}
