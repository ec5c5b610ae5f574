from __future__ import annotations

import os
import threading
import time

import pytest
from ansible.module_utils.common import warnings

from ansible_collections.vermagic.kmod.plugins.module_utils import _symvers_sources
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import tree_lock
from ansible_collections.vermagic.kmod.plugins.modules import symvers
from tests.support.fake_kernel import RELEASE, Exp, add_headers, fake_module, fake_root
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
    assert not first["cached"] and first["reasons"][0].startswith("no stamp of an earlier run")
    # The file and its stamp; the lock is the tree's, outside the tree.
    assert sorted(os.listdir(dest)) == [".vermagic-kmod.Module.symvers.fingerprint", "Module.symvers"]

    again = run(dest=str(dest / "Module.symvers"), root=root, release=RELEASE, diff=True)
    assert not again["changed"] and "diff" not in again
    assert again["source"] == "recover"  # auto: no headers, no /boot symvers
    assert again["cached"] and again["reasons"] == []
    assert _result(again) == _result(first)

    other = tmp_path / "other.symvers"
    checked = run(check_mode=True, dest=str(other), root=root, release=RELEASE)
    assert checked["changed"] and checked["symbols"] == 3 and not checked["cached"]
    assert sorted(os.listdir(tmp_path)) == ["root", "tree"]  # neither file nor stamp


def _result(result):
    """What a run says of the table, apart from what it did this time."""
    return {k: v for k, v in result.items() if k not in ("changed", "cached", "reasons", "changes", "diff")}


class Readers:
    """The readers of the kernel image, the in-tree modules and a Module.symvers file, counted;
    ``fail=True`` makes any read an error."""

    def __init__(self, monkeypatch, fail=False):
        self.calls: list[str] = []
        for name in ("read_module", "read_vmlinux", "read_text"):
            real = getattr(_symvers_sources, name)

            def reader(path, *args, _name=name, _real=real, **kwargs):
                self.calls.append(_name)
                if fail:
                    raise AssertionError(f"{_name}({path}) on a rerun that should read nothing")
                return _real(path, *args, **kwargs)
            monkeypatch.setattr(_symvers_sources, name, reader)


@pytest.mark.parametrize("source", ["recover", "headers"])
def test_a_stamp_hit_reads_nothing_even_in_check_mode(root, tmp_path, monkeypatch, source):
    add_headers(root, "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    args = dict(dest=str(tmp_path / "M"), root=root, release=RELEASE, source=source)
    first = run(**args)
    assert first["changed"] and not first["failed"]
    Readers(monkeypatch, fail=True)
    for check_mode in (False, True):
        again = run(check_mode=check_mode, diff=True, **args)
        assert not again["changed"] and again["cached"] and not again["failed"]
        assert _result(again) == _result(first)
        assert again["changes"] == {"added": 0, "removed": 0, "changed": 0}


def _touch(path):
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))


def _mods(root):
    return os.path.join(root, "lib", "modules", RELEASE)


INPUT_CHANGES = {
    "image updated": (lambda r: _touch(os.path.join(r, "boot", f"vmlinuz-{RELEASE}")),
                      ["read_vmlinux", "read_module", "read_module"]),
    "module updated": (lambda r: _touch(os.path.join(_mods(r), "kernel/fs/mbcache.ko")),
                       ["read_vmlinux", "read_module", "read_module"]),
    "module added": (lambda r: open(os.path.join(_mods(r), "kernel/fs/fat.ko"), "wb").write(
        fake_module([Exp("fat_time", 0x5)], [])), ["read_vmlinux"] + ["read_module"] * 3),
    "module removed": (lambda r: os.unlink(os.path.join(_mods(r), "kernel/fs/ext4.ko")),
                       ["read_vmlinux", "read_module"]),
    "headers installed": (lambda r: add_headers(r, "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"),
                          ["read_text", "read_module", "read_module"]),
}


@pytest.mark.parametrize("change", list(INPUT_CHANGES))
def test_any_input_change_is_a_full_run(tmp_path, monkeypatch, change):
    modules = dict(MODULES, **{"fs/ext4": ([], [("mb_cache_create", 0x44444444)])})
    root = fake_root(tmp_path / "root", VMLINUX, modules)
    args = dict(dest=str(tmp_path / "M"), root=root, release=RELEASE)
    assert run(**args)["changed"]
    action, reads = INPUT_CHANGES[change]
    action(root)
    readers = Readers(monkeypatch)
    again = run(**args)
    assert not again["cached"] and again["reasons"]
    assert readers.calls == reads  # the source and every module read again
    assert run(**args)["cached"]  # and stamped again


def test_dest_edited_by_hand_is_rewritten(root, tmp_path):
    dest = tmp_path / "Module.symvers"
    first = run(dest=str(dest), root=root, release=RELEASE)
    written = dest.read_text()
    dest.write_text(written.replace("0x11111111", "0x0000beef"))
    again = run(dest=str(dest), root=root, release=RELEASE)
    assert again["changed"] and not again["cached"]
    assert again["reasons"] == ["Module.symvers was replaced since"]
    assert again["changes"] == {"added": 0, "removed": 0, "changed": 1}
    assert dest.read_text() == written and _result(again) == _result(first)
    dest.unlink()
    assert run(dest=str(dest), root=root, release=RELEASE)["reasons"] == ["Module.symvers is missing"]
    assert dest.read_text() == written


def test_check_mode_writes_no_stamp_even_when_dest_is_right(root, tmp_path):
    dest = tmp_path / "Module.symvers"
    run(dest=str(dest), root=root, release=RELEASE)
    stamp = tmp_path / ".vermagic-kmod.Module.symvers.fingerprint"
    stamp.unlink()
    checked = run(check_mode=True, dest=str(dest), root=root, release=RELEASE)
    assert not checked["changed"] and not checked["cached"] and not stamp.exists()
    again = run(dest=str(dest), root=root, release=RELEASE)  # a right file: only the stamp written
    assert not again["changed"] and not again["cached"] and stamp.exists()
    assert run(dest=str(dest), root=root, release=RELEASE)["cached"]


def _hold_tree_lock(tree, held, release):
    with tree_lock(tree, timeout=5):
        held.set()
        release.wait(10)


def test_the_write_waits_for_the_trees_lock(root, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_tree_lock, args=(str(tree), held, release))
    holder.start()
    try:
        assert held.wait(10)
        start = time.monotonic()
        failed = run(dest=str(tree), root=root, release=RELEASE, lock_timeout=1)
        assert time.monotonic() - start >= 1
        assert failed["failed"] and "is held by another run" in failed["msg"]
        assert "option lock_timeout" in failed["msg"]
        assert os.listdir(tree) == []  # nothing written without the lock, not even the stamp
        threading.Timer(1, release.set).start()
        start = time.monotonic()
        waited = run(dest=str(tree), root=root, release=RELEASE, lock_timeout=30)
        assert waited["changed"] and not waited["failed"] and time.monotonic() - start >= 0.5
    finally:
        release.set()
        holder.join(10)
    assert sorted(os.listdir(tree)) == [".vermagic-kmod.Module.symvers.fingerprint", "Module.symvers"]


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
