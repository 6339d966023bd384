"""Tests for elf.py: stripping the debug sections of shared objects, in pure Python.

The inputs are real: sqlean.py's `_sqlite3` library as pip installs it for Lambda (x86_64 for
python3.13, aarch64 for python3.12, the layers test_package.py builds), debug sections and all,
once per session. The files it must leave alone are that library with one field changed, each
named by the shape it stands for. binutils (`strip`, `readelf`) is only used to compare with,
when present.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from datasette_action.dependencies import Target, install
from datasette_action.elf import (
    HEADER,
    SECTION,
    SEGMENT,
    SHF_ALLOC,
    SHF_COMPRESSED,
    SYMBOL,
    Header,
    Section,
    Segment,
    Unhandled,
    read_header,
    section_names,
    strip_debug,
    strip_tree,
)
from datasette_action.errors import Location
from datasette_action.sqlite import requirement

TARGETS = {"x86_64": Target("3.13", "x86_64"), "arm64": Target("3.12", "arm64")}


@pytest.fixture(scope="session", params=sorted(TARGETS))
def unstripped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sqlean.py's `_sqlite3` shared object for a Lambda target, as its wheel has it."""
    target = TARGETS[request.param]
    tree = tmp_path_factory.mktemp(f"sqlean-{request.param}")
    install(target, (requirement(target.python),), tree, Location(tree))
    [library] = (tree / "sqlean").glob("_sqlite3.*.so")
    return library


def section_table(data: bytes) -> tuple[Header, list[Section], list[str]]:
    header = read_header(data)
    table = data[header.e_shoff :][: header.e_shnum * SECTION.size]
    sections = [Section._make(s) for s in SECTION.iter_unpack(table)]
    return header, sections, section_names(data, sections, header.e_shstrndx)


def sections_of(data: bytes) -> dict[str, tuple[Section, bytes]]:
    """Each section by name: its header and its bytes in the file."""
    _header, sections, names = section_table(data)
    return {name: (s, data[s.sh_offset : s.sh_offset + s.file_size]) for name, s in zip(names, sections)}


def segments_of(data: bytes) -> list[Segment]:
    header = read_header(data)
    table = data[header.e_phoff :][: header.e_phnum * SEGMENT.size]
    return [Segment._make(s) for s in SEGMENT.iter_unpack(table)]


def with_section_field(data: bytes, name: str, **fields: int) -> bytes:
    """`data` with fields of section `name`'s header changed."""
    header, sections, names = section_table(data)
    index = names.index(name)
    changed = bytearray(data)
    SECTION.pack_into(changed, header.e_shoff + index * SECTION.size, *sections[index]._replace(**fields))
    return bytes(changed)


# -- what it removes and what it keeps ------------------------------------------------------------


def test_the_debug_sections_go_and_every_other_byte_the_loader_reads_stays(unstripped: Path) -> None:
    data = unstripped.read_bytes()
    stripped = strip_debug(data)
    before, after = sections_of(data), sections_of(stripped)
    assert {n for n in before if n.startswith(".debug_")} >= {".debug_info", ".debug_line", ".debug_str"}
    assert set(after) == {n for n in before if not n.startswith(".debug")}
    for name, (section, contents) in after.items():
        if name != ".symtab":
            assert contents == before[name][1], name  # .strtab, .shstrtab, .comment: moved, same bytes
        if section.sh_flags & SHF_ALLOC:
            assert section == before[name][0], name  # allocated sections: same header, same offset
    assert segments_of(stripped) == segments_of(data)
    for segment in segments_of(data):  # every mapped byte is where it was (the ELF header aside)
        start, end = max(segment.p_offset, HEADER.size), segment.p_offset + segment.p_filesz
        assert stripped[start:end] == data[start:end]
    new, old = read_header(stripped), read_header(data)
    assert new[:6] == old[:6] and new[7:12] == old[7:12]  # all but e_shoff, e_shnum, e_shstrndx
    assert (new.e_shoff, new.e_shnum) == (len(stripped) - new.e_shnum * SECTION.size, len(after))
    assert len(stripped) < len(data) * 0.3


def test_the_symbol_table_keeps_every_symbol_but_the_removed_sections_own(unstripped: Path) -> None:
    data = unstripped.read_bytes()
    (old, old_bytes), (new, new_bytes) = (
        sections_of(data)[".symtab"],
        sections_of(strip_debug(data))[".symtab"],
    )
    dropped = (len(old_bytes) - len(new_bytes)) // SYMBOL.size
    assert old.sh_info - new.sh_info == dropped  # only local symbols went
    if "aarch64" in unstripped.name:  # its linker writes a section symbol for every section
        assert dropped == sum(1 for name in sections_of(data) if name.startswith(".debug_"))
    else:
        assert new_bytes == old_bytes


# -- determinism and binutils ---------------------------------------------------------------------


