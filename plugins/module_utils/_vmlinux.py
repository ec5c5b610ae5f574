# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ELF ``vmlinux`` inside a ``vmlinuz`` (bzImage), taken out in Python.

A bzImage of boot protocol 2.08 or later names its compressed payload in the boot header
(``payload_offset``/``payload_length``, see ``_bzimage``); the payload's first bytes say how it
is compressed. gzip, xz, lzma and bzip2 are decompressed with the standard library, zstd with
the ``zstandard`` package or else the ``zstd`` program; lz4 and lzo need the ``lz4`` and
``lzop`` programs. Older images (no payload fields) and other containers are searched for the
compression magics in the order of the kernel's ``scripts/extract-vmlinux``, and the first one
that decompresses to an ELF file wins. A file that already is an ELF file is taken as it is.

Every payload ends with the uncompressed size (4 bytes, little endian: gzip's own trailer, or
the ``size_append`` of arch/x86/boot/compressed/Makefile for the others). The decompressors
here stop at the end of their stream; a payload found by the header is checked against it.
"""

from __future__ import annotations

import bz2
import lzma
import os
import re
import shutil
import struct
from dataclasses import dataclass
from typing import Callable

from ._bzimage import HEADER_MAGIC, BzImageError, parse_header
from ._commands import run
from ._decompress import DecompressError
from ._decompress import decompress as shared_decompress
from ._files import read_bytes

ELF_MAGIC = b"\x7fELF"
_BANNER = re.compile(rb"Linux version (\S+) \(")


class VmlinuxError(Exception):
    """No vmlinux could be taken out of an image; the message says why and what to do."""


@dataclass(frozen=True)
class Vmlinux:
    data: bytes
    compression: str       # "gzip", "xz", …, or "none" for a file that is vmlinux itself
    located_by: str        # "header" (boot protocol payload fields), "scan" or "elf"
    release: str | None    # from the boot header, when there is one


def _stream(decomp, data: bytes, name: str) -> bytes:
    """Decompress one stream; what follows its end (the appended size) is left alone."""
    out = decomp.decompress(data)
    if not decomp.eof:
        raise ValueError(f"the {name} stream is truncated")
    return out


def _shared(kind: str) -> Callable[[bytes, bool], bytes]:
    """gzip, xz and zstd as modules are decompressed (``_decompress``: zstd by the zstandard
    package or the zstd program). A whole payload loses its appended size first (gzip's size
    is its own trailer), so that the zstd program does not take it for a damaged stream."""
    def func(data: bytes, exact: bool = False) -> bytes:
        if exact and kind != "gzip":
            data = data[:-4]
        try:
            return shared_decompress(data, kind, "the payload")
        except DecompressError as exc:
            raise ValueError(str(exc)) from None
    return func


def _lzma(data: bytes, exact: bool = False) -> bytes:
    return _stream(lzma.LZMADecompressor(format=lzma.FORMAT_ALONE), data, "lzma")


def _bzip2(data: bytes, exact: bool = False) -> bytes:
    return _stream(bz2.BZ2Decompressor(), data, "bzip2")


def _external(argv: list[str], data: bytes, exact: bool, tool: str, install: str) -> bytes:
    """Decompress with a program. ``exact``: ``data`` is exactly a payload, which ends with the
    4-byte size; it is cut off so the program can judge the stream itself by its exit status.
    Otherwise the stream is followed by unknown bytes, which the programs complain about
    after writing everything: then only output counts (a cut ELF file is caught later)."""
    program = shutil.which(argv[0])
    if program is None:
        raise VmlinuxError(f"the kernel image is {tool}-compressed and the {argv[0]} program "
                           f"is not installed; install {install}")
    status, out, err = run([program] + argv[1:], data=data[:-4] if exact else data)
    if (exact and status) or not out:
        message = err.decode("utf-8", "replace").strip()
        raise ValueError(f"{argv[0]} failed: {message or f'exit status {status}'}")
    return out


def _lz4(data: bytes, exact: bool = False) -> bytes:
    return _external(["lz4", "-dc"], data, exact, "lz4", "lz4")


def _lzo(data: bytes, exact: bool = False) -> bytes:
    return _external(["lzop", "-dc"], data, exact, "lzo", "lzop")


# name, magic, decompressor: the order of scripts/extract-vmlinux. Its lzma magic has a
# fourth zero byte, which only fits dictionaries of 16 MiB and more (the kernel uses lzma -9);
# this one takes any dictionary size that is a multiple of 64 KiB.
COMPRESSIONS: list[tuple[str, bytes, Callable[[bytes, bool], bytes]]] = [
    ("gzip", b"\x1f\x8b\x08", _shared("gzip")),
    ("xz", b"\xfd7zXZ\x00", _shared("xz")),
    ("bzip2", b"BZh", _bzip2),
    ("lzma", b"\x5d\x00\x00", _lzma),
    ("lzo", b"\x89LZO", _lzo),
    ("lz4", b"\x02!L\x18", _lz4),
    ("zstd", b"(\xb5/\xfd", _shared("zstd")),
]


def compression_of(data: bytes) -> str | None:
    """The compression whose magic starts ``data`` (``"none"`` for an ELF file), else None."""
    if data.startswith(ELF_MAGIC):
        return "none"
    for name, magic, _func in COMPRESSIONS:
        if data.startswith(magic):
            return name
    return None


def decompress(data: bytes, method: str, source: str = "payload", exact: bool = False) -> bytes:
    """Decompress ``data`` with ``method`` (a name of ``COMPRESSIONS``); errors name ``source``.

    ``exact``: ``data`` is a whole kernel payload, ending with the uncompressed size.
    """
    for name, _magic, func in COMPRESSIONS:
        if name == method:
            try:
                return func(data, exact)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise VmlinuxError(f"{source}: the {method} payload does not decompress "
                                   f"({exc}); the image is damaged or truncated") from None
    raise VmlinuxError(f"{source}: unknown compression {method!r}")


def _from_header(data: bytes, source: str) -> Vmlinux | None:
    try:
        header = parse_header(data, source)
    except BzImageError:
        return None
    if header.payload_offset is None or not header.payload_length:
        return None  # boot protocol before 2.08: search for the payload instead
    start = header.setup_size + header.payload_offset
    end = start + header.payload_length
    if end > len(data):
        raise VmlinuxError(
            f"{source} is truncated: its boot header puts the {header.payload_length}-byte "
            f"payload at {start:#x}, past the end of the file ({len(data)} bytes); "
            "copy the image again from the kernel package")
    payload = data[start:end]
    method = compression_of(payload)
    if method is None:
        raise VmlinuxError(
            f"{source}: unknown compression of the kernel payload (it starts with "
            f"{payload[:6].hex(' ')}); known are none (ELF), "
            + ", ".join(name for name, _m, _f in COMPRESSIONS))
    if method == "none":
        return Vmlinux(payload, method, "header", header.release)
    elf = decompress(payload, method, source, exact=True)
    size, = struct.unpack("<I", payload[-4:])
    if len(elf) & 0xFFFFFFFF != size:
        raise VmlinuxError(f"{source}: the {method} payload decompressed to {len(elf)} bytes, but "
                           f"it says {size}; the image is damaged")
    if not elf.startswith(ELF_MAGIC):
        raise VmlinuxError(f"{source}: the {method} payload did not decompress to an ELF file")
    return Vmlinux(elf, method, "header", header.release)


def _scan(data: bytes, source: str) -> Vmlinux | None:
    failures: list[str] = []
    for name, magic, func in COMPRESSIONS:
        pos = data.find(magic)
        while pos >= 0:
            try:
                out = func(data[pos:])
            except VmlinuxError as exc:
                failures.append(str(exc))
                break  # the tool is missing: no point trying further offsets
            except (OSError, EOFError, ValueError, lzma.LZMAError):
                out = b""
            if out.startswith(ELF_MAGIC):
                release = None
                if data[0x202:0x206] == HEADER_MAGIC:
                    try:
                        release = parse_header(data, source).release
                    except BzImageError:
                        pass
                return Vmlinux(out, name, "scan", release)
            pos = data.find(magic, pos + 1)
    if failures:
        raise VmlinuxError("; ".join(failures))
    return None


def banner_release(elf: bytes) -> str | None:
    """The release in vmlinux's ``linux_banner`` ("Linux version 6.1.0-56-amd64 (…"), if any."""
    match = _BANNER.search(elf)
    return match.group(1).decode("ascii", "replace") if match else None


