from __future__ import annotations

import multiprocessing
import os
import re
import shutil

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _release
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import LockTimeout, tree_lock
from ansible_collections.vermagic.kmod.plugins.module_utils._release import (
    ReleaseError, align, apply, parse_release, plan, read_release, version_code)
from tests.support import release_trees as trees

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def changed_paths(result) -> list[str]:
    return [change.path for change in result.changes]


# --- the target -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, numbers, rest", [
    ("6.1.0-56-amd64", "6.1.0", "-56-amd64"),
    ("2.6.5-1.358", "2.6.5", "-1.358"),
    ("3.0", "3.0", ""),
    ("5.15.153.1-microsoft-standard-WSL2", "5.15.153", ".1-microsoft-standard-WSL2"),
    ("4.18.0-513.5.1.el8_9.x86_64", "4.18.0", "-513.5.1.el8_9.x86_64"),
    ("6.6.0+", "6.6.0", "+"),
])
def test_parse_release_splits_numbers_from_the_rest(text, numbers, rest):
    release = parse_release(text)
    assert (release.numbers, release.rest) == (numbers, rest)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("6.1.0 -56", "whitespace"),
    ("6.1.0-56\n", "whitespace"),
    ("6.1.0-" + "x" * 60, "at most 64"),
    ('6.1.0-"x"', "contains '\"'"),
    ("6.1.0-$(id)", r"contains '\$\(\)'"),
    ("amd64-6.1", "does not start with VERSION.PATCHLEVEL"),
    ("6-56", "does not start with VERSION.PATCHLEVEL"),
])
def test_parse_release_refuses_what_no_kernel_can_run(text, message):
    with pytest.raises(ReleaseError, match=message):
        parse_release(text)


def test_a_release_of_exactly_64_characters_is_accepted():
    text = "6.1.0-" + "x" * 58
    assert len(text) == 64 and parse_release(text).text == text


@pytest.mark.parametrize("numbers, code", [
    (("6", "1", "192"), 393664), (("6", "1", "0"), 393472), (("2", "6", "5"), 132613),
    (("4", "9", "300"), 264703), (("3", "0", ""), 196608),
])
def test_version_code_is_kbuilds(numbers, code):
    assert version_code(*numbers) == code


# --- the 2.6-era acceptance tree --------------------------------------------------------------

def test_2_6_5_tree_is_aligned_changing_only_the_release_bytes(tmp_path):
    tree = trees.tree_2_6_5(tmp_path)
    before = trees.snapshot(tree)

    result, backups = align(str(tree), "2.6.5-1.358")

    assert (result.mode, result.release_before) == ("makefile", "2.6.5-1.358custom")
    assert result.release_after == "2.6.5-1.358"
    assert (result.uts_release_before, result.version_code_after) == ("2.6.5-1.358custom", 132613)
    assert changed_paths(result) == ["Makefile", "include/linux/version.h"] and backups == []
    after = trees.snapshot(tree)
    assert after["Makefile"] == before["Makefile"].replace(b"EXTRAVERSION = -1.358custom\n",
                                                           b"EXTRAVERSION = -1.358\n")
    assert after["include/linux/version.h"] == before["include/linux/version.h"].replace(
        b'"2.6.5-1.358custom"', b'"2.6.5-1.358"')
    assert {k: v for k, v in after.items() if k not in ("Makefile", "include/linux/version.h")} == \
        {k: v for k, v in before.items() if k not in ("Makefile", "include/linux/version.h")}
    # what the tree's own Makefile generates now is what the module wrote
    os.utime(tree / "include/linux/version.h", (1e9, 1e9))
    trees.make(tree, "include/linux/version.h")
    assert trees.snapshot(tree) == after
    assert trees.make(tree, "kernelrelease") == "2.6.5-1.358\n"

    again = align(str(tree), "2.6.5-1.358")[0]
    assert not again.changed and again.release_before == again.release_after == "2.6.5-1.358"
    assert trees.snapshot(tree) == after


