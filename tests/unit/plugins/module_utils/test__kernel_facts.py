from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _kernel_facts
from ansible_collections.vermagic.kmod.plugins.module_utils._kernel_facts import (
    KernelFactsError, ModuleReadError, ModuleView, ReaderUnavailable, RunningView, gather)
from tests.support.fakeroot import (
    RELEASE, UTS_VERSION, VERMAGIC, add_headers, add_modules, add_running, bzimage, config_with,
    make_root, write)

SCHEMA_KEYS = {"release", "version", "running", "root", "arch", "elf_machine", "elf_class",
               "vermagic", "vermagic_source", "vermagic_parsed", "config", "modversions",
               "compiler", "build_dir", "symvers", "module_compression", "sig_enforce",
               "lockdown", "taint", "missing"}


class FakeReader:
    """Stands in for the module reader: every file has ``vermagic`` unless listed as broken."""

    def __init__(self, vermagic: str | None = VERMAGIC, broken: tuple[str, ...] = (),
                 machine: str = "EM_X86_64", external: tuple[str, ...] = ()) -> None:
        self.vermagic, self.broken, self.machine = vermagic, broken, machine
        self.external = external
        self.read: list[str] = []

    def __call__(self, path: str) -> ModuleView:
        self.read.append(path)
        if any(path.endswith(b) for b in self.broken):
            raise ModuleReadError(f"{path} is not a kernel module: damaged")
        intree = not any(path.endswith(e) for e in self.external)
        return ModuleView(self.vermagic, 64, self.machine, intree)


class FakeHost(RunningView):
    """A running system whose root (with proc/ and sys/) is a temporary directory."""

    def compiler_version(self, path: str) -> str | None:
        return Path(path).read_text().strip() or None


def host(root: Path, release: str = "9.9.9-host", **kw) -> FakeHost:
    return FakeHost(release, "#1 SMP host", "x86_64", str(root), **kw)


def other_host(tmp_path: Path) -> FakeHost:
    """A running system elsewhere, so that roots under tmp_path are images."""
    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    return host(tmp_path / "elsewhere")


def facts_of(root: Path, release: str | None = None, view: RunningView | None = None,
             reader=None, tmp_path: Path | None = None) -> tuple[dict, list[str]]:
    view = view or other_host(tmp_path or root.parent)
    return gather(str(root), release, view=view, module_reader=reader or FakeReader())


def has(missing: list[str], *words: str) -> bool:
    return any(all(w in m for w in words) for m in missing)


# ---------------------------------------------------------------- bad input


def test_root_missing_or_not_a_directory(tmp_path):
    with pytest.raises(KernelFactsError, match="does not exist"):
        gather(str(tmp_path / "nope"))
    write(tmp_path / "file", "x")
    with pytest.raises(KernelFactsError, match="not a directory"):
        gather(str(tmp_path / "file"))
    with pytest.raises(KernelFactsError, match="root is empty"):
        gather("")


@pytest.mark.parametrize("release", ["", "..", "a/b", "6.1 x", "-rf"])
def test_bad_release(tmp_path, release):
    with pytest.raises(KernelFactsError, match="is not a kernel release"):
        gather(str(tmp_path), release)


def test_several_kernels_need_release(tmp_path):
    root = make_root(tmp_path / "root")
    make_root(root, "6.1.0-55-amd64", headers=False)
    with pytest.raises(KernelFactsError) as err:
        facts_of(root)
    message = str(err.value)
    assert "2 kernels" in message and "6.1.0-55-amd64" in message and RELEASE in message
    assert "give release" in message
    facts, _warnings = facts_of(root, "6.1.0-55-amd64")
    assert facts["release"] == "6.1.0-55-amd64"


def test_no_kernel_under_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KernelFactsError, match="no kernel found under .*give release"):
        facts_of(tmp_path / "empty")


# ---------------------------------------------------------------- an image


