# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``Module.symvers``: reading and writing the kernel's table of exported symbols.

A line is ``CRC<TAB>symbol<TAB>module<TAB>export type<TAB>namespace``, e.g.
``0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t`` (since 5.8 the namespace is the last field;
older kernels wrote ``CRC symbol module export`` or ``CRC symbol namespace module export``).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

from ._files import read_bytes

EXPORT_TYPES = ("EXPORT_SYMBOL", "EXPORT_SYMBOL_GPL", "EXPORT_SYMBOL_GPL_FUTURE",
                "EXPORT_UNUSED_SYMBOL", "EXPORT_UNUSED_SYMBOL_GPL")


class SymversError(Exception):
    """A Module.symvers that cannot be read; the message says where and why."""


@dataclass(frozen=True)
class ExportedSymbol:
    crc: int
    name: str
    module: str
    export: str
    namespace: str = ""

    def line(self) -> str:
        return f"0x{self.crc:08x}\t{self.name}\t{self.module}\t{self.export}\t{self.namespace}"


def parse_line(line: str, where: str = "") -> ExportedSymbol:
    fields = line.rstrip("\n").split("\t")
    if len(fields) == 1:
        fields = line.split()
    if len(fields) < 4:
        raise SymversError(f"{where}: expected 'CRC<TAB>symbol<TAB>module<TAB>export type"
                           f"[<TAB>namespace]', got {line.strip()!r}")
    try:
        crc = int(fields[0], 16)
    except ValueError:
        raise SymversError(f"{where}: the CRC {fields[0]!r} is not a hexadecimal number") from None
    if not 0 <= crc <= 0xFFFFFFFF:
        raise SymversError(f"{where}: the CRC {fields[0]!r} does not fit in 32 bits")
    if fields[3] in EXPORT_TYPES:  # 5.8+: CRC symbol module export [namespace]
        namespace = fields[4] if len(fields) > 4 else ""
        return ExportedSymbol(crc, fields[1], fields[2], fields[3], namespace)
    if len(fields) >= 5 and fields[4] in EXPORT_TYPES:  # 5.4-5.7: CRC symbol namespace module export
        return ExportedSymbol(crc, fields[1], fields[3], fields[4], fields[2])
    raise SymversError(f"{where}: unknown export type in {line.strip()!r} "
                       f"(expected one of {', '.join(EXPORT_TYPES)})")


def parse_symvers(text: str, source: str = "Module.symvers") -> dict[str, ExportedSymbol]:
    """Symbols by name. Malformed lines raise ``SymversError`` naming the file and line."""
    table: dict[str, ExportedSymbol] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        symbol = parse_line(line, f"{source} line {number}")
        table[symbol.name] = symbol
    return table


def read_text(path: str) -> str:
    """The text of a Module.symvers, plain or gzip-compressed (RHEL's /boot/symvers-*.gz)."""
    data = read_bytes(path, SymversError, "a Module.symvers file")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SymversError(f"{path} looks gzip-compressed but does not decompress: {exc}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise SymversError(f"{path} is not a Module.symvers file (it is not ASCII text)") from None


def read_symvers(path: str) -> dict[str, ExportedSymbol]:
    """Read a Module.symvers, plain or gzip-compressed (RHEL's /boot/symvers-*.gz)."""
    return parse_symvers(read_text(path), path)


def format_symvers(symbols: list[ExportedSymbol] | dict[str, ExportedSymbol]) -> str:
    """Text of a Module.symvers; symbols in the order given (modpost writes vmlinux first)."""
    values = symbols.values() if isinstance(symbols, dict) else symbols
    return "".join(symbol.line() + "\n" for symbol in values)


@dataclass(frozen=True)
class SymversChanges:
    """What differs between two tables, symbol by symbol."""
    added: list[ExportedSymbol]
    removed: list[ExportedSymbol]
    changed: list[tuple[ExportedSymbol, ExportedSymbol]]  # (before, after)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed),
                "changed": len(self.changed)}

    def diff(self, limit: int = 50) -> tuple[str, str]:
        """(before, after) texts for Ansible's diff: the lines that go and the lines that come,
        at most ``limit`` of each, then how many more, instead of the whole file."""
        gone = [old.line() for old, _new in self.changed] + [s.line() for s in self.removed]
        come = [new.line() for _old, new in self.changed] + [s.line() for s in self.added]

        def cut(lines: list[str]) -> str:
            shown = sorted(lines)[:limit]
            if len(lines) > limit:
                shown.append(f"… and {len(lines) - limit} more")
            return "".join(line + "\n" for line in shown)

        return cut(gone), cut(come)


def compare(before: dict[str, ExportedSymbol], after: dict[str, ExportedSymbol]) -> SymversChanges:
    """Symbols added, removed, and changed (CRC, module, export type or namespace)."""
    added = [after[name] for name in after if name not in before]
    removed = [before[name] for name in before if name not in after]
    changed = [(before[name], after[name]) for name in after
               if name in before and before[name] != after[name]]
    return SymversChanges(added, removed, changed)
