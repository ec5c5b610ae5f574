"""The module's source on the managed host: a directory there (``kmod_src_remote``), then a git
repository there (``kmod_src_git`` at a tag), each built and loaded by the deploy playbook.

One VM (profile ``headers``): the sample module from a directory copied onto the guest is
inserted and a rerun changes nothing; then version 2.0 of it, cloned from a git repository on the
guest (the role installs git from the mirror), replaces it, and its rerun changes nothing too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.collection import ROOT
from tests.vm.deploy import DeployRun, run_deploy
from tests.vm.machine import VM

VM_PROFILE = "headers"
SAMPLE = ROOT / "examples" / "hello"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                   cwd=cwd, check=True, capture_output=True)


def _version_2_repository(base: Path) -> Path:
    """A bare git repository whose tag v2 holds the sample module with HELLO_VERSION "2.0"."""
    work = base / "work"
    shutil.copytree(SAMPLE, work, ignore=shutil.ignore_patterns("*.o", "*.ko", ".*"))
    source = work / "hello.c"
    source.write_text(re.sub(r'(#define HELLO_VERSION )"[^"]*"', r'\1"2.0"', source.read_text()))
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "hello 2.0")
    _git(work, "tag", "v2")
    bare = base / "hello.git"
    _git(base, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def _assert_unchanged_rerun(vm: VM, extra: dict, first: DeployRun, label: str) -> None:
    again = run_deploy(vm.inventory_path, extra, label=label)
    assert again.rc == 0, again.explain()
    assert again.recap[vm.name]["changed"] == 0, again.changed_tasks(vm.name)
    summary = again.summaries[vm.name]
    assert summary["action"] == "none"
    assert summary["build"]["ran"] is False
    assert summary["module"]["srcversion"] == first.summaries[vm.name]["module"]["srcversion"]


def test_source_directory_on_the_host(vm: VM) -> None:
    vm.copy_to(SAMPLE, "/srv/hello-src")
    extra = {"kmod_src": "/srv/hello-src", "kmod_src_remote": True}
    run = run_deploy(vm.inventory_path, extra, label="host directory")
    assert run.rc == 0, run.explain()
    summary = run.summaries[vm.name]
    assert summary["ok"] is True and summary["action"] == "inserted"
    assert summary["build"]["ran"] is True
    assert summary["module"]["version"] == "1.0"
    loaded = vm.ssh("cat /sys/module/hello/srcversion", check=True).stdout.strip()
    assert loaded == summary["module"]["srcversion"]
    assert vm.ssh(["test", "-e", "/srv/hello-src/hello.ko"]).returncode != 0  # built in a copy
    _assert_unchanged_rerun(vm, extra, run, "host directory rerun")


def test_git_repository_on_the_host_replaces_it(vm: VM, tmp_path: Path) -> None:
    before = vm.ssh("cat /sys/module/hello/srcversion", check=True).stdout.strip()
    vm.copy_to(_version_2_repository(tmp_path), "/srv/hello.git")
    extra = {"kmod_src_git": "file:///srv/hello.git", "kmod_src_git_version": "v2"}
    run = run_deploy(vm.inventory_path, extra, label="host git")
    assert run.rc == 0, run.explain()
    summary = run.summaries[vm.name]
    assert summary["ok"] is True and summary["action"] == "replaced"
    assert summary["module"]["version"] == "2.0"
    assert summary["module"]["srcversion"] != before
    assert summary["loaded"]["srcversion"] == summary["module"]["srcversion"]
    assert any("hello: hello from version 2.0" in line for line in summary["kernel_log"]), \
        summary["kernel_log"]
    _assert_unchanged_rerun(vm, extra, run, "host git rerun")
    assert vm.boot_id() == vm.first_boot_id
