# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A module's ``__versions``: the CRCs of the symbols it was built against.

``__versions`` holds 64-byte ``struct modversion_info`` entries (``unsigned long crc``, then the
NUL-padded name); Linux 6.15+ may add the extended sections ``__version_ext_crcs`` (u32 CRCs)
and ``__version_ext_names`` (NUL-separated names) for names that do not fit. Shared by the module
file reader (``_modfile``) and the Module.symvers recovery (``_ksymtab``).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

MODVERSION_INFO_SIZE = 64


class VersionEntry(NamedTuple):
    symbol: str
    crc: int
    extended: bool = False  # from __version_ext_crcs/__version_ext_names (Linux 6.15+)

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "crc": f"0x{self.crc:08x}", "extended": self.extended}


def parse_versions(raw: bytes, ext_crcs: bytes | None, ext_names: bytes | None,
                   elf_class: int, end: str) -> list[VersionEntry]:
    """The entries of ``__versions`` (``raw``), then those only the extended sections name.

    ``elf_class`` is 32 or 64 (the width of the CRC word), ``end`` the struct byte order.
    """
    layout = end + ("Q56s" if elf_class == 64 else "I60s")
    usable = len(raw) - len(raw) % MODVERSION_INFO_SIZE
    out = [VersionEntry(name.split(b"\0", 1)[0].decode("utf-8", "replace"), crc)
           for crc, name in struct.iter_unpack(layout, raw[:usable])]
    if ext_crcs is not None and ext_names is not None:
        values = struct.unpack_from(f"{end}{len(ext_crcs) // 4}I", ext_crcs)
        symbols = ext_names.split(b"\0")
        seen = {v.symbol for v in out}
        for crc, name in zip(values, symbols):
            symbol = name.decode("utf-8", "replace")
            if symbol not in seen:
                out.append(VersionEntry(symbol, crc, extended=True))
    return out