def test_image_complete(tmp_path):
    root = make_root(tmp_path / "root")
    reader = FakeReader()
    facts, warnings = facts_of(root, reader=reader)
    assert set(facts) == SCHEMA_KEYS
    assert facts["release"] == RELEASE and facts["running"] is False
    assert facts["version"] == UTS_VERSION
    assert facts["vermagic"] == VERMAGIC
    assert facts["vermagic_source"] == "kernel/lib/crc-itu-t.ko"  # the preferred one
    assert facts["vermagic_parsed"]["modversions"] is True
    assert (facts["arch"], facts["elf_machine"], facts["elf_class"]) == ("x86_64", "EM_X86_64", 64)
    assert facts["config"]["path"] == str(root / "boot" / f"config-{RELEASE}")
    assert facts["config"]["options"]["MODULE_SIG"] == "y"
    assert facts["modversions"] is True
    assert facts["compiler"]["name"] == "gcc-12" and facts["compiler"]["path"] is None
    tree = root / "usr/src" / f"linux-headers-{RELEASE}"
    assert facts["build_dir"] == {"path": str(tree), "exists": True, "usable": True,
                                  "reason": facts["build_dir"]["reason"]}
    assert facts["symvers"] == [{"source": "headers", "path": str(tree / "Module.symvers")}]
    assert facts["module_compression"] == "none"
    assert facts["sig_enforce"] is False and facts["lockdown"] == "none"
    assert facts["taint"] is None
    assert has(facts["missing"], "sig_enforce", "not running")
    assert has(facts["missing"], "lockdown", "not running")
    assert has(facts["missing"], "compiler", "gcc-12", "not installed")
    assert warnings == []
    assert len(reader.read) == 1


def test_release_from_bzimage_header_not_file_name(tmp_path):
    root = tmp_path / "root"
    write(root / "boot" / "vmlinuz-latest", bzimage("6.12.9-amd64"))
    facts, _warnings = facts_of(root)
    assert facts["release"] == "6.12.9-amd64"
    assert facts["version"] == UTS_VERSION
    assert has(facts["missing"], "no", "lib/modules")
    assert has(facts["missing"], "no kernel configuration")
    assert facts["vermagic"] is None


def test_image_with_absolute_symlinks_and_merged_usr(tmp_path):
    root = make_root(tmp_path / "root")
    # merge /lib into /usr/lib only now: writing through an absolute link would write to the host
    os.rename(root / "lib/modules", root / "usr/lib/modules")
    (root / "lib").rmdir()
    os.symlink("/usr/lib", root / "lib")  # absolute: on this host it would be the host's /usr/lib
    reader = FakeReader()
    facts, _warnings = facts_of(root, reader=reader)
    assert facts["vermagic"] == VERMAGIC
    assert facts["build_dir"]["usable"] is True
    assert facts["build_dir"]["path"] == str(root / "usr/src" / f"linux-headers-{RELEASE}")
    assert reader.read == [str(root / "usr/lib/modules" / RELEASE / "kernel/lib/crc-itu-t.ko")]


def test_module_and_config_disagree_module_wins(tmp_path):
    root = make_root(tmp_path / "root", config=config_with(MODVERSIONS=None))
    facts, warnings = facts_of(root)
    assert facts["vermagic"] == VERMAGIC and facts["vermagic_source"].startswith("kernel/")
    assert has(facts["missing"], "vermagic", "trusting the module",
               f"{RELEASE} SMP preempt mod_unload ")
    assert any("trusting the module" in w for w in warnings)
    assert facts["modversions"] is False  # the configuration's own word


def test_unreadable_modules_are_skipped_then_config(tmp_path):
    root = make_root(tmp_path / "root")
    reader = FakeReader(broken=("crc-itu-t.ko",))
    facts, _warnings = facts_of(root, reader=reader)
    assert facts["vermagic_source"] == "kernel/fs/fat/fat.ko"
    assert has(facts["missing"], "crc-itu-t.ko", "damaged")
    reader = FakeReader(broken=(".ko",))
    facts, _warnings = facts_of(root, reader=reader)
    assert facts["vermagic"] == VERMAGIC and facts["vermagic_source"] == "config"
    assert has(facts["missing"], "derived from the configuration")


def test_modules_saying_intree_are_preferred(tmp_path):
    root = make_root(tmp_path / "root")
    facts, warnings = facts_of(root, reader=FakeReader(external=("crc-itu-t.ko",)))
    assert facts["vermagic_source"] == "kernel/fs/fat/fat.ko" and warnings == []
    facts, warnings = facts_of(root, reader=FakeReader(external=(".ko",)))
    assert facts["vermagic_source"] == "kernel/lib/crc-itu-t.ko"
    assert any("no module read says intree=Y" in w for w in warnings)


