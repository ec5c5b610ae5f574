from __future__ import annotations

import os

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._safepath import untrusted_reasons

NOBODY = 65534


@pytest.fixture
def tree(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    top = tmp_path / "top"
    top.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    ko = top / "hello.ko"
    ko.write_bytes(b"\x7fELF")
    os.chmod(ko, 0o644)
    return top, ko


def test_root_owned_file_in_root_owned_dirs_is_trusted(tree):
    _top, ko = tree
    assert untrusted_reasons(str(ko)) == []


def test_group_or_other_writable_file_is_not(tree):
    _top, ko = tree
    os.chmod(ko, 0o664)
    assert any("writable by its group" in r for r in untrusted_reasons(str(ko)))
    os.chmod(ko, 0o646)
    assert any("writable by others" in r for r in untrusted_reasons(str(ko)))


def test_file_owned_by_a_user_is_not(tree):
    _top, ko = tree
    os.chown(ko, NOBODY, -1)
    assert any("owned by uid 65534" in r and "change it" in r for r in untrusted_reasons(str(ko)))


def test_writable_directory_above_is_not_unless_sticky(tree):
    top, ko = tree
    os.chmod(top, 0o777)
    reasons = untrusted_reasons(str(ko))
    assert any(f"directory {top}" in r and "without the sticky bit" in r for r in reasons)
    os.chmod(top, 0o1777)
    assert untrusted_reasons(str(ko)) == []


def test_directory_owned_by_a_user_is_not(tree):
    top, ko = tree
    os.chown(top, NOBODY, -1)
    assert any(f"{top} is owned by uid 65534" in r for r in untrusted_reasons(str(ko)))


def test_symlink_chain_is_checked_both_ways(tree, tmp_path):
    top, ko = tree
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir(mode=0o777)
    os.chmod(unsafe, 0o777)
    link = unsafe / "hello.ko"
    link.symlink_to(ko)
    assert any(str(unsafe) in r for r in untrusted_reasons(str(link)))  # the link can be swapped
    safe_link = top / "link.ko"
    safe_link.symlink_to(ko)
    assert untrusted_reasons(str(safe_link)) == []
    os.lchown(safe_link, NOBODY, -1)
    assert any("symbolic link owned by uid 65534" in r for r in untrusted_reasons(str(safe_link)))
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    os.chmod(target_dir, 0o777)
    (target_dir / "real.ko").write_bytes(b"x")
    os.chmod(target_dir / "real.ko", 0o644)
    (top / "to-unsafe.ko").symlink_to(target_dir / "real.ko")
    assert any(str(target_dir) in r for r in untrusted_reasons(str(top / "to-unsafe.ko")))


def test_missing_and_odd_files(tree):
    top, _ko = tree
    assert any("No such file" in r for r in untrusted_reasons(str(top / "missing.ko")))
    os.mkfifo(top / "fifo")
    assert any("not a regular file" in r for r in untrusted_reasons(str(top / "fifo")))
