# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where a kernel's ``Module.symvers`` comes from, and its recovery from the kernel itself.

Sources, best first:

``headers``
    ``<root>/lib/modules/<release>/build/Module.symvers``: the headers package's copy (the
    ``build`` link is absolute; it is followed inside ``root``). Also found in
    ``/usr/src/linux-headers-<release>`` (Debian) and ``/usr/src/kernels/<release>`` (RHEL).
``boot``
    ``<root>/boot/symvers-<release>.gz`` (RHEL family; also ``/boot/symvers-<release>`` and
    ``lib/modules/<release>/symvers.gz``).
``recover``
    Rebuilt from ``vmlinuz`` and the in-tree modules: vmlinux's export tables (``_vmlinux``,
    ``_ksymtab``) first, then each module under ``lib/modules/<release>/kernel`` in the order of
    ``modules.order`` with its exports in modpost's order, named by its path as Module.symvers
    writes it (``kernel/fs/mbcache.ko`` -> ``fs/mbcache``). The modules' lines come out exactly
    as modpost wrote them; vmlinux's lines come in the order of vmlinux's own tables (by name,
    ``__ksymtab`` then ``__ksymtab_gpl``) because modpost's order for them (the symbol table
    of ``vmlinux.o``) does not survive in a kernel image. The set of lines is the same.

Whatever the source, each in-tree module's ``__versions`` is checked against the table: a CRC
that disagrees with the exporter's is a *conflict* (the kernel would refuse that module with
"disagrees about version of symbol"), and so is a symbol exported twice with different CRCs.
Conflicts are reported; the exporter's own CRC is what the table keeps, because that is the CRC
the kernel checks modules against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ._ksymtab import ElfFile, KsymtabError, kernel_exports, read_module
from ._rootfs import RootPathError, resolve
from ._symvers import ExportedSymbol, SymversError, format_symvers, parse_symvers, read_text
from ._vmlinux import VmlinuxError, find_image, read_vmlinux

SOURCES = ("headers", "boot", "recover")
MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")

Progress = Callable[[str], None]


class SourceError(Exception):
    """A requested source is missing or unusable; the message says what to do."""


@dataclass
class SymversResult:
    source: str                   # headers, boot or recover
    path: str                     # the file read, or the kernel image recovered from
    text: str                     # the Module.symvers to write
    symbols: dict[str, ExportedSymbol]
    conflicts: list[dict[str, str]] = field(default_factory=list)
    modules_checked: int = 0      # in-tree modules whose __versions were checked
    details: dict[str, object] = field(default_factory=dict)


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)


def resolve_in_root(root: str, path: str) -> str:
    """``path`` as seen inside ``root`` on this machine, links followed inside ``root``."""
    try:
        return resolve(root, path)
    except RootPathError as exc:
        raise SourceError(str(exc)) from None


def modules_dir(root: str, release: str) -> str | None:
    for base in ("lib/modules", "usr/lib/modules"):
        path = resolve_in_root(root, f"/{base}/{release}")
        if os.path.isdir(path):
            return path
    return None


def headers_candidates(root: str, release: str) -> list[str]:
    return [resolve_in_root(root, p) for p in (
        f"/lib/modules/{release}/build/Module.symvers",
        f"/usr/src/linux-headers-{release}/Module.symvers",
        f"/usr/src/kernels/{release}/Module.symvers")]


def boot_candidates(root: str, release: str) -> list[str]:
    return [resolve_in_root(root, p) for p in (
        f"/boot/symvers-{release}.gz", f"/boot/symvers-{release}",
        f"/lib/modules/{release}/symvers.gz")]


def _first_file(paths: Iterable[str]) -> str | None:
    return next((p for p in paths if os.path.isfile(p)), None)


def find_sources(root: str, release: str) -> list[dict[str, str]]:
    """The sources available for ``release`` under ``root``, best first:
    ``[{"source": "headers", "path": …}, …]`` (``recover`` names the kernel image)."""
    found = []
    headers = _first_file(headers_candidates(root, release))
    if headers:
        found.append({"source": "headers", "path": headers})
    boot = _first_file(boot_candidates(root, release))
    if boot:
        found.append({"source": "boot", "path": boot})
    image = find_image(root, release)
    if image and modules_dir(root, release):
        found.append({"source": "recover", "path": image})
    return found


