from __future__ import annotations

import os

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._rootfs import RootPathError, inside, resolve


def test_absolute_link_stays_inside_root(tmp_path):
    (tmp_path / "usr/src/linux-headers-1").mkdir(parents=True)
    (tmp_path / "lib/modules/1").mkdir(parents=True)
    os.symlink("/usr/src/linux-headers-1", tmp_path / "lib/modules/1/build")
    assert resolve(str(tmp_path), "/lib/modules/1/build") == str(tmp_path / "usr/src/linux-headers-1")


def test_merged_usr_and_relative_links(tmp_path):
    (tmp_path / "usr/lib/modules/1").mkdir(parents=True)
    (tmp_path / "usr/lib/kbuild/scripts").mkdir(parents=True)
    os.symlink("usr/lib", tmp_path / "lib")
    os.symlink("../kbuild/scripts", tmp_path / "usr/lib/modules/scripts")
    assert resolve(str(tmp_path), "/lib/modules/1") == str(tmp_path / "usr/lib/modules/1")
    assert resolve(str(tmp_path), "lib/modules/scripts") == str(tmp_path / "usr/lib/kbuild/scripts")


def test_dotdot_never_climbs_above_root(tmp_path):
    (tmp_path / "a").mkdir()
    os.symlink("../../../../etc", tmp_path / "a/up")
    assert resolve(str(tmp_path), "/a/up/passwd") == str(tmp_path / "etc/passwd")
    assert resolve(str(tmp_path), "/../../x") == str(tmp_path / "x")


def test_missing_parts_are_kept(tmp_path):
    assert resolve(str(tmp_path), "/no/such/file") == str(tmp_path / "no/such/file")
    os.symlink("/nowhere", tmp_path / "dangling")
    assert resolve(str(tmp_path), "/dangling/x") == str(tmp_path / "nowhere/x")


def test_link_loop_is_an_error(tmp_path):
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(RootPathError, match="too many levels"):
        resolve(str(tmp_path), "/a")


def test_host_root_is_plain_resolution():
    assert resolve("/", "/proc/self/..") == "/proc"
    assert inside("/", "boot//config-1") == "/boot/config-1"


def test_inside(tmp_path):
    assert inside(str(tmp_path), "/boot/config-1") == str(tmp_path / "boot/config-1")
