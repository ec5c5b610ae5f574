"""Module.symvers recovery (vmlinuz + in-tree modules) against the naive pyelftools way.

Both run in the same process on Debian's real kernel (``tests.support.debian.fetch()``), after
one pass that reads every file so both find the page cache equally warm. Both must give the
headers package's set of lines. Prints each time and the ratio; the target is under 10 s for
the recovery (the issue's naive figure was 40 s).

    python3 bench/symvers_recovery.py [--repeat N]
"""

from __future__ import annotations

import argparse
import io
import lzma
import os
import struct
import sys
import time
from pathlib import Path

from _setup import progress  # noqa: E402  (first: the checkout and the collection importable)

from elftools.elf.elffile import ELFFile  # noqa: E402

from ansible_collections.vermagic.kmod.plugins.module_utils._symvers_sources import (  # noqa: E402
    recover)
from tests.support.debian import fetch  # noqa: E402

TARGET_SECONDS = 10.0


say = progress("bench symvers")


def naive(root: Path, release: str) -> tuple[set[str], int]:
    """The straightforward way: pyelftools over every section and symbol.

    vmlinux: the xz payload out of the bzImage (payload fields of the boot header), then
    ``__ksymtab*`` entries resolved through pyelftools' section objects. Modules: every symbol
    of every ``.ko`` through ``iter_symbols()``, sections looked up by index, CRCs and namespaces
    read from the section data, and ``__versions`` checked against the result.
    """
    image = (root / "boot" / f"vmlinuz-{release}").read_bytes()
    setup = (image[0x1F1] + 1) * 512
    offset, length = struct.unpack_from("<II", image, 0x248)
    vmlinux = lzma.LZMADecompressor().decompress(image[setup + offset:setup + offset + length])
    elf = ELFFile(io.BytesIO(vmlinux))
    strings = elf.get_section_by_name("__ksymtab_strings")
    blob, base = strings.data(), strings["sh_addr"]

    def string_at(address: int) -> str:
        start = address - base
        return blob[start:blob.index(b"\0", start)].decode()

    lines: list[str] = []
    crcs: dict[str, int] = {}
    for suffix, export in (("", "EXPORT_SYMBOL"), ("_gpl", "EXPORT_SYMBOL_GPL")):
        table = elf.get_section_by_name(f"__ksymtab{suffix}")
        crctab = elf.get_section_by_name(f"__kcrctab{suffix}").data()
        data = table.data()
        for i in range(len(data) // 12):
            entry = table["sh_addr"] + 12 * i
            _value, name_off, ns_off = struct.unpack_from("<iii", data, 12 * i)
            name = string_at(entry + 4 + name_off)
            namespace = string_at(entry + 8 + ns_off) if ns_off else ""
            crc, = struct.unpack_from("<I", crctab, 4 * i)
            crcs[name] = crc
            lines.append(f"0x{crc:08x}\t{name}\tvmlinux\t{export}\t{namespace}")
    kernel_dir = root / "lib" / "modules" / release / "kernel"
    versions: list[tuple[str, int]] = []
    modules = sorted(kernel_dir.rglob("*.ko"))
    for number, path in enumerate(modules, 1):
        with open(path, "rb") as handle:
            elf = ELFFile(handle)
            name = str(path.relative_to(kernel_dir))[:-3]
            exported: list[tuple[str, str]] = []
            crc_of: dict[str, int] = {}
            ns_of: dict[str, str] = {}
            for sym in elf.get_section_by_name(".symtab").iter_symbols():
                shndx = sym["st_shndx"]
                if not isinstance(shndx, int):
                    continue
                section = elf.get_section(shndx)
                if sym.name.startswith("__ksymtab_") and section.name in ("__ksymtab",
                                                                          "__ksymtab_gpl"):
                    export = "EXPORT_SYMBOL_GPL" if section.name.endswith("gpl") else "EXPORT_SYMBOL"
                    exported.append((sym.name[10:], export))
                elif sym.name.startswith("__crc_") and section.name.startswith("__kcrctab"):
                    crc_of[sym.name[6:]], = struct.unpack_from("<I", section.data(), sym["st_value"])
                elif sym.name.startswith("__kstrtabns_"):
                    data = section.data()
                    start = sym["st_value"]
                    ns_of[sym.name[12:]] = data[start:data.index(b"\0", start)].decode()
            for symbol, export in exported:
                crcs[symbol] = crc_of.get(symbol, 0)
                lines.append(f"0x{crc_of.get(symbol, 0):08x}\t{symbol}\t{name}\t{export}\t"
                             f"{ns_of.get(symbol, '')}")
            section = elf.get_section_by_name("__versions")
            if section is not None:
                data = section.data()
                for at in range(0, len(data), 64):
                    crc, raw = struct.unpack_from("<Q56s", data, at)
                    versions.append((raw.split(b"\0", 1)[0].decode(), crc))
        if number % 500 == 0 or number == len(modules):
            say(f"naive: modules scanned {number}/{len(modules)}")
    conflicts = sum(1 for symbol, crc in versions if symbol in crcs and crcs[symbol] != crc)
    return set(lines), conflicts


def warm(root: Path, release: str) -> None:
    files = [root / "boot" / f"vmlinuz-{release}"]
    files += sorted((root / "lib" / "modules" / release / "kernel").rglob("*.ko*"))
    total = 0
    for path in files:
        total += len(path.read_bytes())
    say(f"page cache warmed: {len(files)} files, {total / 1e6:.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of the recovery (best counts)")
    args = parser.parse_args()
    kernel = fetch()
    official = set((kernel.headers / "Module.symvers").read_text().splitlines())
    warm(kernel.root, kernel.release)

    say("naive pyelftools recovery")
    start = time.perf_counter()
    naive_lines, naive_conflicts = naive(kernel.root, kernel.release)
    naive_time = time.perf_counter() - start
    assert naive_lines == official, "the naive way does not give the headers package's lines"

    times = []
    for run in range(1, args.repeat + 1):
        say(f"recovery, run {run}/{args.repeat}")
        start = time.perf_counter()
        result = recover(str(kernel.root), kernel.release, say)
        times.append(time.perf_counter() - start)
        assert set(result.text.splitlines()) == official, "the recovery differs from the headers"
    best = min(times)
    print(f"kernel {kernel.release}: {len(official)} symbols, {len(kernel.modules())} modules, "
          f"{os.cpu_count()} CPUs")
    print(f"naive pyelftools: {naive_time:6.2f} s ({naive_conflicts} conflicts)")
    print(f"recovery:         {best:6.2f} s best of {len(times)} "
          f"({', '.join(f'{t:.2f}' for t in times)}; {len(result.conflicts)} conflicts)")
    print(f"ratio:            {naive_time / best:6.1f}x faster; target under {TARGET_SECONDS:.0f} s: "
          + ("met" if best < TARGET_SECONDS else "MISSED"))
    return 0 if best < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