def in_tree_modules(root: str, release: str) -> list[tuple[str, str]]:
    """``(Module.symvers name, path)`` of every in-tree module, in ``modules.order`` order
    (then any module it does not list, by path)."""
    base = modules_dir(root, release)
    if base is None:
        return []
    kernel = os.path.join(base, "kernel")
    found: dict[str, str] = {}
    for directory, _dirs, files in os.walk(kernel):
        # os.walk's directories start with ``kernel``: slicing is relpath without its cost
        # (relpath normalises both paths, thousands of times per scan)
        prefix = directory[len(kernel) + 1:]
        for name in files:
            for suffix in MODULE_SUFFIXES:
                if name.endswith(suffix):
                    rel = f"{prefix}/{name}" if prefix else name
                    found[rel[:-len(suffix)]] = os.path.join(directory, name)
                    break
    ordered: list[tuple[str, str]] = []
    try:
        with open(os.path.join(base, "modules.order"), encoding="utf-8") as handle:
            listed = [line.strip() for line in handle if line.strip()]
    except OSError:
        listed = []
    for entry in listed:
        if entry.startswith("kernel/") and entry.endswith(".ko"):
            name = entry[len("kernel/"):-len(".ko")]
            if name in found:
                ordered.append((name, found.pop(name)))
    ordered.extend(sorted(found.items()))
    return ordered


def _read_text(source: str, path: str) -> SymversResult:
    try:
        text = read_text(path)
        symbols = parse_symvers(text, path)
    except SymversError as exc:
        raise SourceError(f"the {source} Module.symvers is unusable: {exc}") from None
    if not symbols:
        raise SourceError(f"{path} holds no symbols; it is not a kernel's Module.symvers")
    # The file's own text is what gets written (it may use an older kernel's line layout).
    return SymversResult(source, path, text, symbols)


def _missing(source: str, root: str, release: str) -> SourceError:
    where = "" if os.path.abspath(root) == "/" else f" under {root}"
    if source == "headers":
        paths = ", ".join(headers_candidates(root, release))
        return SourceError(
            f"no headers package Module.symvers for {release}{where} (looked at {paths}); "
            f"install linux-headers-{release} (Debian/Ubuntu) or kernel-devel-{release} (RHEL), "
            "or use source=recover")
    if source == "boot":
        paths = ", ".join(boot_candidates(root, release))
        return SourceError(
            f"no /boot symvers file for {release}{where} (looked at {paths}); only the RHEL "
            "family ships one; use source=headers or source=recover")
    image = find_image(root, release)
    if image is None:
        return SourceError(
            f"cannot recover Module.symvers for {release}{where}: no kernel image "
            f"(boot/vmlinuz-{release}, boot/vmlinux-{release} or lib/modules/{release}/vmlinuz)")
    return SourceError(
        f"cannot recover Module.symvers for {release}{where}: no lib/modules/{release} with the "
        "in-tree modules; reinstall the kernel package's modules")


