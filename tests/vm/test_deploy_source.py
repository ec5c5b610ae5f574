"""The deploy playbook on a stock kernel with no headers at all (the package is not allowed, as
when it has left the mirror): the role prepares the distribution's source of the matching version.

One VM (profile ``build``). ``kmod_install_headers=false``; the source is Debian's
``linux-source-6.1`` of the image's package version, from the cache, given as
``kmod_source_tarball`` (copied from the controller; nothing is downloaded by the guest but the
build tools). The role unpacks it, puts ``/boot/config-<release>`` in, aligns the release,
recovers ``Module.symvers`` from ``/boot/vmlinuz`` and the in-tree modules (there is no other
source of it on the guest), runs ``make modules_prepare``, builds, judges and loads. The module's
``__versions`` and ``.modinfo`` equal those of the same source built here against Debian's
official headers. The rerun changes nothing and runs no make, also when it does every step.

Under TCG, unpacking the ``.xz`` tarball is slow (xz alone is about two and a half minutes in the
guest), so by default the test hands the role the same tarball recompressed with zstd (the same
members, made here in a few seconds); ``VERMAGIC_KMOD_SOURCE_XZ=1`` gives it Debian's file as is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.collection import collections_dir
from tests.support.debian import DebianKernel
from tests.support.variants import build_hello
from tests.vm.deploy import run_deploy
from tests.vm.machine import VM

VM_PROFILE = "build"

sys.path.insert(0, str(collections_dir()))
from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import (  # noqa: E402
    read_module,
)


@pytest.fixture(scope="module")
def tarball(kernel: DebianKernel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    original = kernel.source_tarball()
    if os.environ.get("VERMAGIC_KMOD_SOURCE_XZ"):
        return original
    dest = tmp_path_factory.mktemp("source") / original.name.replace(".tar.xz", ".tar.zst")
    start = time.monotonic()
    with open(dest, "wb") as out:
        xz = subprocess.Popen(["xz", "-dc", str(original)], stdout=subprocess.PIPE)
        subprocess.run(["zstd", "-q", "-3", "-T0", "-c"], stdin=xz.stdout, stdout=out, check=True)
        assert xz.wait() == 0
    print(f"[source] {original.name} recompressed with zstd in {time.monotonic() - start:.1f} s",
          file=sys.stderr)
    return dest


def test_source_tree_is_prepared_and_the_module_matches_the_official_build(
        vm: VM, kernel: DebianKernel, tarball: Path, tmp_path: Path) -> None:
    assert vm.ssh(["test", "-e", f"/lib/modules/{vm.release}/build/Makefile"]).returncode != 0
    extra = {"kmod_install_headers": False, "kmod_source_tarball": str(tarball)}
    run = run_deploy(vm.inventory_path, extra, label="source")
    assert run.rc == 0, run.explain()
    summary = run.summaries[vm.name]
    tree = summary["tree"]
    assert tree["kind"] == "source", tree
    assert "kmod_install_headers is false" in tree["reason"]
    assert tree["symvers_source"] == "recover"
    assert tree["symvers_symbols"] > 20000
    assert tree["prepared"] is True
    assert summary["verdict"]["compatible"] is True
    assert summary["action"] == "inserted"
    assert any(f"built for {vm.release}, LINUX_VERSION_CODE 393664" in line
               for line in summary["kernel_log"]), summary["kernel_log"]
    release = vm.ssh(["make", "-s", "-C", tree["path"], "kernelrelease"], check=True).stdout
    assert release.strip() == vm.release

    built = vm.copy_from(summary["module"]["path"], tmp_path / "vm-hello.ko")
    official = build_hello(kernel.headers, tmp_path / "official")
    ours, theirs = read_module(str(built)), read_module(str(official))
    assert [(v.symbol, v.crc) for v in ours.versions] == \
        [(v.symbol, v.crc) for v in theirs.versions]
    assert ours.fields == theirs.fields

    again = run_deploy(vm.inventory_path, extra, label="source rerun")
    assert again.rc == 0, again.explain()
    assert again.recap[vm.name]["changed"] == 0, again.changed_tasks(vm.name)
    assert again.summaries[vm.name]["tree"]["prepared"] is False
    assert again.summaries[vm.name]["build"]["ran"] is False
    print(f"\nsource: first run {run.seconds:.0f} s, rerun {again.seconds:.1f} s "
          f"({100 * again.seconds / run.seconds:.0f}%)")

    # Every step again: kbuild finds the tree prepared and the module built; nothing is redone.
    full = run_deploy(vm.inventory_path, {**extra, "kmod_fast_rerun": False},
                      label="source full rerun")
    assert full.rc == 0, full.explain()
    assert full.recap[vm.name]["changed"] == 0, full.changed_tasks(vm.name)
    assert full.summaries[vm.name]["tree"]["kind"] == "source"
    assert full.summaries[vm.name]["tree"]["prepared"] is False
    assert full.summaries[vm.name]["build"]["ran"] is False
    assert vm.boot_id() == vm.first_boot_id