def test_module_of_another_release_is_reported(tmp_path):
    root = make_root(tmp_path / "root")
    facts, warnings = facts_of(root, reader=FakeReader("6.1.0-55-amd64 SMP preempt mod_unload "
                                                       "modversions "))
    assert facts["vermagic"].startswith("6.1.0-55-amd64 ")
    assert any("whose release is not " + RELEASE in w for w in warnings)
    assert has(facts["missing"], "trusting the module")


def test_reader_unavailable_falls_back_to_config(tmp_path):
    root = make_root(tmp_path / "root")

    def no_reader(path: str) -> ModuleView:
        raise ReaderUnavailable("the module reader is not available: install pyelftools")

    facts, _warnings = facts_of(root, reader=no_reader)
    assert facts["vermagic_source"] == "config"
    assert has(facts["missing"], "pyelftools")


def test_no_modules_at_all_gives_config_vermagic(tmp_path):
    root = make_root(tmp_path / "root", modules=False, headers=False)
    facts, _warnings = facts_of(root)
    assert facts["vermagic"] == VERMAGIC and facts["vermagic_source"] == "config"
    assert has(facts["missing"], "no ", "lib/modules")
    assert facts["build_dir"]["exists"] is False
    assert facts["symvers"] == []
    assert has(facts["missing"], "no Module.symvers")


def test_nothing_but_modules(tmp_path):
    root = tmp_path / "root"
    add_modules(root)
    facts, _warnings = facts_of(root)
    assert facts["vermagic"] == VERMAGIC
    assert facts["config"] == {"path": None, "options": {}}
    assert facts["arch"] == "x86_64"  # from the module's ELF machine
    assert facts["modversions"] is True  # from the vermagic
    assert facts["compiler"] is None and facts["sig_enforce"] is None and facts["lockdown"] is None
    assert has(facts["missing"], "no ", "/boot:")
    assert has(facts["missing"], "no kernel configuration")


def test_modules_without_vermagic(tmp_path):
    root = make_root(tmp_path / "root")
    facts, _warnings = facts_of(root, reader=FakeReader(vermagic=None))
    assert facts["vermagic_source"] == "config"
    assert has(facts["missing"], "it has no vermagic")


def test_kernel_without_module_support(tmp_path):
    root = make_root(tmp_path / "root", config=config_with(MODULES=None), modules=False,
                     headers=False)
    facts, _warnings = facts_of(root)
    assert facts["vermagic"] is None and facts["vermagic_source"] is None
    assert has(facts["missing"], "CONFIG_MODULES is not set", "cannot load any module")
    assert facts["sig_enforce"] is None


def test_config_from_build_dir_when_boot_has_none(tmp_path):
    root = make_root(tmp_path / "root", config=None)
    facts, _warnings = facts_of(root)
    assert facts["config"]["path"].endswith(f"linux-headers-{RELEASE}/.config")


def test_config_from_lib_modules_rhel_style(tmp_path):
    root = make_root(tmp_path / "root", config=None, headers=False)
    write(root / "lib/modules" / RELEASE / "config", config_with())
    facts, _warnings = facts_of(root)
    assert facts["config"]["path"] == str(root / "lib/modules" / RELEASE / "config")


def test_unreadable_config_is_reported(tmp_path):
    root = make_root(tmp_path / "root", config="garbage\n", headers=False)
    facts, _warnings = facts_of(root)
    assert facts["config"]["path"] is None
    assert has(facts["missing"], "no CONFIG_ line")


def test_vmlinuz_of_another_release(tmp_path):
    root = make_root(tmp_path / "root", vmlinuz=False)
    write(root / "boot" / f"vmlinuz-{RELEASE}", bzimage("6.1.0-99-amd64"))
    facts, warnings = facts_of(root, RELEASE)
    assert facts["version"] is None
    assert any("holds release 6.1.0-99-amd64" in w for w in warnings)


def test_vmlinuz_not_a_bzimage(tmp_path):
    root = make_root(tmp_path / "root", vmlinuz=False)
    write(root / "boot" / f"vmlinuz-{RELEASE}", b"\x1f\x8b arm64 Image.gz")
    facts, _warnings = facts_of(root, RELEASE)
    assert facts["version"] is None
    assert has(facts["missing"], "not an x86 bzImage")


# ---------------------------------------------------------------- build directory


