"""Full-tree scan: this collection's module reader against kmod's ``modinfo`` on the same files.

Every in-tree module of Debian's kernel (``tests.support.debian.fetch()``, 4,023 signed files),
page cache warm (every file read and one kmod run before timing). Each side does the same job:

* kmod: ``modinfo -0 FILE…`` in one call (all ``.modinfo`` keys, and the signature: PKCS#7
  parsed with OpenSSL, signer, key id, hash, signature hex), output discarded.
* reader: in one Python process, ``read_module(path)`` then ``fields`` (the same keys and
  signature values kmod prints), ``name``, ``vermagic`` and ``signature``.

The target is the reader's loop at most 2.0x kmod's time (best wall time of ``--repeat`` runs;
CPU times are printed too, since other work on the machine inflates wall times unevenly). Also
printed: the full ``vermagic.kmod.modinfo`` result (``as_dict()``: adds the decoded
``__versions`` entries and the GNU build id, which kmod's modinfo does not read), the scan as a fresh ``python3``
process (interpreter start-up and imports included), and for reference a naive pyelftools loop
(``ELFFile`` per file, sections by name).

    python3 bench/scan.py [--repeat 5] [--no-naive] [--breakdown]

``--breakdown`` prints where the reader's CPU time goes, stage by stage (each stage's cost is
the difference between two cumulative passes over all files, best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _setup import ROOT, progress  # noqa: E402  (first: the checkout and the collection importable)

from elftools.elf.elffile import ELFFile  # noqa: E402

from ansible_collections.vermagic.kmod.plugins.module_utils import _modfile  # noqa: E402
from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module  # noqa: E402
from tests.support.collection import collections_dir  # noqa: E402
from tests.support.debian import fetch  # noqa: E402

TARGET_RATIO = 2.0


say = progress("bench scan")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def kmod_scan(paths: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``modinfo -0`` over all files."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(["modinfo", "-0", *paths], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"kmod modinfo failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return elapsed, _children_cpu() - cpu


def reader_scan(paths: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds: what kmod prints (fields with the signature keys), name, vermagic."""
    cpu = time.process_time()
    start = time.perf_counter()
    for path in paths:
        module = read_module(path)
        module.fields, module.name, module.vermagic, module.signature  # noqa: B018
    return time.perf_counter() - start, time.process_time() - cpu