def recover(root: str, release: str, progress: Progress | None = None) -> SymversResult:
    """Rebuild Module.symvers from the kernel image and the in-tree modules."""
    image = find_image(root, release)
    if image is None or modules_dir(root, release) is None:
        raise _missing("recover", root, release)
    _say(progress, f"extracting vmlinux from {image}")
    try:
        vmlinux = read_vmlinux(image)
    except VmlinuxError as exc:
        raise SourceError(str(exc)) from None
    if vmlinux.release is not None and vmlinux.release != release:
        raise SourceError(f"{image} is the kernel {vmlinux.release}, not {release}; "
                          "give the release that image belongs to")
    try:
        kernel = kernel_exports(ElfFile(f"vmlinux in {image}", data=vmlinux.data))
    except KsymtabError as exc:
        raise SourceError(str(exc)) from None
    _say(progress, f"vmlinux ({vmlinux.compression}, {len(vmlinux.data)} bytes): "
                   f"{len(kernel.exports)} exports, {kernel.layout}")
    symbols: list[ExportedSymbol] = [
        ExportedSymbol(e.crc or 0, e.name, "vmlinux", e.export, e.namespace)
        for e in kernel.exports]
    modules = in_tree_modules(root, release)
    if not modules:
        raise SourceError(f"no in-tree modules under {modules_dir(root, release)}/kernel; "
                          "the kernel's modules package is missing or empty")
    versions: list[tuple[str, list[tuple[str, int]]]] = []
    total = len(modules)
    step = max(1, total // 10)
    for number, (name, path) in enumerate(modules, 1):
        try:
            found = read_module(path)
        except KsymtabError as exc:
            raise SourceError(f"cannot read the in-tree module {path}: {exc}") from None
        symbols.extend(ExportedSymbol(e.crc or 0, e.name, name, e.export, e.namespace)
                       for e in found.exports)
        versions.append((name, found.versions))
        if number % step == 0 or number == total:
            _say(progress, f"modules scanned {number}/{total}")
    table, conflicts = _table(symbols)
    conflicts += _check_versions(table, versions)
    details = {"image": image, "compression": vmlinux.compression,
               "vmlinux_exports": len(kernel.exports), "layout": kernel.layout,
               "modversions": kernel.modversions, "modules": total}
    result = SymversResult("recover", image, format_symvers(list(table.values())), table,
                           conflicts, total, details)
    return result


def _table(symbols: list[ExportedSymbol]) -> tuple[dict[str, ExportedSymbol], list[dict[str, str]]]:
    table: dict[str, ExportedSymbol] = {}
    conflicts: list[dict[str, str]] = []
    for symbol in symbols:
        first = table.get(symbol.name)
        if first is None:
            table[symbol.name] = symbol
        elif first.crc != symbol.crc:
            conflicts.append(_conflict("duplicate", symbol.name, symbol.module, symbol.crc,
                                       first.module, first.crc))
    return table, conflicts


def _conflict(kind: str, symbol: str, module: str, crc: int, exporter: str,
              exporter_crc: int) -> dict[str, str]:
    if kind == "duplicate":
        msg = (f"{module} exports {symbol} again with CRC 0x{crc:08x}; {exporter} exported it "
               f"first with 0x{exporter_crc:08x}")
    else:
        msg = (f"{module} was built against {symbol} with CRC 0x{crc:08x}, but {exporter} "
               f"exports it with 0x{exporter_crc:08x}: the kernel would refuse {module} "
               f"(disagrees about version of symbol {symbol})")
    return {"kind": kind, "symbol": symbol, "module": module, "crc": f"0x{crc:08x}",
            "exporter": exporter, "exporter_crc": f"0x{exporter_crc:08x}", "msg": msg}


def _check_versions(table: dict[str, ExportedSymbol],
                    versions: list[tuple[str, list[tuple[str, int]]]]) -> list[dict[str, str]]:
    conflicts = []
    for module, entries in versions:
        for symbol, crc in entries:
            exported = table.get(symbol)
            if exported is not None and exported.crc != crc:
                conflicts.append(_conflict("crc", symbol, module, crc, exported.module,
                                           exported.crc))
    return conflicts


def check_modules(result: SymversResult, root: str, release: str,
                  progress: Progress | None = None) -> None:
    """Check the in-tree modules' ``__versions`` against a table read from a file."""
    modules = in_tree_modules(root, release)
    versions = []
    total = len(modules)
    step = max(1, total // 10)
    for number, (name, path) in enumerate(modules, 1):
        try:
            versions.append((name, read_module(path).versions))
        except KsymtabError as exc:
            raise SourceError(f"cannot read the in-tree module {path}: {exc}") from None
        if number % step == 0 or number == total:
            _say(progress, f"modules checked {number}/{total}")
    result.conflicts = _check_versions(result.symbols, versions)
    result.modules_checked = total


def resolve_source(source: str, root: str, release: str) -> tuple[str, str]:
    """``(source, path)``: ``auto`` resolved to the first of ``SOURCES`` available, and the
    file it reads (the kernel image for ``recover``). Only looks at which files exist."""
    if source == "auto":
        available = find_sources(root, release)
        if not available:
            raise SourceError(
                f"no source of Module.symvers for {release}"
                + ("" if os.path.abspath(root) == "/" else f" under {root}")
                + f": no headers package (lib/modules/{release}/build/Module.symvers), no "
                f"boot/symvers-{release}.gz, and no kernel image with in-tree modules to "
                f"recover it from; install linux-headers-{release} or the kernel image package")
        return available[0]["source"], available[0]["path"]
    if source not in SOURCES:
        raise SourceError(f"unknown source {source!r}; use one of auto, {', '.join(SOURCES)}")
    if source == "recover":
        path = find_image(root, release)
        if path is None or modules_dir(root, release) is None:
            raise _missing(source, root, release)
        return source, path
    candidates = (headers_candidates if source == "headers" else boot_candidates)(root, release)
    path = _first_file(candidates)
    if path is None:
        raise _missing(source, root, release)
    return source, path


def load(source: str, root: str, release: str, progress: Progress | None = None,
         check: bool = True) -> SymversResult:
    """The Module.symvers of ``source`` (``auto`` takes the first of ``SOURCES`` available).

    With ``check``, the in-tree modules (when present) are checked against a file's table too.
    """
    source, path = resolve_source(source, root, release)
    if source == "recover":
        return recover(root, release, progress)
    _say(progress, f"reading {path}")
    result = _read_text(source, path)
    if check and modules_dir(root, release) is not None:
        check_modules(result, root, release, progress)
    return result
