# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pack a kernel module's source directory into one tar file, on the controller.

    pack_source.py SOURCE_DIR NAME  ->  prints {"path": ".../NAME.src.tar", "sha1": "..."}

The tar is the same bytes for the same files: members sorted by name, owner root, no
timestamps other than the files' own (make compares them). Build products (``*.o``, ``*.ko``,
``.*.cmd``, ...), version control directories and this collection's own files are left out, so a
source directory the user built in by hand ships only its sources. Python's tarfile needs no GNU
tar on the controller.

The file lives in the controller's cache (``$XDG_CACHE_HOME/vermagic-kmod/deploy-src/``, one
directory per source directory) and is replaced atomically, so hosts packing the same source at
the same time all see a whole file, and nothing is left to clean up.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

SKIPPED_DIRS = {".git", ".hg", ".svn", ".tmp_versions", "__pycache__"}
SKIPPED_FILES = ("*.o", "*.ko", "*.ko.*", "*.mod", "*.mod.c", "*.a", ".*.cmd", ".*.d",
                 "modules.order", "Module.symvers", ".vermagic-kmod*")


def members(root: str) -> list[str]:
    """Relative paths under ``root`` to pack, directories before their contents, sorted."""
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        rel_top = os.path.relpath(top, root)
        if rel_top != ".":
            found.append(rel_top)
        for name in sorted(files):
            if not any(fnmatch.fnmatch(name, pattern) for pattern in SKIPPED_FILES):
                found.append(os.path.normpath(os.path.join(rel_top, name)))
    return found


def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(root: str, dest: str) -> None:
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        for rel in members(root):
            tar.add(os.path.join(root, rel), arcname=rel, recursive=False, filter=normalized)


def cache_dir(root: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(os.path.realpath(root).encode("utf-8", "surrogateescape")).hexdigest()
    return Path(base) / "vermagic-kmod" / "deploy-src" / key[:16]


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not os.path.isdir(argv[1]):
        print(f"usage: {argv[0]} SOURCE_DIR NAME (SOURCE_DIR must be a directory)",
              file=sys.stderr)
        return 2
    root, name = argv[1], argv[2]
    directory = cache_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        pack(root, tmp)
        digest = hashlib.sha1()
        with open(tmp, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        dest = directory / f"{name}.src.tar"
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise
    print(json.dumps({"path": str(dest), "sha1": digest.hexdigest()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
