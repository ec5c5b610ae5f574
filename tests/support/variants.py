"""Build the sample module and its refused/accepted variants against a real Debian kernel.

The foundation issue's verdict matrix, the VM harness and the ``modload`` tests all need the
same five builds of ``examples/hello``, made from the cached Debian headers (``fetch()``):

===  =========================================================  =====================================
 a   normal build against the headers                           loads
 b   against a copy of the headers without ``Module.symvers``   refused, ENOEXEC: ``no symbol
     (empty ``__versions``)                                     version for module_layout``
 c   against a copy of the headers whose generated              loads (``same_magic`` skips the
     ``utsrelease.h`` names another release (right CRCs)        release word when CRCs are present)
 d   against a copy of the headers whose ``Module.symvers``     refused, EINVAL: ``disagrees about
     has one CRC altered (``_printk``)                          version of symbol _printk`` then
                                                                ``Unknown symbol _printk (err -22)``
 e   the normal build with one vermagic flag edited in the      refused, ENOEXEC: ``version magic
     ``.modinfo`` bytes (``mod_unload`` -> ``MOD_UNLOAD``)      '…' should be '…'``
===  =========================================================  =====================================

insmod prints ``Invalid module format`` for ENOEXEC and ``Invalid parameters`` for EINVAL.
The kernel's behaviour in the table was measured on Debian's 6.1.0-56-amd64 (6.1.192-2) booted
under qemu (``tests/vm/test_variants.py`` checks it again on every run).

API::

    from tests.support.debian import fetch
    from tests.support.variants import build_variant, build_all, build_hello, VARIANTS

    kernel = fetch()
    v = build_variant("d", kernel, tmp_path)     # -> Variant(name, ko, loads, dmesg, ...)
    every = build_all(kernel, tmp_path)          # {"a": Variant, ..., "e": Variant}
    ko = build_hello(kernel.headers, tmp_path / "v2", version="2.0")  # another srcversion

Every build happens in a copy under ``dest``; the cache and the checkout are not written to.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.collection import ROOT
from tests.support.debian import DebianKernel

HELLO_SRC = ROOT / "examples" / "hello"
OTHER_RELEASE = "6.1.0-99-amd64"
ALTERED_SYMBOL = "_printk"
FLAG_EDIT = (b"mod_unload", b"MOD_UNLOAD")


@dataclass(frozen=True)
class Variant:
    """One build of the sample module and what the real kernel does with it."""

    name: str
    ko: Path
    description: str
    loads: bool
    dmesg: str  # a regular expression the kernel log matches after the insert attempt
    headers: Path  # the tree it was built against
    insmod_error: str | None  # what insmod says when the kernel refuses it (None: it loads)

    @property
    def module(self) -> str:
        return "hello"


# name -> (description, loads, kernel log regex, insmod's error text or None)
VARIANTS: dict[str, tuple[str, bool, str, str | None]] = {
    "a": ("normal build against the headers", True,
          r"hello: hello from version", None),
    "b": ("built against a copy of the headers without Module.symvers (empty __versions)", False,
          r"hello: no symbol version for module_layout", "Invalid module format"),
    "c": (f"right CRCs, release word {OTHER_RELEASE} (copy of the headers, utsrelease.h edited)",
          True, rf"hello: hello from version .* \(built for {re.escape(OTHER_RELEASE)},", None),
    "d": (f"one CRC altered in a copy of Module.symvers ({ALTERED_SYMBOL})", False,
          rf"hello: disagrees about version of symbol {re.escape(ALTERED_SYMBOL)}",
          "Invalid parameters"),
    "e": ("one vermagic flag edited in the .modinfo bytes (mod_unload -> MOD_UNLOAD)", False,
          r"hello: version magic '.*MOD_UNLOAD.*' should be '.*mod_unload.*'",
          "Invalid module format"),
}


def say(msg: str) -> None:
    print(f"[variants] {msg}", file=sys.stderr, flush=True)


def copy_headers(headers: Path, dest: Path) -> Path:
    """A private copy of a Debian flavour headers directory (``linux-headers-<release>``).

    Only the small flavour part is copied (config, generated headers, ``Module.symvers``);
    its Makefile already includes the common headers by absolute path, and the relative
    ``scripts``/``tools`` links are pointed at their absolute targets.
    """
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(headers, dest, symlinks=True)
    for link in (p for p in dest.iterdir() if p.is_symlink()):
        target = (headers / os.readlink(link)).resolve()
        link.unlink()
        link.symlink_to(target)
    return dest


def build_hello(headers: Path, dest: Path, *, version: str | None = None,
                src: Path = HELLO_SRC, jobs: int = 2) -> Path:
    """``make -C headers M=<copy of src> modules`` in ``dest``; returns the ``.ko``.

    ``version`` rewrites the default ``HELLO_VERSION`` in the copy's source, which changes the
    module's srcversion (a compiler flag would not: srcversion hashes the source text).
    """
    work = dest / "src"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work, ignore=shutil.ignore_patterns(
        "*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "modules.order", "Module.symvers"))
    if version is not None:
        source = work / "hello.c"
        text = source.read_text()
        fixed = re.sub(r'(#define HELLO_VERSION )"[^"]*"', rf'\1"{version}"', text)
        if fixed == text:
            raise RuntimeError(f"{source}: no '#define HELLO_VERSION' to set to {version}")
        source.write_text(fixed)
    start = time.monotonic()
    proc = subprocess.run(["make", f"-j{jobs}", "-C", str(headers), f"M={work}", "modules"],
                          text=True, capture_output=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"building {work} against {headers} failed:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    kos = sorted(work.glob("*.ko"))
    if len(kos) != 1:
        raise RuntimeError(f"expected one .ko in {work}, found {[k.name for k in kos]}")
    say(f"built {kos[0]} against {headers} in {time.monotonic() - start:.1f} s")
    return kos[0]


def _alter_crc(symvers: Path, symbol: str) -> None:
    lines = symvers.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        fields = line.split("\t")
        if len(fields) >= 2 and fields[1] == symbol:
            crc = int(fields[0], 16)
            fields[0] = f"0x{crc ^ 0x1:08x}"
            lines[i] = "\t".join(fields)
            symvers.write_text("".join(lines))
            return
    raise RuntimeError(f"{symvers}: no symbol {symbol}")


def edit_vermagic_flag(ko: Path, old: bytes = FLAG_EDIT[0], new: bytes = FLAG_EDIT[1]) -> None:
    """Replace one word inside the ``vermagic=`` string of a ``.ko`` (same length, in place)."""
    if len(old) != len(new):
        raise ValueError("the replacement must keep the length")
    data = bytearray(ko.read_bytes())
    start = data.find(b"vermagic=")
    if start < 0:
        raise RuntimeError(f"{ko}: no vermagic= in .modinfo")
    end = data.index(b"\0", start)
    at = data.find(old, start, end)
    if at < 0:
        raise RuntimeError(f"{ko}: vermagic {data[start:end].decode()!r} has no {old.decode()!r}")
    data[at:at + len(old)] = new
    ko.write_bytes(bytes(data))


def build_variant(name: str, kernel: DebianKernel, dest: Path, *,
                  version: str | None = None) -> Variant:
    """Build variant ``name`` (``a`` .. ``e``) of the sample module into ``dest/<name>/``."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}: choose one of {', '.join(VARIANTS)}")
    description, loads, dmesg, insmod_error = VARIANTS[name]
    base = dest / name
    base.mkdir(parents=True, exist_ok=True)
    headers = kernel.headers
    if name in ("b", "c", "d"):
        headers = copy_headers(kernel.headers, base / "headers")
        if name == "b":
            (headers / "Module.symvers").unlink()
        elif name == "c":
            uts = headers / "include" / "generated" / "utsrelease.h"
            uts.write_text(f'#define UTS_RELEASE "{OTHER_RELEASE}"\n')
        else:
            _alter_crc(headers / "Module.symvers", ALTERED_SYMBOL)
    ko = build_hello(headers, base, version=version)
    if name == "e":
        edit_vermagic_flag(ko)
    return Variant(name, ko, description, loads, dmesg, headers, insmod_error)


def build_all(kernel: DebianKernel, dest: Path, names: str = "abcde") -> dict[str, Variant]:
    """Every variant in ``names``, built into ``dest``."""
    return {name: build_variant(name, kernel, dest) for name in names}
