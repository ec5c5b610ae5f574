"""Small, well-formed ELF64 kernel module images for unit tests of error paths.

``make_ko(name="hello", srcversion=..., build_id=..., versions={...}, imports=[...])`` returns
bytes that the collection's reader (``_modfile``) and pyelftools read like a module kbuild made:
``.note.gnu.build-id``, ``.modinfo``, ``__versions`` (64-byte entries), ``.gnu.linkonce.this_module``
(the name 24 bytes in), and a symbol table whose undefined symbols are the imports. Real modules
are built in the kernel and VM tests; these only stand in where a real one cannot show a case.
"""

from __future__ import annotations

import struct

SIG_MAGIC = b"~Module signature appended~\n"


def build_id_note(build_id: bytes) -> bytes:
    return struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id + b"\0" * (
        (-len(build_id)) % 4)


def make_ko(name: str = "hello", *, srcversion: str | None = "0123456789ABCDEF0123456",
            build_id: bytes | None = bytes(range(20)),
            vermagic: str = "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
            versions: dict[str, int] | None = None, imports: list[str] | None = None,
            params: dict[str, str] | None = None, extra_modinfo: list[str] | None = None,
            signed: bool = False, machine: int = 62) -> bytes:
    """An ET_REL ELF64 little-endian module image. ``versions=None`` leaves out ``__versions``."""
    modinfo = [f"vermagic={vermagic}", f"name={name}", "license=GPL"]
    if srcversion:
        modinfo.append(f"srcversion={srcversion}")
    for pname, ptype in (params or {}).items():
        modinfo += [f"parmtype={pname}:{ptype}", f"parm={pname}:the {pname}"]
    modinfo += extra_modinfo or []
    sections: list[tuple[str, int, int, bytes, int, int, int]] = []  # name type flags data link info entsize
    if build_id is not None:
        sections.append((".note.gnu.build-id", 7, 2, build_id_note(build_id), 0, 0, 0))
    sections.append((".modinfo", 1, 2, b"\0".join(m.encode() for m in modinfo) + b"\0", 0, 0, 0))
    if versions is not None:
        blob = b"".join(struct.pack("<Q", crc) + sym.encode().ljust(56, b"\0")
                        for sym, crc in versions.items())
        sections.append(("__versions", 1, 2, blob, 0, 0, 0))
    this_module = bytearray(64 * 16)
    this_module[24:24 + len(name)] = name.encode()
    sections.append((".gnu.linkonce.this_module", 1, 3, bytes(this_module), 0, 0, 0))
    strtab = b"\0"
    symbols = [b"\0" * 24]
    for sym in imports or []:
        symbols.append(struct.pack("<IBBHQQ", len(strtab), 0x10, 0, 0, 0, 0))  # GLOBAL NOTYPE UND
        strtab += sym.encode() + b"\0"
    symtab_index = len(sections) + 1
    sections.append((".symtab", 2, 0, b"".join(symbols), symtab_index + 1, 1, 24))
    sections.append((".strtab", 3, 0, strtab, 0, 0, 0))
    shstrtab = b"\0"
    name_offsets = []
    for sec in sections:
        name_offsets.append(len(shstrtab))
        shstrtab += sec[0].encode() + b"\0"
    name_offsets.append(len(shstrtab))
    shstrtab += b".shstrtab\0"
    sections.append((".shstrtab", 3, 0, shstrtab, 0, 0, 0))

    body = bytearray(b"\0" * 64)
    offsets = []
    for sec in sections:
        while len(body) % 8:
            body.append(0)
        offsets.append(len(body))
        body += sec[3]
    while len(body) % 8:
        body.append(0)
    shoff = len(body)
    headers = [b"\0" * 64]
    for index, sec in enumerate(sections):
        _n, stype, flags, data, link, info, entsize = sec
        headers.append(struct.pack("<IIQQQQIIQQ", name_offsets[index], stype, flags, 0,
                                   offsets[index], len(data), link, info, 8 if stype == 2 else 4,
                                   entsize))
    body += b"".join(headers)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, machine, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                                 len(sections) + 1, len(sections))
    body[:64] = header
    data = bytes(body)
    if signed:
        blob = b"\x30\x03\x02\x01\x00"  # not a valid PKCS#7: the reader reports the error
        data += blob + struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, len(blob)) + SIG_MAGIC
    return data
