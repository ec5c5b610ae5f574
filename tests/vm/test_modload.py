"""``vermagic.kmod.modload`` on Debian's stock kernel under qemu, through ansible-playbook.

This is modload's integration proof (an ansible-test target cannot load modules: a test
container has no kernel of its own to load them into). One VM (profile ``headers``: python3,
python3-pyelftools and the kernel's headers, so the headers' Module.symvers is there) serves the
whole file; the tests run in order and each one states what it starts from. The sample module
and its variants are built on this machine against the cached Debian headers
(``tests/support/variants.py``) and copied into the guest.

Issue 4's acceptance, each point a test below:
insert (``/proc/modules``, params in sysfs, second run unchanged); replace v1 by v2; variants b, d,
e refused by preflight before any insmod; with ``force: [preflight]`` the kernel refuses one and
the rollback leaves v2; ``state: absent``; ``persistent`` (``modprobe hello`` after depmod) and
its removal; the boot id unchanged from start to end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.support.collection import ansible_env
from tests.support.variants import build_hello, build_variant
from tests.vm.machine import run_ansible

GUEST_DIR = "/root/modules"
STATE_DIR = "/var/lib/vermagic-kmod"


def say(msg: str) -> None:
    print(f"[modload-vm] {msg}", file=sys.stderr, flush=True)


def srcversion_of(ko: Path) -> str:
    from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module

    return read_module(str(ko)).fields["srcversion"]


VM_PROFILE = "headers"  # python3-pyelftools, and the headers' Module.symvers for the preflight


@pytest.fixture(scope="module")
def builds(kernel, tmp_path_factory):
    """v1 (variant a, HELLO_VERSION 1.0), v2 (2.0: another srcversion), variants b..e."""
    dest = tmp_path_factory.mktemp("hello-builds")
    start = time.monotonic()
    kos = {"v1": build_variant("a", kernel, dest).ko,
           "v2": build_hello(kernel.headers, dest / "v2", version="2.0")}
    for name in "bcde":
        kos[name] = build_variant(name, kernel, dest).ko
    say(f"built v1, v2 and variants b-e in {time.monotonic() - start:.0f} s")
    return kos


@pytest.fixture(scope="module")
def staged(vm, builds, tmp_path_factory):
    """The builds in the guest as /root/modules/hello-<name>.ko (root's, 0644, in a 0755 dir)."""
    stage = tmp_path_factory.mktemp("guest-modules")
    for name, ko in builds.items():
        shutil.copy(ko, stage / f"hello-{name}.ko")
        os.chmod(stage / f"hello-{name}.ko", 0o644)
    vm.copy_to(stage, GUEST_DIR)
    vm.ssh(["chmod", "755", GUEST_DIR], check=True)
    say(f"guest {vm.name} up ({vm.accel}, {vm.boot_seconds} s), boot id {vm.first_boot_id}")
    return builds


class Ansible:
    """Runs one modload task per ansible-playbook call and returns its registered result."""

    def __init__(self, vm, workdir: Path) -> None:
        self.vm = vm
        self.workdir = workdir
        self.count = 0

    def __call__(self, args: dict, *, check: bool = False, diff: bool = False) -> dict:
        self.count += 1
        play = [{
            "name": "modload under test", "hosts": "vms", "gather_facts": False,
            "tasks": [
                {"name": "modload", "vermagic.kmod.modload": args, "register": "result",
                 "ignore_errors": True},
                # debug runs on the controller: the registered result, printed as JSON
                {"name": "result", "ansible.builtin.debug": {"var": "result"}},
            ]}]
        playbook = self.workdir / f"play-{self.count}.yml"
        playbook.write_text(json.dumps(play, indent=1))  # JSON is YAML
        argv = ["ansible-playbook", "-i", str(self.vm.inventory_path), str(playbook)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        start = time.monotonic()
        proc = run_ansible(argv, ansible_env(ANSIBLE_CALLBACK_RESULT_FORMAT="json"), timeout=600)
        marker = proc.stdout.rfind(f"ok: [{self.vm.name}] => ")
        if proc.returncode != 0 or marker < 0:
            raise AssertionError(f"ansible-playbook failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        start_json = proc.stdout.index("{", marker)
        result = json.JSONDecoder().raw_decode(proc.stdout, start_json)[0]["result"]
        result["_stdout"] = proc.stdout
        say(f"run {self.count}: {json.dumps({k: v for k, v in args.items() if k != 'path'})} "
            f"{os.path.basename(args.get('path', ''))}{' --check' if check else ''} -> "
            f"action {result.get('action')}, changed {result.get('changed')}, "
            f"failed {result.get('failed', False)} ({time.monotonic() - start:.1f} s)")
        return result


@pytest.fixture(scope="module")
def modload(vm, staged, tmp_path_factory):
    return Ansible(vm, tmp_path_factory.mktemp("ansible"))


def guest(vm, command: str) -> str:
    return vm.ssh(command, check=True).stdout


def proc_line(vm) -> str | None:
    """hello's line in /proc/modules (its load address changes on every load)."""
    for line in guest(vm, "cat /proc/modules").splitlines():
        if line.split()[0] == "hello":
            return line
    return None


def loaded_srcversion(vm) -> str | None:
    if proc_line(vm) is None:
        return None
    return guest(vm, "cat /sys/module/hello/srcversion").strip()


def ensure(modload, vm, ko: str, srcversion: str) -> None:
    """Start from ``ko`` loaded (whatever was loaded before)."""
    if loaded_srcversion(vm) != srcversion:
        res = modload({"path": f"{GUEST_DIR}/hello-{ko}.ko", "replace": True})
        assert not res.get("failed"), res.get("msg")
    assert loaded_srcversion(vm) == srcversion


def test_insert_then_unchanged(vm, modload, staged):
    v1 = srcversion_of(staged["v1"])
    assert proc_line(vm) is None
    args = {"path": f"{GUEST_DIR}/hello-v1.ko", "params": {"greeting": "hi", "repeat": 2}}
    would = modload(args, check=True)
    assert not would.get("failed"), would.get("msg")
    assert would["action"] == "inserted" and would["changed"] and proc_line(vm) is None
    assert guest(vm, f"ls {STATE_DIR} 2>/dev/null || true").strip() == ""  # check mode wrote nothing

    res = modload(args, diff=True)
    assert not res.get("failed"), res.get("msg")
    assert res["action"] == "inserted" and res["changed"]
    assert proc_line(vm) is not None
    assert loaded_srcversion(vm) == v1 == res["loaded"]["srcversion"]
    assert guest(vm, "cat /sys/module/hello/parameters/greeting").strip() == "hi"
    assert guest(vm, "cat /sys/module/hello/parameters/repeat").strip() == "2"
    assert res["loaded"]["params"] == {"greeting": "hi", "repeat": "2"}
    assert res["loaded"]["build_id"] == guest(
        vm, "od -An -tx1 -v /sys/module/hello/notes/.note.gnu.build-id | tr -d ' \\n'")[-40:]
    greetings = [line for line in res["kernel_log"] if line.startswith("hello: hi from version 1.0")]
    assert len(greetings) == 2, res["kernel_log"]
    assert res["verdict"]["compatible"] and res["verdict"]["symvers"].endswith("Module.symvers")
    assert {"unsigned", "out_of_tree"} <= {w["code"] for w in res["verdict"]["warnings"]}
    assert "O" in res["taint_after"]["flags"] and "E" in res["taint_after"]["flags"]
    assert "+module hello" in res["_stdout"]  # --diff shows the kernel side

    again = modload(args)
    assert not again.get("failed") and again["action"] == "none" and again["changed"] is False
    assert again["kernel_log"] == [] and proc_line(vm) is not None


def test_replace_v1_with_v2(vm, modload, staged):
    v1, v2 = srcversion_of(staged["v1"]), srcversion_of(staged["v2"])
    assert v1 != v2
    ensure(modload, vm, "v1", v1)
    before = proc_line(vm)
    refused = modload({"path": f"{GUEST_DIR}/hello-v2.ko"})
    assert refused["failed"] and "Set replace: true" in refused["msg"]
    assert proc_line(vm) == before

    res = modload({"path": f"{GUEST_DIR}/hello-v2.ko", "replace": True})
    assert not res.get("failed"), res.get("msg")
    assert res["action"] == "replaced" and res["changed"]
    assert res["previous"]["srcversion"] == v1 and res["loaded"]["srcversion"] == v2
    assert loaded_srcversion(vm) == v2
    assert res["rollback"]["found"] == "the copy kept when vermagic.kmod loaded it"
    assert any(line.startswith("hello: goodbye from version 1.0") for line in res["kernel_log"])
    assert any(line.startswith("hello: hello from version 2.0") for line in res["kernel_log"])


@pytest.mark.parametrize("variant, problem", [
    ("b", "no symbol version for module_layout"),
    ("d", "disagrees about version of symbol _printk"),
    ("e", "version magic"),
])
def test_preflight_refuses_before_any_insmod(vm, modload, staged, variant, problem):
    v2 = srcversion_of(staged["v2"])
    ensure(modload, vm, "v2", v2)
    before = proc_line(vm)
    dmesg_before = guest(vm, "dmesg").splitlines()
    res = modload({"path": f"{GUEST_DIR}/hello-{variant}.ko", "replace": True})
    assert res["failed"] and res["action"] == "none" and not res["changed"]
    assert "preflight refuses" in res["msg"] and "nothing was touched" in res["msg"]
    assert problem in res["msg"]
    assert res["verdict"]["compatible"] is False
    # no insmod and no rmmod: the same module at the same address, nothing in the kernel log
    assert proc_line(vm) == before and loaded_srcversion(vm) == v2
    assert res["kernel_log"] == []
    assert guest(vm, "dmesg").splitlines()[len(dmesg_before):] == []


def test_forced_past_preflight_the_kernel_refuses_and_v2_comes_back(vm, modload, staged):
    v2 = srcversion_of(staged["v2"])
    ensure(modload, vm, "v2", v2)
    res = modload({"path": f"{GUEST_DIR}/hello-d.ko", "replace": True, "force": ["preflight"]})
    assert res["failed"] and res["action"] == "rolled_back"
    assert res["forced"] == ["preflight"]
    assert "hello: disagrees about version of symbol _printk" in res["kernel_log"]
    assert "disagrees about version of symbol _printk" in res["msg"]
    assert "Rolled back" in res["msg"] and v2 in res["msg"]
    assert res["loaded"]["srcversion"] == v2 and loaded_srcversion(vm) == v2
    assert res["rollback"]["ok"] is True
    assert "F" not in res["taint_after"]["flags"]  # preflight forcing never forces the kernel


def test_release_word_may_differ(vm, modload, staged):
    """Variant c: right CRCs, another release word: the kernel loads it, preflight agrees."""
    res = modload({"path": f"{GUEST_DIR}/hello-c.ko", "replace": True})
    assert not res.get("failed"), res.get("msg")
    assert res["action"] == "replaced"
    assert "release_differs" in {w["code"] for w in res["verdict"]["warnings"]}
    assert any("built for 6.1.0-99-amd64" in line for line in res["kernel_log"])


def test_unsafe_path_is_refused(vm, modload):
    guest(vm, f"mkdir -p /tmp/drop && chmod 1777 /tmp/drop && mkdir -p /tmp/drop/open && "
              f"chmod 777 /tmp/drop/open && cp {GUEST_DIR}/hello-v1.ko /tmp/drop/open/")
    before = proc_line(vm)
    res = modload({"path": "/tmp/drop/open/hello-v1.ko", "replace": True})
    assert res["failed"] and "hand them the kernel" in res["msg"]
    assert "without the sticky bit" in res["msg"]
    assert proc_line(vm) == before


def test_absent_unloads(vm, modload):
    assert proc_line(vm) is not None
    res = modload({"name": "hello", "state": "absent"})
    assert not res.get("failed"), res.get("msg")
    assert res["action"] == "removed" and res["changed"] and proc_line(vm) is None
    assert any(line.startswith("hello: goodbye") for line in res["kernel_log"])
    assert guest(vm, f"ls {STATE_DIR}/modules").strip() == ""
    again = modload({"name": "hello", "state": "absent"})
    assert again["action"] == "none" and again["changed"] is False


def test_persistent_then_removed(vm, modload, staged, kernel):
    v2 = srcversion_of(staged["v2"])
    release = kernel.release
    args = {"path": f"{GUEST_DIR}/hello-v2.ko", "params": {"greeting": "boot"},
            "persistent": True}
    res = modload(args, diff=True)
    assert not res.get("failed"), res.get("msg")
    assert res["action"] == "inserted" and res["persistence"]["depmod"]
    made = [f["path"] for f in res["persistence"]["files"]]
    assert made == [f"/lib/modules/{release}/updates/hello.ko", "/etc/modules-load.d/hello.conf",
                    "/etc/modprobe.d/hello.conf"]
    assert "options hello greeting=boot" in guest(vm, "cat /etc/modprobe.d/hello.conf")
    assert guest(vm, "cat /etc/modules-load.d/hello.conf").splitlines()[-1] == "hello"
    again = modload(args)
    assert again["changed"] is False and not again["persistence"]["changed"]

    # modprobe finds it after depmod, with the options, without this collection
    assert guest(vm, "modinfo -n hello").strip() == f"/lib/modules/{release}/updates/hello.ko"
    guest(vm, "rmmod hello && modprobe hello")
    assert loaded_srcversion(vm) == v2
    assert guest(vm, "cat /sys/module/hello/parameters/greeting").strip() == "boot"

    gone = modload({"name": "hello", "state": "absent", "persistent": True})
    assert not gone.get("failed"), gone.get("msg")
    assert gone["action"] == "removed" and proc_line(vm) is None
    left = guest(vm, f"ls /lib/modules/{release}/updates/hello.ko /etc/modules-load.d/hello.conf "
                     f"/etc/modprobe.d/hello.conf {STATE_DIR}/persist/hello.json "
                     f"{STATE_DIR}/modules/hello 2>&1 || true")
    assert left.count("No such file or directory") == 5, left
    assert vm.ssh(["modprobe", "-n", "hello"]).returncode != 0  # depmod ran again: gone
    assert guest(vm, "ls /etc/modules-load.d").split() == ["modules.conf"]


def test_boot_id_unchanged(vm):
    assert vm.boot_id() == vm.first_boot_id
