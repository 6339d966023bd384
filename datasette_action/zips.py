"""Deterministic zip files: the same tree gives the same bytes, so the same sha256.

Entries are sorted by name, every timestamp is 1980-01-01 00:00:00 (the earliest a zip can hold),
every file has mode 0644 and the zip says it was made on Unix, whatever the machine. Directories
get no entries of their own (unzip creates them). Compression is zlib's deflate at its default
level: identical bytes need the same zlib, which a given Python build always has.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # a regular file, rw-r--r--
UNIX = 3  # ZipInfo.create_system for Unix: the mode bits in external_attr are honoured
CHUNK = 1 << 20


@dataclass(frozen=True)
class Artifact:
    """One zip to upload to Lambda, and the tree it was made from (kept for local runs)."""

    role: str  # "layer" (the dependencies) or "function" (the function code)
    zip_path: Path  # named by its content: <role>-<sha256>.zip
    directory: Path  # the unzipped tree: its files are the zip's entries
    sha256: str
    zipped_size: int
    unzipped_size: int
    reused: bool  # taken from the cache in the build directory, not made by this run


@dataclass(frozen=True)
class ZipResult:
    path: Path
    sha256: str
    zipped_size: int
    unzipped_size: int  # the sum of the sizes of the files in it


def tree_files(root: Path) -> list[Path]:
    """Every regular file under `root` (symlinks followed), sorted by their path inside it."""
    found = []
    for directory, _dirs, files in os.walk(root, followlinks=True):
        for name in files:
            found.append(Path(directory, name))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in tree_files(root))


def write_zip(root: Path, destination: Path, *, prefix: str = "") -> ZipResult:
    """Zip every file under `root`, each named `<prefix><path relative to root>`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    unzipped = 0
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in tree_files(root):
            size = path.stat().st_size
            unzipped += size
            _add_file(archive, path, prefix + path.relative_to(root).as_posix(), size)
    return ZipResult(destination, file_sha256(destination), destination.stat().st_size, unzipped)


def write_named_zip(root: Path, directory: Path, stem: str, *, prefix: str = "") -> ZipResult:
    """`write_zip` to `<directory>/<stem>-<sha256>.zip`: the file is named by its content."""
    scratch = directory / f".{stem}-writing.zip"
    try:
        written = write_zip(root, scratch, prefix=prefix)
    except BaseException:
        scratch.unlink(missing_ok=True)  # a half-written zip (a full disk) is not left behind
        raise
    final = directory / f"{stem}-{written.sha256}.zip"
    os.replace(scratch, final)
    return ZipResult(final, written.sha256, written.zipped_size, written.unzipped_size)


def _add_file(archive: zipfile.ZipFile, path: Path, name: str, size: int) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.create_system = UNIX
    info.external_attr = FILE_MODE << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = size  # lets zipfile decide on zip64 before writing (files over 2 GB)
    with path.open("rb") as source, archive.open(info, "w") as target:
        shutil.copyfileobj(source, target, CHUNK)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
