"""A module the kernel would refuse stops that host before insertion; the other hosts go on.
And check mode on a fresh host changes nothing and reports the verdict it would act on.

Two fresh VMs (profile ``base``: no compiler, no headers, no pyelftools) run Debian's generic
kernel. ``alpha`` gets the sample module built here against the generic kernel's headers,
``bravo`` the same source built against the *cloud* flavour's headers (``apt-get download``ed
by ``tests.support.debian``), both as prebuilt ``kmod_module_file``. The role installs
pyelftools on both (the guests reach this machine's mirror), judges each module, stops ``bravo``
with a message naming the mismatch and goes on with ``alpha``.

With ``serial: 1`` and ``bravo`` first, the rollout stops at ``bravo``: ``alpha`` is not touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.support.debian import DebianKernel, fetch
from tests.support.variants import build_hello
from tests.vm.deploy import guest_state, run_deploy, write_inventory
from tests.vm.machine import VM


@pytest.fixture(scope="module")
def modules(kernel: DebianKernel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("modules")
    cloud = fetch(flavour="cloud-amd64", image=False)
    assert cloud.release != kernel.release and cloud.release.endswith("-cloud-amd64")
    return {"generic": build_hello(kernel.headers, base / "generic"),
            "cloud": build_hello(cloud.headers, base / "cloud")}


def test_check_mode_then_refusal_stops_one_host_only(
        vm_factory: Callable[..., VM], kernel: DebianKernel, modules: dict[str, Path],
        tmp_path: Path) -> None:
    bravo = vm_factory(kernel=kernel, profile="base", name=None)
    alpha = vm_factory(kernel=kernel, profile="base", name=None)

    # Check mode on a fresh host: the default job (build the bundled sample module).
    one = write_inventory([alpha], tmp_path / "alpha.ini")
    before = guest_state(alpha)
    check = run_deploy(one, check=True, diff=True, label="check mode")
    assert check.rc == 0, check.explain()
    assert guest_state(alpha) == before
    summary = check.summaries[alpha.name]
    assert summary["check_mode"] is True
    assert summary["verdict"]["kind"] == "kernel"
    assert summary["verdict"]["compatible"] is True
    assert [w["code"] for w in summary["verdict"]["warnings"]] == ["not_built"]
    assert summary["tree"]["kind"] == "package"  # what it would install: linux-headers-<release>
    assert summary["action"] == "none"
    assert "python3-pyelftools" in check.output  # reported as what would be installed

    inventory = write_inventory([bravo, alpha], tmp_path / "both.ini", {
        bravo.name: {"kmod_module_file": str(modules["cloud"])},
        alpha.name: {"kmod_module_file": str(modules["generic"])}})

    # serial 1, bravo first: the rollout stops at the refused host.
    rolling = run_deploy(inventory, {"kmod_serial": 1, "kmod_max_fail_percentage": 0},
                         label="serial 1")
    assert rolling.rc != 0
    assert rolling.recap[bravo.name]["failed"] == 1
    assert alpha.name not in rolling.recap  # never reached
    assert alpha.ssh(["test", "-e", "/sys/module/hello"]).returncode != 0

    # All at once: bravo stops before insertion, alpha goes on.
    run = run_deploy(inventory, label="both")
    assert run.rc != 0
    assert run.recap[bravo.name]["failed"] == 1
    assert run.recap[alpha.name]["failed"] == 0
    refused = run.summaries[bravo.name]
    assert refused["ok"] is False
    assert refused["verdict"]["compatible"] is False
    codes = [p["code"] for p in refused["verdict"]["problems"]]
    assert codes, refused["verdict"]
    assert refused["action"] == "none"
    assert "would refuse" in refused["error"] and "Nothing was inserted" in refused["error"]
    assert any(code in refused["error"] for code in codes)
    assert "6.1.0-56-cloud-amd64" in refused["error"] or "module_layout" in refused["error"] or \
        "preempt" in refused["error"], refused["error"]
    assert bravo.ssh(["test", "-e", "/sys/module/hello"]).returncode != 0
    assert "hello" not in bravo.dmesg()

    loaded = run.summaries[alpha.name]
    assert loaded["ok"] is True and loaded["action"] == "inserted"
    assert loaded["verdict"]["kind"] == "module"
    assert alpha.ssh("cat /sys/module/hello/srcversion", check=True).stdout.strip() == \
        loaded["module"]["srcversion"]
    for machine in (alpha, bravo):
        assert machine.boot_id() == machine.first_boot_id
