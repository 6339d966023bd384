"""Debug sections out of the layer's ELF shared objects, in pure Python (`strip --strip-debug`'s main work).

Compiled extensions often ship with their DWARF debug information: sqlean.py's `_sqlite3` library is
8.4 MB, 6.3 MB of it `.debug_*` sections that nothing reads at run time. Doing it here rather than
running binutils' `strip` means no tool to install on runners and laptops, and output bytes that
depend only on the input bytes (not on a tool's version): practice 11, same inputs, same bytes.

The layout, from the System V gABI (https://www.sco.com/developers/gabi/latest/contents.html:
chapter 4, "ELF Header", "Sections", "Symbol Table"; chapter 5, "Program Header") and, for ELF64,
the Linux man page elf(5) (https://man7.org/linux/man-pages/man5/elf.5.html): a file is the ELF
header, the program headers, the sections' contents and the section header table (usually last).
The loader reads only the program headers' segments, which cover the allocated (SHF_ALLOC)
sections; non-allocated sections (.debug_*, .symtab, .strtab, .shstrtab, .comment) are in no
segment. GNU ld puts them after every allocated byte, debug sections first. So the file is
rewritten as:

- every byte up to the first debug section's contents, unchanged at the same offsets (the ELF
  header aside, whose e_shoff, e_shnum and e_shstrndx change: the loader reads none of them);
- the kept sections that came after (.symtab, .strtab, .shstrtab, ...), moved down, each at its
  sh_addralign, with sh_offset fixed;
- the section header table without the debug sections' headers (8-aligned), sh_link and sh_info
  renumbered; e_shoff, e_shnum and e_shstrndx to match.

.symtab and .strtab stay, as with `strip --strip-debug` (tracebacks and profilers still get
function names), less the section symbols of the removed sections (aarch64's linker writes one per
section); .comment and the other notes stay too. Unlike `strip`, the file symbols (STT_FILE) and
the removed sections' names in .shstrtab stay: about a kilobyte. A file of another shape is left
byte for byte as it is (`Unhandled` says why): not ELF64 little-endian x86_64/aarch64, not a
shared object, compressed debug sections, a debug section that comes before an allocated
section in the table or lies before the end of a segment or section, a header, symbol
or .dynsym entry pointing at a removed section or at one whose index would change, relocations
against .symtab, bytes after the cut that belong to no section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from datasette_action.zips import tree_files

# e_ident (gABI "ELF Identification"): the magic, then EI_CLASS, EI_DATA, EI_VERSION.
MAGIC = b"\x7fELF"
ELFCLASS64, ELFDATA2LSB, EV_CURRENT = 2, 1, 1
ET_DYN = 3  # e_type of a shared object
MACHINES = {62: "x86_64", 183: "aarch64"}  # e_machine: EM_X86_64, EM_AARCH64
# sh_type values (gABI "Sections", "Section Types") this module looks at.
SHT_PROGBITS, SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 1, 2, 4, 8, 9, 11
SHT_GROUP, SHT_SYMTAB_SHNDX = 17, 18  # hold section indices in their contents: not handled
# sh_flags bits ("Section Attribute Flags").
SHF_ALLOC, SHF_INFO_LINK, SHF_COMPRESSED = 0x2, 0x40, 0x800
# st_info of a local section symbol: STB_LOCAL (0) << 4 | STT_SECTION (3) (gABI "Symbol Table").
LOCAL_SECTION_SYMBOL = 3
SHN_LORESERVE = 0xFF00  # section indices from here up are special (SHN_ABS, SHN_COMMON, SHN_XINDEX)
PN_XNUM = 0xFFFF  # e_phnum when the real count is elsewhere
DEBUG_PREFIX = ".debug"  # DWARF's sections: .debug_info, .debug_line, ...
COMPRESSED_DEBUG_PREFIX = ".zdebug"  # GNU's older compressed DWARF
SECTION_TABLE_ALIGN = 8  # Elf64_Shdr's alignment


class Header(NamedTuple):  # Elf64_Ehdr
    e_ident: bytes
    e_type: int
    e_machine: int
    e_version: int
    e_entry: int
    e_phoff: int
    e_shoff: int
    e_flags: int
    e_ehsize: int
    e_phentsize: int
    e_phnum: int
    e_shentsize: int
    e_shnum: int
    e_shstrndx: int


class Segment(NamedTuple):  # Elf64_Phdr
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


class Section(NamedTuple):  # Elf64_Shdr
    sh_name: int
    sh_type: int
    sh_flags: int
    sh_addr: int
    sh_offset: int
    sh_size: int
    sh_link: int
    sh_info: int
    sh_addralign: int
    sh_entsize: int

    @property
    def file_size(self) -> int:
        """The bytes it takes in the file: none for SHT_NOBITS (.bss)."""
        return 0 if self.sh_type == SHT_NOBITS else self.sh_size


class Symbol(NamedTuple):  # Elf64_Sym
    st_name: int
    st_info: int
    st_other: int
    st_shndx: int
    st_value: int
    st_size: int


HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
SEGMENT = struct.Struct("<IIQQQQQQ")
SECTION = struct.Struct("<IIQQQQIIQQ")
SYMBOL = struct.Struct("<IBBHQQ")


class Unhandled(Exception):
    """An ELF file of a shape this module does not rewrite; it is left as it is."""


@dataclass(frozen=True)
class Stripped:
    files: tuple[str, ...]  # the shared objects rewritten, relative to the tree
    saved_bytes: int
    left: tuple[tuple[str, str], ...]  # (file, why) ELF files left as they were


def strip_tree(tree: Path) -> Stripped:
    """Strip the debug sections of every ELF file under `tree`, in place (symlinks are skipped)."""
    files: list[str] = []
    left: list[tuple[str, str]] = []
    saved = 0
    for path in tree_files(tree):
        if path.is_symlink():
            continue
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                continue
        data = path.read_bytes()
        relative = path.relative_to(tree).as_posix()
        try:
            stripped = strip_debug(data)
        except Unhandled as why:
            left.append((relative, str(why)))
            continue
        if stripped is not data:
            path.write_bytes(stripped)
            files.append(relative)
            saved += len(data) - len(stripped)
    return Stripped(tuple(files), saved, tuple(left))


def strip_debug(data: bytes) -> bytes:
    """The shared object `data` without its .debug_* sections (`data` itself when it has none).

    Raises Unhandled for a file this module does not rewrite.
    """
    header = read_header(data)
    sections = [Section._make(s) for s in _table(data, SECTION, header.e_shoff, header.e_shnum)]
    names = section_names(data, sections, header.e_shstrndx)
    if any(name.startswith(COMPRESSED_DEBUG_PREFIX) for name in names):
        raise Unhandled("compressed debug sections (.zdebug_*)")
    # Only sections no segment holds (an allocated .debug_gdb_scripts is part of the image).
    removed = {
        i
        for i, (name, section) in enumerate(zip(names, sections))
        if name.startswith(DEBUG_PREFIX) and not section.sh_flags & SHF_ALLOC
    }
    if not removed:
        return data
    first = min(removed)
    for i in removed:
        if sections[i].sh_type != SHT_PROGBITS or sections[i].sh_flags & SHF_COMPRESSED:
            raise Unhandled(f"{names[i]} is compressed or not SHT_PROGBITS")
    if any(s.sh_flags & SHF_ALLOC for s in sections[first:]):
        raise Unhandled("an allocated section comes after a debug section in the section table")
    if any(s.sh_type in (SHT_GROUP, SHT_SYMTAB_SHNDX) for s in sections):
        raise Unhandled("section groups or extended symbol section indices")
    cut = min(sections[i].sh_offset for i in removed)
    _check_before(data, header, sections, removed, cut)
    tail = _check_tail(data, header, sections, cut)
    kept = [i for i in range(len(sections)) if i not in removed]
    renumbered = {old: new for new, old in enumerate(kept)}
    symbol_tables = _symbol_tables(data, sections, removed, renumbered)
    if any(i not in tail for i in symbol_tables):
        raise Unhandled("a symbol table to rewrite lies before the first debug section")

    # Everything before the cut as it is; the kept sections after it moved down, in file order.
    out = bytearray(data[:cut])
    moved: dict[int, tuple[int, int]] = {}  # section index -> new (sh_offset, sh_size)
    for i in sorted((i for i in tail if i not in removed), key=lambda i: (sections[i].sh_offset, i)):
        section = sections[i]
        out += bytes(-len(out) % max(section.sh_addralign, 1))
        if i in symbol_tables:
            contents = symbol_tables[i][0]
        else:
            contents = data[section.sh_offset : section.sh_offset + section.file_size]
        moved[i] = (len(out), section.sh_size if section.sh_type == SHT_NOBITS else len(contents))
        out += contents
    # The section header table without the removed sections, then the ELF header to match.
    out += bytes(-len(out) % SECTION_TABLE_ALIGN)
    table_offset = len(out)
    for i in kept:
        section = sections[i]
        offset, size = moved.get(i, (section.sh_offset, section.sh_size))
        link = _renumber(section.sh_link, renumbered, names[i]) if section.sh_link else 0
        info = section.sh_info
        if i in symbol_tables:
            info = symbol_tables[i][1]
        elif section.sh_type in (SHT_REL, SHT_RELA) or section.sh_flags & SHF_INFO_LINK:
            info = _renumber(info, renumbered, names[i]) if info else 0
        out += SECTION.pack(*section._replace(sh_offset=offset, sh_size=size, sh_link=link, sh_info=info))
    shstrndx = _renumber(header.e_shstrndx, renumbered, "e_shstrndx")
    HEADER.pack_into(out, 0, *header._replace(e_shoff=table_offset, e_shnum=len(kept), e_shstrndx=shstrndx))
    return bytes(out)


def read_header(data: bytes) -> Header:
    """The ELF header, if it is one this module handles."""
    if len(data) < HEADER.size or data[:4] != MAGIC:
        raise Unhandled("not an ELF file")
    header = Header._make(HEADER.unpack_from(data))
    ident = header.e_ident
    if (ident[4], ident[5], ident[6]) != (ELFCLASS64, ELFDATA2LSB, EV_CURRENT):
        raise Unhandled(f"not ELF64 little-endian (EI_CLASS {ident[4]}, EI_DATA {ident[5]})")
    if header.e_machine not in MACHINES:
        raise Unhandled(f"e_machine {header.e_machine} is neither x86_64 nor aarch64")
    if header.e_type != ET_DYN:
        raise Unhandled(f"not a shared object (e_type {header.e_type})")
    sizes = (header.e_ehsize, header.e_phentsize, header.e_shentsize)
    if sizes != (HEADER.size, SEGMENT.size, SECTION.size):
        raise Unhandled(f"unexpected header sizes {sizes}")
    if header.e_shnum == 0 or header.e_phnum == PN_XNUM or header.e_shstrndx >= header.e_shnum:
        raise Unhandled("extended section or segment numbering")
    return header


def section_names(data: bytes, sections: list[Section], shstrndx: int) -> list[str]:
    strings = sections[shstrndx]
    table = data[strings.sh_offset : strings.sh_offset + strings.sh_size]
    if len(table) != strings.sh_size:
        raise Unhandled("the section name table is truncated")
    names = []
    for section in sections:
        end = table.find(b"\0", section.sh_name)
        if end < 0:
            raise Unhandled(f"section name offset {section.sh_name} is outside the name table")
        names.append(table[section.sh_name : end].decode("latin-1"))
    return names


def _table(data: bytes, layout: struct.Struct, offset: int, count: int) -> list[tuple[int, ...]]:
    end = offset + layout.size * count
    if end > len(data):
        raise Unhandled("a header table runs past the end of the file")
    return list(layout.iter_unpack(data[offset:end]))


def _check_before(data: bytes, header: Header, sections: list[Section], removed: set[int], cut: int) -> None:
    """Everything the loader maps, and every kept section before the cut, ends before the cut."""
    segments = [Segment._make(s) for s in _table(data, SEGMENT, header.e_phoff, header.e_phnum)]
    if header.e_phoff + SEGMENT.size * header.e_phnum > cut or header.e_shoff < cut:
        raise Unhandled("the program or section header table is not where expected")
    if any(s.p_offset + s.p_filesz > cut for s in segments):
        raise Unhandled("a segment extends past the first debug section")
    for i, section in enumerate(sections):
        if i not in removed and section.sh_offset < cut < section.sh_offset + section.file_size:
            raise Unhandled("a section overlaps the first debug section")


def _check_tail(data: bytes, header: Header, sections: list[Section], cut: int) -> list[int]:
    """The sections from the cut on (their indices); every byte there belongs to one of them or to
    the section header table, except zero padding."""
    tail = [i for i, s in enumerate(sections) if s.sh_offset >= cut]
    if any(sections[i].sh_flags & SHF_ALLOC for i in tail):
        raise Unhandled("an allocated section lies after the first debug section")
    pieces = sorted(
        [(sections[i].sh_offset, sections[i].file_size) for i in tail]
        + [(header.e_shoff, SECTION.size * header.e_shnum)]
    )
    position = cut
    for offset, size in pieces:
        if size == 0:
            continue
        if offset < position or offset + size > len(data):
            raise Unhandled("sections overlap or run past the end of the file")
        if any(data[position:offset]):
            raise Unhandled(f"bytes at {position:#x} belong to no section")
        position = offset + size
    if any(data[position:]):
        raise Unhandled(f"bytes at {position:#x} after the last section")
    return tail


def _symbol_tables(
    data: bytes, sections: list[Section], removed: set[int], renumbered: dict[int, int]
) -> dict[int, tuple[bytes, int]]:
    """The new contents and sh_info of each .symtab that changes: the section symbols of the debug
    sections dropped (aarch64's linker writes one per section), the other symbols' st_shndx
    renumbered. .dynsym is allocated, so it must need no change."""
    changed: dict[int, tuple[bytes, int]] = {}
    for index, section in enumerate(sections):
        if section.sh_type not in (SHT_SYMTAB, SHT_DYNSYM):
            continue
        if section.sh_entsize != SYMBOL.size or section.sh_size % SYMBOL.size:
            raise Unhandled(f"symbol table entries of {section.sh_entsize} bytes")
        count = section.sh_size // SYMBOL.size
        symbols = [Symbol._make(s) for s in _table(data, SYMBOL, section.sh_offset, count)]
        kept: list[Symbol] = []
        for number, symbol in enumerate(symbols):
            shndx = symbol.st_shndx
            if not 0 < shndx < SHN_LORESERVE or renumbered.get(shndx) == shndx:
                kept.append(symbol)  # undefined, absolute, common, or in a section that keeps its index
            elif section.sh_type == SHT_DYNSYM:
                raise Unhandled(f"dynamic symbol {number} is in section {shndx}, whose index changes")
            elif shndx in removed and symbol.st_info == LOCAL_SECTION_SYMBOL and number < section.sh_info:
                continue
            else:
                kept.append(symbol._replace(st_shndx=_renumber(shndx, renumbered, f"symbol {number}")))
        if kept == symbols:
            continue
        if any(s.sh_type in (SHT_REL, SHT_RELA) and s.sh_link == index for s in sections):
            raise Unhandled("relocations refer to the symbols of the symbol table by number")
        dropped = len(symbols) - len(kept)  # all local: sh_info is one past the last local symbol
        changed[index] = (b"".join(SYMBOL.pack(*symbol) for symbol in kept), section.sh_info - dropped)
    return changed


def _renumber(index: int, renumbered: dict[int, int], what: str) -> int:
    if index not in renumbered:
        raise Unhandled(f"{what} points at section {index}, which is removed or does not exist")
    return renumbered[index]
