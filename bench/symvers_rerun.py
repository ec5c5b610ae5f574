"""A ``symvers`` rerun with unchanged inputs (answered from its stamp) against a full rerun.

Both are the module run in-process (``tests.support.module_runner``) on Debian's real kernel
(``tests.support.debian.fetch()``), for ``source=headers`` (the image with its headers package)
and ``source=recover`` (the image without them), into a directory that already holds the right
``Module.symvers``. The baseline is the rerun as it was before stamps: the stamp is removed
first, so the source is read again and all 4,023 in-tree modules with it (and the stamp written
again). The subject is the same rerun with the stamp there: it must say ``cached`` and read no
module. Judged by CPU time (steadier than wall time on a shared machine); the target is a cached
rerun at most a tenth of the full one.

    python3 bench/symvers_rerun.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from _setup import progress  # noqa: E402  (first: the checkout and the collection importable)

from ansible_collections.vermagic.kmod.plugins.module_utils._symvers_stamp import (  # noqa: E402
    stamp_path)
from ansible_collections.vermagic.kmod.plugins.modules import symvers  # noqa: E402
from tests.support.debian import fetch  # noqa: E402
from tests.support.module_runner import run_module  # noqa: E402

TARGET_RATIO = 0.1


say = progress("bench symvers rerun")


def timed(call: Callable[[], dict[str, Any]]) -> tuple[float, float, dict[str, Any]]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def headerless(kernel: Any, work: str) -> str:
    """The image without its headers: boot, and lib/modules/<release> without build/source."""
    root = os.path.join(work, "root")
    modules = os.path.join(root, "lib", "modules", kernel.release)
    os.makedirs(modules)
    os.symlink(kernel.root / "boot", os.path.join(root, "boot"))
    for entry in kernel.modules_dir.iterdir():
        if entry.name not in ("build", "source"):
            os.symlink(entry, os.path.join(modules, entry.name))
    return root


def measure(name: str, args: dict[str, Any], repeat: int) -> tuple[float, float]:
    dest = os.path.join(args["dest"], "Module.symvers")
    first = run_module(symvers.main, args)
    assert not first["failed"], first["msg"]
    full: list[tuple[float, float]] = []
    cached: list[tuple[float, float]] = []
    for run in range(1, repeat + 1):
        say(f"{name}: full rerun {run}/{repeat}")
        os.unlink(stamp_path(dest))
        wall, cpu, result = timed(lambda: run_module(symvers.main, args))
        assert not result["changed"] and not result["cached"], result
        full.append((wall, cpu))
        say(f"{name}: cached rerun {run}/{repeat}")
        wall, cpu, result = timed(lambda: run_module(symvers.main, args))
        assert not result["changed"] and result["cached"], result
        assert result["symbols"] == first["symbols"] and result["conflicts"] == first["conflicts"]
        cached.append((wall, cpu))
    for label, times in (("full rerun", full), ("cached rerun", cached)):
        walls, cpus = [t[0] for t in times], [t[1] for t in times]
        print(f"{name:8} {label:13} wall best {min(walls):6.3f} s median {statistics.median(walls):6.3f} s"
              f"  CPU best {min(cpus):6.3f} s median {statistics.median(cpus):6.3f} s")
    return min(t[1] for t in full), min(t[1] for t in cached)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (best counts)")
    args = parser.parse_args()
    kernel = fetch()
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-symvers-rerun-") as work:
        cases = {"headers": str(kernel.root), "recover": headerless(kernel, work)}
        print(f"kernel {kernel.release}: {len(kernel.modules())} in-tree modules, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        for source, root in cases.items():
            dest = os.path.join(work, source)
            os.mkdir(dest)
            full, cached = measure(source, dict(dest=dest, root=root, release=kernel.release,
                                                source=source), args.repeat)
            ratio = cached / full
            met = ratio <= TARGET_RATIO
            ok = ok and met
            print(f"{source:8} ratio (CPU, best): {ratio:.3f} of the full rerun "
                  f"({full / cached:.0f}x faster); target at most {TARGET_RATIO}: "
                  + ("met" if met else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
