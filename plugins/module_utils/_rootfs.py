# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Paths inside a root file system (an unpacked image or a chroot) seen from the host.

An image keeps the symbolic links of the system it came from:
``lib/modules/6.1.0-56-amd64/build -> /usr/src/linux-headers-6.1.0-56-amd64`` is absolute, and
on the host it would point at the host's own ``/usr/src``. ``resolve()`` follows links the way
the kernel would after ``chroot(root)``: absolute targets start again at ``root`` and ``..``
never climbs above it.
"""

from __future__ import annotations

import os

MAX_LINKS = 40  # the kernel's MAXSYMLINKS


class RootPathError(Exception):
    """A path that cannot be resolved inside the root (a symbolic-link loop)."""


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve(root: str, path: str) -> str:
    """The host path of ``path`` (as seen inside ``root``), symbolic links resolved inside it.

    Components that do not exist are kept as they are, so the result names what is missing.
    """
    root = os.path.abspath(root)
    done: list[str] = []
    todo = _parts(path)
    todo.reverse()
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        if os.path.islink(candidate):
            links += 1
            if links > MAX_LINKS:
                raise RootPathError(f"too many levels of symbolic links resolving {path} "
                                    f"inside {root}")
            try:
                target = os.readlink(candidate)
            except OSError as exc:
                raise RootPathError(f"cannot read the link {candidate}: {exc.strerror}") from None
            if target.startswith("/"):
                done = []
            todo.extend(reversed(_parts(target)))
            continue
        done.append(part)
    return os.path.join(root, *done)


def inside(root: str, path: str) -> str:
    """``path`` (as seen inside ``root``) on the host, without resolving links: for messages."""
    if os.path.abspath(root) == "/":
        return "/" + "/".join(_parts(path))
    return os.path.join(os.path.abspath(root), *_parts(path))