def test_build_dir_dangling_link(tmp_path):
    root = make_root(tmp_path / "root", headers=False)
    os.symlink(f"/usr/src/linux-headers-{RELEASE}", root / "lib/modules" / RELEASE / "build")
    facts, _warnings = facts_of(root)
    build = facts["build_dir"]
    assert build["exists"] is False and build["usable"] is False
    assert "points to /usr/src/linux-headers" in build["reason"]
    assert "headers (devel) package" in build["reason"]


def test_build_dir_for_another_release(tmp_path):
    root = make_root(tmp_path / "root", headers=False)
    add_headers(root, tree_release="6.1.0-55-amd64", absolute_link=False)
    build = facts_of(root)[0]["build_dir"]
    assert build["exists"] is True and build["usable"] is False
    assert "it is for release 6.1.0-55-amd64" in build["reason"]


def test_build_dir_without_modpost_or_common_makefile(tmp_path):
    root = make_root(tmp_path / "root", headers=False)
    tree = add_headers(root, modpost=False)
    (root / "usr/src/linux-headers-common/Makefile").unlink()
    (tree / "include/config/auto.conf").unlink()
    reason = facts_of(root)[0]["build_dir"]["reason"]
    assert "no scripts/mod/modpost" in reason
    assert "includes /usr/src/linux-headers-common/Makefile, which is not there" in reason
    assert "include/config/auto.conf" in reason


def test_boot_symvers_rhel(tmp_path):
    root = make_root(tmp_path / "root", headers=False)
    write(root / "boot" / f"symvers-{RELEASE}.gz",
          gzip.compress(b"0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n"))
    facts, _warnings = facts_of(root)
    assert facts["symvers"] == [{"source": "boot",
                                 "path": str(root / "boot" / f"symvers-{RELEASE}.gz")}]


# ---------------------------------------------------------------- compression


