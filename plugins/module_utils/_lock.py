# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An exclusive lock on a path, so that two runs never prepare, build or load at the same time.

``flock(2)`` on a lock file: released by the kernel when the process dies, so a crashed run
never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator


class LockTimeout(Exception):
    """Another run holds the lock; the message names the lock file and its holder."""


@contextmanager
def exclusive_lock(lock_path: str, timeout: float = 600.0, poll: float = 0.2) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the ``with`` block."""
    with _flock(lock_path, exclusive=True, timeout=timeout, poll=poll):
        yield


@contextmanager
def shared_lock(lock_path: str, timeout: float = 600.0, poll: float = 0.2) -> Iterator[None]:
    """Hold a shared lock on ``lock_path``: many shared holders at once, never with an exclusive one.

    Readers of a tree (``M=`` builds against it) take it shared; whoever rewrites the tree
    (``modules_prepare``) takes it exclusive and so waits for every reader, and they for it.
    """
    with _flock(lock_path, exclusive=False, timeout=timeout, poll=poll):
        yield


@contextmanager
def _flock(lock_path: str, *, exclusive: bool, timeout: float, poll: float) -> Iterator[None]:
    directory = os.path.dirname(os.path.abspath(lock_path))
    os.makedirs(directory, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, operation | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                    holder = f"pid {holder}" if holder else "shared holders"
                    raise LockTimeout(
                        f"{lock_path} is held by another run ({holder}) for more than "
                        f"{timeout:.0f} s; wait for it to finish, or raise the lock timeout"
                    ) from None
                time.sleep(poll)
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            if exclusive:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def tree_lock_path(tree: str) -> str:
    """The lock file of a kernel tree: outside it (every byte of a tree stays its own), named
    after the directory's device and inode, so every path to the same tree finds the same lock.
    """
    st = os.stat(tree)
    base = "/run/lock" if os.geteuid() == 0 and os.path.isdir("/run/lock") else tempfile.gettempdir()
    return os.path.join(base, "vermagic-kmod", f"tree-{st.st_dev}-{st.st_ino}.lock")


@contextmanager
def tree_lock(tree: str, timeout: float = 600.0, shared: bool = False) -> Iterator[None]:
    """Hold the lock of a kernel tree: every module that writes into a tree takes this one.

    ``shared``: for runs that only read the tree (an ``M=`` build against it), so that several
    can hold it at once while none of the writers can.
    """
    with _flock(tree_lock_path(tree), exclusive=not shared, timeout=timeout, poll=0.2):
        yield
