from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._persist import (
    MARK, Layout, PersistError, apply, plan_absent, plan_present, sha256)

KO = b"\x7fELF module v1"


@pytest.fixture
def layout(tmp_path):
    return Layout("6.1.0-56-amd64", str(tmp_path / "lib/modules"), str(tmp_path / "modules-load.d"),
                  str(tmp_path / "modprobe.d"), str(tmp_path / "state/persist"))


def files(layout):
    paths = (layout.ko("hello"), layout.load_conf("hello"), layout.options_conf("hello"))
    return {p: Path(p).read_bytes() for p in paths if os.path.exists(p)}


def test_present_writes_three_files_then_nothing(layout):
    plan = plan_present(layout, "hello", "greeting=hi repeat=2", KO)
    assert plan.changed and plan.needs_depmod
    assert [c.what for c in plan.changes] == ["create", "create", "create"]
    diffs = plan.diffs()
    assert diffs[0]["after"] == f"sha256:{sha256(KO)} ({len(KO)} bytes)\n"
    assert diffs[2]["after"].endswith("options hello greeting=hi repeat=2\n")
    apply(layout, plan)
    got = files(layout)
    assert got[layout.ko("hello")] == KO
    assert got[layout.load_conf("hello")].decode().splitlines()[-1] == "hello"
    assert got[layout.load_conf("hello")].startswith(MARK.encode())
    manifest = json.loads(open(layout.manifest("hello")).read())
    assert manifest == {"files": {layout.ko("hello"): sha256(KO)}}

    again = plan_present(layout, "hello", "greeting=hi repeat=2", KO)
    assert not again.changed and not again.needs_depmod and again.diffs() == []
    assert [c["action"] for c in again.as_dict()["files"]] == ["none", "none", "none"]


def test_changes_update_only_what_differs(layout):
    apply(layout, plan_present(layout, "hello", "repeat=2", KO))
    plan = plan_present(layout, "hello", "repeat=3", KO)
    assert [c.path for c in plan.changes if c.changed] == [layout.options_conf("hello")]
    assert not plan.needs_depmod
    apply(layout, plan)
    new = plan_present(layout, "hello", "", KO + b"v2")
    assert {c.path: c.what for c in new.changes if c.changed} == {
        layout.ko("hello"): "update", layout.options_conf("hello"): "remove"}
    apply(layout, new)
    assert layout.options_conf("hello") not in files(layout)
    assert json.loads(open(layout.manifest("hello")).read())["files"][layout.ko("hello")] == \
        sha256(KO + b"v2")


def test_by_name_leaves_the_module_file_alone(layout):
    plan = plan_present(layout, "loop", "max_loop=16", None)
    assert [c.path for c in plan.changes] == [layout.load_conf("loop"), layout.options_conf("loop")]
    assert not plan.needs_depmod


def test_foreign_files_are_never_overwritten(layout, tmp_path):
    conf = tmp_path / "modprobe.d" / "hello.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("options hello greeting=admin\n")
    with pytest.raises(PersistError, match="not made by vermagic.kmod"):
        plan_present(layout, "hello", "greeting=hi", KO)
    ko = tmp_path / "lib/modules/6.1.0-56-amd64/updates/hello.ko"
    ko.parent.mkdir(parents=True)
    ko.write_bytes(b"someone else's")
    conf.unlink()
    with pytest.raises(PersistError, match="another tool manages it"):
        plan_present(layout, "hello", "", KO)


def test_absent_removes_only_ours(layout, tmp_path):
    apply(layout, plan_present(layout, "hello", "repeat=2", KO))
    (tmp_path / "modules-load.d" / "hello.conf").write_text("hello\n")  # replaced by an admin
    plan = plan_absent(layout, "hello")
    assert {c.path for c in plan.changes if c.changed} == {layout.ko("hello"),
                                                           layout.options_conf("hello")}
    assert plan.needs_depmod
    assert any("not made by vermagic.kmod" in s for s in plan.skipped)
    apply(layout, plan)
    assert files(layout) == {layout.load_conf("hello"): b"hello\n"}
    assert not (tmp_path / "state/persist/hello.json").exists()
    again = plan_absent(layout, "hello")
    assert not again.changed


def test_a_changed_module_file_is_not_removed(layout):
    apply(layout, plan_present(layout, "hello", "", KO))
    with open(layout.ko("hello"), "wb") as handle:
        handle.write(b"rebuilt by hand")
    plan = plan_absent(layout, "hello")
    assert not any(c.binary and c.changed for c in plan.changes)
    assert any("left alone" in s for s in plan.skipped)


def test_unreadable_places_say_so(layout, tmp_path):
    (tmp_path / "modules-load.d" / "hello.conf").mkdir(parents=True)
    with pytest.raises(PersistError, match="is a directory"):
        plan_present(layout, "hello", "", None)
    (tmp_path / "state/persist").mkdir(parents=True)
    (tmp_path / "state/persist/x.json").write_text("not json")
    updates = tmp_path / "lib/modules/6.1.0-56-amd64/updates"
    updates.mkdir(parents=True)
    (updates / "x.ko").write_bytes(b"x")
    with pytest.raises(PersistError, match="not a manifest"):
        plan_absent(layout, "x")