@pytest.mark.parametrize("suffix, kind", [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")])
def test_compression_from_file_names(tmp_path, suffix, kind):
    root = make_root(tmp_path / "root", modules=False)
    add_modules(root, names=(f"kernel/lib/crc7{suffix}", f"kernel/lib/crc16{suffix}"))
    facts, warnings = facts_of(root)
    assert facts["module_compression"] == kind
    assert facts["vermagic_source"] == f"kernel/lib/crc7{suffix}"
    assert any("reporting " + kind in w for w in warnings)  # the config says none


def test_compression_counts_files_only_and_enters_no_linked_directory(tmp_path):
    root = make_root(tmp_path / "root", modules=False)
    moddir = root / "lib/modules" / RELEASE
    add_modules(root, names=("kernel/lib/crc7.ko.xz", "kernel/lib/crc16.ko.xz",
                             "kernel/fs/a.ko", "kernel/fs/deep/er/b.ko.xz"))
    (moddir / "kernel/fs/dir.ko").mkdir()                  # a directory named like a module
    write(moddir / "kernel/fs/dir.ko/c.ko.zst", b"x")      # ... is entered all the same
    os.symlink("../lib/crc7.ko.xz", moddir / "kernel/fs/link.ko.xz")  # a linked file counts
    os.symlink("../lib", moddir / "kernel/fs/linked-dir")  # a linked directory is not entered
    write(moddir / "kernel/fs/readme.txt", b"x")
    write(moddir / "updates/out.ko.gz", b"x")              # not in-tree
    assert _kernel_facts._count_compression(str(moddir)) == {"xz": 4, "none": 1, "zstd": 1}
    facts, warnings = facts_of(root)
    assert facts["module_compression"] == "xz"
    assert any("(4 of 6)" in w for w in warnings)


def test_the_preferred_module_is_found_without_a_walk(tmp_path, monkeypatch):
    root = make_root(tmp_path / "root")
    monkeypatch.setattr(_kernel_facts, "_smallest_modules",
                        lambda *a: pytest.fail("the smallest modules were looked for"))
    facts, _warnings = facts_of(root)
    assert facts["vermagic_source"] == "kernel/lib/crc-itu-t.ko"


def test_without_a_preferred_module_the_smallest_are_read(tmp_path):
    root = make_root(tmp_path / "root", modules=False)
    moddir = root / "lib/modules" / RELEASE / "kernel"
    write(moddir / "drivers/big.ko", b"x" * 1000)
    write(moddir / "drivers/net/small.ko.gz", b"x" * 10)
    write(moddir / "sound/middle.ko", b"x" * 100)
    (moddir / "sound/notafile.ko").mkdir()
    reader = FakeReader(broken=("small.ko.gz",))
    facts, _warnings = facts_of(root, reader=reader)
    assert [p[len(str(moddir)) + 1:] for p in reader.read] == [
        "drivers/net/small.ko.gz", "sound/middle.ko"]
    assert facts["vermagic_source"] == "kernel/sound/middle.ko"
    assert has(facts["missing"], "kernel/drivers/net/small.ko.gz", "damaged")


def test_out_of_tree_dirs_are_not_in_tree(tmp_path):
    root = make_root(tmp_path / "root", modules=False)
    write(root / "lib/modules" / RELEASE / "updates/dkms/mine.ko", b"x")
    reader = FakeReader()
    facts, _warnings = facts_of(root, reader=reader)
    assert reader.read == [] and facts["vermagic_source"] == "config"


# ---------------------------------------------------------------- the running kernel


def test_running_kernel_fake_host(tmp_path):
    root = make_root(tmp_path / "host", config=None)
    add_running(root, config=config_with(MODULE_SIG_FORCE="y"), sig_enforce="Y",
                lockdown="none [integrity] confidentiality", tainted="12288")
    write(root / "usr/bin/gcc-12", "12.2.0\n").chmod(0o755)
    view = host(root, RELEASE, path="/usr/bin:/bin")
    facts, _warnings = gather(str(root), view=view, module_reader=FakeReader())
    assert facts["running"] is True and facts["release"] == RELEASE
    assert facts["version"] == "#1 SMP host"
    assert facts["config"]["path"] == str(root / "proc/config.gz")
    assert facts["sig_enforce"] is True and facts["lockdown"] == "integrity"
    assert facts["taint"] == {"value": 12288, "flags": "OE",
                              "reasons": ["O: externally-built (out-of-tree) module was loaded",
                                          "E: unsigned module was loaded"]}
    assert facts["compiler"]["path"] == str(root / "usr/bin/gcc-12")
    assert not has(facts["missing"], "sig_enforce") and not has(facts["missing"], "lockdown")


def test_running_kernel_without_sys_files(tmp_path):
    root = make_root(tmp_path / "host")
    add_running(root, sig_enforce=None, lockdown=None, tainted=None,
                cmdline="quiet module.sig_enforce=1")
    facts, _warnings = gather(str(root), view=host(root, RELEASE), module_reader=FakeReader())
    assert facts["sig_enforce"] is True
    assert has(facts["missing"], "sig_enforce", "command line")
    assert facts["lockdown"] == "none"
    assert has(facts["missing"], "lockdown", "securityfs", "secure boot")
    assert facts["taint"] is None and has(facts["missing"], "tainted")


def test_running_host_root_with_another_release(tmp_path):
    root = make_root(tmp_path / "host")
    add_running(root, sig_enforce="Y")
    facts, _warnings = gather(str(root), RELEASE, view=host(root, "6.1.0-99-amd64"),
                              module_reader=FakeReader())
    assert facts["running"] is False
    assert facts["sig_enforce"] is False  # from the config, not from this host's /sys
    assert facts["taint"] is None


def test_plain_gcc_of_another_version_is_not_the_compiler(tmp_path):
    root = tmp_path / "host"
    add_running(root, config=config_with(CC_VERSION_TEXT='"gcc (GCC) 15.3.0"', GCC_VERSION="150300"))
    write(root / "usr/bin/gcc", "12.2.0\n").chmod(0o755)
    facts, _warnings = gather(str(root), view=host(root, path="/usr/bin"), module_reader=FakeReader())
    assert facts["compiler"]["name"] == "gcc" and facts["compiler"]["path"] is None
    assert has(facts["missing"], "is version 12.2.0", "15.3.0")


def test_host_without_lib_modules_or_boot_succeeds(tmp_path):
    """This machine's situation: a running kernel with /proc/config.gz and nothing installed."""
    root = tmp_path / "host"
    add_running(root, config=config_with(MODULES=None), sig_enforce=None, lockdown=None)
    facts, _warnings = gather(str(root), view=host(root), module_reader=FakeReader())
    assert facts["running"] is True and facts["release"] == "9.9.9-host"
    assert has(facts["missing"], "no ", "/lib/modules:")
    assert has(facts["missing"], "no ", "/boot:")
    assert has(facts["missing"], "build directory")
    assert has(facts["missing"], "CONFIG_MODULES is not set")
    assert facts["vermagic"] is None
