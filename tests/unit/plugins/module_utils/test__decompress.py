from __future__ import annotations

import gzip
import lzma

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._decompress import (
    DecompressError, compression_of, decompress)

DATA = b"\x7fELF" + bytes(range(256)) * 40


def _zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("kind,compress", [("gzip", gzip.compress), ("xz", lzma.compress),
                                           ("zstd", _zstd), ("none", lambda d: d)])
def test_round_trip_by_magic(kind, compress):
    packed = compress(DATA)
    assert compression_of(packed[:8]) == kind
    assert decompress(packed, kind) == DATA


def test_zstd_frame_without_content_size_and_long_window():
    import zstandard
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27,
                                                            write_content_size=0)
    packed = zstandard.ZstdCompressor(compression_params=params).compress(DATA)
    assert zstandard.frame_content_size(packed) == -1
    assert decompress(packed, "zstd") == DATA


def test_unknown_kind():
    with pytest.raises(DecompressError, match="unknown compression"):
        decompress(b"x", "lz4")
