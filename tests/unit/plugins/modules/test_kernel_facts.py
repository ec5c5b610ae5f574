from __future__ import annotations

import os
from unittest import mock

import pytest
from ansible.module_utils import basic

from ansible_collections.vermagic.kmod.plugins.modules import kernel_facts
from tests.support.fakeroot import RELEASE, VERMAGIC, bzimage, config_with, make_root, write
from tests.support.module_runner import run_module


def run(args: dict, check_mode: bool = False) -> tuple[dict, list[str]]:
    warnings: list[str] = []
    with mock.patch.object(basic.AnsibleModule, "warn", lambda self, msg: warnings.append(msg)):
        result = run_module(kernel_facts.main, args, check_mode=check_mode)
    return result, warnings


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: write(p / "file", "x"), "not a directory"),
])
def test_bad_root_fails_clearly(tmp_path, make, words):
    result, _warnings = run({"root": str(make(tmp_path))})
    assert result["failed"] is True
    assert words in result["msg"] and "unpacked image" in result["msg"]


def test_bad_release_fails_clearly(tmp_path):
    result, _warnings = run({"root": str(tmp_path), "release": "../etc"})
    assert result["failed"] is True and "is not a kernel release" in result["msg"]


def test_several_kernels_fail_with_the_list(tmp_path):
    make_root(tmp_path, headers=False)
    make_root(tmp_path, "6.1.0-55-amd64", headers=False)
    result, _warnings = run({"root": str(tmp_path)})
    assert result["failed"] is True
    assert "6.1.0-55-amd64" in result["msg"] and RELEASE in result["msg"]
    assert "give release" in result["msg"]


def test_image_facts_and_check_mode(tmp_path):
    root = make_root(tmp_path / "root", config=config_with(MODULE_SIG_FORCE="y"))
    result, warnings = run({"root": str(root)})
    assert result["failed"] is False and result["changed"] is False
    facts = result["ansible_facts"]["kmod_kernel"]
    assert facts["release"] == RELEASE and facts["running"] is False
    # the placeholder module files are not modules: the vermagic comes from the configuration
    assert facts["vermagic"] == VERMAGIC and facts["vermagic_source"] == "config"
    assert facts["sig_enforce"] is True
    assert any("could not be read" in m for m in facts["missing"])
    checked, _warnings = run({"root": str(root)}, check_mode=True)
    assert checked == result


def test_warnings_reach_ansible(tmp_path):
    root = make_root(tmp_path / "root", vmlinuz=False)
    write(root / "boot" / f"vmlinuz-{RELEASE}", bzimage("6.1.0-99-amd64"))
    result, warnings = run({"root": str(root), "release": RELEASE})
    assert result["failed"] is False
    assert any("holds release 6.1.0-99-amd64" in w for w in warnings)


def test_this_host(tmp_path):
    """The module on the machine it runs on: it never fails for lack of /boot or /lib/modules."""
    result, _warnings = run({})
    assert result["failed"] is False, result.get("msg")
    facts = result["ansible_facts"]["kmod_kernel"]
    assert facts["running"] is True and facts["release"] == os.uname().release
    if not os.path.isdir("/lib/modules"):
        assert any(m.startswith("no /lib/modules") for m in facts["missing"])
