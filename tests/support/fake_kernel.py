"""Small synthetic kernel files for unit tests: ELF files with export tables, bzImages.

Only for the error paths and edge cases the real Debian kernel does not show (other layouts,
other compressions, damaged files); real outcomes are tested on the real kernel in
``tests/kernel``. The shapes follow Linux 6.1: ``include/linux/export.h`` (struct
kernel_symbol), ``scripts/module.lds.S`` (section names), ``scripts/mod/modpost.c``
(``__ksymtab_S``/``__crc_S``/``__kstrtabns_S`` symbols) and Documentation/x86/boot.rst.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
from dataclasses import dataclass, field

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
SHN_ABS = 0xFFF1
ET_REL, ET_EXEC = 1, 2
EM_X86_64, EM_386 = 62, 3


@dataclass
class Sec:
    name: str
    data: bytes
    addr: int = 0
    type: int = SHT_PROGBITS
    link: int = 0
    entsize: int = 0


@dataclass
class Sym:
    name: str
    section: str | int  # a section name, or SHN_ABS
    value: int = 0


def build_elf(sections: list[Sec], symbols: list[Sym] | None = None, bits: int = 64,
              etype: int = ET_REL, machine: int = EM_X86_64) -> bytes:
    """An ELF file of little-endian ``bits`` with these sections (+ .symtab/.strtab)."""
    sections = list(sections)
    if symbols is not None:
        strtab = bytearray(b"\0")
        index = {s.name: i + 1 for i, s in enumerate(sections)}
        entries = [b"\0" * (24 if bits == 64 else 16)]
        for sym in symbols:
            name_at = len(strtab)
            strtab += sym.name.encode() + b"\0"
            shndx = sym.section if isinstance(sym.section, int) else index[sym.section]
            if bits == 64:
                entries.append(struct.pack("<IBBHQQ", name_at, 0, 0, shndx, sym.value, 0))
            else:
                entries.append(struct.pack("<IIIBBH", name_at, sym.value, 0, 0, 0, shndx))
        symtab_index = len(sections) + 1
        sections.append(Sec(".symtab", b"".join(entries), type=SHT_SYMTAB,
                            link=symtab_index + 1, entsize=24 if bits == 64 else 16))
        sections.append(Sec(".strtab", bytes(strtab), type=SHT_STRTAB))
    shstrtab = bytearray(b"\0")
    name_offsets = []
    for sec in sections + [Sec(".shstrtab", b"", type=SHT_STRTAB)]:
        name_offsets.append(len(shstrtab))
        shstrtab += sec.name.encode() + b"\0"
    sections.append(Sec(".shstrtab", bytes(shstrtab), type=SHT_STRTAB))
    ehsize = 64 if bits == 64 else 52
    body = bytearray(b"\0" * ehsize)
    offsets = []
    for sec in sections:
        while len(body) % 8:
            body.append(0)
        offsets.append(len(body))
        body += sec.data
    while len(body) % 8:
        body.append(0)
    shoff = len(body)
    headers = [b"\0" * (64 if bits == 64 else 40)]
    for sec, name_at, offset in zip(sections, name_offsets, offsets):
        if bits == 64:
            headers.append(struct.pack("<IIQQQQIIQQ", name_at, sec.type, 2, sec.addr, offset,
                                       len(sec.data), sec.link, 0, 1, sec.entsize))
        else:
            headers.append(struct.pack("<IIIIIIIIII", name_at, sec.type, 2, sec.addr, offset,
                                       len(sec.data), sec.link, 0, 1, sec.entsize))
    body += b"".join(headers)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1]) + b"\0" * 9
    if bits == 64:
        header = ident + struct.pack("<HHIQQQIHHHHHH", etype, machine, 1, 0, 0, shoff, 0, 64,
                                     0, 0, 64, len(sections) + 1, len(sections))
    else:
        header = ident + struct.pack("<HHIIIIIHHHHHH", etype, machine, 1, 0, 0, shoff, 0, 52,
                                     0, 0, 40, len(sections) + 1, len(sections))
    body[:len(header)] = header
    return bytes(body)


@dataclass
class Exp:
    name: str
    crc: int
    gpl: bool = False
    namespace: str = ""


@dataclass
class StringTable:
    blob: bytearray = field(default_factory=bytearray)

    def add(self, text: str) -> int:
        at = len(self.blob)
        self.blob += text.encode() + b"\0"
        return at


def fake_vmlinux(exports: list[Exp], layout: str = "prel32", crcs: bool = True,
                 bits: int = 64) -> bytes:
    """A stripped vmlinux: export tables only. ``layout``: ``prel32`` (12-byte offsets),
    ``prel32-nons`` (8-byte, before 5.4), ``absolute`` (pointers, with namespace)."""
    strings_addr = 0xFFFFFFFF8248B400 if bits == 64 else 0xC1800000
    table_addr = {"": strings_addr - 0x20000, "_gpl": strings_addr - 0x10000}
    text_addr = strings_addr - 0x100000
    strings = StringTable()
    sections: list[Sec] = []
    for suffix, gpl in (("", False), ("_gpl", True)):
        chosen = sorted((e for e in exports if e.gpl == gpl), key=lambda e: e.name)
        entries = bytearray()
        crc_table = bytearray()
        for number, exp in enumerate(chosen):
            name_at = strings_addr + strings.add(exp.name)
            ns_at = strings_addr + strings.add(exp.namespace)
            entry = table_addr[suffix] + len(entries)
            value = text_addr + 16 * number
            if layout == "prel32":
                entries += struct.pack("<iii", value - entry, name_at - entry - 4,
                                       ns_at - entry - 8)
            elif layout == "prel32-nons":
                entries += struct.pack("<ii", value - entry, name_at - entry - 4)
            elif bits == 64:
                entries += struct.pack("<QQQ", value, name_at, ns_at if exp.namespace else 0)
            else:
                entries += struct.pack("<III", value, name_at, ns_at if exp.namespace else 0)
            crc_table += struct.pack("<I", exp.crc)
        sections.append(Sec(f"__ksymtab{suffix}", bytes(entries), addr=table_addr[suffix]))
        if crcs:
            sections.append(Sec(f"__kcrctab{suffix}", bytes(crc_table),
                                addr=table_addr[suffix] + 0x8000))
    sections.append(Sec("__ksymtab_strings", bytes(strings.blob), addr=strings_addr))
    sections.insert(0, Sec(".text", b"\x90" * 64, addr=text_addr))
    return build_elf(sections, None, bits=bits, etype=ET_EXEC,
                     machine=EM_X86_64 if bits == 64 else EM_386)


def fake_module(exports: list[Exp] = (), versions: list[tuple[str, int]] = (),
                absolute_crcs: bool = False, with_versions: bool = True,
                with_symtab: bool = True) -> bytes:
    """A relocatable module as 6.1's modpost leaves it (before 5.19 with ``absolute_crcs``)."""
    sections = [Sec(".text", b"\xc3" * 16)]
    symbols: list[Sym] = []
    strings = StringTable()
    for suffix, gpl in (("", False), ("_gpl", True)):
        chosen = [e for e in exports if e.gpl == gpl]
        if not chosen:
            continue
        sections.append(Sec(f"__ksymtab{suffix}", b"\0" * 12 * len(chosen)))
        if not absolute_crcs:
            sections.append(Sec(f"__kcrctab{suffix}",
                                b"".join(struct.pack("<I", e.crc) for e in chosen)))
        for number, exp in enumerate(chosen):
            symbols.append(Sym(f"__ksymtab_{exp.name}", f"__ksymtab{suffix}", 12 * number))
            if absolute_crcs:
                symbols.append(Sym(f"__crc_{exp.name}", SHN_ABS, exp.crc))
            else:
                symbols.append(Sym(f"__crc_{exp.name}", f"__kcrctab{suffix}", 4 * number))
            symbols.append(Sym(f"__kstrtab_{exp.name}", "__ksymtab_strings",
                               strings.add(exp.name)))
            symbols.append(Sym(f"__kstrtabns_{exp.name}", "__ksymtab_strings",
                               strings.add(exp.namespace)))
    if exports:
        sections.append(Sec("__ksymtab_strings", bytes(strings.blob)))
    if with_versions:
        sections.append(Sec("__versions", b"".join(
            struct.pack("<Q56s", crc, name.encode()) for name, crc in versions)))
    symbols.append(Sym("init_module", ".text", 0))
    return build_elf(sections, symbols if with_symtab else None)


