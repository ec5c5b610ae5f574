from __future__ import annotations

import copy

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module_bytes
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers import parse_symvers
from ansible_collections.vermagic.kmod.plugins.module_utils._verdict import (
    identity_matches, item_codes, verdict)
from tests.support.elf_fixture import STB_WEAK, Section, Spec, make_module, pkcs7, sign
from tests.support.fake_ko import SHT_NOTE, build_id_note

MAGIC = "6.1.0-56-amd64 SMP preempt mod_unload modversions "
KERNEL = {
    "release": "6.1.0-56-amd64", "vermagic": MAGIC, "elf_machine": "EM_X86_64", "elf_class": 64,
    "modversions": True, "sig_enforce": False, "lockdown": "none", "running": False,
    "config": {"options": {"MODVERSIONS": "y", "MODULE_SIG": "y", "MODULE_FORCE_LOAD": "y",
                           "MODULE_SIG_FORCE": None}},
}
SYMVERS = parse_symvers(
    "0x0b4c6ac4\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x12345678\tgpl_thing\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"
    "0x0000abcd\tns_thing\tvmlinux\tEXPORT_SYMBOL_GPL\tCRYPTO_INTERNAL\n")
VERSIONS = [(0x0B4C6AC4, "module_layout"), (0x92997ED8, "_printk"), (0x12345678, "gpl_thing"),
            (0x0000ABCD, "ns_thing")]


def module(*, modinfo_extra=(), signed=False, vermagic=MAGIC, license_="GPL", **spec):
    entries = [f"license={license_}", "srcversion=AAAABBBBCCCCDDDDEEEEFFF", "name=fixture",
               *modinfo_extra]
    if vermagic is not None:
        entries.append("vermagic=" + vermagic)
    data = make_module(Spec(modinfo=entries, **spec))
    return read_module_bytes(sign(data) if signed else data)


def kernel(**changes):
    facts = copy.deepcopy(KERNEL)
    options = changes.pop("options", None)
    facts.update(changes)
    if options:
        facts["config"]["options"].update(options)
    return facts


def codes(result):
    return item_codes(result["problems"]), item_codes(result["warnings"])


def test_good_module_is_compatible_with_taint_warnings():
    result = verdict(module(), KERNEL, SYMVERS, symvers_source="/x/Module.symvers")
    assert result["compatible"]
    assert codes(result) == ([], ["unsigned", "out_of_tree"])
    assert result["symvers"] == "/x/Module.symvers"
    for item in result["warnings"]:
        assert set(item) >= {"code", "msg", "fix"} and item["msg"] and item["fix"]


def test_in_tree_signed_module_has_no_warnings():
    result = verdict(module(signed=True, modinfo_extra=["intree=Y"]), KERNEL, SYMVERS)
    assert codes(result) == ([], [])


def test_release_word_differs_but_crcs_make_it_load():
    result = verdict(module(vermagic="6.1.0-99-amd64 SMP preempt mod_unload modversions "),
                     KERNEL, SYMVERS)
    assert result["compatible"]
    assert "release_differs" in codes(result)[1]


def test_release_word_counts_without_a_versions_section():
    result = verdict(module(versions=None,
                            vermagic="6.1.0-99-amd64 SMP preempt mod_unload modversions "),
                     KERNEL, SYMVERS)
    assert "vermagic" in codes(result)[0]


def test_one_flag_differs_is_refused_with_the_kernels_words():
    edited = "6.1.0-56-amd64 SMP preempt MOD_UNLOAD modversions "
    result = verdict(module(vermagic=edited), KERNEL, SYMVERS)
    assert not result["compatible"]
    assert codes(result)[0] == ["vermagic"]
    msg = result["problems"][0]["msg"]
    assert f"fixture: version magic '{edited}' should be '{MAGIC}'" in msg


