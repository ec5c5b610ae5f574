from __future__ import annotations

import gzip
import lzma
import struct

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._ksymtab import (
    ElfFile, Export, KsymtabError, kernel_exports, module_symbols, read_module)
from tests.support.fake_kernel import Exp, Sec, build_elf, fake_module, fake_vmlinux

EXPORTS = [Exp("phys_base", 0x4C9D28B0), Exp("init_uts_ns", 0x039823DE, gpl=True),
           Exp("dma_buf_get", 0xDEADBEEF, gpl=True, namespace="DMA_BUF"),
           Exp("empty_zero_page", 0x815F2897)]
# vmlinux's tables are sorted by name, EXPORT_SYMBOL first, as its linker script sorts them.
IN_TABLE_ORDER = [
    Export("empty_zero_page", "EXPORT_SYMBOL", 0x815F2897),
    Export("phys_base", "EXPORT_SYMBOL", 0x4C9D28B0),
    Export("dma_buf_get", "EXPORT_SYMBOL_GPL", 0xDEADBEEF, "DMA_BUF"),
    Export("init_uts_ns", "EXPORT_SYMBOL_GPL", 0x039823DE)]


@pytest.mark.parametrize("layout, bits, words", [
    ("prel32", 64, "12-byte PC-relative entries with namespace"),
    ("absolute", 64, "24-byte absolute entries with namespace"),
    ("absolute", 32, "12-byte absolute entries with namespace"),
])
def test_vmlinux_layouts(layout, bits, words):
    found = kernel_exports(ElfFile("vmlinux", data=fake_vmlinux(EXPORTS, layout, bits=bits)))
    assert found.exports == IN_TABLE_ORDER
    assert found.layout == words and found.modversions


def test_vmlinux_before_namespaces():
    found = kernel_exports(ElfFile("vmlinux", data=fake_vmlinux(EXPORTS, "prel32-nons")))
    assert found.layout == "8-byte PC-relative entries without namespace"
    assert [(e.name, e.namespace) for e in found.exports][2] == ("dma_buf_get", "")


def test_vmlinux_without_modversions_has_no_crcs():
    found = kernel_exports(ElfFile("vmlinux", data=fake_vmlinux(EXPORTS, crcs=False)))
    assert not found.modversions
    assert {e.crc for e in found.exports} == {None}


def test_vmlinux_missing_sections():
    elf = ElfFile("vmlinux", data=build_elf([Sec(".text", b"\x90" * 16)]))
    with pytest.raises(KsymtabError, match="has no __ksymtab section.*CONFIG_MODULES"):
        kernel_exports(elf)
    elf = ElfFile("vmlinux", data=build_elf([Sec("__ksymtab", b"\0" * 12)]))
    with pytest.raises(KsymtabError, match="has no __ksymtab_strings section"):
        kernel_exports(elf)


def test_vmlinux_entries_that_fit_no_layout():
    elf = ElfFile("vmlinux", data=build_elf([
        Sec("__ksymtab", b"\x01" * 24, addr=0x1000),
        Sec("__ksymtab_strings", b"foo\0", addr=0x9000)]))
    with pytest.raises(KsymtabError, match="fit no known struct kernel_symbol layout"):
        kernel_exports(elf)


def test_vmlinux_crc_table_not_parallel():
    data = fake_vmlinux(EXPORTS)
    elf = ElfFile("vmlinux", data=data)
    crctab = elf.by_name["__kcrctab"]
    # Claim one entry more than there is: the section header's size field grows by 4.
    fixed = bytearray(data)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    struct.pack_into("<Q", fixed, shoff + 64 * crctab.index + 32, crctab.size + 4)
    with pytest.raises(KsymtabError, match="does not run parallel to __ksymtab"):
        kernel_exports(ElfFile("vmlinux", data=bytes(fixed)))


def test_module_exports_in_symbol_table_order_and_versions():
    data = fake_module([Exp("mb_cache_create", 0xDD2C169B), Exp("zz_first", 1, gpl=True),
                        Exp("drm_x", 0x12345678, namespace="DRM")],
                       versions=[("module_layout", 0x0B30AB8F), ("kmalloc", 0xAABBCCDD)])
    found = module_symbols(ElfFile("m.ko", data=data))
    assert found.exports == [Export("mb_cache_create", "EXPORT_SYMBOL", 0xDD2C169B),
                             Export("drm_x", "EXPORT_SYMBOL", 0x12345678, "DRM"),
                             Export("zz_first", "EXPORT_SYMBOL_GPL", 1)]
    assert found.versions == [("module_layout", 0x0B30AB8F), ("kmalloc", 0xAABBCCDD)]
    assert found.has_versions


def test_module_with_absolute_crc_symbols():
    data = fake_module([Exp("old_style", 0xCAFEF00D)], absolute_crcs=True)
    assert module_symbols(ElfFile("m.ko", data=data)).exports == [
        Export("old_style", "EXPORT_SYMBOL", 0xCAFEF00D)]


def test_module_without_exports_or_versions():
    found = module_symbols(ElfFile("m.ko", data=fake_module(with_versions=False)))
    assert (found.exports, found.versions, found.has_versions) == ([], [], False)
    found = module_symbols(ElfFile("m.ko", data=fake_module(versions=[])))
    assert found.has_versions and found.versions == []


def test_module_exports_without_symbol_table():
    data = fake_module([Exp("foo", 1)], with_symtab=False)
    with pytest.raises(KsymtabError, match="exports symbols but has no symbol table"):
        module_symbols(ElfFile("m.ko", data=data))


@pytest.mark.parametrize("suffix, pack", [
    (".ko", lambda d: d), (".ko.xz", lzma.compress), (".ko.gz", gzip.compress)])
def test_read_module_plain_and_compressed(tmp_path, suffix, pack):
    path = tmp_path / f"m{suffix}"
    path.write_bytes(pack(fake_module([Exp("foo", 7)], versions=[("bar", 9)])))
    found = read_module(str(path))
    assert found.exports == [Export("foo", "EXPORT_SYMBOL", 7)]
    assert found.versions == [("bar", 9)]


def test_read_module_zstd(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "m.ko.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(fake_module([Exp("foo", 7)])))
    assert read_module(str(path)).exports == [Export("foo", "EXPORT_SYMBOL", 7)]


def test_bad_files(tmp_path):
    with pytest.raises(KsymtabError, match="cannot read"):
        read_module(str(tmp_path / "missing.ko"))
    (tmp_path / "text.ko").write_bytes(b"hello world" * 10)
    with pytest.raises(KsymtabError, match="is not an ELF file"):
        read_module(str(tmp_path / "text.ko"))
    (tmp_path / "cut.ko").write_bytes(fake_module([Exp("foo", 1)])[:200])
    with pytest.raises(KsymtabError, match="truncated"):
        read_module(str(tmp_path / "cut.ko"))
    (tmp_path / "bad.ko.xz").write_bytes(b"\xfd7zXZ\0garbage")
    with pytest.raises(KsymtabError, match="does not decompress"):
        read_module(str(tmp_path / "bad.ko.xz"))
