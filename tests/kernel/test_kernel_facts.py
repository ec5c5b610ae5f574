"""kernel_facts on Debian's real kernel 6.1.0-56-amd64 (unpacked image + headers) and on this host.

Expected values are what the kernel package itself says: kmod's ``modinfo -F vermagic`` of its
in-tree modules, its ``/boot/config-*`` and the bzImage header of its ``vmlinuz``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from ansible.module_utils import basic

from ansible_collections.vermagic.kmod.plugins.module_utils._bzimage import read_header
from ansible_collections.vermagic.kmod.plugins.modules import kernel_facts
from tests.support.debian import DebianKernel
from tests.support.module_runner import run_module

DEBIAN_VERMAGIC = "6.1.0-56-amd64 SMP preempt mod_unload modversions "


@pytest.fixture(scope="module")
def image(kernel: DebianKernel) -> dict:
    result = run_module(kernel_facts.main, {"root": str(kernel.root), "release": kernel.release})
    assert result["failed"] is False, result.get("msg")
    return result["ansible_facts"]["kmod_kernel"]


def kmod_vermagic(path: Path) -> str:
    out = subprocess.run(["modinfo", "-F", "vermagic", str(path)], check=True,
                         capture_output=True, text=True).stdout
    assert out.endswith("\n")
    return out[:-1]


def test_vermagic_is_the_modules(kernel, image):
    if kernel.release == "6.1.0-56-amd64":
        assert image["vermagic"] == DEBIAN_VERMAGIC
    source = kernel.modules_dir / image["vermagic_source"]
    assert source.is_file() and image["vermagic_source"].startswith("kernel/")
    assert image["vermagic"] == kmod_vermagic(source)
    # any other in-tree module of the image agrees (same build)
    assert image["vermagic"] == kmod_vermagic(kernel.modules_dir / "kernel/fs/fat/fat.ko")
    assert image["vermagic_parsed"]["raw"] == image["vermagic"]
    assert image["vermagic_parsed"]["release"] == kernel.release
    # the configuration agrees: no disagreement reported
    assert not any(m.startswith("vermagic") for m in image["missing"]), image["missing"]


def test_config_state(kernel, image):
    assert image["config"]["path"] == str(kernel.config)
    options = image["config"]["options"]
    assert options["MODVERSIONS"] == "y" and image["modversions"] is True
    assert options["MODULE_SIG"] == "y"
    assert options["MODULE_SIG_FORCE"] is None and image["sig_enforce"] is False
    assert options["MODULE_SIG_HASH"] == "sha256"
    assert options["MODULE_FORCE_LOAD"] == "y"
    assert options["PREEMPT_BUILD"] == "y" and image["vermagic_parsed"]["preempt"] == "preempt"
    assert options["SMP"] == "y" and options["MODULE_UNLOAD"] == "y"
    assert options["MODULE_COMPRESS_NONE"] == "y"
    assert image["lockdown"] == "none"
    assert any(m.startswith("sig_enforce: this kernel is not running") for m in image["missing"])


def test_compiler(image):
    assert image["compiler"]["text"] == "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"
    assert image["compiler"]["name"] == "gcc-12"
    assert image["compiler"]["version"] == "12.2.0"
    assert image["compiler"]["path"] is None  # the image has no compiler in it


def test_machine_version_and_trees(kernel, image):
    assert (image["arch"], image["elf_machine"], image["elf_class"]) == ("x86_64", "EM_X86_64", 64)
    header = read_header(str(kernel.vmlinuz))
    assert header.version_string.endswith(" " + image["version"])
    assert image["version"].startswith("#1 SMP PREEMPT_DYNAMIC Debian ")
    assert image["running"] is False and image["taint"] is None
    assert image["module_compression"] == "none"
    build = image["build_dir"]
    assert build["path"] == str(kernel.headers)  # the absolute link resolved inside the image
    assert build["exists"] is True and build["usable"] is True, build["reason"]
    assert image["symvers"] == [{"source": "headers", "path": str(kernel.headers / "Module.symvers")}]


def test_release_found_alone(kernel):
    result = run_module(kernel_facts.main, {"root": str(kernel.root)})
    assert result["failed"] is False, result.get("msg")
    assert result["ansible_facts"]["kmod_kernel"]["release"] == kernel.release


def _small_root(kernel: DebianKernel, base: Path, config: str | None = None) -> Path:
    root = base / "root"
    (root / "boot").mkdir(parents=True)
    if config is None:
        shutil.copy(kernel.config, root / "boot" / kernel.config.name)
    else:
        (root / "boot" / kernel.config.name).write_text(config)
    return root


@pytest.mark.parametrize("tool, suffix, kind", [
    (["xz", "--check=crc32", "-c"], ".ko.xz", "xz"),
    (["zstd", "-q", "-c"], ".ko.zst", "zstd"),
    (["gzip", "-n", "-c"], ".ko.gz", "gzip"),
])
def test_compressed_module_tree(kernel, tmp_path, tool, suffix, kind):
    root = _small_root(kernel, tmp_path)
    for name in ("kernel/lib/crc-itu-t.ko", "kernel/lib/crc7.ko", "kernel/fs/fat/fat.ko"):
        target = root / "lib/modules" / kernel.release / (name[:-3] + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            subprocess.run([*tool, str(kernel.modules_dir / name)], stdout=out, check=True)
    warnings: list[str] = []
    with mock.patch.object(basic.AnsibleModule, "warn", lambda self, msg: warnings.append(msg)):
        result = run_module(kernel_facts.main, {"root": str(root)})
    assert result["failed"] is False, result.get("msg")
    facts = result["ansible_facts"]["kmod_kernel"]
    assert facts["module_compression"] == kind
    assert facts["vermagic_source"] == f"kernel/lib/crc-itu-t{suffix}"
    assert facts["vermagic"] == kmod_vermagic(kernel.modules_dir / "kernel/lib/crc-itu-t.ko")
    if kind != "gzip":  # Debian 12's kmod is built without zlib
        assert facts["vermagic"] == kmod_vermagic(root / "lib/modules" / kernel.release
                                                  / facts["vermagic_source"])
    # the configuration says MODULE_COMPRESS_NONE: the files win, with a warning
    assert any(f"reporting {kind}" in w for w in warnings)
    assert facts["build_dir"]["exists"] is False
    assert any(m.startswith("build directory: no ") for m in facts["missing"])


def test_config_disagreeing_with_the_modules(kernel, tmp_path):
    text = kernel.config.read_text().replace("CONFIG_MODVERSIONS=y", "# CONFIG_MODVERSIONS is not set")
    root = _small_root(kernel, tmp_path, text)
    module = root / "lib/modules" / kernel.release / "kernel/lib/crc-itu-t.ko"
    module.parent.mkdir(parents=True)
    shutil.copy(kernel.modules_dir / "kernel/lib/crc-itu-t.ko", module)
    result = run_module(kernel_facts.main, {"root": str(root)})
    facts = result["ansible_facts"]["kmod_kernel"]
    assert facts["vermagic"] == kmod_vermagic(module)
    assert any("trusting the module" in m and "mod_unload '" in m for m in facts["missing"])


def test_no_modules_vermagic_from_config(kernel, tmp_path):
    root = _small_root(kernel, tmp_path)
    result = run_module(kernel_facts.main, {"root": str(root), "release": kernel.release})
    facts = result["ansible_facts"]["kmod_kernel"]
    assert facts["vermagic_source"] == "config"
    assert facts["vermagic"] == kmod_vermagic(kernel.modules_dir / "kernel/lib/crc-itu-t.ko")


def test_this_machine():
    """The module run on this host for real: it succeeds and names what is missing."""
    result = run_module(kernel_facts.main, {})
    assert result["failed"] is False, result.get("msg")
    facts = result["ansible_facts"]["kmod_kernel"]
    assert facts["running"] is True and facts["release"] == os.uname().release
    assert facts["version"] == os.uname().version
    assert facts["arch"] == os.uname().machine
    with open("/proc/sys/kernel/tainted") as handle:
        assert facts["taint"]["value"] == int(handle.read())
    missing = facts["missing"]
    if not os.path.isdir("/lib/modules"):
        assert "no /lib/modules: no kernel modules are installed, so no in-tree module gives " \
               "the vermagic" in missing
        assert facts["build_dir"]["exists"] is False
    if os.path.exists("/proc/config.gz"):
        assert facts["config"]["path"] == "/proc/config.gz"
        text = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode()
        if "# CONFIG_MODULES is not set" in text:
            assert facts["vermagic"] is None
            assert any("CONFIG_MODULES is not set" in m for m in missing)
    elif not os.path.exists(f"/boot/config-{os.uname().release}"):
        assert any(m.startswith("no kernel configuration") for m in missing)
