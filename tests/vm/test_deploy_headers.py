"""The deploy playbook on a stock kernel whose headers are installed (the common case).

One VM (profile ``headers``), in order: the sample module is built against the installed headers
and inserted; a rerun changes nothing and runs no make; new parameters replace the loaded module
(with its rollback file kept by modload); check mode on the up-to-date host changes nothing and
reports the module's verdict; ``kmod_state=absent`` removes it. The boot id never changes.
"""

from __future__ import annotations

import re

import pytest

from tests.vm.deploy import guest_state, run_deploy
from tests.vm.machine import VM

VM_PROFILE = "headers"
BUILD_LOG = "/var/lib/vermagic-kmod/deploy/build/{release}/hello/.vermagic-kmod.log"


@pytest.fixture(scope="module")
def first(vm: VM) -> dict:
    """The first run, shared by the tests of this module (they run in file order)."""
    run = run_deploy(vm.inventory_path, label="first run")
    assert run.rc == 0, run.explain()
    log = BUILD_LOG.format(release=vm.release)
    mtime = vm.ssh(["stat", "-c", "%Y", log], check=True).stdout.strip()
    return {"run": run, "summary": run.summaries[vm.name], "log_mtime": mtime}


def test_first_run_builds_against_the_headers_and_inserts(vm: VM, first: dict) -> None:
    summary = first["summary"]
    assert summary["ok"] is True
    assert summary["tree"]["kind"] == "headers"
    assert summary["tree"]["path"] == f"/usr/src/linux-headers-{vm.release}"
    assert summary["build"]["ran"] is True
    assert summary["verdict"]["kind"] == "module"
    assert summary["verdict"]["compatible"] is True
    assert summary["verdict"]["problems"] == []
    assert summary["action"] == "inserted"
    assert summary["module"]["name"] == "hello"
    assert summary["module"]["vermagic"] == summary["kernel"]["vermagic"]
    assert summary["loaded"]["srcversion"] == summary["module"]["srcversion"]
    assert any(re.search(rf"hello: hello from version 1\.0 \(built for {re.escape(vm.release)},",
                         line) for line in summary["kernel_log"]), summary["kernel_log"]
    assert "O" in summary["taint_after"]["flags"]
    assert summary["boot_id"] == vm.first_boot_id
    lsmod = vm.ssh("cat /sys/module/hello/srcversion", check=True).stdout.strip()
    assert lsmod == summary["module"]["srcversion"]


def test_rerun_changes_nothing_and_runs_no_make(vm: VM, first: dict) -> None:
    """The default rerun: the host is as the first run left it, so it ends after two plain
    commands (the fast path); then a rerun that does every step (kmod_fast_rerun=false): kbuild's
    fingerprint is unchanged, so no make runs either."""
    log = BUILD_LOG.format(release=vm.release)
    first_s = first["run"].seconds
    for label, extra in (("rerun", {}), ("full rerun", {"kmod_fast_rerun": False})):
        run = run_deploy(vm.inventory_path, extra, label=label)
        assert run.rc == 0, run.explain()
        assert run.recap[vm.name]["changed"] == 0, run.changed_tasks(vm.name)
        assert run.recap[vm.name]["failed"] == 0
        summary = run.summaries[vm.name]
        assert summary["build"]["up_to_date"] is True
        assert summary["build"]["ran"] is False
        assert summary["action"] == "none"
        assert summary["module"]["srcversion"] == first["summary"]["module"]["srcversion"]
        fast = summary["verdict"].get("by") == "the run that loaded it"
        assert fast is (label == "rerun"), summary["verdict"]
        assert vm.ssh(["stat", "-c", "%Y", log], check=True).stdout.strip() == first["log_mtime"]
        print(f"\nheaders: first run {first_s:.0f} s, {label} {run.seconds:.1f} s "
              f"({100 * run.seconds / first_s:.0f}%)")
        assert run.seconds < first_s / 2


def test_new_parameters_replace_the_loaded_module(vm: VM) -> None:
    params = {"greeting": "hi", "repeat": 2}
    run = run_deploy(vm.inventory_path, {"kmod_params": params}, diff=True, label="replace")
    assert run.rc == 0, run.explain()
    summary = run.summaries[vm.name]
    assert summary["action"] == "replaced"
    assert summary["loaded"]["params"] == {"greeting": "hi", "repeat": "2"}
    assert summary["previous"]["params"]["greeting"] == "hello"
    assert [line for line in summary["kernel_log"] if "hello: hi from" in line] != []
    assert len([ln for ln in summary["kernel_log"] if "hello: hi from version" in ln]) == 2
    again = run_deploy(vm.inventory_path, {"kmod_params": params}, label="replace rerun")
    assert again.rc == 0, again.explain()
    assert again.recap[vm.name]["changed"] == 0, again.changed_tasks(vm.name)


def test_check_mode_on_the_up_to_date_host_changes_nothing(vm: VM) -> None:
    before = guest_state(vm)
    run = run_deploy(vm.inventory_path, {"kmod_params": {"greeting": "hey"}}, check=True,
                     diff=True, label="check")
    assert run.rc == 0, run.explain()
    assert guest_state(vm) == before
    summary = run.summaries[vm.name]
    assert summary["check_mode"] is True
    assert summary["verdict"]["kind"] == "module"
    assert summary["verdict"]["compatible"] is True
    assert summary["action"] == "replaced"  # what it would do: other parameters
    assert vm.ssh("cat /sys/module/hello/parameters/greeting", check=True).stdout.strip() == "hi"


def test_absent_removes_the_module(vm: VM) -> None:
    run = run_deploy(vm.inventory_path, {"kmod_state": "absent", "kmod_name": "hello"},
                     label="absent")
    assert run.rc == 0, run.explain()
    assert run.summaries[vm.name]["action"] == "removed"
    assert vm.ssh(["test", "-e", "/sys/module/hello"]).returncode != 0
    assert vm.boot_id() == vm.first_boot_id
