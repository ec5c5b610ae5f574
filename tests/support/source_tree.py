"""Debian's kernel source tree, unpacked for a test session.

``unpack(kernel, dest)`` extracts ``linux-source-X.Y.tar.xz`` (the one ``DebianKernel.source_tarball()``
gives) into ``dest`` and returns the tree (``dest/linux-source-X.Y``); about 15-20 s and 1.5 GB.
``session_tree(kernel, base)`` does it once per process, keyed by the tarball, so that every
test module of a session shares one tree (prepare it once, build against it many times).
``remove_session_trees()`` deletes them at the end of the session.

The cache stays read-only: trees are unpacked under ``base`` (a pytest temp dir), never in it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support.debian import DebianKernel

_TREES: dict[Path, Path] = {}


def say(msg: str) -> None:
    print(f"[source-tree] {msg}", file=sys.stderr, flush=True)


def unpack(kernel: DebianKernel, dest: Path) -> Path:
    tarball = kernel.source_tarball()
    dest.mkdir(parents=True, exist_ok=True)
    say(f"unpacking {tarball.name} ({tarball.stat().st_size / 1e6:.0f} MB) into {dest}")
    start = time.monotonic()
    subprocess.run(["tar", "-xJf", str(tarball), "-C", str(dest)], check=True)
    trees = [p for p in dest.iterdir() if p.is_dir() and p.name.startswith("linux-source-")]
    if len(trees) != 1:
        raise RuntimeError(f"{tarball} unpacked into {dest} as {trees}, expected one linux-source-*")
    say(f"  {trees[0]} in {time.monotonic() - start:.1f} s")
    return trees[0]


def session_tree(kernel: DebianKernel, base: Path) -> Path:
    """One unpacked tree per tarball for this process (the first caller's ``base`` holds it)."""
    tarball = kernel.source_tarball()
    tree = _TREES.get(tarball)
    if tree is None or not tree.exists():
        tree = unpack(kernel, base)
        _TREES[tarball] = tree
    return tree


def remove_session_trees() -> None:
    for tree in _TREES.values():
        shutil.rmtree(tree.parent, ignore_errors=True)
    _TREES.clear()