def test_empty_versions_names_module_layout_first():
    result = verdict(module(versions=[]), KERNEL, SYMVERS)
    problems = result["problems"]
    assert problems[0]["code"] == "no_symbol_version"
    assert "no symbol version for module_layout" in problems[0]["msg"]
    assert problems[0]["symbols"] == ["module_layout"]
    assert "vermagic.kmod.symvers" in problems[0]["fix"]


def test_empty_versions_without_symvers_still_refused():
    result = verdict(module(versions=[]), KERNEL)
    assert codes(result)[0][0] == "no_symbol_version"
    assert "crcs_unchecked" in codes(result)[1]


def test_crc_mismatch_names_the_symbol_and_both_crcs():
    versions = [(0x0B4C6AC4, "module_layout"), (0x92997ED9, "_printk")]
    result = verdict(module(versions=versions), KERNEL, SYMVERS)
    assert codes(result)[0] == ["crc_mismatch"]
    msg = result["problems"][0]["msg"]
    assert "disagrees about version of symbol _printk" in msg
    assert "0x92997ed9" in msg and "0x92997ed8" in msg


def test_module_layout_crc_mismatch():
    versions = [(0x1, "module_layout"), (0x92997ED8, "_printk")]
    result = verdict(module(versions=versions), KERNEL, SYMVERS)
    assert result["problems"][0]["symbols"] == ["module_layout"]
    assert result["problems"][0]["code"] == "crc_mismatch"


def test_import_missing_from_versions():
    result = verdict(module(versions=[(0x0B4C6AC4, "module_layout")]), KERNEL, SYMVERS)
    assert codes(result)[0] == ["no_symbol_version"]
    assert result["problems"][0]["symbols"] == ["_printk"]


def test_no_versions_section_force_loads_on_debian():
    vermagic = "6.1.0-56-amd64 SMP preempt mod_unload "
    result = verdict(module(versions=None, vermagic=vermagic), KERNEL, SYMVERS)
    assert "forced_load" in codes(result)[1]
    # but its vermagic lacks modversions, so the whole string differs
    assert codes(result)[0] == ["vermagic"]


def test_no_versions_section_forbidden_without_force_load():
    result = verdict(module(versions=None), kernel(options={"MODULE_FORCE_LOAD": None}), SYMVERS)
    assert "no_versions_forbidden" in codes(result)[0]


def test_unknown_symbol_and_weak_symbols():
    imports = [("_printk", 1), ("not_exported", 1), ("weak_missing", STB_WEAK)]
    result = verdict(module(imports=imports), KERNEL, SYMVERS)
    assert codes(result)[0] == ["unknown_symbol"]
    assert result["problems"][0]["symbols"] == ["not_exported"]
    assert "Unknown symbol not_exported" in result["problems"][0]["msg"]


def test_gpl_only_symbol_is_unknown_to_a_proprietary_module():
    imports = [("_printk", 1), ("gpl_thing", 1)]
    result = verdict(module(imports=imports, versions=VERSIONS, license_="Proprietary"),
                     KERNEL, SYMVERS)
    assert codes(result)[0] == ["unknown_symbol"]
    assert "GPL-only" in result["problems"][0]["msg"]
    ok = verdict(module(imports=imports, versions=VERSIONS, license_="Dual BSD/GPL"), KERNEL,
                 SYMVERS)
    assert ok["compatible"]


def test_namespace_must_be_imported():
    imports = [("ns_thing", 1)]
    result = verdict(module(imports=imports, versions=VERSIONS), KERNEL, SYMVERS)
    assert codes(result)[0] == ["namespace_not_imported"]
    assert "from namespace CRYPTO_INTERNAL" in result["problems"][0]["msg"]
    ok = verdict(module(imports=imports, versions=VERSIONS,
                        modinfo_extra=["import_ns=CRYPTO_INTERNAL"]), KERNEL, SYMVERS)
    assert ok["compatible"]
    allowed = verdict(module(imports=imports, versions=VERSIONS), kernel(
        options={"MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS": "y"}), SYMVERS)
    assert allowed["compatible"]


