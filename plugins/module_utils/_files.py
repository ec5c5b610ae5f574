# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Writing files so that a reader never sees half of one, and nothing is lost on failure."""

from __future__ import annotations

import os
import tempfile


def read_bytes(path: str, error: type[Exception], what: str = "a file", size: int = -1) -> bytes:
    """The bytes of ``path`` (the first ``size`` bytes when given); an unreadable path raises
    ``error`` with a message naming it and why (``what`` says what it should have been)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except IsADirectoryError:
        raise error(f"{path} is a directory, not {what}") from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None


def write_atomic(path: str, data: bytes, mode: int | None = None) -> None:
    """Write ``path`` through a temporary file in its directory and rename it into place.

    The file keeps its permission bits when it exists (``mode`` wins when given; a new file
    gets 0644 otherwise), and its owner and group when the caller may set them (root editing
    a user's tree leaves the files the user's).
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    if mode is None:
        mode = old.st_mode & 0o7777 if old is not None else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".vermagic-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.chown(tmp, old.st_uid, old.st_gid)
            except PermissionError:
                pass
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