def full_scan(paths: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of the whole module result without verdict (``as_dict()``)."""
    cpu = time.process_time()
    start = time.perf_counter()
    for path in paths:
        read_module(path).as_dict()
    return time.perf_counter() - start, time.process_time() - cpu


def naive_scan(paths: list[str]) -> float:
    """What a first pyelftools version does: ELFFile per file, sections looked up by name."""
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb") as handle:
            elf = ELFFile(handle)
            info = elf.get_section_by_name(".modinfo").data()
            fields: dict[str, list[str]] = {}
            for item in info.split(b"\0"):
                if item:
                    key, _sep, value = item.decode().partition("=")
                    fields.setdefault(key, []).append(value)
            versions = elf.get_section_by_name("__versions")
            raw = versions.data() if versions is not None else b""
            _crcs = [(int.from_bytes(raw[i:i + 8], "little"), raw[i + 8:i + 64].split(b"\0")[0])
                     for i in range(0, len(raw), 64)]
            _name = elf.get_section_by_name(".gnu.linkonce.this_module").data()[24:80]
            handle.seek(-28, os.SEEK_END)
            _signed = handle.read(28) == b"~Module signature appended~\n"
    return time.perf_counter() - start


def breakdown(paths: list[str], repeat: int) -> list[tuple[str, float]]:
    """CPU seconds per stage of the reader (cumulative passes, differences)."""
    def io_only() -> None:
        for path in paths:
            fd, size = _modfile._open(path)
            _modfile._FileView(fd, size)
            os.close(fd)

    def parse() -> None:
        for path in paths:
            read_module(path)

    def signature() -> None:
        for path in paths:
            read_module(path).signature  # noqa: B018

    def fields() -> None:
        for path in paths:
            read_module(path).fields  # noqa: B018

    def versions() -> None:
        for path in paths:
            module = read_module(path)
            module.fields, module.versions  # noqa: B018

    def full() -> None:
        for path in paths:
            read_module(path).as_dict()

    passes = [("open, fstat, first 16 KiB pread, close", io_only),
              ("ELF header, section table, .modinfo split, trailer (+ preads)", parse),
              ("PKCS#7 DER: signer, serial, digest", signature),
              ("fields dict, parm, signature hex", fields),
              ("__versions entries (not in kmod's modinfo)", versions),
              ("as_dict(): JSON-ready result", full)]
    out, before = [], 0.0
    for label, func in passes:
        best = float("inf")
        for _run in range(repeat):
            start = time.process_time()
            func()
            best = min(best, time.process_time() - start)
        out.append((label, best - before))
        before = best
    return out


def process_scan(paths: list[str], listing: Path) -> float:
    """The reader's scan as a fresh interpreter: start-up and imports included."""
    code = (
        "import sys; sys.path[:0] = sys.argv[2:4]\n"
        "from tests.support import subprocess_runner; subprocess_runner.register()\n"
        "from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module\n"
        "for p in open(sys.argv[1]).read().split('\\0'):\n"
        "    m = read_module(p); m.fields, m.name, m.vermagic, m.signature\n"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(listing), str(collections_dir()), str(ROOT)],
                   check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive pyelftools loop")
    parser.add_argument("--breakdown", action="store_true",
                        help="print the reader's CPU time per stage")
    args = parser.parse_args()

    kernel = fetch()
    paths = [str(p) for p in kernel.modules()]
    size = sum(os.path.getsize(p) for p in paths)
    say(f"{len(paths)} modules, {size / 1e6:.0f} MB, under {kernel.modules_dir}")
    say("warming the page cache (every file read, one kmod run, one reader run)")
    for path in paths:
        Path(path).read_bytes()
    kmod_scan(paths)
    reader_scan(paths)

    kmod_runs: list[tuple[float, float]] = []
    reader_runs: list[tuple[float, float]] = []
    full_runs: list[tuple[float, float]] = []
    process_times: list[float] = []
    listing = Path(os.environ.get("TMPDIR", "/tmp")) / f"vermagic-kmod-scan.{os.getpid()}"
    listing.write_text("\0".join(paths))
    try:
        for run in range(1, args.repeat + 1):
            kmod_runs.append(kmod_scan(paths))
            reader_runs.append(reader_scan(paths))
            full_runs.append(full_scan(paths))
            process_times.append(process_scan(paths, listing))
            say(f"run {run}/{args.repeat}: kmod {kmod_runs[-1][0]:.3f} s, reader "
                f"{reader_runs[-1][0]:.3f} s, full result {full_runs[-1][0]:.3f} s, reader "
                f"process {process_times[-1]:.3f} s")
        naive = None
        if not args.no_naive:
            naive = naive_scan(paths)
            say(f"naive pyelftools loop {naive:.3f} s")
    finally:
        listing.unlink()

    def best(runs: list[tuple[float, float]]) -> tuple[float, float, float]:
        walls = [wall for wall, _cpu in runs]
        return min(walls), statistics.median(walls), min(cpu for _wall, cpu in runs)

    kmod, kmod_median, kmod_cpu = best(kmod_runs)
    reader, reader_median, reader_cpu = best(reader_runs)
    full, _full_median, full_cpu = best(full_runs)
    process = min(process_times)
    ratio = reader / kmod
    print(f"files {len(paths)}, best of {args.repeat} (wall; CPU = user + system)")
    print(f"kmod modinfo -0, one call       wall {kmod:.3f} s (median {kmod_median:.3f})"
          f"  CPU {kmod_cpu:.3f} s")
    print(f"reader, one process             wall {reader:.3f} s (median {reader_median:.3f})"
          f"  CPU {reader_cpu:.3f} s   ratio {ratio:.2f}x wall, {reader_cpu / kmod_cpu:.2f}x CPU"
          f"   target <= {TARGET_RATIO}x")
    print(f"  + __versions, full result     wall {full:.3f} s  CPU {full_cpu:.3f} s"
          f"   ratio {full / kmod:.2f}x wall")
    print(f"reader, fresh python3 process   wall {process:.3f} s   ratio {process / kmod:.2f}x"
          " (interpreter start-up and imports included)")
    if naive is not None:
        print(f"naive pyelftools loop           wall {naive:.3f} s   ratio {naive / kmod:.2f}x"
              " (reference)")
    if args.breakdown:
        print("reader CPU time by stage (cumulative passes, differences):")
        for label, seconds in breakdown(paths, args.repeat):
            print(f"  {seconds * 1000:7.1f} ms  {seconds / len(paths) * 1e6:5.1f} us/file  {label}")
    if ratio > TARGET_RATIO:
        print(f"MISSED: the reader took {ratio:.2f}x kmod's time (target {TARGET_RATIO}x)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
