from __future__ import annotations

import json
import os

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _symvers_stamp as stamp
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers_sources import (
    SourceError, resolve_source)
from tests.support.fake_kernel import RELEASE, Exp, add_headers, fake_module, fake_root

VMLINUX = [Exp("printk", 0x11111111)]
MODULES = {"fs/mbcache": ([Exp("mb_cache_create", 0x44444444)], [("printk", 0x11111111)]),
           "fs/ext4": ([], [("mb_cache_create", 0x44444444)])}
RESULT = {"source": "recover", "path": "/boot/vmlinuz", "symbols": 2, "conflicts": [],
          "modules_checked": 2, "recovery": {"compression": "xz"}}


@pytest.fixture
def root(tmp_path):
    return fake_root(tmp_path / "root", VMLINUX, MODULES)


@pytest.fixture
def dest(tmp_path):
    path = tmp_path / "tree" / "Module.symvers"
    path.parent.mkdir()
    path.write_text("0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    return str(path)


def now(root, source="recover", release=RELEASE):
    return stamp.inputs(*resolve_source(source, root, release), root, release)


def test_stamp_lives_next_to_dest_named_after_it(tmp_path):
    assert stamp.stamp_path(str(tmp_path / "t" / "Module.symvers")) == \
        str(tmp_path / "t" / ".vermagic-kmod.Module.symvers.fingerprint")


def test_recorded_result_comes_back_when_nothing_changed(root, dest):
    inputs = now(root)
    assert stamp.recorded(dest, inputs) == (
        None, [f"no stamp of an earlier run ({stamp.stamp_path(dest)})"])
    stamp.record(dest, inputs, dict(RESULT, changed=True, dest=dest, diff={"after": "…"}))
    result, reasons = stamp.recorded(dest, now(root))
    assert reasons == [] and result == RESULT  # only the result's own keys are kept
    stored = json.loads(open(stamp.stamp_path(dest)).read())
    assert set(stored["components"]) == {"request", "source", "modules"}
    assert list(stored["outputs"]) == ["Module.symvers"]
    assert stored["notes"]["modules"] == "2 modules"


def _touch(path, ns=10**9):
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + ns))


def _replace_same_bytes(path):  # what a package update does: a new file renamed over the old
    data = open(path, "rb").read()
    os.rename(path, path + ".old")
    with open(path, "wb") as handle:
        handle.write(data)
    os.utime(path, ns=(os.stat(path + ".old").st_atime_ns, os.stat(path + ".old").st_mtime_ns))


def _mods(root):
    return os.path.join(root, "lib", "modules", RELEASE)


CHANGES = {
    "image touched": (lambda r: _touch(os.path.join(r, "boot", f"vmlinuz-{RELEASE}")),
                      "the source file changed"),
    "image replaced, same bytes and mtime": (
        lambda r: _replace_same_bytes(os.path.join(r, "boot", f"vmlinuz-{RELEASE}")),
        "the source file changed"),
    "module touched": (lambda r: _touch(os.path.join(_mods(r), "kernel/fs/ext4.ko")),
                       "the in-tree modules changed"),
    "module grew": (lambda r: open(os.path.join(_mods(r), "kernel/fs/ext4.ko"), "ab").write(b"\0"),
                    "the in-tree modules changed"),
    "module replaced": (lambda r: _replace_same_bytes(os.path.join(_mods(r), "kernel/fs/ext4.ko")),
                        "the in-tree modules changed"),
    "module added": (lambda r: open(os.path.join(_mods(r), "kernel/fs/fat.ko"), "wb").write(
        fake_module([Exp("fat_time", 0x5)], [])),
        "the in-tree modules changed: '2 modules' -> '3 modules'"),
    "module removed": (lambda r: os.unlink(os.path.join(_mods(r), "kernel/fs/ext4.ko")),
                       "the in-tree modules changed: '2 modules' -> '1 modules'"),
    "modules reordered": (lambda r: open(os.path.join(_mods(r), "modules.order"), "w").write(
        "kernel/fs/ext4.ko\nkernel/fs/mbcache.ko\n"), "the in-tree modules changed"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_input_change_is_a_miss(root, dest, change):
    stamp.record(dest, now(root), RESULT)
    action, reason = CHANGES[change]
    action(root)
    result, reasons = stamp.recorded(dest, now(root))
    assert result is None and reasons == [reason]


def test_another_source_release_or_root_is_a_miss(root, dest, tmp_path):
    stamp.record(dest, now(root), RESULT)
    headers = add_headers(root, "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    assert stamp.recorded(dest, now(root, "auto"))[1] == [
        f"the source file changed: 'recover {root}/boot/vmlinuz-{RELEASE}' -> 'headers {headers}'"]
    stamp.record(dest, now(root, "auto"), dict(RESULT, source="headers"))
    assert stamp.recorded(dest, now(root, "headers"))[1] == []
    _touch(headers)
    assert stamp.recorded(dest, now(root, "headers"))[1] == ["the source file changed"]

    other = fake_root(tmp_path / "other", VMLINUX, MODULES, release="6.1.0-98-test")
    reasons = stamp.recorded(dest, now(other, release="6.1.0-98-test"))[1]
    assert ("the release or root asked for changed: "
            f"'{RELEASE} under {root}' -> '6.1.0-98-test under {other}'") in reasons


def test_dest_edited_or_removed_is_a_miss(root, dest):
    stamp.record(dest, now(root), RESULT)
    with open(dest, "a") as handle:
        handle.write("0x22222222\tmine\tvmlinux\tEXPORT_SYMBOL\t\n")
    assert stamp.recorded(dest, now(root)) == (None, ["Module.symvers was replaced since"])
    os.unlink(dest)
    assert stamp.recorded(dest, now(root)) == (None, ["Module.symvers is missing"])


@pytest.mark.parametrize("text, reason", [
    ("not json", "no stamp of an earlier run"),
    (json.dumps({"format": 99, "components": {}}), "no stamp of an earlier run"),
])
def test_damaged_stamp_is_a_miss(root, dest, text, reason):
    with open(stamp.stamp_path(dest), "w") as handle:
        handle.write(text)
    result, reasons = stamp.recorded(dest, now(root))
    assert result is None and reasons[0].startswith(reason)


def test_stamp_without_result_or_file_is_a_miss(root, dest):
    stamp.record(dest, now(root), {"symbols": 2})
    assert stamp.recorded(dest, now(root)) == (None, ["the stamp records no result"])
    path = stamp.stamp_path(dest)
    stored = json.loads(open(path).read())
    stored["outputs"] = {}
    stored["data"] = RESULT
    with open(path, "w") as handle:
        handle.write(json.dumps(stored))
    assert stamp.recorded(dest, now(root)) == (None, ["the stamp records no file"])


def test_unreadable_stamp_is_a_miss(root, dest):
    os.mkdir(stamp.stamp_path(dest))  # reading it raises IsADirectoryError
    assert stamp.recorded(dest, now(root))[0] is None


def test_module_that_cannot_be_stated_says_which(root):
    inputs = now(root)
    link = os.path.join(_mods(root), "kernel", "fs", "broken.ko")
    os.symlink("/nonexistent/broken.ko", link)
    with pytest.raises(SourceError, match=f"cannot stat {link}: No such file"):
        now(root)
    assert inputs.components["modules"]
