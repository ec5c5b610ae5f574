"""The deploy playbook's rerun on an up-to-date host against its first run on the same VM.

For each scenario a fresh VM boots Debian's stock kernel under qemu (``tests/vm``), then
``ansible-playbook vermagic.kmod.deploy`` runs three times with the same variables: the first run
does the work (headers package, build, insert); the rerun (the default, which finds the host as
the first run left it and ends after two plain commands) must change nothing, run no make and
take under 15% of the first run's wall time; a third run with ``kmod_fast_rerun=false`` does every
step (kernel facts, kbuild asked whether its fingerprint holds, modload) and must change nothing
and run no make either: its time is reported too. The module's kbuild log must be as the first
run left it, and the boot id unchanged.

Scenarios: ``package`` (profile ``build``, no headers: the first run installs
``linux-headers-<release>`` from the mirror, builds and inserts; what a fresh host needs),
``headers`` (profile ``headers``: the first run builds and inserts).

    python3 bench/deploy_rerun.py [--scenario package|headers|all] [--keep-going]

Under TCG (no KVM) every Python module run on the guest costs 3-4 s, so the runs are slow in
absolute terms; the ratios are what is compared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _setup import progress  # noqa: E402  (first: the checkout and the collection importable)
from tests.support.debian import fetch  # noqa: E402
from tests.vm.deploy import run_deploy  # noqa: E402
from tests.vm.machine import VM  # noqa: E402

TARGET_RATIO = 0.15
SCENARIOS = {"package": "build", "headers": "headers"}
BUILD_LOG = "/var/lib/vermagic-kmod/deploy/build/{release}/hello/.vermagic-kmod.log"


say = progress("bench deploy")


def scenario(name: str) -> dict:
    kernel = fetch()
    load_before = os.getloadavg()[0]
    with VM.boot(kernel=kernel, profile=SCENARIOS[name]) as vm:
        first = run_deploy(vm.inventory_path, label=f"{name} first run")
        if first.rc:
            raise SystemExit(f"{name}: the first run failed:\n{first.explain()}")
        log = BUILD_LOG.format(release=vm.release)
        stamp = vm.ssh(["stat", "-c", "%Y.%N", log], check=True).stdout.strip()
        rerun = run_deploy(vm.inventory_path, label=f"{name} rerun")
        if rerun.rc:
            raise SystemExit(f"{name}: the rerun failed:\n{rerun.explain()}")
        full = run_deploy(vm.inventory_path, {"kmod_fast_rerun": False},
                          label=f"{name} rerun, every step")
        if full.rc:
            raise SystemExit(f"{name}: the rerun with every step failed:\n{full.explain()}")
        stamp_after = vm.ssh(["stat", "-c", "%Y.%N", log], check=True).stdout.strip()
        summary = rerun.summaries[vm.name]
        boot_ok = vm.boot_id() == vm.first_boot_id
        return {
            "scenario": name, "first": first.seconds, "rerun": rerun.seconds,
            "ratio": rerun.seconds / first.seconds,
            "full": full.seconds,
            "changed": rerun.recap[vm.name]["changed"] + full.recap[vm.name]["changed"],
            "make": (stamp != stamp_after or summary["build"]["ran"]
                     or full.summaries[vm.name]["build"]["ran"]),
            "tree_first": first.summaries[vm.name]["tree"]["kind"],
            "action_first": first.summaries[vm.name]["action"],
            "boot_id_unchanged": boot_ok,
            "load": (load_before, os.getloadavg()[0]),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every scenario even when one misses the target")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    ok = True
    for name in names:
        start = time.monotonic()
        say(f"scenario {name} (profile {SCENARIOS[name]})")
        result = scenario(name)
        results.append(result)
        passed = (result["ratio"] < TARGET_RATIO and result["changed"] == 0
                  and not result["make"] and result["boot_id_unchanged"])
        ok = ok and passed
        say(f"scenario {name} done in {time.monotonic() - start:.0f} s: "
            f"{'PASS' if passed else 'FAIL'}")
        if not passed and not args.keep_going:
            break
    print(f"\n{'scenario':10} {'first run':>10} {'rerun':>8} {'ratio':>7} {'every step':>11} "
          f"{'ratio':>7} {'changed':>8} {'make':>5}  first run did            load avg")
    for r in results:
        print(f"{r['scenario']:10} {r['first']:9.1f}s {r['rerun']:7.1f}s {r['ratio']:7.1%} "
              f"{r['full']:10.1f}s {r['full'] / r['first']:7.1%} "
              f"{r['changed']:>8} {'yes' if r['make'] else 'no':>5}  "
              f"{r['tree_first']} tree, {r['action_first']:9}  "
              f"{r['load'][0]:.1f} -> {r['load'][1]:.1f}")
    print(f"target: rerun under {TARGET_RATIO:.0%} of the first run; both reruns changed=0 and "
          f"no make; same boot id: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
