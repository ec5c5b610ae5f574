from __future__ import annotations

import gzip

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._symvers import (
    ExportedSymbol, SymversError, compare, format_symvers, parse_symvers, read_symvers, read_text)

TEXT = ("0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n"
        "0x039823de\tinit_uts_ns\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"
        "0x12345678\tdrm_foo\tdrivers/gpu/drm/drm\tEXPORT_SYMBOL\tDRM_NS\n")


def test_round_trip_is_byte_exact():
    table = parse_symvers(TEXT)
    assert table["phys_base"] == ExportedSymbol(0x4C9D28B0, "phys_base", "vmlinux", "EXPORT_SYMBOL")
    assert table["drm_foo"].namespace == "DRM_NS"
    assert format_symvers(table) == TEXT


def test_old_layout_with_namespace_before_module():
    table = parse_symvers("0x00000001\tfoo\tNS\tdrivers/foo\tEXPORT_SYMBOL_GPL\n")
    assert table["foo"].module == "drivers/foo" and table["foo"].namespace == "NS"


@pytest.mark.parametrize("line, words", [
    ("0xZZ\tfoo\tvmlinux\tEXPORT_SYMBOL\t", "not a hexadecimal"),
    ("0x1\tfoo", "expected"),
    ("0x1\tfoo\tvmlinux\tEXPORT_NONSENSE\t", "unknown export type"),
    ("0x123456789\tfoo\tvmlinux\tEXPORT_SYMBOL\t", "32 bits"),
])
def test_malformed_lines_name_file_and_line(line, words):
    with pytest.raises(SymversError, match=words) as info:
        parse_symvers("0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n" + line, "S")
    assert "S line 2" in str(info.value)


def test_read_plain_gzip_and_bad_files(tmp_path):
    plain = tmp_path / "Module.symvers"
    plain.write_text(TEXT)
    packed = tmp_path / "symvers.gz"
    packed.write_bytes(gzip.compress(TEXT.encode()))
    assert read_symvers(str(plain)) == read_symvers(str(packed))
    assert read_text(str(packed)) == TEXT
    with pytest.raises(SymversError, match="directory"):
        read_symvers(str(tmp_path))
    with pytest.raises(SymversError, match="cannot read"):
        read_symvers(str(tmp_path / "missing"))
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(SymversError, match="gzip"):
        read_symvers(str(broken))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SymversError, match="not ASCII"):
        read_symvers(str(binary))


def test_compare_and_diff_summary():
    before = parse_symvers(TEXT)
    after = dict(before)
    del after["phys_base"]
    after["init_uts_ns"] = ExportedSymbol(0x1, "init_uts_ns", "vmlinux", "EXPORT_SYMBOL_GPL")
    after["new_one"] = ExportedSymbol(0x2, "new_one", "fs/x", "EXPORT_SYMBOL")
    changes = compare(before, after)
    assert changes and changes.counts() == {"added": 1, "removed": 1, "changed": 1}
    gone, come = changes.diff()
    assert gone == ("0x039823de\tinit_uts_ns\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"
                    "0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n")
    assert come == ("0x00000001\tinit_uts_ns\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"
                    "0x00000002\tnew_one\tfs/x\tEXPORT_SYMBOL\t\n")
    assert not compare(before, dict(before))


def test_diff_summary_is_cut():
    after = {f"s{i}": ExportedSymbol(i, f"s{i}", "vmlinux", "EXPORT_SYMBOL") for i in range(120)}
    gone, come = compare({}, after).diff(limit=50)
    assert gone == ""
    assert come.count("\n") == 51 and come.endswith("… and 70 more\n")
