from __future__ import annotations

import gzip
import os

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._symvers_sources import (
    SourceError, find_sources, in_tree_modules, load, recover, resolve_in_root)
from tests.support.fake_kernel import RELEASE, Exp, add_headers, fake_root

VMLINUX = [Exp("printk", 0x11111111), Exp("module_layout", 0x22222222),
           Exp("kmalloc", 0x33333333, gpl=True)]
MODULES = {
    "fs/mbcache": ([Exp("mb_cache_create", 0x44444444)],
                   [("module_layout", 0x22222222), ("printk", 0x11111111)]),
    "drivers/gpu/drm/drm": ([Exp("drm_open", 0x55555555, gpl=True, namespace="DRM")],
                            [("module_layout", 0x22222222), ("kmalloc", 0x33333333)]),
    "drivers/gpu/drm/i915/i915": ([], [("drm_open", 0x55555555), ("mb_cache_create", 0x44444444)]),
}
# vmlinux in its tables' order (by name, EXPORT_SYMBOL first); the modules in modules.order.
EXPECTED = (
    "0x22222222\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"
    "0x33333333\tkmalloc\tvmlinux\tEXPORT_SYMBOL_GPL\t\n"
    "0x55555555\tdrm_open\tdrivers/gpu/drm/drm\tEXPORT_SYMBOL_GPL\tDRM\n"
    "0x44444444\tmb_cache_create\tfs/mbcache\tEXPORT_SYMBOL\t\n")
ORDER = ["drivers/gpu/drm/drm", "fs/mbcache", "drivers/gpu/drm/i915/i915"]


@pytest.fixture
def root(tmp_path):
    return fake_root(tmp_path / "root", VMLINUX, MODULES, order=ORDER)


def test_recovery_vmlinux_first_then_modules_in_modules_order(root):
    messages: list[str] = []
    result = recover(root, RELEASE, messages.append)
    assert result.text == EXPECTED
    assert (result.source, result.conflicts, result.modules_checked) == ("recover", [], 3)
    assert result.details["compression"] == "xz" and result.details["vmlinux_exports"] == 3
    assert messages[0].startswith("extracting vmlinux from ")
    assert messages[-1] == "modules scanned 3/3"


def test_conflicts_are_reported_not_chosen(tmp_path):
    modules = dict(MODULES)
    modules["drivers/stale"] = ([Exp("printk", 0x99999999)], [("kmalloc", 0x0BADC0DE)])
    root = fake_root(tmp_path, VMLINUX, modules)
    result = recover(root, RELEASE)
    assert result.symbols["printk"].crc == 0x11111111   # the first exporter, vmlinux, stays
    assert result.symbols["kmalloc"].crc == 0x33333333  # the exporter's CRC, not the importer's
    kinds = {(c["kind"], c["symbol"], c["module"], c["crc"], c["exporter"], c["exporter_crc"])
             for c in result.conflicts}
    assert kinds == {("duplicate", "printk", "drivers/stale", "0x99999999", "vmlinux", "0x11111111"),
                     ("crc", "kmalloc", "drivers/stale", "0x0badc0de", "vmlinux", "0x33333333")}
    assert any("disagrees about version of symbol kmalloc" in c["msg"] for c in result.conflicts)


def test_auto_prefers_headers_and_checks_modules_against_them(root):
    text = EXPECTED.replace("0x44444444\tmb_cache_create", "0x0000abcd\tmb_cache_create")
    path = add_headers(root, text)
    assert [s["source"] for s in find_sources(root, RELEASE)] == ["headers", "recover"]
    result = load("auto", root, RELEASE)
    assert (result.source, result.path, result.text) == ("headers", path, text)
    assert [(c["symbol"], c["module"]) for c in result.conflicts] == [
        ("mb_cache_create", "drivers/gpu/drm/i915/i915")]
    assert load("recover", root, RELEASE).source == "recover"


