"""Module images for modload's unit tests, made with ``tests/support/elf_fixture``.

``make_ko(name="hello", srcversion=..., build_id=..., versions={...}, imports=[...],
params={...})`` adds what modload looks at beyond the reader's fixture: a GNU build id note
(``.note.gnu.build-id``, as kbuild links into every module) and ``parmtype``/``parm`` entries.
Real modules are built in the kernel and VM tests; these stand in where a real one cannot show a
case (a fake kernel's error paths).
"""

from __future__ import annotations

import struct

from tests.support.elf_fixture import STB_GLOBAL, Section, Spec, make_module, sign

SHT_NOTE = 7
NT_GNU_BUILD_ID = 3


def build_id_note(build_id: bytes) -> bytes:
    """An ELF note section's bytes holding one GNU build id."""
    return struct.pack("<III", 4, len(build_id), NT_GNU_BUILD_ID) + b"GNU\0" + build_id + \
        b"\0" * ((-len(build_id)) % 4)


def make_ko(name: str = "hello", *, srcversion: str | None = "0123456789ABCDEF0123456",
            build_id: bytes | None = bytes(range(20)),
            vermagic: str = "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
            versions: dict[str, int] | None = None, imports: list[str] | None = None,
            params: dict[str, str] | None = None, signed: bool = False,
            machine: int = 62) -> bytes:
    """A module image; ``versions=None`` leaves ``__versions`` out, ``signed`` appends an
    unreadable PKCS#7 blob (what a damaged signature looks like)."""
    modinfo = [f"vermagic={vermagic}", f"name={name}", "license=GPL"]
    if srcversion:
        modinfo.append(f"srcversion={srcversion}")
    for pname, ptype in (params or {}).items():
        modinfo += [f"parmtype={pname}:{ptype}", f"parm={pname}:the {pname}"]
    spec = Spec(modinfo=modinfo, name=name, machine=machine,
                versions=None if versions is None else [(crc, s) for s, crc in versions.items()],
                imports=[(s, STB_GLOBAL) for s in (imports or [])],
                extra=[] if build_id is None else [
                    Section(".note.gnu.build-id", build_id_note(build_id), SHT_NOTE)])
    data = make_module(spec)
    if signed:
        data = sign(data, b"\x30\x03\x02\x01\x00")
    return data
