"""Fixtures for tests on stock kernels under qemu.

* ``kernel`` (session): the stock Debian kernel (``tests.support.debian.fetch()``).
* ``vm`` (module): a fresh VM on that kernel, one per test module; the profile is the module's
  ``VM_PROFILE`` (``base`` when unset). Its boot id is checked at the end of the module: a test
  module that rebooted the guest fails.
* ``vm_factory`` (function): boot more VMs (another kernel release or profile) inside a test;
  all are stopped at the test's end.
* ``ansible_env`` (session): environment for ansible commands that sees this checkout.

Every VM is stopped by its qemu pid when its scope ends (and by PR_SET_PDEATHSIG if pytest dies).
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from tests.support.collection import ansible_env as _ansible_env
from tests.support.debian import DebianKernel, fetch
from tests.vm.machine import VM


@pytest.fixture(scope="session")
def kernel() -> DebianKernel:
    return fetch()


@pytest.fixture(scope="module")
def vm(request: pytest.FixtureRequest, kernel: DebianKernel) -> Iterator[VM]:
    profile = getattr(request.module, "VM_PROFILE", "base")
    with VM.boot(kernel=kernel, profile=profile) as machine:
        yield machine
        after = machine.boot_id()
        assert after == machine.first_boot_id, (
            f"{machine.name} rebooted during {request.module.__name__}: boot id "
            f"{machine.first_boot_id} -> {after}")


@pytest.fixture
def vm_factory() -> Iterator[Callable[..., VM]]:
    started: list[VM] = []

    def boot(**kwargs: object) -> VM:
        machine = VM.boot(**kwargs)  # type: ignore[arg-type]
        started.append(machine)
        return machine

    yield boot
    for machine in started:
        machine.stop()


@pytest.fixture(scope="session")
def ansible_env() -> dict[str, str]:
    return _ansible_env()
