from __future__ import annotations

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._taint import decode_taint, read_taint


def test_out_of_tree_unsigned_is_OE():
    # what the kernel reports after loading an unsigned out-of-tree module: bits 12 and 13
    decoded = decode_taint(12288)
    assert decoded["flags"] == "OE"
    assert decoded["reasons"][0].startswith("O: ")


def test_zero_is_clean_and_unknown_bits_are_named():
    assert decode_taint(0) == {"value": 0, "flags": "", "reasons": []}
    assert "bit 40" in decode_taint(1 << 40)["reasons"][0]


def test_negative_mask_is_rejected():
    with pytest.raises(ValueError):
        decode_taint(-1)


def test_read_taint(tmp_path):
    path = tmp_path / "tainted"
    path.write_text("2\n")
    assert read_taint(str(path))["flags"] == "F"
    assert read_taint(str(tmp_path / "missing")) is None
    path.write_text("garbage")
    assert read_taint(str(path)) is None
