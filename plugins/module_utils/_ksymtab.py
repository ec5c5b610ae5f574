# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Exported symbols and their CRCs as the kernel's ELF files carry them.

*vmlinux* (even stripped of its symbol table) keeps the tables the kernel itself searches:
``__ksymtab`` and ``__ksymtab_gpl`` hold one ``struct kernel_symbol`` per export, ``__kcrctab``
and ``__kcrctab_gpl`` the parallel CRCs (u32; ``unsigned long`` before Linux 4.10), and
``__ksymtab_strings`` the names and namespaces. With CONFIG_HAVE_ARCH_PREL32_RELOCATIONS
(x86_64, arm64, … since 4.19) an entry is three s32 offsets from the field itself
(``value_offset``, ``name_offset``, ``namespace_offset``: 12 bytes); without it, absolute
pointers (``unsigned long value, name, namespace``); before 5.4 there is no namespace field.
The layout is found by trying each in turn: the right one is the only one whose every name
lands in ``__ksymtab_strings``. A namespace offset of 0 means none (assembler exports).

*Modules* carry the same sections, but unlinked: the entries are relocations. Like modpost
(scripts/mod/modpost.c, 6.1), the reader goes by the symbol table instead: ``__ksymtab_S`` in
``__ksymtab``/``__ksymtab_gpl`` exports S, ``__crc_S`` in ``__kcrctab*`` holds its CRC (or,
before 5.19, is an absolute symbol whose value is the CRC), ``__kstrtabns_S`` its namespace.
The symbol table's order is modpost's order, so Module.symvers lines come out as modpost
wrote them. ``__versions`` (and 6.15+'s extended sections, see ``_modversions``) holds the CRCs a module
was built against.

The reader is plain ``struct`` on the bytes it needs (``os.pread`` of the few sections that
matter), because the recovery reads thousands of modules.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field

from ._decompress import DecompressError, compression_of, decompress
from ._modversions import parse_versions

EXPORT_SECTIONS = {  # section suffix -> Module.symvers export type
    "": "EXPORT_SYMBOL",
    "_gpl": "EXPORT_SYMBOL_GPL",
    "_gpl_future": "EXPORT_SYMBOL_GPL_FUTURE",
    "_unused": "EXPORT_UNUSED_SYMBOL",
    "_unused_gpl": "EXPORT_UNUSED_SYMBOL_GPL",
}
SHN_ABS = 0xFFF1
SHT_NOBITS = 8
VERSION_SECTIONS = ("__versions", "__version_ext_crcs", "__version_ext_names")
_IDENTIFIER = re.compile(rb"[A-Za-z_.$][A-Za-z0-9_.$]*\Z")


class KsymtabError(Exception):
    """An ELF file whose export tables cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass(frozen=True)
class Export:
    name: str
    export: str        # EXPORT_SYMBOL, EXPORT_SYMBOL_GPL, …
    crc: int | None    # None: the kernel has no CRC for it (no CONFIG_MODVERSIONS)
    namespace: str = ""


@dataclass
class KernelExports:
    exports: list[Export]
    layout: str        # e.g. "12-byte PC-relative entries with namespace"
    modversions: bool  # __kcrctab present


@dataclass
class ModuleSymbols:
    exports: list[Export] = field(default_factory=list)
    versions: list[tuple[str, int]] = field(default_factory=list)  # (symbol, crc) of __versions
    has_versions: bool = False


class ElfFile:
    """Section headers and section data of an ELF file, from bytes or from an open file."""

    def __init__(self, source: str, data: bytes | None = None, fd: int | None = None) -> None:
        self.source = source
        self._data = memoryview(data) if data is not None else None
        self._fd = fd
        ident = self.read(0, 64)
        if len(ident) < 52 or ident[:4] != b"\x7fELF":
            raise KsymtabError(f"{source} is not an ELF file")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise KsymtabError(f"{source}: unknown ELF class {ident[4]} or byte order {ident[5]}")
        self.bits = 64 if ident[4] == 2 else 32
        self.endian = "<" if ident[5] == 1 else ">"
        e = self.endian
        self.machine = struct.unpack_from(e + "H", ident, 0x12)[0]
        if self.bits == 64:
            shoff, = struct.unpack_from(e + "Q", ident, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", ident, 0x3A)
            self._shdr = e + "IIQQQQIIQQ"
        else:
            shoff, = struct.unpack_from(e + "I", ident, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", ident, 0x2E)
            self._shdr = e + "IIIIIIIIII"
        if not shoff:
            raise KsymtabError(f"{source} has no section headers")
        if shentsize != struct.calcsize(self._shdr):
            raise KsymtabError(f"{source}: unexpected section header size {shentsize}")
        if shnum == 0 or shstrndx == 0xFFFF:  # extended numbering: the real values in section 0
            first = struct.unpack_from(self._shdr, self.read(shoff, shentsize))
            shnum = shnum or first[5]
            shstrndx = first[6] if shstrndx == 0xFFFF else shstrndx
        table = self.read(shoff, shnum * shentsize)
        if len(table) != shnum * shentsize:
            raise KsymtabError(f"{source} is truncated: its section headers end past the file")
        raw = list(struct.iter_unpack(self._shdr, table))
        if shstrndx >= len(raw):
            raise KsymtabError(f"{source}: the section name table index is out of range")
        names = self.read(raw[shstrndx][4], raw[shstrndx][5])
        self.sections: list[Section] = []
        self.by_name: dict[str, Section] = {}
        for index, (name, stype, _flags, addr, offset, size, link, _info, _align, entsize) \
                in enumerate(raw):
            end = names.find(b"\0", name)
            section = Section(index, names[name:end if end >= 0 else None].decode("latin-1"),
                              stype, addr, offset, size, link, entsize)
            self.sections.append(section)
            self.by_name.setdefault(section.name, section)

    def read(self, offset: int, size: int) -> bytes:
        if self._data is not None:
            return bytes(self._data[offset:offset + size])
        return os.pread(self._fd, size, offset) if self._fd is not None else b""

    def data(self, section: Section) -> bytes:
        if section.type == SHT_NOBITS:
            return b""
        out = self.read(section.offset, section.size)
        if len(out) != section.size:
            raise KsymtabError(f"{self.source} is truncated: section {section.name} ends past "
                               "the end of the file")
        return out


def _cstring(blob: bytes, offset: int) -> bytes:
    end = blob.find(b"\0", offset)
    return blob[offset:end] if end >= 0 else blob[offset:]


def _layouts(bits: int) -> list[tuple[int, bool, bool, str]]:
    """Candidate kernel_symbol layouts: (entry size, relative, with namespace, words)."""
    rel = [(12, True, True, "12-byte PC-relative entries with namespace"),
           (8, True, False, "8-byte PC-relative entries without namespace")]
    word = bits // 8
    absolute = [(3 * word, False, True, f"{3 * word}-byte absolute entries with namespace"),
                (2 * word, False, False, f"{2 * word}-byte absolute entries without namespace")]
    return rel + absolute if bits == 64 else absolute + rel


def _decode_table(elf: ElfFile, table: Section, data: bytes, strings: Section, blob: bytes,
                  layout: tuple[int, bool, bool, str]) -> list[tuple[str, str]] | None:
    """(name, namespace) of every entry under ``layout``, or None when it does not fit."""
    size, relative, with_ns, _words = layout
    if len(data) % size:
        return None
    if relative:
        fmt = elf.endian + ("iii" if with_ns else "ii")
    else:
        fmt = elf.endian + ("QQQ" if elf.bits == 64 else "III")[:3 if with_ns else 2]
    lo, hi = strings.addr, strings.addr + strings.size
    out: list[tuple[str, str]] = []
    base = table.addr
    for i, fields in enumerate(struct.iter_unpack(fmt, data)):
        entry = base + i * size
        name_at = entry + 4 + fields[1] if relative else fields[1]
        if not lo <= name_at < hi:
            return None
        name = _cstring(blob, name_at - lo)
        if not _IDENTIFIER.match(name):
            return None
        namespace = b""
        if with_ns and fields[2]:
            ns_at = entry + 8 + fields[2] if relative else fields[2]
            if not lo <= ns_at < hi:
                return None
            namespace = _cstring(blob, ns_at - lo)
        out.append((name.decode("ascii"), namespace.decode("ascii", "replace")))
    return out


def kernel_exports(elf: ElfFile) -> KernelExports:
    """What vmlinux exports, in the order of its own tables (by name, as its linker sorts)."""
    strings = elf.by_name.get("__ksymtab_strings")
    tables = [(suffix, elf.by_name[f"__ksymtab{suffix}"]) for suffix in EXPORT_SECTIONS
              if f"__ksymtab{suffix}" in elf.by_name]
    if strings is None or not tables:
        missing = "__ksymtab_strings" if tables else "__ksymtab"
        raise KsymtabError(
            f"{elf.source} has no {missing} section, so the kernel's exports cannot be read: "
            "it is not a vmlinux of a kernel with CONFIG_MODULES, or the image is damaged; "
            "use the headers package's Module.symvers instead")
    blob = elf.data(strings)
    exports: list[Export] = []
    chosen: tuple[int, bool, bool, str] | None = None
    modversions = False
    for suffix, table in tables:
        data = elf.data(table)
        if not data:
            continue
        candidates = [chosen] if chosen else _layouts(elf.bits)
        entries = None
        for layout in candidates:
            entries = _decode_table(elf, table, data, strings, blob, layout)
            if entries is not None:
                chosen = layout
                break
        if entries is None or chosen is None:
            raise KsymtabError(
                f"{elf.source}: the entries of {table.name} fit no known struct kernel_symbol "
                "layout (PC-relative or absolute, with or without namespace); this kernel's "
                "exports cannot be read, use its headers package's Module.symvers instead")
        crcs: list[int | None] = [None] * len(entries)
        crctab = elf.by_name.get(f"__kcrctab{suffix}")
        if crctab is not None and crctab.size:
            modversions = True
            width = crctab.size // len(entries) if entries else 0
            if width not in (4, 8) or width * len(entries) != crctab.size:
                raise KsymtabError(
                    f"{elf.source}: {crctab.name} ({crctab.size} bytes) does not run parallel "
                    f"to {table.name} ({len(entries)} entries)")
            fmt = elf.endian + ("I" if width == 4 else "Q")
            crcs = [value & 0xFFFFFFFF for value, in struct.iter_unpack(fmt, elf.data(crctab))]
        export = EXPORT_SECTIONS[suffix]
        exports.extend(Export(name, export, crc, namespace)
                       for (name, namespace), crc in zip(entries, crcs))
    return KernelExports(exports, chosen[3] if chosen else "no entries", modversions)


def _symbols(elf: ElfFile, symtab: Section):
    """(name offset, section index, value) of every symbol."""
    e = elf.endian
    if elf.bits == 64:
        for name, _info, _other, shndx, value, _size in struct.iter_unpack(
                e + "IBBHQQ", elf.data(symtab)):
            yield name, shndx, value
    else:
        for name, value, _size, _info, _other, shndx in struct.iter_unpack(
                e + "IIIBBH", elf.data(symtab)):
            yield name, shndx, value


def module_symbols(elf: ElfFile) -> ModuleSymbols:
    """A module's own exports (modpost's order) and the CRCs in its ``__versions``."""
    result = ModuleSymbols()
    raw = {name: elf.data(elf.by_name[name]) for name in VERSION_SECTIONS if name in elf.by_name}
    if "__versions" in raw or "__version_ext_crcs" in raw:  # the kernel's has_crcs
        result.has_versions = True
        entries = parse_versions(raw.get("__versions", b""), raw.get("__version_ext_crcs"),
                                 raw.get("__version_ext_names"), elf.bits, elf.endian)
        result.versions = [(entry.symbol, entry.crc & 0xFFFFFFFF) for entry in entries]
    ksymtabs = {s.index: EXPORT_SECTIONS[s.name[len("__ksymtab"):]] for s in elf.sections
                if s.name.startswith("__ksymtab") and s.name[len("__ksymtab"):] in EXPORT_SECTIONS
                and s.size}
    if not ksymtabs:
        return result
    symtab = next((s for s in elf.sections if s.type == 2), None)  # SHT_SYMTAB
    if symtab is None or symtab.link >= len(elf.sections):
        raise KsymtabError(f"{elf.source} exports symbols but has no symbol table; a kernel "
                           "module always has one, so the file is damaged")
    strtab = elf.data(elf.sections[symtab.link])
    crctabs = {s.index: s for s in elf.sections
               if s.name.startswith("__kcrctab") and s.name[len("__kcrctab"):] in EXPORT_SECTIONS}
    strings = elf.by_name.get("__ksymtab_strings")
    wanted = set(ksymtabs) | set(crctabs) | {SHN_ABS}
    if strings is not None:
        wanted.add(strings.index)
    order: list[tuple[str, str]] = []
    crc_at: dict[str, tuple[int, int]] = {}  # symbol -> (section index or SHN_ABS, value)
    namespaces: dict[str, int] = {}
    for name_offset, shndx, value in _symbols(elf, symtab):
        if shndx not in wanted:
            continue
        name = _cstring(strtab, name_offset)
        if name.startswith(b"__ksymtab_"):
            export = ksymtabs.get(shndx)
            if export is not None:
                order.append((name[10:].decode("ascii", "replace"), export))
        elif name.startswith(b"__crc_"):
            if shndx == SHN_ABS or shndx in crctabs:
                crc_at[name[6:].decode("ascii", "replace")] = (shndx, value)
        elif name.startswith(b"__kstrtabns_") and strings is not None and shndx == strings.index:
            namespaces[name[12:].decode("ascii", "replace")] = value
    crc_data: dict[int, bytes] = {}
    ns_blob = elf.data(strings) if namespaces and strings is not None else b""
    for name, export in order:
        crc: int | None = None
        where = crc_at.get(name)
        if where is not None:
            shndx, value = where
            if shndx == SHN_ABS:  # before 5.19: the symbol's value is the CRC
                crc = value & 0xFFFFFFFF
            else:
                if shndx not in crc_data:
                    crc_data[shndx] = elf.data(crctabs[shndx])
                if value + 4 > len(crc_data[shndx]):
                    raise KsymtabError(f"{elf.source}: __crc_{name} points past the end of "
                                       f"{crctabs[shndx].name}")
                crc, = struct.unpack_from(elf.endian + "I", crc_data[shndx], value)
        namespace = ""
        if name in namespaces:
            namespace = _cstring(ns_blob, namespaces[name]).decode("ascii", "replace")
        result.exports.append(Export(name, export, crc, namespace))
    return result


def read_module(path: str) -> ModuleSymbols:
    """Exports and ``__versions`` of a module file, plain (only the sections needed are read)
    or compressed (``.ko.gz``, ``.ko.xz``, ``.ko.zst``, found by their magic)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise KsymtabError(f"cannot read {path}: {exc.strerror}") from None
    try:
        kind = compression_of(os.pread(fd, 8, 0))
        if kind == "none":
            return module_symbols(ElfFile(path, fd=fd))
        data = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
    except OSError as exc:
        raise KsymtabError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return module_symbols(ElfFile(path, data=decompress(data, kind, path)))
    except DecompressError as exc:
        raise KsymtabError(str(exc)) from None
