# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compressed kernel modules: ``.ko.gz``, ``.ko.xz``, ``.ko.zst``, recognised by their magic bytes.

kbuild compresses a module after signing it (``CONFIG_MODULE_COMPRESS_*``), so the signature
trailer is inside the decompressed data, which is what kmod and the kernel read.
gzip and xz come with Python (``zlib``, ``lzma``); zstd needs the ``zstandard`` package or the
``zstd`` program.
"""

from __future__ import annotations

import shutil
import zlib

from ._commands import run

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# kbuild compresses with `zstd --long=27`-style windows up to 2 GiB on some distributions.
ZSTD_MAX_WINDOW = 1 << 31


class DecompressError(Exception):
    """A compressed file that cannot be decompressed; the message says why and what to do."""


def compression_of(head: bytes) -> str:
    """``gzip``, ``xz``, ``zstd`` or ``none``, from the first bytes of a file."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:6] == XZ_MAGIC:
        return "xz"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    return "none"


def decompress(data: bytes, kind: str, source: str = "the file") -> bytes:
    """Decompress ``data`` of the given kind (see ``compression_of``)."""
    if kind == "none":
        return data
    try:
        if kind == "gzip":
            return _gunzip(data)
        if kind == "xz":
            return _unxz(data, source)
        if kind == "zstd":
            return _unzstd(data, source)
    except DecompressError:
        raise
    except Exception as exc:  # each library raises its own error type for a damaged payload
        raise DecompressError(f"{source} looks {kind}-compressed (by its magic bytes) but does "
                              f"not decompress: {exc}; the file is damaged or truncated") from None
    raise DecompressError(f"{source}: unknown compression {kind!r}")


def _gunzip(data: bytes) -> bytes:
    out = zlib.decompressobj(16 + zlib.MAX_WBITS)
    result = out.decompress(data)
    if not out.eof:
        raise ValueError("the gzip stream ends early")
    return result


def _unxz(data: bytes, source: str) -> bytes:
    try:
        import lzma
    except ImportError:  # a Python built without liblzma
        return _run_tool(["xz", "-dc"], data, source, "xz", "the Python lzma module")
    out = lzma.LZMADecompressor()
    result = out.decompress(data)
    if not out.eof:
        raise ValueError("the xz stream ends early")
    return result


def _unzstd(data: bytes, source: str) -> bytes:
    try:
        import zstandard
    except ImportError:
        return _run_tool(["zstd", "-dc", "--long=31"], data, source, "zstd",
                         "the Python zstandard package")
    out = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()
    result = out.decompress(data)
    if not out.eof:
        raise ValueError("the zstd stream ends early")
    return result


def _run_tool(argv: list[str], data: bytes, source: str, kind: str, library: str) -> bytes:
    if shutil.which(argv[0]) is None:
        raise DecompressError(f"{source} is {kind}-compressed, but neither {library} nor the "
                              f"{argv[0]} program is available on this host: install one of them")
    status, out, err = run(argv, data=data, env={"LC_ALL": "C"})
    if status != 0:
        message = err.decode("utf-8", "replace").strip().splitlines()
        raise DecompressError(f"{source} looks {kind}-compressed (by its magic bytes) but does "
                              f"not decompress: {message[-1] if message else 'error'}; "
                              f"the file is damaged or truncated")
    return out
