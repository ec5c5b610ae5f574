"""Debian's Linux source, unpacked once and handed out as cheap copies.

Unpacking ``linux-source-6.1.tar.xz`` takes 10-20 s; a copy made of hard links takes half a
second. A copy is safe to change as long as every write replaces a file rather than writing into
it: kbuild (filechk, kconfig) and this collection's modules (``write_atomic``) do. ``modified``
checks that afterwards: it names any file of the pristine tree written since it was unpacked.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path


def say(msg: str) -> None:
    print(f"[source-tree] {msg}", file=sys.stderr, flush=True)


def tarball_key(tarball: Path) -> str:
    st = tarball.stat()
    return hashlib.sha256(f"{tarball.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def unpack(tarball: Path, dest: Path) -> Path:
    """Unpack ``tarball`` into ``dest``; the tree's top directory (stamped with the unpack time)."""
    dest.mkdir(parents=True, exist_ok=True)
    say(f"unpacking {tarball.name} into {dest}")
    start = time.monotonic()
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(dest)], check=True)
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise RuntimeError(f"{tarball} did not unpack into one directory: {tops}")
    (dest / ".unpacked").touch()
    say(f"  unpacked in {time.monotonic() - start:.1f} s")
    return tops[0]


def clone(pristine: Path, dest: Path) -> Path:
    """A copy of ``pristine`` made of hard links (``cp -al``)."""
    subprocess.run(["cp", "-al", str(pristine), str(dest)], check=True)
    return dest


def modified(pristine: Path) -> list[str]:
    """Files of the pristine tree written after it was unpacked (should be none)."""
    stamp = pristine.parent / ".unpacked"
    found = subprocess.run(["find", str(pristine), "-type", "f", "-newer", str(stamp)],
                           capture_output=True, text=True, check=True).stdout.split()
    return [os.path.relpath(path, pristine) for path in found]


_SESSION: dict[str, Path] = {}


def session_pristine(tarball: Path, mktemp) -> Path:
    """One pristine tree per tarball for the whole test session, shared by every test module.

    ``mktemp`` is pytest's ``tmp_path_factory.mktemp``; clone the result before changing it.
    """
    key = tarball_key(tarball)
    top = _SESSION.get(key)
    if top is None or not top.exists():
        top = unpack(tarball, mktemp(f"source-{key}"))
        _SESSION[key] = top
    return top
