"""modload's preflight on modules built from Debian's real headers (variants a-e, and v2).

What the kernel does with each variant was measured under qemu (``tests/support/variants.py``,
``tests/vm/test_variants.py``); modload's preflight must agree before it touches a kernel, and
``force`` must remove exactly the checks the kernel then skips. The insert itself is proven in
``tests/vm/test_modload.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modload import read_candidate
from ansible_collections.vermagic.kmod.plugins.module_utils._preflight import (
    apply_force, load_symvers, lookup_symbols, verdict, wanted_symbols)
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers import read_symvers
from ansible_collections.vermagic.kmod.plugins.module_utils._sysfs import LoadedModule
from ansible_collections.vermagic.kmod.plugins.module_utils._verdict import identity_matches
from tests.support.debian import DebianKernel
from tests.support.variants import VARIANTS, Variant, build_hello


def say(msg: str) -> None:
    print(f"[modload-preflight] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def builds(kernel: DebianKernel, variants: dict[str, Variant], tmp_path_factory) -> dict:
    """Variants a-e (shared) and v2 (HELLO_VERSION 2.0), read as modload reads them."""
    start = time.monotonic()
    kos = {name: variant.ko for name, variant in variants.items()}
    kos["v2"] = build_hello(kernel.headers, tmp_path_factory.mktemp("builds") / "v2",
                            version="2.0")
    say(f"built v2 in {time.monotonic() - start:.1f} s")
    return {name: read_candidate(str(ko)) for name, ko in kos.items()}


def judge(cand, facts, loaded=None):
    table, path, notes = load_symvers(facts, wanted_symbols(cand.info))
    assert notes == [] and path.endswith("Module.symvers")
    return verdict(cand.info, facts, table, loaded, path)


def test_identity_read_from_the_files_is_what_kbuild_wrote(builds):
    for name, cand in builds.items():
        out = subprocess.run(["readelf", "-n", cand.path], capture_output=True, text=True,
                             check=True).stdout
        assert f"Build ID: {cand.build_id}" in out, name
        srcversion = subprocess.run(["modinfo", "-F", "srcversion", cand.path], capture_output=True,
                                    text=True, check=True).stdout.strip()
        assert cand.srcversion == srcversion and cand.name == "hello"
    # the same source built again (another tree, another directory): same srcversion, another
    # build id: srcversion alone cannot tell builds apart
    a, d, e, v2 = builds["a"], builds["d"], builds["e"], builds["v2"]
    assert a.srcversion == d.srcversion and a.build_id != d.build_id
    assert identity_matches(a.srcversion, a.build_id, d.srcversion, d.build_id) is False
    # e is another build of the same source (in another directory: the debug info differs)
    assert a.srcversion == e.srcversion and a.build_id != e.build_id
    assert v2.srcversion != a.srcversion


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_preflight_agrees_with_the_kernel(builds, facts, name):
    description, loads, *_measured = VARIANTS[name]
    result = judge(builds[name], facts)
    assert result["compatible"] is loads, (description, result["problems"])
    decision = apply_force(result, [], facts, builds[name].info)
    assert bool(decision["refused"]) is not loads


def test_force_removes_only_what_the_kernel_skips(builds, facts):
    d, e, c = builds["d"], builds["e"], builds["c"]
    crc = apply_force(judge(d, facts), ["modversion"], facts, d.info)
    assert crc["refused"] == [] and [p["code"] for p in crc["waived"]] == ["crc_mismatch"]
    assert [p["code"] for p in apply_force(judge(d, facts), ["vermagic"], facts,
                                           d.info)["refused"]] == ["crc_mismatch"]
    magic = apply_force(judge(e, facts), ["vermagic"], facts, e.info)
    assert magic["refused"] == [] and [p["code"] for p in magic["waived"]] == ["vermagic"]
    # c loads as it is (its CRCs are right); forcing modversion alone would make the kernel
    # compare its whole vermagic, release word included, and refuse it
    assert judge(c, facts)["compatible"]
    whole = apply_force(judge(c, facts), ["modversion"], facts, c.info)
    assert [p["code"] for p in whole["refused"]] == ["vermagic"]
    assert "6.1.0-99-amd64" in whole["refused"][0]["msg"]
    assert apply_force(judge(c, facts), ["modversion", "vermagic"], facts, c.info)["refused"] == []


def test_the_loaded_build_is_named(builds, facts):
    a, d, v2 = builds["a"], builds["d"], builds["v2"]
    loaded = LoadedModule("hello", "live", srcversion=a.srcversion, build_id=a.build_id)
    codes = [w["code"] for w in judge(v2, facts, loaded)["warnings"]]
    assert "other_version_loaded" in codes
    assert "already_loaded" in [w["code"] for w in judge(a, facts, loaded)["warnings"]]
    # d has a's srcversion (same sources, another tree): only the build id tells them apart
    other = [w for w in judge(d, facts, loaded)["warnings"] if w["code"] == "other_version_loaded"]
    assert other and f"build id {a.build_id}" in other[0]["msg"]
    assert f"build id {d.build_id}" in other[0]["msg"]


def test_lookup_agrees_with_a_full_parse_on_debians_symvers(kernel: DebianKernel) -> None:
    path = kernel.headers / "Module.symvers"
    full = read_symvers(str(path))
    names = ["module_layout", "_printk", "__fentry__", "kmalloc_caches", "drm_dev_register",
             "not_a_symbol_anywhere"]
    got = lookup_symbols(str(path), names)
    assert got == {n: full[n] for n in names if n in full}
    assert len(got) == 5
