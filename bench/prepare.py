"""Preparing a kernel source tree through the collection vs a bare ``make``.

Subject: the preparation path of issue 3 through the modules' own code (in-process, as Ansible
runs them): ``kernel_release`` (the image's release, header mode), ``symvers`` (the headers
package's copy, ``source: headers``) and ``kbuild`` (the image's ``/boot/config-*`` as
``config``: olddefconfig + ``modules_prepare``). Baseline: the same config copied by hand, then
a bare ``make olddefconfig`` and ``make -jN modules_prepare``. Both run on hard-link clones of
one unpacked Debian ``linux-source-6.1`` (same files, same page cache), in alternating order,
for ``--rounds`` rounds. The ratio is subject / baseline per round; the target is the median at
most 1.1. CPU time (this process and its children) is measured beside it: on a machine busy with
other work the wall times of both sides swing by tens of percent (0.44 to 1.39 in one run here at
a load average of 10 on 2 CPUs), their CPU times by a few. The verdict uses the wall-time median
when the load average stayed at most the number of CPUs, the CPU-time median otherwise; both are
printed. The skipped second run of the subject is timed too.

    python3 bench/prepare.py [--rounds N] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _setup import progress  # noqa: E402  (first: the checkout and the collection importable)

from ansible_collections.vermagic.kmod.plugins.modules import (  # noqa: E402
    kbuild,
    kernel_release,
    symvers,
)
from tests.support import source_tree  # noqa: E402
from tests.support.debian import DebianKernel, fetch  # noqa: E402
from tests.support.module_runner import run_module  # noqa: E402

TARGET_RATIO = 1.1


say = progress("bench prepare")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (make, gcc): load-independent."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def baseline(tree: Path, kernel: DebianKernel, jobs: int) -> float:
    start = time.monotonic()
    shutil.copyfile(kernel.config, tree / ".config")
    for argv in (["make", "olddefconfig"], ["make", f"-j{jobs}", "modules_prepare"]):
        subprocess.run(argv, cwd=tree, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - start


def steps(tree: Path, kernel: DebianKernel, jobs: int) -> list[tuple[str, object, dict]]:
    return [
        ("kernel_release", kernel_release.main, {"path": str(tree), "release": kernel.release}),
        ("symvers", symvers.main, {"dest": str(tree), "root": str(kernel.root),
                                   "release": kernel.release, "source": "headers"}),
        ("kbuild", kbuild.main, {"kernel_dir": str(tree), "config": str(kernel.config),
                                 "jobs": jobs}),
    ]


def subject(tree: Path, kernel: DebianKernel, jobs: int) -> tuple[float, dict[str, float]]:
    parts = {}
    start = time.monotonic()
    for name, main, args in steps(tree, kernel, jobs):
        t0 = time.monotonic()
        result = run_module(main, args)
        parts[name] = time.monotonic() - t0
        if result.get("failed"):
            raise SystemExit(f"{name} failed: {result.get('msg')}")
        if not result.get("changed"):
            raise SystemExit(f"{name} changed nothing on a fresh tree")
    return time.monotonic() - start, parts


def second_run(tree: Path, kernel: DebianKernel, jobs: int) -> float:
    start = time.monotonic()
    for name, main, args in steps(tree, kernel, jobs):
        result = run_module(main, args)
        if result.get("failed") or result.get("changed"):
            raise SystemExit(f"{name} on the second run: changed={result.get('changed')} "
                             f"{result.get('msg', '')}")
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if shutil.which("gcc-12") is None:
        raise SystemExit("gcc-12 is needed (the compiler of Debian 12's kernel)")
    kernel = fetch()
    work = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        pristine = source_tree.unpack(kernel.source_tarball(), work / "pristine")
        ratios, cpu_ratios, loads = [], [], []
        for n in range(1, args.rounds + 1):
            times, cpu = {}, {}
            loads.append(os.getloadavg()[0])
            order = ("baseline", "subject") if n % 2 else ("subject", "baseline")
            for which in order:
                tree = source_tree.clone(pristine, work / f"{which}-{n}")
                say(f"round {n}/{args.rounds}: {which} on {tree}")
                cpu_start = cpu_seconds()
                if which == "baseline":
                    times[which] = baseline(tree, kernel, args.jobs)
                    say(f"  make olddefconfig + modules_prepare: {times[which]:.1f} s")
                else:
                    times[which], parts = subject(tree, kernel, args.jobs)
                    say("  " + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
                        + f": {times[which]:.1f} s")
                cpu[which] = cpu_seconds() - cpu_start
                loads.append(os.getloadavg()[0])
                if which == "subject":
                    again = second_run(tree, kernel, args.jobs)
                    say(f"  second run (all skipped, no make): {again:.2f} s")
                shutil.rmtree(tree)
            ratio = times["subject"] / times["baseline"]
            cpu_ratio = cpu["subject"] / cpu["baseline"]
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
            print(f"round {n}: subject {times['subject']:.1f} s, baseline {times['baseline']:.1f} s,"
                  f" ratio {ratio:.3f}; CPU {cpu['subject']:.1f} s vs {cpu['baseline']:.1f} s, "
                  f"ratio {cpu_ratio:.3f}", flush=True)
        wall, cpu_median = statistics.median(ratios), statistics.median(cpu_ratios)
        quiet = max(loads) <= (os.cpu_count() or 1)
        judged = wall if quiet else cpu_median
        verdict = "met" if judged <= TARGET_RATIO else "MISSED"
        print(f"median wall-time ratio {wall:.3f}, median CPU-time ratio {cpu_median:.3f} over "
              f"{len(ratios)} round(s); load average up to {max(loads):.1f} on {os.cpu_count()} "
              f"CPU(s): judged by {'wall' if quiet else 'CPU'} time (target <= {TARGET_RATIO}): "
              f"{verdict}", flush=True)
        return 0 if judged <= TARGET_RATIO else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
