"""The real kernel's answer to the sample module and its variants (tests/support/variants.py).

End to end: the sample module is built on this machine against Debian's cached headers,
copied into the VM that runs that very kernel, inserted, seen in /proc/modules and the kernel
log, removed. Then variants b..e show what the kernel refuses and with which message: the
facts the verdict of ``vermagic.kmod.modinfo`` and ``modload``'s preflight must match.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.debian import DebianKernel
from tests.support.variants import VARIANTS, Variant, build_all, build_hello
from tests.vm.machine import VM


@pytest.fixture(scope="module")
def variants(kernel: DebianKernel, tmp_path_factory: pytest.TempPathFactory,
             vm: VM) -> dict[str, Variant]:
    built = build_all(kernel, tmp_path_factory.mktemp("variants"))
    for name, variant in built.items():
        vm.copy_to(variant.ko, f"/root/variants/{name}/hello.ko")
    return built


def _loaded(vm: VM) -> bool:
    return bool(re.search(r"^hello ", vm.ssh(["cat", "/proc/modules"], check=True).stdout, re.M))


def test_sample_module_end_to_end(vm: VM, variants: dict[str, Variant]) -> None:
    srcversion = subprocess.run(["modinfo", "-F", "srcversion", str(variants["a"].ko)],
                                capture_output=True, text=True, check=True).stdout.strip()
    assert not _loaded(vm)
    mark = vm.log_mark()
    vm.ssh(["insmod", "/root/variants/a/hello.ko", "greeting=hi-from-pytest", "repeat=2"],
           check=True)
    assert _loaded(vm)
    assert vm.ssh(["cat", "/sys/module/hello/srcversion"], check=True).stdout.strip() == srcversion
    params = vm.ssh("cat /sys/module/hello/parameters/greeting "
                    "/sys/module/hello/parameters/repeat", check=True).stdout.split()
    assert params == ["hi-from-pytest", "2"]
    log = vm.dmesg_since(mark)
    greeting = f"hello: hi-from-pytest from version 1.0 (built for {vm.release}, "
    assert sum(greeting in line for line in log) == 2, log
    taint = int(vm.ssh(["cat", "/proc/sys/kernel/tainted"], check=True).stdout)
    assert taint & (1 << 12) and taint & (1 << 13)  # O (out-of-tree), E (unsigned)
    print(f"\n[a] loaded; kernel log: {log}")
    vm.ssh(["rmmod", "hello"], check=True)
    assert not _loaded(vm)
    assert any("hello: goodbye from version 1.0" in line for line in vm.dmesg_since(mark))


@pytest.mark.parametrize("name", ["b", "c", "d", "e"])
def test_kernel_answer_to_variant(vm: VM, variants: dict[str, Variant], name: str) -> None:
    variant = variants[name]
    assert variant.loads == VARIANTS[name][1]
    assert not _loaded(vm)
    mark = vm.log_mark()
    proc = vm.ssh(["insmod", f"/root/variants/{name}/hello.ko"])
    log = [line for line in vm.dmesg_since(mark) if "hello" in line]
    print(f"\n[{name}] {variant.description}: insmod exit {proc.returncode} "
          f"{proc.stderr.strip()!r}; kernel log: {log}")
    assert any(re.search(variant.dmesg, line) for line in log), (variant.dmesg, log)
    if variant.loads:
        assert proc.returncode == 0 and _loaded(vm)
        vm.ssh(["rmmod", "hello"], check=True)
    else:
        assert proc.returncode != 0 and not _loaded(vm)
        assert variant.insmod_error and variant.insmod_error in proc.stderr


def test_variants_were_built_from_the_cached_headers(variants: dict[str, Variant],
                                                     kernel: DebianKernel) -> None:
    assert variants["a"].headers == kernel.headers
    assert all(Path(v.ko).is_file() for v in variants.values())


def test_version_gives_another_srcversion(kernel: DebianKernel, tmp_path: Path) -> None:
    """What the replace tests of modload rely on: v1 and v2 differ in srcversion."""
    def srcversion(ko: Path) -> str:
        return subprocess.run(["modinfo", "-F", "srcversion", str(ko)], capture_output=True,
                              text=True, check=True).stdout.strip()

    v1 = build_hello(kernel.headers, tmp_path / "v1")
    v2 = build_hello(kernel.headers, tmp_path / "v2", version="2.0")
    assert srcversion(v1) != srcversion(v2)
    assert subprocess.run(["modinfo", "-F", "version", str(v2)], capture_output=True,
                          text=True, check=True).stdout.strip() == "2.0"
