from __future__ import annotations

import os

from ansible_collections.vermagic.kmod.plugins.modules.kernel_release import main
from tests.support import release_trees as trees
from tests.support.module_runner import run_module


def test_changed_then_unchanged_then_check_mode(tmp_path):
    tree = trees.tree_2_6_5(tmp_path)
    args = {"path": str(tree), "release": "2.6.5-1.358"}

    preview = run_module(main, args, check_mode=True, diff=True)
    assert preview["changed"] and not preview["failed"]
    assert preview["files"] == [str(tree / "Makefile"), str(tree / "include/linux/version.h")]
    assert trees.make(tree, "kernelrelease") == "2.6.5-1.358custom\n"

    done = run_module(main, args)
    assert done["changed"]
    assert (done["release_before"], done["release_after"]) == ("2.6.5-1.358custom", "2.6.5-1.358")
    assert done["mode"] == "makefile"
    assert done["uts_release_before"] == "2.6.5-1.358custom"
    assert done["version_code"] == done["version_code_before"] == 132613
    assert done["files"] == preview["files"] and done["diff"] == preview["diff"]
    assert done["changes"][0] == {"path": str(tree / "Makefile"), "why": "makefile mode: EXTRAVERSION = -1.358"}
    assert done["backup_files"] == []
    assert trees.make(tree, "kernelrelease") == "2.6.5-1.358\n"

    again = run_module(main, args)
    assert not again["changed"] and again["files"] == [] and again["diff"] == []
    assert again["release_before"] == again["release_after"] == "2.6.5-1.358"
    assert not run_module(main, args, check_mode=True)["changed"]


def test_diff_is_ansibles_before_after_per_file(tmp_path):
    tree = trees.tree_6_1(tmp_path, prepared=True)
    result = run_module(main, {"path": str(tree), "release": "6.1.0-56-amd64"}, check_mode=True, diff=True)
    assert [d["before_header"] for d in result["diff"]] == result["files"]
    utsrelease = result["diff"][-1]
    assert utsrelease["before"] == '#define UTS_RELEASE "6.1.192"\n'
    assert utsrelease["after"] == '#define UTS_RELEASE "6.1.0-56-amd64"\n'
    assert result["mode"] == "header" and result["version_code"] == 393664


def test_backup(tmp_path):
    tree = trees.tree_2_6_5(tmp_path)
    makefile = (tree / "Makefile").read_bytes()
    result = run_module(main, {"path": str(tree), "release": "2.6.5-1.358", "backup": True})
    assert len(result["backup_files"]) == 2
    assert open(result["backup_files"][0], "rb").read() == makefile
    assert all(os.path.dirname(b) in (str(tree), str(tree / "include/linux")) for b in result["backup_files"])


def test_failures_say_what_is_wrong(tmp_path):
    tree = trees.tree_2_6_5(tmp_path / "tree")
    before = trees.snapshot(tree)
    cases = [
        ({"path": str(tmp_path / "none"), "release": "2.6.5"}, "does not exist"),
        ({"path": str(tree / "Makefile"), "release": "2.6.5"}, "is not a directory"),
        ({"path": str(tmp_path), "release": "2.6.5"}, "Makefile does not exist"),
        ({"path": str(tree), "release": "2.6.5 -1"}, "whitespace"),
        ({"path": str(tree), "release": "2.6.5-" + "x" * 70}, "at most 64"),
        ({"path": str(tree), "release": "2.6.5", "mode": "kernel"}, "value of mode must be one of"),
    ]
    for args, message in cases:
        result = run_module(main, args)
        assert result["failed"] and message in result["msg"], (args, result["msg"])
    assert trees.snapshot(tree) == before
