from __future__ import annotations

import gzip

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module_bytes
from ansible_collections.vermagic.kmod.plugins.module_utils._preflight import (
    apply_force, load_symvers, lookup_symbols, verdict, wanted_symbols)
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers import (
    SymversError, parse_symvers)
from ansible_collections.vermagic.kmod.plugins.module_utils._sysfs import LoadedModule
from tests.support.fake_ko import make_ko

MAGIC = "6.1.0-56-amd64 SMP preempt mod_unload modversions "
SYMVERS = parse_symvers("0x0ce1ab5c\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
                        "0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n")
GOOD = {"module_layout": 0x0CE1AB5C, "_printk": 0x92997ED8}


def kernel(**over):
    facts = {"release": "6.1.0-56-amd64", "vermagic": MAGIC, "modversions": True,
             "elf_class": 64, "elf_machine": "EM_X86_64", "sig_enforce": False, "lockdown": "none",
             "config": {"path": "/boot/config-6.1.0-56-amd64",
                        "options": {"MODULES": "y", "MODULE_FORCE_LOAD": "y", "MODULE_SIG": "y"}},
             "symvers": []}
    facts.update(over)
    return facts


def mod(**kw):
    kw.setdefault("versions", dict(GOOD))
    kw.setdefault("imports", ["_printk"])
    return read_module_bytes(make_ko(**kw), "hello.ko")


def codes(items):
    return sorted(item["code"] for item in items)


def test_a_good_module_is_compatible_with_the_usual_warnings():
    got = verdict(mod(), kernel(), SYMVERS, None, "/x/Module.symvers")
    assert got["compatible"] and got["problems"] == [] and got["symvers"] == "/x/Module.symvers"
    assert codes(got["warnings"]) == ["out_of_tree", "unsigned"]


@pytest.mark.parametrize("kw, kover, code, words", [
    ({"versions": {}}, {}, "no_symbol_version", "no symbol version for module_layout"),
    ({"versions": dict(GOOD, _printk=0x92997ED9)}, {}, "crc_mismatch",
     "disagrees about version of symbol _printk"),
    ({"vermagic": MAGIC.replace("mod_unload", "MOD_UNLOAD")}, {}, "vermagic", "version magic"),
    ({}, {"config": {"path": "/proc/config.gz", "options": {"MODULES": None}}}, "modules_disabled",
     "without CONFIG_MODULES"),
])
def test_what_the_kernel_refuses_is_refused(kw, kover, code, words):
    got = verdict(mod(**kw), kernel(**kover), SYMVERS)
    assert not got["compatible"]
    assert code in codes(got["problems"])
    assert any(words in p["msg"] for p in got["problems"])
    assert all(p["fix"] for p in got["problems"])


def test_modules_disabled_only_when_the_config_says_so():
    # options without a MODULES entry (a hand-written kernel dict) are not a refusal
    assert verdict(mod(), kernel(config={"path": "/boot/config", "options": {"MODULE_SIG": "y"}}),
                   SYMVERS)["compatible"]


def test_the_loaded_module_is_passed_on():
    loaded = LoadedModule("hello", "live", srcversion="FFFF")
    assert "other_version_loaded" in codes(verdict(mod(), kernel(), SYMVERS, loaded)["warnings"])


def test_wanted_symbols():
    assert wanted_symbols(mod(imports=["_printk", "kfree"])) == {"module_layout", "_printk", "kfree"}


def test_force_waives_only_what_it_names():
    m = mod(versions=dict(GOOD, _printk=1))
    result = verdict(m, kernel(), SYMVERS)
    assert apply_force(result, [], kernel(), m)["refused"][0]["code"] == "crc_mismatch"
    modversion = apply_force(result, ["modversion"], kernel(), m)
    assert modversion["refused"] == [] and codes(modversion["waived"]) == ["crc_mismatch"]
    assert any("taints F" in n for n in modversion["notes"])
    vermagic_only = apply_force(result, ["vermagic"], kernel(), m)
    assert codes(vermagic_only["refused"]) == ["crc_mismatch"]
    preflight = apply_force(result, ["preflight"], kernel(), m)
    assert preflight["refused"] == [] and codes(preflight["overridden"]) == ["crc_mismatch"]


def test_force_modversion_alone_makes_the_kernel_compare_the_release_too():
    m = mod(vermagic=MAGIC.replace("-56-", "-99-"), versions=dict(GOOD, _printk=1))
    result = verdict(m, kernel(), SYMVERS)
    left = apply_force(result, ["modversion"], kernel(), m)
    assert codes(left["refused"]) == ["vermagic"] and "whole vermagic" in left["refused"][0]["msg"]
    assert apply_force(result, ["modversion", "vermagic"], kernel(), m)["refused"] == []


def test_forcing_needs_module_force_load():
    m = mod(vermagic=MAGIC.replace("mod_unload", "MOD_UNLOAD"))
    k = kernel(config={"options": {}})
    left = apply_force(verdict(m, k, SYMVERS), ["vermagic"], k, m)
    assert codes(left["refused"]) == ["force_unsupported"]


def test_forcing_a_signed_module_is_noted():
    m = mod(signed=True, vermagic=MAGIC.replace("mod_unload", "MOD_UNLOAD"))
    left = apply_force(verdict(m, kernel(), SYMVERS), ["vermagic"], kernel(), m)
    # vermagic is waived; the fake signature is unreadable, which nothing forces past
    assert codes(left["refused"]) == ["signature_invalid"]
    assert any("signed" in n for n in left["notes"])


def test_load_symvers_picks_the_first_readable(tmp_path):
    good = tmp_path / "symvers.gz"
    good.write_bytes(gzip.compress(b"0x0ce1ab5c\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
                                   b"0x00000001\tmodule_layout_x\tvmlinux\tEXPORT_SYMBOL\t\n"))
    k = kernel(symvers=[{"source": "headers", "path": str(tmp_path / "missing")},
                        {"source": "boot", "path": str(good)}])
    table, path, notes = load_symvers(k, {"module_layout", "absent"})
    assert path == str(good) and "cannot read" in notes[0]
    assert table == {"module_layout": SYMVERS["module_layout"]}
    assert load_symvers(kernel(), {"x"}) == (None, None, [])
    with pytest.raises(SymversError):
        load_symvers(k, {"x"}, str(tmp_path / "nope"))
    old = tmp_path / "old.symvers"  # 2.6-era: spaces, no namespace column
    old.write_text("0x0ce1ab5c module_layout vmlinux EXPORT_SYMBOL\n"
                   "0x00000002 fat_x fs/fat/fat EXPORT_SYMBOL_GPL\n")
    assert lookup_symbols(str(old), {"module_layout"}) == {"module_layout": SYMVERS["module_layout"]}
    bad = tmp_path / "bad"
    bad.write_text("hello world\n")
    with pytest.raises(SymversError, match="does not start with a CRC"):
        lookup_symbols(str(bad), {"x"})
