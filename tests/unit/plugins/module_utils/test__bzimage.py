from __future__ import annotations

import struct

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._bzimage import (
    BzImageError, parse_header, read_header)

VERSION = b"6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2"


def make_header(version: bytes = VERSION, protocol: int = 0x020F, setup_sects: int = 39) -> bytes:
    data = bytearray(0x4000)
    data[0x1F1] = setup_sects
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, protocol)
    struct.pack_into("<H", data, 0x20E, 0x3000 - 0x200)
    data[0x3000:0x3000 + len(version) + 1] = version + b"\0"
    struct.pack_into("<II", data, 0x248, 716, 8122480)
    return bytes(data)


def test_release_and_payload_from_header():
    header = parse_header(make_header())
    assert header.release == "6.1.0-56-amd64"
    assert header.version_string == VERSION.decode()
    assert header.protocol == (2, 15)
    assert header.setup_size == 40 * 512
    assert (header.payload_offset, header.payload_length) == (716, 8122480)


def test_old_protocol_has_no_payload_fields():
    header = parse_header(make_header(protocol=0x0206, setup_sects=0))
    assert header.payload_offset is None
    assert header.setup_size == 5 * 512


@pytest.mark.parametrize("data, words", [
    (b"", "not an x86 bzImage"),
    (b"\x7fELF" + bytes(0x300), "not an x86 bzImage"),
    (make_header(version=b""), "no kernel version"),
    (make_header(version=b"x" * 600)[:0x3000 + 600], "not terminated"),
])
def test_bad_images(data, words):
    with pytest.raises(BzImageError, match=words):
        parse_header(data)


def test_read_header_errors(tmp_path):
    with pytest.raises(BzImageError, match="directory"):
        read_header(str(tmp_path))
    with pytest.raises(BzImageError, match="cannot read"):
        read_header(str(tmp_path / "missing"))
    image = tmp_path / "vmlinuz"
    image.write_bytes(make_header())
    assert read_header(str(image)).release == "6.1.0-56-amd64"