def test_check_mode_shows_the_diff_and_writes_nothing(tmp_path):
    tree = trees.tree_2_6_5(tmp_path)
    before = trees.snapshot(tree)
    mtimes = {p: p.stat().st_mtime_ns for p in tree.rglob("*")}

    result, backups = align(str(tree), "2.6.5-1.358", check_mode=True, backup=True)

    assert result.changed and backups == []
    assert trees.snapshot(tree) == before
    assert {p: p.stat().st_mtime_ns for p in tree.rglob("*")} == mtimes
    makefile, version_h = result.diff()
    assert makefile["before_header"] == makefile["after_header"] == str(tree / "Makefile")
    assert "EXTRAVERSION = -1.358custom\n" in makefile["before"]
    assert "EXTRAVERSION = -1.358\n" in makefile["after"]
    assert version_h["after"].startswith('#define UTS_RELEASE "2.6.5-1.358"\n')


def test_backup_keeps_copies_that_kbuild_ignores(tmp_path):
    tree = trees.tree_2_6_5(tmp_path)
    (tree / "localversion-fc").write_text("-fc2\n")
    before = trees.snapshot(tree)

    result, backups = align(str(tree), "2.6.5-1.358", backup=True)

    assert changed_paths(result) == ["Makefile", "localversion-fc", "include/linux/version.h"]
    assert not (tree / "localversion-fc").exists()
    assert len(backups) == 3
    for path in backups:
        assert re.fullmatch(r".*\.\d+\.\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d~", path)
        original = os.path.relpath(path, tree).rsplit(".", 2)[0]
        assert open(path, "rb").read() == before[original]
    # the backup of localversion-fc does not count: its name holds a "~"
    assert not plan(str(tree), "2.6.5-1.358").changed


# --- modern trees, both modes ------------------------------------------------------------------

