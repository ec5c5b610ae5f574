"""kernel_facts' gather on Debian's kernel image, against the straightforward module discovery.

``_kernel_facts.gather(root, release)`` runs on every modload (the preflight needs the running
kernel's facts), so on a slow host (a qemu TCG guest runs Python some 50x slower) each
deploy rerun pays for it. Most of its work is finding the in-tree modules: one to read the
vermagic from, and how they are compressed. The baseline is the straightforward way to find
them: ``os.walk`` over ``lib/modules/<release>/kernel`` with ``os.stat`` and
``os.path.relpath`` per module file (4,023 of them), which is how gather did it at first.

Subject: the whole ``gather`` (config parsed, vermagic read from an in-tree module, build dir,
symvers sources, compression counted over every module file). Target: at most 0.5x the
baseline's time (best of ``--repeat``, page cache warm).

    python3 bench/kernel_facts.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time

from _setup import progress  # noqa: E402  (first: the checkout and the collection importable)

from ansible_collections.vermagic.kmod.plugins.module_utils._kernel_facts import (  # noqa: E402
    MODULE_SUFFIXES, gather)
from tests.support.debian import fetch  # noqa: E402

TARGET_RATIO = 0.5


say = progress("bench kernel_facts")


def naive_discovery(moddir: str) -> list[tuple[str, int, str]]:
    """Every in-tree module file as ``(relative path, size, compression)``, the simple way."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(os.path.join(moddir, "kernel")):
        for name in filenames:
            for suffix, kind in MODULE_SUFFIXES.items():
                if name.endswith(suffix):
                    path = os.path.join(dirpath, name)
                    info = os.stat(path)
                    if stat.S_ISREG(info.st_mode):
                        found.append((os.path.relpath(path, moddir), info.st_size, kind))
                    break
    return found


def timed(func, *args) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    cpu = time.process_time()
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    kernel = fetch()
    root, release = str(kernel.root), kernel.release
    moddir = os.path.join(root, "lib", "modules", release)
    say(f"{root}, release {release}; warming the page cache")
    files = naive_discovery(moddir)
    facts, _warnings = gather(root, release)
    say(f"{len(files)} in-tree module files; gather: vermagic from {facts['vermagic_source']}, "
        f"compression {facts['module_compression']}")

    naive_runs, gather_runs = [], []
    for run in range(1, args.repeat + 1):
        naive_runs.append(timed(naive_discovery, moddir))
        gather_runs.append(timed(gather, root, release))
        say(f"run {run}/{args.repeat}: naive discovery {naive_runs[-1][0] * 1000:.1f} ms, "
            f"gather {gather_runs[-1][0] * 1000:.1f} ms")
    naive = min(wall for wall, _cpu in naive_runs)
    ours = min(wall for wall, _cpu in gather_runs)
    naive_cpu = min(cpu for _wall, cpu in naive_runs)
    ours_cpu = min(cpu for _wall, cpu in gather_runs)
    ratio = ours / naive
    print(f"best of {args.repeat} (wall; CPU = user + system of this process)")
    print(f"naive module discovery (os.walk, stat, relpath)  wall {naive * 1000:6.1f} ms  "
          f"CPU {naive_cpu * 1000:6.1f} ms")
    print(f"gather, all facts                                wall {ours * 1000:6.1f} ms  "
          f"CPU {ours_cpu * 1000:6.1f} ms   ratio {ratio:.2f}x   target <= {TARGET_RATIO}x")
    if ratio > TARGET_RATIO:
        print(f"MISSED: gather took {ratio:.2f}x the naive discovery (target {TARGET_RATIO}x)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