def test_boot_symvers_gz_is_written_as_it_is(root):
    old_layout = "0x11111111\tprintk\tvmlinux\tEXPORT_SYMBOL\n"  # a 4-field line (before 5.4)
    with gzip.open(os.path.join(root, "boot", f"symvers-{RELEASE}.gz"), "wt") as handle:
        handle.write(old_layout)
    assert [s["source"] for s in find_sources(root, RELEASE)] == ["boot", "recover"]
    result = load("auto", root, RELEASE, check=False)
    assert (result.source, result.text, list(result.symbols)) == ("boot", old_layout, ["printk"])


def test_missing_sources_say_what_to_do(tmp_path, root):
    with pytest.raises(SourceError, match=f"no headers package Module.symvers for {RELEASE}.*"
                                          f"install linux-headers-{RELEASE}"):
        load("headers", root, RELEASE)
    with pytest.raises(SourceError, match="no /boot symvers file.*only the RHEL family"):
        load("boot", root, RELEASE)
    with pytest.raises(SourceError, match="no source of Module.symvers for 9.9.9"):
        load("auto", root, "9.9.9")
    os.remove(os.path.join(root, "boot", f"vmlinuz-{RELEASE}"))
    with pytest.raises(SourceError, match="no kernel image"):
        load("recover", root, RELEASE)
    empty = tmp_path / "empty"
    (empty / "boot").mkdir(parents=True)
    (empty / "boot" / f"vmlinuz-{RELEASE}").write_bytes(b"x")
    with pytest.raises(SourceError, match=f"no lib/modules/{RELEASE} with the in-tree modules"):
        load("recover", str(empty), RELEASE)
    with pytest.raises(SourceError, match="unknown source 'net'"):
        load("net", root, RELEASE)


def test_image_of_another_release(tmp_path):
    root = fake_root(tmp_path, VMLINUX, MODULES)
    os.rename(os.path.join(root, "boot", f"vmlinuz-{RELEASE}"),
              os.path.join(root, "boot", "vmlinuz-1.0"))
    os.rename(os.path.join(root, "lib", "modules", RELEASE), os.path.join(root, "lib", "modules", "1.0"))
    with pytest.raises(SourceError, match=f"is the kernel {RELEASE}, not 1.0"):
        recover(root, "1.0")


def test_damaged_image_and_module(root):
    image = os.path.join(root, "boot", f"vmlinuz-{RELEASE}")
    data = open(image, "rb").read()
    with open(image, "wb") as handle:
        handle.write(data[:len(data) // 2])
    with pytest.raises(SourceError, match="truncated"):
        recover(root, RELEASE)
    with open(image, "wb") as handle:
        handle.write(data)
    with open(os.path.join(root, "lib", "modules", RELEASE, "kernel", "fs", "mbcache.ko"), "wb") as h:
        h.write(b"not elf")
    with pytest.raises(SourceError, match="cannot read the in-tree module .*mbcache.ko"):
        recover(root, RELEASE)


def test_headers_file_that_is_not_symvers(root):
    add_headers(root, "this is not a symvers file\n")
    with pytest.raises(SourceError, match="the headers Module.symvers is unusable"):
        load("headers", root, RELEASE)


def test_in_tree_modules_order_unlisted_and_compressed(tmp_path):
    base = tmp_path / "lib" / "modules" / "1.0"
    for name in ("kernel/b.ko", "kernel/a/x.ko.xz", "kernel/c.ko.zst", "extra/out.ko"):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(b"")
    (base / "modules.order").write_text("kernel/c.ko\nkernel/gone.ko\nkernel/b.ko\n")
    assert [n for n, _p in in_tree_modules(str(tmp_path), "1.0")] == ["c", "b", "a/x"]
    assert in_tree_modules(str(tmp_path), "2.0") == []


def test_links_inside_the_root(tmp_path):
    (tmp_path / "usr" / "src" / "h").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    os.symlink("/usr/src/h", tmp_path / "lib" / "build")  # absolute: taken inside root
    os.symlink("loop", tmp_path / "lib" / "loop")
    assert resolve_in_root(str(tmp_path), "/lib/build/M") == str(tmp_path / "usr/src/h/M")
    with pytest.raises(SourceError, match="too many levels of symbolic links"):
        resolve_in_root(str(tmp_path), "/lib/loop/x")
