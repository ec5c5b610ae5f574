from __future__ import annotations

import builtins
import shutil
import sys

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _vmlinux
from ansible_collections.vermagic.kmod.plugins.module_utils._vmlinux import (
    VmlinuxError, compression_of, decompress, extract_vmlinux, find_image, read_vmlinux)
from tests.support.fake_kernel import Exp, compress, fake_bzimage, fake_vmlinux

VMLINUX = fake_vmlinux([Exp("printk", 0x12345678), Exp("kmalloc", 0x9ABCDEF0, gpl=True)])
STDLIB = ["gzip", "xz", "lzma", "bzip2"]
TOOLS = ["zstd", "lz4", "lzo"]


def packed(method: str) -> bytes:
    try:
        return compress(VMLINUX, method)
    except FileNotFoundError as exc:
        pytest.skip(f"{exc} is not installed")


@pytest.mark.parametrize("method", STDLIB + TOOLS)
def test_payload_located_by_the_boot_header(method):
    found = extract_vmlinux(fake_bzimage(packed(method)), "vmlinuz")
    assert found.data == VMLINUX
    assert (found.compression, found.located_by) == (method, "header")
    assert found.release == "6.1.0-56-amd64"


@pytest.mark.parametrize("method", STDLIB + TOOLS)
def test_old_boot_protocol_is_scanned_for_magics(method):
    found = extract_vmlinux(fake_bzimage(packed(method), protocol=0x0206), "vmlinuz")
    assert found.data == VMLINUX
    assert (found.compression, found.located_by) == (method, "scan")
    assert found.release == "6.1.0-56-amd64"


def test_false_magic_before_the_payload_is_skipped():
    image = b"\x1f\x8b\x08" + b"junk" * 50 + compress(VMLINUX, "gzip")
    found = extract_vmlinux(image, "Image.gz")
    assert found.data == VMLINUX and found.located_by == "scan" and found.release is None


def test_release_from_the_banner_without_a_boot_header():
    elf = VMLINUX + b"Linux version 5.10.0-30-arm64 (debian-kernel@lists.debian.org) #1 SMP\0"
    assert extract_vmlinux(elf).release == "5.10.0-30-arm64"
    assert extract_vmlinux(compress(elf, "gzip")).release == "5.10.0-30-arm64"


def test_uncompressed_payload_and_plain_elf():
    assert extract_vmlinux(fake_bzimage(VMLINUX)).compression == "none"
    found = extract_vmlinux(VMLINUX)
    assert (found.compression, found.located_by, found.data) == ("none", "elf", VMLINUX)


def test_zstd_without_the_python_package_uses_the_program(monkeypatch):
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    real_import = builtins.__import__

    def no_zstandard(name, *args, **kwargs):
        if name == "zstandard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "zstandard", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_zstandard)
    assert extract_vmlinux(fake_bzimage(packed("zstd"))).data == VMLINUX


def test_missing_tool_says_what_to_install(monkeypatch):
    image = fake_bzimage(packed("lz4"))
    monkeypatch.setattr(_vmlinux.shutil, "which", lambda name: None)
    with pytest.raises(VmlinuxError, match="lz4-compressed and the lz4 program is not installed"):
        extract_vmlinux(image, "vmlinuz")


def test_not_a_bzimage():
    with pytest.raises(VmlinuxError, match="is not an x86 bzImage and holds no compressed ELF"):
        extract_vmlinux(b"MZ" + bytes(4096), "vmlinuz")


def test_unknown_compression():
    with pytest.raises(VmlinuxError, match=r"unknown compression .* starts with 00 11 22"):
        extract_vmlinux(fake_bzimage(bytes.fromhex("001122334455") + bytes(100)), "vmlinuz")


def test_payload_past_the_end_of_the_file():
    image = fake_bzimage(packed("xz"), payload_length=10 ** 7)
    with pytest.raises(VmlinuxError, match="truncated: its boot header puts"):
        extract_vmlinux(image, "vmlinuz")


@pytest.mark.parametrize("method", STDLIB + TOOLS)
def test_truncated_stream(method):
    stream = packed(method)
    with pytest.raises(VmlinuxError, match=f"the {method} payload (does not decompress|"
                                           "decompressed to)"):
        extract_vmlinux(fake_bzimage(stream[:len(stream) // 2]), "vmlinuz")


@pytest.mark.parametrize("method", ["xz", "zstd", "lz4"])
def test_size_at_the_end_of_the_payload_is_checked(method):
    stream = packed(method)[:-4] + (len(VMLINUX) + 1).to_bytes(4, "little")
    with pytest.raises(VmlinuxError, match=f"decompressed to {len(VMLINUX)} bytes, but it says"):
        extract_vmlinux(fake_bzimage(stream), "vmlinuz")


def test_payload_that_is_not_elf():
    with pytest.raises(VmlinuxError, match="did not decompress to an ELF file"):
        extract_vmlinux(fake_bzimage(compress(b"not a kernel" * 10, "gzip")), "vmlinuz")


def test_bzimage_without_findable_payload():
    with pytest.raises(VmlinuxError, match="is an x86 bzImage and holds no compressed ELF"):
        extract_vmlinux(fake_bzimage(b"\xcc" * 300, protocol=0x0206), "vmlinuz")


def test_compression_names_and_unknown_method():
    assert compression_of(packed("xz")) == "xz"
    assert compression_of(b"\0\0\0\0") is None
    with pytest.raises(VmlinuxError, match="unknown compression 'brotli'"):
        decompress(b"", "brotli")


def test_read_vmlinux_and_find_image(tmp_path):
    with pytest.raises(VmlinuxError, match="directory"):
        read_vmlinux(str(tmp_path))
    with pytest.raises(VmlinuxError, match="cannot read"):
        read_vmlinux(str(tmp_path / "missing"))
    assert find_image(str(tmp_path), "1.2.3") is None
    (tmp_path / "boot").mkdir()
    image = tmp_path / "boot" / "vmlinuz-1.2.3"
    image.write_bytes(fake_bzimage(packed("gzip")))
    assert find_image(str(tmp_path), "1.2.3") == str(image)
    assert read_vmlinux(str(image)).data == VMLINUX
