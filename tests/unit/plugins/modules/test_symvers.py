from __future__ import annotations

import os

import pytest
from ansible.module_utils.common import warnings

from ansible_collections.vermagic.kmod.plugins.modules import symvers
from tests.support.fake_kernel import RELEASE, Exp, add_headers, fake_root
from tests.support.module_runner import run_module

VMLINUX = [Exp("printk", 0x11111111), Exp("module_layout", 0x22222222)]
MODULES = {"fs/mbcache": ([Exp("mb_cache_create", 0x44444444)], [("printk", 0x11111111)])}


@pytest.fixture
def root(tmp_path):
    return fake_root(tmp_path / "root", VMLINUX, MODULES)


def run(check_mode=False, diff=False, **args):
    return run_module(symvers.main, args, check_mode=check_mode, diff=diff)


def test_recover_changed_then_unchanged_and_check_mode(root, tmp_path):
    dest = tmp_path / "tree"
    dest.mkdir()
    first = run(dest=str(dest), root=root, release=RELEASE, source="recover", diff=True)
    assert first["changed"] and not first["failed"]
    assert first["dest"] == str(dest / "Module.symvers")
    assert (first["source"], first["symbols"], first["conflicts"]) == ("recover", 3, [])
    assert first["changes"] == {"added": 3, "removed": 0, "changed": 0}
    assert first["recovery"]["compression"] == "xz" and first["modules_checked"] == 1
    assert first["diff"]["before"] == ""
    assert "0x44444444\tmb_cache_create\tfs/mbcache" in first["diff"]["after"]
    text = (dest / "Module.symvers").read_text()
    assert text.count("\n") == 3
    assert (dest / ".vermagic-kmod.lock").exists()  # written under the lock of its directory

    again = run(dest=str(dest / "Module.symvers"), root=root, release=RELEASE, diff=True)
    assert not again["changed"] and "diff" not in again
    assert again["source"] == "recover"  # auto: no headers, no /boot symvers

    other = tmp_path / "other.symvers"
    checked = run(check_mode=True, dest=str(other), root=root, release=RELEASE)
    assert checked["changed"] and checked["symbols"] == 3
    assert not other.exists() and not (tmp_path / ".vermagic-kmod.lock").exists()


def test_same_lines_in_another_order_are_left_alone(root, tmp_path):
    dest = tmp_path / "Module.symvers"
    run(dest=str(dest), root=root, release=RELEASE)
    lines = dest.read_text().splitlines(keepends=True)
    dest.write_text("".join(reversed(lines)))
    assert not run(dest=str(dest), root=root, release=RELEASE)["changed"]
    assert dest.read_text() == "".join(reversed(lines))


def test_changed_crc_is_a_symbol_diff(root, tmp_path):
    dest = tmp_path / "Module.symvers"
    run(dest=str(dest), root=root, release=RELEASE)
    dest.write_text(dest.read_text().replace("0x11111111", "0x0000beef") + "junk line\n")
    bad = run(dest=str(dest), root=root, release=RELEASE, diff=True)
    assert bad["changed"]
    assert bad["changes"] == {"added": 3, "removed": 0, "changed": 0}  # unreadable: replaced
    dest.write_text(dest.read_text().replace("0x11111111", "0x0000beef"))
    result = run(dest=str(dest), root=root, release=RELEASE, diff=True)
    assert result["changes"] == {"added": 0, "removed": 0, "changed": 1}
    assert result["diff"]["before"] == "0x0000beef\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"
    assert result["diff"]["after"] == "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"


def test_auto_takes_headers_when_present(root, tmp_path):
    path = add_headers(root, "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    result = run(dest=str(tmp_path / "M"), root=root)  # release: the only one under root
    assert (result["source"], result["path"], result["release"]) == ("headers", path, RELEASE)
    assert (tmp_path / "M").read_text() == open(path).read()


def test_conflicts_are_warned(tmp_path):
    modules = {"fs/stale": ([], [("printk", 0x0BADC0DE)])}
    root = fake_root(tmp_path / "root", VMLINUX, modules)
    warnings._global_warnings.clear()
    result = run(dest=str(tmp_path / "M"), root=root, release=RELEASE)
    assert [c["module"] for c in result["conflicts"]] == ["fs/stale"]
    assert any("1 CRC conflicts" in w for w in warnings.get_warning_messages())


@pytest.mark.parametrize("args, words", [
    (dict(dest="/nonexistent/dir/Module.symvers"), "the directory of dest"),
    (dict(source="headers"), "no headers package Module.symvers"),
    (dict(source="boot"), "no /boot symvers file"),
    (dict(release="9.9.9"), "no source of Module.symvers for 9.9.9"),
])
def test_failures_say_what_to_do(root, tmp_path, args, words):
    params = dict(dest=str(tmp_path / "M"), root=root, release=RELEASE)
    params.update(args)
    result = run(**params)
    assert result["failed"] and words in result["msg"]
    assert not (tmp_path / "M").exists()


def test_release_must_be_given_when_root_has_several(root, tmp_path):
    os.makedirs(os.path.join(root, "lib", "modules", "5.10.0-1-amd64", "kernel"))
    result = run(dest=str(tmp_path / "M"), root=root)
    assert result["failed"] and "give release to choose one" in result["msg"]
    assert "5.10.0-1-amd64 (/lib/modules/5.10.0-1-amd64)" in result["msg"]
    result = run(dest=str(tmp_path / "M"), root=root, release="../etc")
    assert result["failed"] and "is not a kernel release" in result["msg"]
    result = run(dest=str(tmp_path / "M"), root=str(tmp_path / "nothing"))
    assert result["failed"] and "is not a directory" in result["msg"]