def compress(data: bytes, method: str) -> bytes:
    """``data`` compressed the way the kernel's build does it (stream + 4-byte size)."""
    import shutil
    import subprocess
    size = struct.pack("<I", len(data) & 0xFFFFFFFF)
    if method == "gzip":
        return gzip.compress(data) + size
    if method == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32) + size
    if method == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE) + size
    if method == "bzip2":
        return bz2.compress(data) + size
    if method == "none":
        return data
    tool = {"zstd": ["zstd", "-q", "-c"], "lz4": ["lz4", "-l", "-q", "-c"],
            "lzo": ["lzop", "-q", "-c"]}[method]
    if shutil.which(tool[0]) is None:
        raise FileNotFoundError(tool[0])
    return subprocess.run(tool, input=data, capture_output=True, check=True).stdout + size


def fake_bzimage(payload: bytes, protocol: int = 0x020F, version: bytes =
                 b"6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC",
                 setup_sects: int = 7, payload_offset: int = 0x2C0,
                 payload_length: int | None = None) -> bytes:
    """A bzImage: real-mode header, then the protected-mode part holding ``payload``."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, protocol)
    struct.pack_into("<H", setup, 0x20E, 0x400 - 0x200)
    setup[0x400:0x400 + len(version) + 1] = version + b"\0"
    if protocol >= 0x0208:
        struct.pack_into("<II", setup, 0x248, payload_offset,
                         len(payload) if payload_length is None else payload_length)
    decompressor = b"\xcc" * payload_offset  # stands for the decompressor's code
    return bytes(setup) + decompressor + payload + b"\0" * 64


RELEASE = "6.1.0-99-test"


def fake_root(base, vmlinux: list[Exp], modules: dict[str, tuple[list[Exp], list[tuple[str, int]]]],
              release: str = RELEASE, order: list[str] | None = None,
              compression: str = "xz") -> str:
    """A root as a kernel package leaves it: ``boot/vmlinuz-R``, ``lib/modules/R/kernel/…``
    and ``modules.order`` (``order``: module names in order; default: as given)."""
    from pathlib import Path
    root = Path(base)
    (root / "boot").mkdir(parents=True, exist_ok=True)
    version = f"{release} (test@example.org) #1 SMP PREEMPT_DYNAMIC".encode()
    (root / "boot" / f"vmlinuz-{release}").write_bytes(
        fake_bzimage(compress(fake_vmlinux(vmlinux), compression), version=version))
    mods = root / "lib" / "modules" / release
    for name, (exports, versions) in modules.items():
        path = mods / "kernel" / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fake_module(exports, versions))
    mods.mkdir(parents=True, exist_ok=True)
    names = list(modules) if order is None else order
    (mods / "modules.order").write_text("".join(f"kernel/{n}.ko\n" for n in names))
    return str(root)


def add_headers(root: str, text: str, release: str = RELEASE) -> str:
    """A headers package's tree with ``text`` as its Module.symvers, and the absolute ``build``
    link to it, as Debian installs them."""
    import os
    headers = os.path.join(root, "usr", "src", f"linux-headers-{release}")
    os.makedirs(headers, exist_ok=True)
    with open(os.path.join(headers, "Module.symvers"), "w", encoding="ascii") as handle:
        handle.write(text)
    link = os.path.join(root, "lib", "modules", release, "build")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(f"/usr/src/linux-headers-{release}", link)
    return os.path.join(headers, "Module.symvers")