def test_no_crc_checks_on_a_kernel_without_modversions():
    plain = "6.1.0-56-amd64 SMP preempt mod_unload "
    result = verdict(module(versions=None, vermagic=plain),
                     kernel(vermagic=plain, modversions=False,
                            options={"MODVERSIONS": None}), SYMVERS)
    assert result["compatible"], result


def test_modversions_unknown_is_said():
    result = verdict(module(), kernel(modversions=None, vermagic=None))
    assert "crcs_unchecked" in codes(result)[1] and "vermagic_unchecked" in codes(result)[1]


def test_modversions_from_the_kernel_vermagic_when_config_unknown():
    result = verdict(module(versions=[]), kernel(modversions=None, config={}))
    assert codes(result)[0][0] == "no_symbol_version"


@pytest.mark.parametrize("changes,needle", [
    ({"sig_enforce": True}, "sig_enforce is on"),
    ({"lockdown": "integrity"}, "lockdown is 'integrity'"),
])
def test_unsigned_refused_under_enforcement(changes, needle):
    result = verdict(module(), kernel(**changes), SYMVERS)
    assert codes(result)[0] == ["signature_required"]
    assert needle in result["problems"][0]["msg"]


def test_signed_under_enforcement_warns_that_trust_is_unknown():
    result = verdict(module(signed=True), kernel(sig_enforce=True), SYMVERS)
    assert result["compatible"]
    assert "signature_untrusted" in codes(result)[1]
    assert "Fixture key" in result["warnings"][0]["msg"]


def test_unparseable_signature_is_fatal_on_a_module_sig_kernel():
    data = sign(make_module(), b"\x30\x03\x02\x01")
    result = verdict(read_module_bytes(data), KERNEL, SYMVERS)
    assert codes(result)[0] == ["signature_invalid"]


def test_no_module_sig_no_signature_warning():
    result = verdict(module(), kernel(options={"MODULE_SIG": None}), SYMVERS)
    assert "unsigned" not in codes(result)[1]


def test_32_bit_module_against_64_bit_kernel():
    result = verdict(module(elf_class=32, machine=3), KERNEL, SYMVERS)
    assert codes(result)[0][:2] == ["elf_class", "machine"]
    assert "32-bit" in result["problems"][0]["msg"] and "64-bit" in result["problems"][0]["msg"]


def test_other_machine():
    result = verdict(module(machine=183), KERNEL, SYMVERS)  # EM_AARCH64
    assert codes(result)[0] == ["machine"]
    assert "EM_AARCH64" in result["problems"][0]["msg"]


def test_identity_matches():
    assert identity_matches("A", "b1", "A", "b1") is True
    assert identity_matches("A", "b1", "A", "b2") is False  # same source, another build
    assert identity_matches(None, "b1", "X", "b1") is True
    assert identity_matches("A", None, "A", "b1") is True  # only the srcversion to compare
    assert identity_matches("A", None, None, "b1") is None


SRCVERSION = "AAAABBBBCCCCDDDDEEEEFFF"
BUILD = bytes(range(20))


def built(build_id=BUILD):
    return module(extra=[Section(".note.gnu.build-id", build_id_note(build_id), SHT_NOTE)])