def test_header_mode_keeps_the_numbers_and_sets_only_the_release(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    before = trees.snapshot(tree)

    result = align(str(tree), "6.1.0-56-amd64")[0]

    assert (result.mode, result.release_before, result.release_after) == ("header", "6.1.192", "6.1.0-56-amd64")
    assert result.version_code_before == result.version_code_after == 393664
    assert changed_paths(result) == ["Makefile", "include/config/kernel.release",
                                     "include/generated/utsrelease.h"]
    makefile = (tree / "Makefile").read_text()
    head = "".join(trees.MAKEFILE_6_1.splitlines(True)[:6])
    assert makefile.startswith(head + _release.BLOCK_BEGIN)
    assert makefile.replace(makefile[len(head):makefile.index(_release.BLOCK_END)], "") \
        .replace(_release.BLOCK_END + "\n", "") == trees.MAKEFILE_6_1
    assert "override KERNELRELEASE = 6.1.0-56-amd64\n" in makefile
    assert (tree / "include/generated/uapi/linux/version.h").read_bytes() == \
        before["include/generated/uapi/linux/version.h"]
    after = trees.snapshot(tree)
    assert trees.make(tree, "kernelrelease") == "6.1.0-56-amd64\n"
    assert trees.make(tree, "kernelversion") == "6.1.192\n"
    trees.make(tree, "prepare")
    assert trees.snapshot(tree) == after
    assert not plan(str(tree), "6.1.0-56-amd64").changed


def test_makefile_mode_rewrites_numbers_and_the_generated_version_h(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)

    result = align(str(tree), "6.1.0-56-amd64", mode="makefile")[0]

    assert result.mode == "makefile" and result.version_code_after == 393472
    makefile = (tree / "Makefile").read_text()
    assert "SUBLEVEL = 0\nEXTRAVERSION = -56-amd64\nNAME = Curry Ramen\n" in makefile
    assert _release.BLOCK_BEGIN not in makefile
    version_h = (tree / "include/generated/uapi/linux/version.h").read_text()
    assert "#define LINUX_VERSION_CODE 393472\n" in version_h
    assert "#define LINUX_VERSION_SUBLEVEL 0\n" in version_h
    after = trees.snapshot(tree)
    trees.make(tree, "prepare")
    assert trees.snapshot(tree) == after
    assert trees.make(tree, "kernelrelease") == "6.1.0-56-amd64\n"


def test_auto_is_makefile_when_the_numbers_agree(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    result = align(str(tree), "6.1.192-custom")[0]
    assert result.mode == "makefile"
    assert "EXTRAVERSION = -custom\n" in (tree / "Makefile").read_text()
    # and back: the field is written as the kernel writes an empty one, byte for byte
    align(str(tree), "6.1.192")
    assert (tree / "Makefile").read_text() == trees.MAKEFILE_6_1


def test_switching_modes_and_targets(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    align(str(tree), "6.1.0-55-amd64", mode="header")
    align(str(tree), "6.1.0-56-amd64", mode="header")
    makefile = (tree / "Makefile").read_text()
    assert makefile.count(_release.BLOCK_BEGIN) == 1 and "6.1.0-55" not in makefile
    assert (tree / "include/generated/utsrelease.h").read_text() == '#define UTS_RELEASE "6.1.0-56-amd64"\n'

    result = align(str(tree), "6.1.0-56-amd64", mode="makefile")[0]
    assert result.release_before == "6.1.0-56-amd64" and result.changed
    assert _release.BLOCK_BEGIN not in (tree / "Makefile").read_text()
    assert trees.make(tree, "kernelrelease") == "6.1.0-56-amd64\n"

    # header mode on a tree whose fields already give the target needs no block
    result = align(str(tree), "6.1.0-56-amd64", mode="header")[0]
    assert not result.changed and result.version_code_after == 393472


def test_a_wrong_prepared_release_is_repaired_without_make(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True, release="6.1.192-1.358custom")
    (tree / "Makefile").write_text(trees.MAKEFILE_6_1.replace("EXTRAVERSION =\n", "EXTRAVERSION = -1.358custom\n"))
    result = align(str(tree), "6.1.192-1.358")[0]
    assert result.uts_release_before == "6.1.192-1.358custom"
    assert changed_paths(result) == ["Makefile", "include/config/kernel.release",
                                     "include/generated/utsrelease.h"]
    after = trees.snapshot(tree)
    trees.make(tree, "prepare")
    assert trees.snapshot(tree) == after


def test_generated_files_alone_are_repaired(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True, release="6.1.192-old", numbers=(6, 1, 0))
    result = align(str(tree), "6.1.192")[0]
    assert result.release_before == "6.1.192" and result.uts_release_before == "6.1.192-old"
    assert [c.why for c in result.changes] == [
        "holds the release 6.1.192", "UTS_RELEASE 6.1.192",
        "LINUX_VERSION_CODE 393664, LINUX_VERSION_SUBLEVEL 192"]


def test_2_6_18_era_files(tmp_path):
    tree = trees.tree_2_6_18(tmp_path)
    result = align(str(tree), "2.6.18-398.el5")[0]
    assert result.mode == "makefile"
    assert changed_paths(result) == ["Makefile", "include/config/kernel.release", "include/linux/utsrelease.h"]
    assert (tree / "include/linux/utsrelease.h").read_text() == '#define UTS_RELEASE "2.6.18-398.el5"\n'
    assert (tree / "include/config/kernel.release").read_text() == "2.6.18-398.el5\n"


def test_header_mode_on_a_makefile_without_final_newline(tmp_path):
    (tmp_path / "Makefile").write_text("VERSION = 4\nPATCHLEVEL = 19\nSUBLEVEL = 300\nEXTRAVERSION =")
    result = align(str(tmp_path), "4.19.0-26-amd64")[0]
    text = (tmp_path / "Makefile").read_text()
    assert text.startswith("VERSION = 4\nPATCHLEVEL = 19\nSUBLEVEL = 300\nEXTRAVERSION =\n" + _release.BLOCK_BEGIN)
    assert result.version_code_after == (4 << 16) + (19 << 8) + 255
    assert not plan(str(tmp_path), "4.19.0-26-amd64").changed


def test_crlf_makefile_keeps_its_line_ends(tmp_path):
    (tmp_path / "Makefile").write_bytes(b"VERSION = 5\r\nPATCHLEVEL = 10\r\nSUBLEVEL = 209\r\n"
                                        b"EXTRAVERSION =\r\nNAME = Dare mighty things\r\n")
    align(str(tmp_path), "5.10.0-28-amd64")
    data = (tmp_path / "Makefile").read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert not plan(str(tmp_path), "5.10.0-28-amd64").changed


# --- the traps ---------------------------------------------------------------------------------

def test_localversion_files_are_kept_when_the_target_ends_with_them(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    (tree / "localversion-rt").write_text("-rt12\n")
    (tree / "localversion-zz~").write_text("-editor-backup\n")
    assert plan(str(tree), "6.1.192").release_before == "6.1.192-rt12"

    result = align(str(tree), "6.1.192-1-rt12")[0]
    assert (tree / "localversion-rt").exists() and "EXTRAVERSION = -1\n" in (tree / "Makefile").read_text()
    assert trees.make(tree, "kernelrelease") == "6.1.192-1-rt12\n"

    result = align(str(tree), "6.1.192-2")[0]
    assert not (tree / "localversion-rt").exists() and (tree / "localversion-zz~").exists()
    assert "localversion-rt" in changed_paths(result)
    assert trees.make(tree, "kernelrelease") == "6.1.192-2\n"


def test_config_localversion_is_neutralized_in_config_and_auto_conf(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    trees.set_config(tree, localversion="-custom")
    assert trees.make(tree, "kernelrelease") == "6.1.192-custom\n"
    assert plan(str(tree), "6.1.192").release_before == "6.1.192-custom"

    result = align(str(tree), "6.1.0-56-amd64")[0]

    assert changed_paths(result)[-2:] == ["include/config/auto.conf", ".config"]  # .config last
    assert 'CONFIG_LOCALVERSION=""\n' in (tree / ".config").read_text()
    assert "CONFIG_LOCALVERSION=\n" in (tree / "include/config/auto.conf").read_text()
    assert (tree / ".config").stat().st_mtime_ns >= (tree / "include/config/auto.conf").stat().st_mtime_ns
    assert trees.make(tree, "kernelrelease") == "6.1.0-56-amd64\n"
    assert not plan(str(tree), "6.1.0-56-amd64").changed


def test_config_localversion_the_target_ends_with_is_kept(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True, numbers=(6, 1, 0))
    (tree / "Makefile").write_text(trees.MAKEFILE_6_1.replace("SUBLEVEL = 192", "SUBLEVEL = 0"))
    trees.set_config(tree, localversion="-amd64")
    result = align(str(tree), "6.1.0-56-amd64")[0]
    assert result.mode == "makefile" and "EXTRAVERSION = -56\n" in (tree / "Makefile").read_text()
    assert ".config" not in changed_paths(result)
    assert trees.make(tree, "kernelrelease") == "6.1.0-56-amd64\n"


def test_header_mode_keeps_a_config_localversion_the_target_ends_with(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    trees.set_config(tree, localversion="-amd64")
    result = align(str(tree), "6.1.0-56-amd64")[0]
    assert result.mode == "header" and ".config" not in changed_paths(result)
    makefile = (tree / "Makefile").read_text()
    assert "override KERNELRELEASE = 6.1.0-56-amd64\n" in makefile
    assert "override KERNELVERSION = 6.1.0-56\n" in makefile
    assert trees.make(tree, "kernelrelease") == "6.1.0-56-amd64\n"
    after = trees.snapshot(tree)
    trees.make(tree, "prepare")
    assert trees.snapshot(tree) == after
    parts = read_release(str(tree))
    assert (parts.release, parts.kernelversion, parts.config_localversion) == ("6.1.0-56-amd64", "6.1.0-56", "-amd64")
    assert parts.override == "6.1.0-56-amd64" and parts.version_code == 393664


def test_read_release_names_the_parts(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    (tree / "localversion-a").write_text("-a\n")
    trees.set_config(tree, localversion="-c")
    parts = read_release(str(tree))
    assert (parts.release, parts.make_release, parts.file_localversion) == ("6.1.192-a-c", "6.1.192-a-c", "-a")
    assert parts.numbers == ("6", "1", "192") and parts.override is None and parts.scm == ""
    with pytest.raises(ReleaseError, match="not a directory"):
        read_release(str(tree / "Makefile"))


def test_quoted_auto_conf_of_older_kernels_stays_quoted(tmp_path):
    tree = trees.tree_2_6_18(tmp_path)
    for rel in (".config", "include/config/auto.conf"):
        path = tree / rel
        path.write_text(path.read_text().replace('CONFIG_LOCALVERSION=""', 'CONFIG_LOCALVERSION="-x"'))
    assert plan(str(tree), "2.6.18-prep").release_before == "2.6.18-prep-x"
    align(str(tree), "2.6.18-prep")
    assert 'CONFIG_LOCALVERSION=""\n' in (tree / "include/config/auto.conf").read_text()


@needs_git
def test_dirty_git_tree_gets_no_plus(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    trees.git_init(tree, tag="v6.1.192")
    assert trees.make(tree, "kernelrelease") == "6.1.192\n"
    assert not plan(str(tree), "6.1.192").changed  # clean, at the tag: nothing to do

    (tree / "init/version.c").write_text("/* changed */\n")
    assert trees.make(tree, "kernelrelease") == "6.1.192+\n"
    result = align(str(tree), "6.1.192")[0]
    assert result.release_before == "6.1.192+" and changed_paths(result) == ["Makefile"]
    assert "export LOCALVERSION ?=\n" in (tree / "Makefile").read_text()
    assert "override KERNELRELEASE" not in (tree / "Makefile").read_text()
    assert trees.make(tree, "kernelrelease") == "6.1.192\n"
    assert not plan(str(tree), "6.1.192").changed


@needs_git
def test_clean_git_tree_made_dirty_by_the_edit_itself(tmp_path):
    tree = trees.tree_2_6_5(tmp_path)
    (tree / "scripts").mkdir()
    (tree / "scripts/setlocalversion").write_text(trees.SETLOCALVERSION_6_1)
    trees.git_init(tree, tag="v2.6.5")
    result = align(str(tree), "2.6.5-1.358")[0]
    assert "export LOCALVERSION ?=" in (tree / "Makefile").read_text()
    assert trees.git(tree, "status", "--porcelain", "-uno").strip()
    assert not plan(str(tree), "2.6.5-1.358").changed
    assert result.release_after == "2.6.5-1.358"


@needs_git
def test_localversion_auto_is_switched_off(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    trees.set_config(tree, auto=True)
    trees.git_init(tree)
    head = trees.git(tree, "rev-parse", "HEAD").strip()
    assert trees.make(tree, "kernelrelease") == f"6.1.192-g{head[:12]}\n"
    assert plan(str(tree), "6.1.192").release_before == f"6.1.192-g{head[:12]}"

    result = align(str(tree), "6.1.0-56-amd64")[0]

    assert "# CONFIG_LOCALVERSION_AUTO is not set\n" in (tree / ".config").read_text()
    assert "CONFIG_LOCALVERSION_AUTO" not in (tree / "include/config/auto.conf").read_text()
    assert trees.make(tree, "kernelrelease") == "6.1.0-56-amd64\n"
    assert not plan(str(tree), "6.1.0-56-amd64").changed
    assert result.release_after == "6.1.0-56-amd64"


def test_scmversion_file_counts_as_the_scm_part(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    (tree / ".scmversion").write_text("-g0123456789ab\n")
    assert trees.make(tree, "kernelrelease") == "6.1.192+\n"
    assert plan(str(tree), "6.1.192").release_before == "6.1.192+"
    align(str(tree), "6.1.192")
    assert trees.make(tree, "kernelrelease") == "6.1.192\n"


# --- trees it cannot work with -----------------------------------------------------------------

@pytest.mark.parametrize("files, message", [
    ({}, r"Makefile does not exist"),
    ({"Makefile": "all:\n\techo hi\n"}, "has no VERSION, PATCHLEVEL, SUBLEVEL, EXTRAVERSION line"),
    ({"Makefile": "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 1\n"}, "has no EXTRAVERSION line"),
    ({"Makefile": "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 1\nEXTRAVERSION = $(shell date)\n"},
     "computed by make"),
    ({"Makefile": "VERSION = six\nPATCHLEVEL = 1\nSUBLEVEL = 1\nEXTRAVERSION =\n"}, "is not a number"),
    ({"Makefile": "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 1\nEXTRAVERSION =\n"
                  "override KERNELRELEASE = 6.1.0-1-amd64\n"}, "line 5 sets 'override KERNELRELEASE'"),
    ({"Makefile": f"VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 1\nEXTRAVERSION =\n{_release.BLOCK_BEGIN}\n"},
     "is damaged"),
    ({"Makefile": "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 1\nEXTRAVERSION =\n",
      "include/generated/utsrelease.h": "/* empty */\n"}, "has no '#define UTS_RELEASE' line"),
])
def test_trees_it_cannot_understand_fail_and_stay_as_they_are(tmp_path, files, message):
    trees.write(tmp_path, files)
    before = trees.snapshot(tmp_path)
    with pytest.raises(ReleaseError, match=message):
        align(str(tmp_path), "6.1.0-56-amd64")
    assert trees.snapshot(tmp_path) == before


def test_path_must_be_a_directory(tmp_path):
    with pytest.raises(ReleaseError, match="does not exist"):
        plan(str(tmp_path / "nope"), "6.1.0")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReleaseError, match="is not a directory"):
        plan(str(tmp_path / "file"), "6.1.0")
    with pytest.raises(ReleaseError, match="mode 'kernel' is not one of"):
        plan(str(tmp_path), "6.1.0", mode="kernel")


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    trees.tree_2_6_5(tmp_path)
    real_open = open

    def guarded(path, *args, **kwargs):
        if str(path).endswith("include/linux/version.h"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)
    with pytest.raises(ReleaseError, match=r"cannot read .*include/linux/version.h: Permission denied"):
        plan(str(tmp_path), "2.6.5-1.358")


def test_read_only_tree_fails_before_any_write(tmp_path, monkeypatch):
    tree = trees.tree_2_6_5(tmp_path)
    before = trees.snapshot(tree)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).endswith("linux")
                        else real_access(path, mode))
    with pytest.raises(ReleaseError, match=r"cannot write in .*include/linux .*nothing was changed"):
        align(str(tree), "2.6.5-1.358")
    assert trees.snapshot(tree) == before
    # a tree that needs nothing may be read-only
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ReleaseError):
        plan(str(tree), "2.6.5-1.358")
    assert not plan(str(tree), "2.6.5-1.358custom").changed


def test_a_failed_write_says_what_was_written(tmp_path, monkeypatch):
    tree = trees.tree_2_6_5(tmp_path)
    result = plan(str(tree), "2.6.5-1.358")
    calls = []

    def flaky(path, data, mode=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        with open(path, "wb") as handle:
            handle.write(data)

    monkeypatch.setattr(_release, "write_atomic", flaky)
    with pytest.raises(ReleaseError, match=r"version.h failed: No space left on device; already written: .*Makefile"):
        apply(result)


def test_writes_wait_for_the_tree_lock(tmp_path):
    tree = trees.tree_2_6_5(tmp_path)

    ready, done = multiprocessing.Event(), multiprocessing.Event()

    def hold():
        with tree_lock(str(tree)):
            ready.set()
            done.wait(10)

    holder = multiprocessing.Process(target=hold)
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockTimeout):
            align(str(tree), "2.6.5-1.358", lock_timeout=0.3)
        # check mode and a tree that needs nothing do not wait
        assert align(str(tree), "2.6.5-1.358", check_mode=True, lock_timeout=0.3)[0].changed
        assert not align(str(tree), "2.6.5-1.358custom", lock_timeout=0.3)[0].changed
    finally:
        done.set()
        holder.join(10)
    assert align(str(tree), "2.6.5-1.358")[0].changed
