from __future__ import annotations

import os
import struct

from ansible_collections.vermagic.kmod.plugins.module_utils._sysfs import (
    module_name, read_build_id, read_loaded, read_proc_modules)
from tests.support.fake_ko import build_id_note


def fake_module(root, name, *, initstate="live", refcnt="0", holders=(), srcversion=None,
                build_id=None, params=None, unreadable=()):
    base = root / name
    (base / "holders").mkdir(parents=True)
    (base / "parameters").mkdir()
    if initstate is not None:
        (base / "initstate").write_text(initstate + "\n")
        (base / "refcnt").write_text(refcnt + "\n")
        (base / "taint").write_text("OE\n")
        (base / "coresize").write_text("16384\n")
    for holder in holders:
        (base / "holders" / holder).mkdir()
    if srcversion:
        (base / "srcversion").write_text(srcversion + "\n")
    if build_id:
        (base / "notes").mkdir()
        notes = struct.pack("<III", 6, 4, 0x100) + b"Linux\0\0\0" + b"\0\0\0\0"  # another note first
        (base / "notes" / ".note.gnu.build-id").write_bytes(notes + build_id_note(build_id))
    for key, value in (params or {}).items():
        (base / "parameters" / key).write_text(value + "\n")
    for key in unreadable:
        (base / "parameters" / key).mkdir()  # reading it fails like a write-only attribute
    return base


def test_loaded_module_is_read_with_identity_and_params(tmp_path):
    fake_module(tmp_path, "hello", srcversion="ABC", build_id=bytes.fromhex("00ff" * 10),
                params={"greeting": "hi", "repeat": "2"}, unreadable=("secret",))
    mod = read_loaded("hello", str(tmp_path))
    assert mod.state == "live" and not mod.builtin
    assert mod.srcversion == "ABC"
    assert mod.build_id == "00ff" * 10
    assert mod.params == {"greeting": "hi", "repeat": "2", "secret": None}
    assert mod.refcnt == 0 and mod.holders == [] and mod.taint == "OE" and mod.coresize == 16384
    assert mod.in_use() is None
    assert mod.as_dict()["params"] == {"greeting": "hi", "repeat": "2", "secret": None}


def test_dashes_are_underscores_and_absent_is_none(tmp_path):
    fake_module(tmp_path, "snd_hda_intel")
    assert read_loaded("snd-hda-intel", str(tmp_path)).name == "snd_hda_intel"
    assert module_name("a-b-c") == "a_b_c"
    assert read_loaded("nope", str(tmp_path)) is None


def test_in_use_says_why(tmp_path):
    fake_module(tmp_path, "a", holders=("b", "c"), refcnt="2")
    fake_module(tmp_path, "d", refcnt="1")
    fake_module(tmp_path, "e", initstate="going")
    fake_module(tmp_path, "f", initstate=None)
    assert "in use by b, c" in read_loaded("a", str(tmp_path)).in_use()
    assert "reference count 1" in read_loaded("d", str(tmp_path)).in_use()
    assert "going" in read_loaded("e", str(tmp_path)).in_use()
    builtin = read_loaded("f", str(tmp_path))
    assert builtin.builtin and "built into the kernel" in builtin.in_use()


def test_builtin_modules_of_this_machine_read_as_builtin():
    # this machine's kernel has no loadable modules; every /sys/module entry is built in
    names = sorted(os.listdir("/sys/module"))
    assert names
    for name in names[:20]:
        mod = read_loaded(name)
        if not os.path.exists(f"/sys/module/{name}/initstate"):
            assert mod.builtin and mod.refcnt is None


def test_build_id_from_the_notes_file(tmp_path):
    base = fake_module(tmp_path, "hello", build_id=bytes(range(20)))
    assert read_build_id(str(base)) == bytes(range(20)).hex()
    (base / "notes" / ".note.gnu.build-id").write_bytes(b"")  # no note in it
    assert read_build_id(str(base)) is None
    assert read_build_id(str(fake_module(tmp_path, "bare"))) is None  # no notes directory


def test_proc_modules(tmp_path):
    proc = tmp_path / "modules"
    proc.write_text("hello 16384 0 - Live 0xffffffffc0a00000 (OE)\n"
                    "fat 86016 1 vfat, Live 0xffffffffc0900000\n"
                    "broken line\n")
    table = read_proc_modules(str(proc))
    assert table["hello"].taint == "OE" and table["hello"].deps == ()
    assert table["fat"].refcnt == 1 and table["fat"].deps == ("vfat",) and table["fat"].state == "Live"
    assert read_proc_modules(str(tmp_path / "missing")) == {}
