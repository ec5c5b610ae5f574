"""The verdict on modules built from Debian's real headers during the test: variants (a)-(e).

The builds come from ``tests/support/variants.py`` (the same ones the VM tests insert into the
real kernel under qemu, where the behaviour in ``VARIANTS`` was measured). Here
``vermagic.kmod.modinfo`` must predict it offline: refused variants with the kernel's own words.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers import read_symvers
from ansible_collections.vermagic.kmod.plugins.module_utils._verdict import verdict
from ansible_collections.vermagic.kmod.plugins.modules import modinfo
from tests.support.debian import DebianKernel
from tests.support.module_runner import run_module
from tests.support.variants import ALTERED_SYMBOL, OTHER_RELEASE, Variant

# What insmod printed for the refused variants on the real kernel under qemu (EINVAL for a
# symbol's CRC, ENOEXEC for the rest); newer tests/support/variants.py carries it as
# Variant.insmod_error.
INSMOD_ERRORS = {"b": "Invalid module format", "d": "Invalid parameters",
                 "e": "Invalid module format"}


def say(msg: str) -> None:
    print(f"[verdict-matrix] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def results(kernel: DebianKernel, variants: dict[str, Variant]) -> dict[str, dict]:
    out = {}
    for name, variant in variants.items():
        result = run_module(modinfo.main, {"path": str(variant.ko), "root": str(kernel.root),
                                           "release": kernel.release})
        assert not result["failed"], f"variant {name}: {result['msg']}"
        out[name] = result
    return out


def codes(items: list[dict]) -> list[str]:
    return [item["code"] for item in items]


def test_the_kernel_facts_supply_symvers(results, kernel):
    for result in results.values():
        assert result["kernel_release"] == kernel.release
        assert result["verdict"]["symvers"] == str(kernel.headers / "Module.symvers")


def test_a_normal_build_is_compatible(results):
    verdict_ = results["a"]["verdict"]
    assert verdict_["compatible"] and verdict_["problems"] == []
    assert codes(verdict_["warnings"]) == ["unsigned", "out_of_tree"]
    assert results["a"]["has_versions"]


def test_b_no_symvers_is_refused_for_module_layout(results, variants):
    verdict_ = results["b"]["verdict"]
    assert not verdict_["compatible"]
    first = verdict_["problems"][0]
    assert first["code"] == "no_symbol_version" and first["symbols"] == ["module_layout"]
    assert re.search(variants["b"].dmesg, first["msg"]), first["msg"]
    assert results["b"]["has_versions"] and results["b"]["versions"] == []


def test_c_other_release_word_loads_with_a_warning(results, kernel):
    verdict_ = results["c"]["verdict"]
    assert verdict_["compatible"], verdict_["problems"]
    warning = next(w for w in verdict_["warnings"] if w["code"] == "release_differs")
    assert OTHER_RELEASE in warning["msg"] and kernel.release in warning["msg"]
    assert results["c"]["vermagic"]["release"] == OTHER_RELEASE


def test_d_one_crc_altered_is_refused(results, variants):
    verdict_ = results["d"]["verdict"]
    assert codes(verdict_["problems"]) == ["crc_mismatch"]
    assert verdict_["problems"][0]["symbols"] == [ALTERED_SYMBOL]
    assert re.search(variants["d"].dmesg, verdict_["problems"][0]["msg"])


def test_e_one_vermagic_flag_edited_is_refused(results, variants, kernel):
    verdict_ = results["e"]["verdict"]
    assert codes(verdict_["problems"]) == ["vermagic"]
    msg = verdict_["problems"][0]["msg"]
    assert re.search(variants["e"].dmesg, msg), msg
    assert "MOD_UNLOAD" in results["e"]["fields"]["vermagic"]


def test_the_verdicts_match_what_the_real_kernel_did(results, variants):
    """``Variant.loads`` is what Debian's kernel did with each build under qemu."""
    assert {n: r["verdict"]["compatible"] for n, r in results.items()} == \
        {n: v.loads for n, v in variants.items()}


@pytest.mark.parametrize("name", sorted(INSMOD_ERRORS))
def test_the_first_problem_names_insmods_error(results, variants, name):
    expected = getattr(variants[name], "insmod_error", None) or INSMOD_ERRORS[name]
    assert expected == INSMOD_ERRORS[name]
    assert f"insmod: {expected}" in results[name]["verdict"]["problems"][0]["msg"]


def test_without_symvers_the_crc_change_cannot_be_seen(facts, variants):
    result = verdict(read_module(str(variants["d"].ko)), dict(facts, symvers=[]))
    assert result["compatible"]
    assert "crcs_unchecked" in codes(result["warnings"])


def test_every_in_tree_module_is_compatible_with_its_kernel(kernel, facts):
    table = read_symvers(str(kernel.headers / "Module.symvers"))
    start = time.monotonic()
    odd = []
    paths = kernel.modules()
    for count, path in enumerate(paths, 1):
        result = verdict(read_module(str(path)), facts, table)
        if result["problems"] or result["warnings"]:
            odd.append(f"{path}: {codes(result['problems'])} {codes(result['warnings'])}")
        if count % 1000 == 0:
            say(f"{count}/{len(paths)} in-tree modules judged ({time.monotonic() - start:.1f} s)")
    assert not odd, f"{len(odd)} in-tree modules not plainly compatible:\n" + "\n".join(odd[:10])


def test_enforcement_changes_the_verdict(kernel, facts, variants):
    facts = dict(facts, sig_enforce=True)
    hello = verdict(read_module(str(variants["a"].ko)), facts)
    assert codes(hello["problems"]) == ["signature_required"]
    vfat = verdict(read_module(str(kernel.modules_dir / "kernel/fs/fat/vfat.ko")), facts)
    assert vfat["compatible"]
    assert codes(vfat["warnings"]) == ["signature_untrusted", "crcs_unchecked"]
    assert "Build time autogenerated kernel key" in vfat["warnings"][0]["msg"]


def test_a_module_of_another_machine_fails_the_task(kernel, variants, tmp_path):
    data = bytearray(Path(variants["a"].ko).read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    other = tmp_path / "hello-arm64.ko"
    other.write_bytes(bytes(data))
    result = run_module(modinfo.main, {"path": str(other), "root": str(kernel.root),
                                       "release": kernel.release})
    assert result["failed"] and "EM_AARCH64" in result["msg"]
    assert codes(result["verdict"]["problems"]) == ["machine"]
