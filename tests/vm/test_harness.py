"""The VM harness on the real stock kernel: boot, SSH, modules, network, ansible, several VMs."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from tests.support.debian import DebianKernel
from tests.vm import sources
from tests.vm.image import GUEST_ADDRESS, GUEST_GATEWAY
from tests.vm.machine import VM, run_ansible

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_runs_the_stock_kernel(vm: VM, kernel: DebianKernel) -> None:
    assert vm.uname_r() == kernel.release
    # The running kernel is Debian's build of that package version, not something else.
    assert kernel.version in vm.ssh(["uname", "-v"], check=True).stdout
    assert vm.accel in ("tcg", "kvm")


def test_boot_id_is_stable_across_commands(vm: VM) -> None:
    assert UUID.match(vm.first_boot_id)
    ids = {vm.boot_id() for _attempt in range(3)}
    assert ids == {vm.first_boot_id}


def test_console_log_has_kernel_and_initramfs(vm: VM, kernel: DebianKernel) -> None:
    text = vm.console_log.read_text(errors="replace")
    assert f"Linux version {kernel.release}" in text
    assert "initramfs: root /dev/vda mounted" in text
    assert "insmod" not in text  # the initramfs reports only failed inserts


def test_module_tree_is_the_kernels_own(vm: VM, kernel: DebianKernel) -> None:
    tree = f"/lib/modules/{kernel.release}"
    count = vm.ssh(f"find {tree}/kernel -name '*.ko' | wc -l", check=True).stdout.strip()
    assert int(count) == len(kernel.modules())
    assert vm.ssh(["test", "-s", f"{tree}/modules.dep"]).returncode == 0
    # As on a real host without headers: the build link dangles.
    assert vm.ssh(["readlink", f"{tree}/build"], check=True).stdout.strip() == \
        f"/usr/src/linux-headers-{kernel.release}"


def test_modprobe_of_an_in_tree_module(vm: VM) -> None:
    assert vm.ssh(["test", "-e", "/sys/module/dummy"]).returncode != 0
    taint_before = vm.ssh(["cat", "/proc/sys/kernel/tainted"], check=True).stdout.strip()
    mark = vm.log_mark()
    vm.ssh(["modprobe", "dummy"], check=True)
    assert re.search(r"^dummy ", vm.ssh(["cat", "/proc/modules"], check=True).stdout, re.M)
    # Debian's signed in-tree module: no taint.
    assert vm.ssh(["cat", "/proc/sys/kernel/tainted"], check=True).stdout.strip() == taint_before
    assert not any("taint" in line for line in vm.dmesg_since(mark))
    vm.ssh(["modprobe", "-r", "dummy"], check=True)
    assert vm.ssh(["test", "-e", "/sys/module/dummy"]).returncode != 0


def test_guest_network_is_static(vm: VM) -> None:
    addr = vm.ssh(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=True).stdout
    assert GUEST_ADDRESS in addr
    route = vm.ssh(["ip", "route", "show", "default"], check=True).stdout
    assert f"default via {GUEST_GATEWAY}" in route


def test_guest_apt_uses_this_machines_mirror(vm: VM, kernel: DebianKernel) -> None:
    wanted = sources.render_deb822(
        sources.distribution_sources(sources.read_sources(), sources.host_codename()))
    have = vm.ssh(["cat", "/etc/apt/sources.list.d/distribution.sources"], check=True).stdout
    assert have == wanted
    assert vm.ssh(["test", "-e", "/etc/apt/sources.list"]).returncode != 0
    # Through qemu's user network: the guest finds the headers of its own kernel.
    vm.ssh(["apt-get", "update", "-q"], check=True, timeout=600)
    policy = vm.ssh(["apt-cache", "policy", f"linux-headers-{kernel.release}"], check=True).stdout
    assert re.search(r"Candidate: \S+", policy) and "Candidate: (none)" not in policy, policy


def test_copy_to_and_from(vm: VM, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(bytes(range(256)) * 64)
    (tree / "sub" / "b.txt").write_text("b\n")
    vm.copy_to(tree, "/root/copied")
    listing = vm.ssh("cd /root/copied && sha256sum a.bin sub/b.txt", check=True).stdout
    assert hashlib.sha256((tree / "a.bin").read_bytes()).hexdigest() in listing
    single = tmp_path / "script.sh"
    single.write_text("#!/bin/sh\necho ran\n")
    single.chmod(0o755)
    vm.copy_to(single, "/root/bin/script.sh")
    assert vm.ssh(["/root/bin/script.sh"], check=True).stdout == "ran\n"
    back = vm.copy_from("/root/copied/a.bin", tmp_path / "back.bin")
    assert back.read_bytes() == (tree / "a.bin").read_bytes()


def test_overlay_leaves_the_base_image_clean(vm: VM) -> None:
    vm.ssh("echo dirty > /root/dirty && sync", check=True)
    # The cached image is read-only and does not know the file: the next VM starts clean.
    assert not vm.image.disk.stat().st_mode & 0o222
    found = subprocess.run(["debugfs", "-R", "stat /root/dirty", str(vm.image.disk)],
                           capture_output=True, text=True, check=False)
    assert "File not found" in found.stderr, found.stderr


def test_ansible_ping_with_pipelining(vm: VM, ansible_env: dict[str, str]) -> None:
    proc = run_ansible(["ansible", "-i", str(vm.inventory_path), "all", "-m", "ping", "-vvv"],
                       ansible_env)
    assert proc.returncode == 0
    assert "Pipelining is enabled" in proc.stdout
    assert '"ping": "pong"' in proc.stdout
    facts = run_ansible(["ansible", "-i", str(vm.inventory_path), "all", "-m", "setup",
                         "-a", "filter=ansible_kernel"], ansible_env)
    assert facts.returncode == 0 and f'"ansible_kernel": "{vm.release}"' in facts.stdout


def test_another_kernel_in_a_second_vm_at_the_same_time(
        vm: VM, kernel: DebianKernel, vm_factory, ansible_env: dict[str, str],
        tmp_path: Path) -> None:
    cloud = kernel.release.replace("-amd64", "-cloud-amd64")
    other = vm_factory(release=cloud)
    assert vm.running() and other.running()
    assert other.port != vm.port
    assert other.uname_r() == cloud != vm.uname_r()
    assert other.first_boot_id != vm.first_boot_id
    assert other.ssh(["test", "-e", "/root/dirty"]).returncode != 0
    inventory = VM.write_inventory([vm, other], tmp_path / "both.ini")
    proc = run_ansible(["ansible", "-i", str(inventory), "vms", "-m", "command",
                        "-a", "uname -r"], ansible_env)
    assert proc.returncode == 0
    assert f"{vm.name} | CHANGED | rc=0 >>\n{vm.release}" in proc.stdout
    assert f"{other.name} | CHANGED | rc=0 >>\n{cloud}" in proc.stdout