def extract_vmlinux(data: bytes, source: str = "vmlinuz") -> Vmlinux:
    """The ELF vmlinux inside ``data`` (a bzImage, a compressed image, or vmlinux itself).

    Its ``release`` comes from the boot header, else from the kernel's banner.
    """
    if data.startswith(ELF_MAGIC):
        return Vmlinux(data, "none", "elf", banner_release(data))
    found = _from_header(data, source) or _scan(data, source)
    if found is not None and found.release is None:
        found = Vmlinux(found.data, found.compression, found.located_by,
                        banner_release(found.data))
    if found is None:
        kind = ("an x86 bzImage" if data[0x202:0x206] == HEADER_MAGIC
                else "not an x86 bzImage")
        raise VmlinuxError(
            f"{source} is {kind} and holds no compressed ELF vmlinux that could be found "
            "(looked for gzip, xz, bzip2, lzma, lzo, lz4 and zstd payloads); give the "
            "uncompressed vmlinux, or use the headers package's Module.symvers instead")
    return found


def read_vmlinux(path: str) -> Vmlinux:
    return extract_vmlinux(read_bytes(path, VmlinuxError, "a kernel image"), path)


def find_image(root: str, release: str) -> str | None:
    """The kernel image of ``release`` under ``root``, or None."""
    for relative in (f"boot/vmlinuz-{release}", f"boot/vmlinux-{release}",
                     f"lib/modules/{release}/vmlinuz", f"usr/lib/modules/{release}/vmlinuz",
                     f"boot/bzImage-{release}"):
        path = os.path.join(root, relative)
        if os.path.isfile(path):
            return path
    return None
