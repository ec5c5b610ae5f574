"""The deploy playbook on a stock kernel without headers, whose headers package is on the mirror.

One VM (profile ``base``: no headers, no compiler, no pyelftools). The role installs pyelftools,
finds no usable build directory, looks the distribution's ``linux-headers-<release>`` up through
the guest's apt (this machine's mirror, reached through qemu's user network), installs it and the
compiler the kernel names (gcc-12), builds and loads. The rerun changes
nothing (the fast path); a rerun that does every step finds the headers it installed as the
installed headers, at the same path, so kbuild's fingerprint holds and no make runs.
"""

from __future__ import annotations

from tests.vm.deploy import run_deploy
from tests.vm.machine import VM

VM_PROFILE = "base"


def _installed(vm: VM, package: str) -> bool:
    status = vm.ssh(["dpkg-query", "-W", "-f=${db:Status-Status}", package]).stdout
    return status == "installed"


def test_headers_package_is_installed_and_the_module_loads(vm: VM) -> None:
    assert vm.ssh(["test", "-e", f"/lib/modules/{vm.release}/build/Makefile"]).returncode != 0
    packages = [f"linux-headers-{vm.release}", "gcc-12", "python3-pyelftools"]
    assert [_installed(vm, name) for name in packages] == [False, False, False]
    run = run_deploy(vm.inventory_path, label="package")
    assert run.rc == 0, run.explain()
    summary = run.summaries[vm.name]
    assert summary["tree"]["kind"] == "package"
    assert f"linux-headers-{vm.release}" in summary["tree"]["reason"]
    assert [_installed(vm, name) for name in packages] == [True, True, True]
    assert summary["build"]["ran"] is True
    assert summary["verdict"]["compatible"] is True
    assert summary["action"] == "inserted"
    assert any("hello: hello from version" in line for line in summary["kernel_log"])

    again = run_deploy(vm.inventory_path, label="package rerun")
    assert again.rc == 0, again.explain()
    assert again.recap[vm.name]["changed"] == 0, again.changed_tasks(vm.name)
    assert again.summaries[vm.name]["tree"]["path"] == summary["tree"]["path"]
    assert again.summaries[vm.name]["build"]["ran"] is False
    print(f"\npackage: first run {run.seconds:.0f} s, rerun {again.seconds:.1f} s "
          f"({100 * again.seconds / run.seconds:.0f}%)")

    full = run_deploy(vm.inventory_path, {"kmod_fast_rerun": False}, label="package full rerun")
    assert full.rc == 0, full.explain()
    assert full.recap[vm.name]["changed"] == 0, full.changed_tasks(vm.name)
    assert full.summaries[vm.name]["tree"]["kind"] == "headers"
    assert full.summaries[vm.name]["build"]["ran"] is False
    assert full.summaries[vm.name]["build"]["up_to_date"] is True
    assert vm.boot_id() == vm.first_boot_id