def test_stripping_is_deterministic_and_idempotent(unstripped: Path, tmp_path: Path) -> None:
    data = unstripped.read_bytes()
    once = strip_debug(data)
    assert strip_debug(data) == once
    assert strip_debug(once) is once  # nothing left to remove: the very same bytes
    copies = []
    for name in ("a", "b"):
        copy = tmp_path / name / "sqlean" / unstripped.name
        copy.parent.mkdir(parents=True)
        shutil.copyfile(unstripped, copy)
        result = strip_tree(tmp_path / name)
        assert result.files == (f"sqlean/{unstripped.name}",) and result.left == ()
        assert result.saved_bytes == len(data) - len(once)
        copies.append(copy.read_bytes())
    assert copies == [once, once]


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_readelf_reads_the_stripped_file_without_complaint(unstripped: Path, tmp_path: Path) -> None:
    stripped = tmp_path / unstripped.name
    stripped.write_bytes(strip_debug(unstripped.read_bytes()))
    done = subprocess.run(
        ["readelf", "-h", "-S", "-l", "-s", "-W", str(stripped)], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == ""
    assert ".debug" not in done.stdout and ".symtab" in done.stdout and "Shared object file" in done.stdout


@pytest.mark.skipif(shutil.which("strip") is None, reason="needs binutils' strip")
def test_the_result_is_within_a_few_kilobytes_of_binutils_strip(unstripped: Path, tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.so"
    done = subprocess.run(["strip", "--strip-debug", "-o", str(theirs), str(unstripped)], capture_output=True)
    if done.returncode != 0:  # Debian's binutils only knows this machine's architecture
        pytest.skip(f"strip cannot read {unstripped.name}: {done.stderr.decode().strip()}")
    ours = len(strip_debug(unstripped.read_bytes()))
    # strip also drops the file symbols (STT_FILE) and the removed sections' names: ~1 KB here
    assert 0 <= ours - theirs.stat().st_size <= 4096


# -- files it leaves as they are --------------------------------------------------------------


def test_files_it_does_not_handle_stay_byte_for_byte(unstripped: Path, tmp_path: Path) -> None:
    data = unstripped.read_bytes()
    debug_info = sections_of(data)[".debug_info"][0]
    debug_info_index = list(sections_of(data)).index(".debug_info")
    shapes = {
        "elf32": data[:4] + b"\x01" + data[5:],
        "big-endian": data[:5] + b"\x02" + data[6:],
        "executable": data[:16] + (2).to_bytes(2, "little") + data[18:],  # e_type ET_EXEC
        "another-machine": data[:18] + (40).to_bytes(2, "little") + data[20:],  # e_machine EM_ARM
        "truncated": data[: len(data) // 2],
        "trailing-data": data + b"appended signature",
        "compressed-debug": with_section_field(
            data, ".debug_info", sh_flags=debug_info.sh_flags | SHF_COMPRESSED
        ),
        "allocated-after-debug": with_section_field(data, ".symtab", sh_flags=SHF_ALLOC),
        "debug-inside-a-segment": with_section_field(data, ".debug_info", sh_offset=0x1000),
        "link-to-a-removed-section": with_section_field(data, ".symtab", sh_link=debug_info_index),
    }
    reasons = {
        "elf32": "not ELF64 little-endian (EI_CLASS 1, EI_DATA 1)",
        "big-endian": "not ELF64 little-endian (EI_CLASS 2, EI_DATA 2)",
        "executable": "not a shared object (e_type 2)",
        "another-machine": "e_machine 40 is neither x86_64 nor aarch64",
        "truncated": "a header table runs past the end of the file",
        "compressed-debug": ".debug_info is compressed or not SHT_PROGBITS",
        "allocated-after-debug": "an allocated section comes after a debug section in the section table",
        "debug-inside-a-segment": "a segment extends past the first debug section",
        "link-to-a-removed-section": f".symtab points at section {debug_info_index}, which is removed or does not exist",
    }
    for name, contents in shapes.items():
        (tmp_path / f"{name}.so").write_bytes(contents)
    (tmp_path / "notes.txt").write_text("not ELF at all\n")
    result = strip_tree(tmp_path)
    assert result.files == () and result.saved_bytes == 0
    left = dict(result.left)
    assert sorted(left) == sorted(f"{name}.so" for name in shapes)
    assert (
        left["trailing-data.so"].startswith("bytes at 0x")
        and "after the last section" in left["trailing-data.so"]
    )
    for name, reason in reasons.items():
        assert left[f"{name}.so"] == reason
    for name, contents in shapes.items():
        assert (tmp_path / f"{name}.so").read_bytes() == contents, name
    assert (tmp_path / "notes.txt").read_text() == "not ELF at all\n"


def test_a_shared_object_without_debug_sections_is_not_rewritten(unstripped: Path, tmp_path: Path) -> None:
    once = tmp_path / "once.so"
    once.write_bytes(strip_debug(unstripped.read_bytes()))
    before = once.stat().st_mtime_ns
    assert strip_tree(tmp_path).files == () and strip_tree(tmp_path).left == ()
    assert once.stat().st_mtime_ns == before


def test_not_elf_is_unhandled() -> None:
    with pytest.raises(Unhandled, match=r"^not an ELF file$"):
        strip_debug(b"#!/bin/sh\n")
