"""Small hand-made kernel-module-shaped ELF files for unit tests (no binary blobs in the tree).

``make_module()`` writes an ET_REL object with the sections a ``.ko`` has that the reader looks
at (``.modinfo``, ``__versions``, ``.gnu.linkonce.this_module``, ``.symtab``/``.strtab``), in
either ELF class and byte order. ``sign()`` appends a module signature: a PKCS#7 SignedData
made by the tiny DER encoder here (issuer CN + serial, digest algorithm), a
``struct module_signature`` and the ``~Module signature appended~`` trailer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SIG_MAGIC = b"~Module signature appended~\n"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SHA512 = "2.16.840.1.101.3.4.2.3"
OID_RSA = "1.2.840.113549.1.1.1"
OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CN = "2.5.4.3"
OID_O = "2.5.4.10"

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
STB_GLOBAL, STB_WEAK = 1, 2


@dataclass
class Section:
    name: str
    data: bytes
    type: int = SHT_PROGBITS
    link: int = 0
    info: int = 0
    entsize: int = 0


@dataclass
class Spec:
    modinfo: list[str] = field(default_factory=lambda: [
        "license=GPL", "srcversion=0123456789ABCDEF0123456", "depends=",
        "name=fixture", "vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions "])
    versions: list[tuple[int, str]] | None = field(default_factory=lambda: [
        (0x0B4C6AC4, "module_layout"), (0x92997ED8, "_printk")])
    name: str = "fixture"
    elf_class: int = 64
    little: bool = True
    machine: int = 62          # EM_X86_64
    e_type: int = 1            # ET_REL
    imports: list[tuple[str, int]] = field(default_factory=lambda: [
        ("_printk", STB_GLOBAL), ("module_layout", STB_GLOBAL)])
    this_module: bool = True
    extra: list[Section] = field(default_factory=list)


def modinfo_bytes(entries: list[str]) -> bytes:
    return b"".join(e.encode() + b"\0" for e in entries)


def versions_bytes(versions: list[tuple[int, str]], elf_class: int = 64, little: bool = True) -> bytes:
    end = "<" if little else ">"
    word = "Q" if elf_class == 64 else "I"
    size = 64 - (8 if elf_class == 64 else 4)
    return b"".join(struct.pack(end + word, crc) + name.encode().ljust(size, b"\0")
                    for crc, name in versions)


def this_module_bytes(name: str, elf_class: int = 64) -> bytes:
    word = 8 if elf_class == 64 else 4
    raw = bytearray(0x380 if elf_class == 64 else 0x200)
    raw[3 * word:3 * word + len(name)] = name.encode()
    return bytes(raw)


def make_elf(sections: list[Section], *, elf_class: int = 64, little: bool = True,
             machine: int = 62, e_type: int = 1) -> bytes:
    """An ELF file with these sections (a NULL section and .shstrtab are added)."""
    end = "<" if little else ">"
    is64 = elf_class == 64
    ehsize = 64 if is64 else 52
    shentsize = 64 if is64 else 40
    names = b"\0"
    name_offsets = []
    all_sections = list(sections) + [Section(".shstrtab", b"", SHT_STRTAB)]
    for sec in all_sections:
        name_offsets.append(len(names))
        names += sec.name.encode() + b"\0"
    all_sections[-1].data = names
    body = bytearray()
    offsets = []
    for sec in all_sections:
        while (ehsize + len(body)) % 8:
            body.append(0)
        offsets.append(ehsize + len(body))
        body += sec.data
    while (ehsize + len(body)) % 8:
        body.append(0)
    shoff = ehsize + len(body)
    shnum = len(all_sections) + 1
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1, 0]) + b"\0" * 8
    if is64:
        header = struct.pack(end + "HHIQQQIHHHHHH", e_type, machine, 1, 0, 0, shoff, 0, ehsize,
                             0, 0, shentsize, shnum, shnum - 1)
    else:
        header = struct.pack(end + "HHIIIIIHHHHHH", e_type, machine, 1, 0, 0, shoff, 0, ehsize,
                             0, 0, shentsize, shnum, shnum - 1)
    fmt = end + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
    table = struct.pack(fmt, *([0] * 10))
    for sec, off, name_off in zip(all_sections, offsets, name_offsets):
        table += struct.pack(fmt, name_off, sec.type, 0, 0, off, len(sec.data), sec.link,
                             sec.info, 1, sec.entsize)
    return ident + header + bytes(body) + table


def make_module(spec: Spec | None = None) -> bytes:
    """A module-shaped ET_REL object per ``spec``."""
    spec = spec or Spec()
    end = "<" if spec.little else ">"
    sections = [Section(".text", b"\xc3" * 16)]
    if spec.modinfo is not None:
        sections.append(Section(".modinfo", modinfo_bytes(spec.modinfo)))
    if spec.versions is not None:
        sections.append(Section("__versions", versions_bytes(spec.versions, spec.elf_class,
                                                             spec.little)))
    if spec.this_module:
        sections.append(Section(".gnu.linkonce.this_module",
                                this_module_bytes(spec.name, spec.elf_class)))
    sections += spec.extra
    # symbol table: null symbol, a local section symbol, the module's own, then the imports
    strtab = b"\0"
    symbols = []
    defined_index = 1  # .text

    def add(name: str, bind: int, shndx: int) -> None:
        nonlocal strtab
        offset = len(strtab)
        strtab += name.encode() + b"\0"
        symbols.append((offset, bind, shndx))

    add("init_module", STB_GLOBAL, defined_index)
    for name, bind in spec.imports:
        add(name, bind, 0)
    if spec.elf_class == 64:
        sym = struct.pack(end + "IBBHQQ", 0, 0, 0, 0, 0, 0)
        for offset, bind, shndx in symbols:
            sym += struct.pack(end + "IBBHQQ", offset, (bind << 4), 0, shndx, 0, 0)
        entsize = 24
    else:
        sym = struct.pack(end + "IIIBBH", 0, 0, 0, 0, 0, 0)
        for offset, bind, shndx in symbols:
            sym += struct.pack(end + "IIIBBH", offset, 0, 0, (bind << 4), 0, shndx)
        entsize = 16
    strtab_index = len(sections) + 2  # 1-based after NULL, .symtab comes first
    sections.append(Section(".symtab", sym, SHT_SYMTAB, link=strtab_index, info=1,
                            entsize=entsize))
    sections.append(Section(".strtab", strtab, SHT_STRTAB))
    return make_elf(sections, elf_class=spec.elf_class, little=spec.little,
                    machine=spec.machine, e_type=spec.e_type)


# ---- a tiny DER encoder for signatures ------------------------------------------------------

def der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        head = bytes([length])
    else:
        raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + head + content


def oid(text: str) -> bytes:
    parts = [int(p) for p in text.split(".")]
    body = bytearray()
    for number in [40 * parts[0] + parts[1]] + parts[2:]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body += bytes(reversed(chunk))
    return der(0x06, bytes(body))


def seq(*items: bytes) -> bytes:
    return der(0x30, b"".join(items))


def name(*attributes: tuple[str, str]) -> bytes:
    return seq(*(der(0x31, seq(oid(key), der(0x0C, value.encode()))) for key, value in attributes))


def pkcs7(signer: tuple[tuple[str, str], ...] = ((OID_O, "Fixture Org"), (OID_CN, "Fixture key")),
          serial: bytes = bytes.fromhex("00a1b2c3d4e5f60718293a4b5c6d7e8f9001a2b3"),
          digest: str = OID_SHA256, signature: bytes = b"\x5a" * 256,
          key_identifier: bytes | None = None) -> bytes:
    """DER PKCS#7 SignedData with one SignerInfo, shaped like scripts/sign-file's output."""
    algorithm = seq(oid(digest), der(0x05, b""))
    if key_identifier is None:
        sid = seq(name(*signer), der(0x02, serial))
        version = der(0x02, b"\x01")
    else:
        sid = der(0x80, key_identifier)
        version = der(0x02, b"\x03")
    signer_info = seq(version, sid, algorithm, seq(oid(OID_RSA), der(0x05, b"")),
                      der(0x04, signature))
    signed_data = seq(der(0x02, b"\x01"), der(0x31, algorithm), seq(oid(OID_DATA)),
                      der(0x31, signer_info))
    return seq(oid(OID_SIGNED_DATA), der(0xA0, signed_data))


def sign(module: bytes, blob: bytes | None = None, *, id_type: int = 2, algo: int = 0,
         hash_: int = 0, signer: bytes = b"", key_id: bytes = b"") -> bytes:
    """``module`` with a signature appended as scripts/sign-file does."""
    blob = pkcs7() if blob is None and id_type == 2 else (blob or b"\x11" * 64)
    trailer = struct.pack(">BBBBB3xI", algo, hash_, id_type, len(signer), len(key_id), len(blob))
    return module + signer + key_id + blob + trailer + SIG_MAGIC