@pytest.mark.parametrize("loaded, code", [
    ({"srcversion": SRCVERSION, "build_id": BUILD.hex()}, "already_loaded"),
    ({"srcversion": SRCVERSION, "build_id": None}, "already_loaded"),  # no notes in sysfs
    ({"srcversion": SRCVERSION}, "already_loaded"),                     # a dict by hand
    ({"srcversion": None, "build_id": BUILD.hex()}, "already_loaded"),
    # the same sources built again elsewhere: same srcversion, another build id
    ({"srcversion": SRCVERSION, "build_id": "ff" * 20}, "other_version_loaded"),
    ({"srcversion": "X", "build_id": BUILD.hex()}, "other_version_loaded"),
    ({"srcversion": None, "build_id": None}, "other_version_loaded"),  # nothing to compare
])
def test_loaded_build_is_known_by_srcversion_and_build_id(loaded, code):
    result = verdict(built(), KERNEL, SYMVERS, loaded=dict(loaded, name="fixture"))
    assert code in codes(result)[1] and result["compatible"]
    item = next(w for w in result["warnings"] if w["code"] == code)
    assert f"srcversion {SRCVERSION}" in item["msg"] and item["fix"]
    if code == "other_version_loaded" and loaded["build_id"]:
        assert f"build id {loaded['build_id']}" in item["msg"]


def test_loaded_with_same_and_other_srcversion_when_the_file_has_no_build_id():
    same = verdict(module(), KERNEL, SYMVERS,
                   loaded={"name": "fixture", "srcversion": SRCVERSION, "build_id": "ab" * 20})
    assert "already_loaded" in codes(same)[1] and same["compatible"]
    other = verdict(module(), KERNEL, SYMVERS, loaded={"name": "fixture", "srcversion": "X"})
    assert "other_version_loaded" in codes(other)[1]
    assert "File exists" in other["warnings"][-1]["msg"]


def test_no_vermagic_force_loads_or_is_refused():
    forced = verdict(module(vermagic=None), KERNEL, SYMVERS)
    assert "forced_load" in codes(forced)[1]
    refused = verdict(module(vermagic=None), kernel(options={"MODULE_FORCE_LOAD": None}), SYMVERS)
    assert "vermagic" in codes(refused)[0]


def test_problems_come_in_the_kernels_order():
    data = make_module(Spec(modinfo=["license=GPL", "vermagic=x y"], versions=[]))
    result = verdict(read_module_bytes(data), kernel(sig_enforce=True), SYMVERS)
    assert codes(result)[0][:3] == ["signature_required", "no_symbol_version", "vermagic"]


def test_signed_pkcs7_by_key_identifier_is_signed():
    data = sign(make_module(), pkcs7(key_identifier=b"\x01\x02"))
    result = verdict(read_module_bytes(data), kernel(sig_enforce=True), SYMVERS)
    assert "signature_required" not in codes(result)[0]


def test_hand_written_kernel_dicts_with_yaml_types():
    facts = kernel(elf_class="64", options={"MODULE_SIG": True, "MODULE_FORCE_LOAD": True})
    result = verdict(module(), facts, SYMVERS)
    assert result["compatible"] and "unsigned" in codes(result)[1]


def test_a_kernel_without_module_support_refuses_everything_first():
    facts = kernel(config={"path": "/boot/config-6.1.0-56-amd64",
                           "options": {"MODULES": None, "MODVERSIONS": "y"}})
    result = verdict(module(vermagic=MAGIC.replace("mod_unload", "MOD_UNLOAD")), facts, SYMVERS)
    assert not result["compatible"]
    problems = codes(result)[0]
    assert problems[0] == "modules_disabled" and "vermagic" in problems
    first = result["problems"][0]
    assert "without CONFIG_MODULES (/boot/config-6.1.0-56-amd64)" in first["msg"]
    assert "Function not implemented" in first["msg"] and first["fix"]


@pytest.mark.parametrize("config", [
    {"options": {"MODULES": None}},                               # no file was read
    {"path": "/boot/config-6.1.0-56-amd64", "options": {"MODVERSIONS": "y"}},  # not mentioned
    {"path": "/boot/config-6.1.0-56-amd64", "options": {"MODULES": "y"}},
    {"path": "/boot/config-6.1.0-56-amd64", "options": {"MODULES": True}},      # YAML by hand
])
def test_module_support_is_refused_only_when_a_read_config_says_so(config):
    result = verdict(module(), kernel(config=config), SYMVERS)
    assert "modules_disabled" not in codes(result)[0] and result["compatible"]
