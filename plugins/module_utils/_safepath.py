# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Whether only root could have written a file: loading anything else hands the kernel to others.

A file is trusted when it and every directory above it (of the path as given, symbolic links
included, and of the path they resolve to) are owned by root and not writable by group or
others. A group- or other-writable directory is accepted only with the sticky bit (like
``/tmp``): others can then add names to it but cannot rename or remove root's. POSIX ACLs are
not read.
"""

from __future__ import annotations

import os
import stat
from typing import Callable

Lstat = Callable[[str], os.stat_result]


def _who(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _whom(writable: int) -> str:
    if writable == stat.S_IWGRP | stat.S_IWOTH:
        return "group and others"
    return "its group" if writable == stat.S_IWGRP else "others"


def _chain(path: str) -> list[str]:
    path = os.path.abspath(path)
    chain = [path]
    while True:
        parent = os.path.dirname(chain[-1])
        if parent == chain[-1]:
            break
        chain.append(parent)
    return list(reversed(chain))


def untrusted_reasons(path: str, lstat: Lstat = os.lstat) -> list[str]:
    """Why ``path`` is not safe to load (empty when only root could have written it)."""
    reasons: list[str] = []
    seen: set[str] = set()
    paths = [os.path.abspath(path)]
    real = os.path.realpath(path)
    if real != paths[0]:
        paths.append(real)
    for candidate in paths:
        for step in _chain(candidate):
            if step in seen:
                continue
            seen.add(step)
            try:
                info = lstat(step)
            except OSError as exc:
                reasons.append(f"{step}: {exc.strerror}")
                continue
            mode = info.st_mode
            is_target = step == candidate
            if stat.S_ISLNK(mode):
                if info.st_uid != 0:
                    reasons.append(f"{step} is a symbolic link owned by {_who(info.st_uid)}, who "
                                   "can point it elsewhere")
                continue
            if info.st_uid != 0:
                reasons.append(f"{step} is owned by {_who(info.st_uid)}, who can "
                               + ("change it" if is_target and not stat.S_ISDIR(mode)
                                  else "replace what it holds"))
            writable = mode & (stat.S_IWGRP | stat.S_IWOTH)
            if stat.S_ISDIR(mode):
                if writable and not mode & stat.S_ISVTX:
                    reasons.append(f"directory {step} (mode {stat.S_IMODE(mode):04o}) is writable "
                                   f"by {_whom(writable)} without the sticky bit: they can replace the file")
            elif is_target:
                if not stat.S_ISREG(mode):
                    reasons.append(f"{step} is not a regular file")
                elif writable:
                    reasons.append(f"{step} (mode {stat.S_IMODE(mode):04o}) is writable by {_whom(writable)}")
    return reasons
