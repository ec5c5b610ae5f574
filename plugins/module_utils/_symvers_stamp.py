# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A stamp next to a written ``Module.symvers``, so that a rerun with unchanged inputs reads
neither the kernel image nor a single in-tree module.

The stamp is a ``_fingerprint.Fingerprint`` stored as ``.vermagic-kmod.<dest name>.fingerprint``
in the directory of the destination. Its components are made from ``stat`` alone:

``source``
    the source used (``auto`` resolved), the file it reads (the headers' or /boot's
    Module.symvers, or the kernel image for ``recover``) with its size, mtime and inode;
``modules``
    every in-tree module (the ones recovery reads and whose ``__versions`` are checked), in the
    order they are read, each with its path, size, mtime and inode; a module added, removed,
    replaced (a package update writes new files: new inodes) or reordered changes it;
``request``
    the release and root asked for, and the stamp's own format.

Its outputs hold the SHA-256 of the destination as written (a file edited by hand, replaced or
removed no longer matches), and its ``data`` the result to return (symbols, conflicts, modules
checked, source, path, recovery details). A stamp that agrees on all of them is a *hit*.
"""

from __future__ import annotations

import os
from typing import Any

from ansible_collections.vermagic.kmod.plugins.module_utils import _fingerprint as fp
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers_sources import (
    SourceError, in_tree_modules)

# Bump when what a stamp vouches for changes (the recovery gives other lines, the result other keys).
STAMP_FORMAT = "symvers stamp 1"
# The result keys a stamp must hold to answer for a run.
RESULT_KEYS = ("source", "path", "symbols", "conflicts", "modules_checked")
LABELS = {"source": "the source file", "modules": "the in-tree modules",
          "request": "the release or root asked for"}


def _result(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in (*RESULT_KEYS, "recovery") if key in data}


def stamp_path(dest: str) -> str:
    """Where the stamp of ``dest`` lives: next to it, named after it."""
    dest = os.path.abspath(dest)
    return os.path.join(os.path.dirname(dest), f"{fp.PREFIX}.{os.path.basename(dest)}.fingerprint")


def _state(path: str) -> str:
    """What ``stat`` says of ``path``: enough to notice any rewrite, without reading it."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SourceError(f"cannot stat {path}: {exc.strerror}") from None
    return f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}"


def inputs(source: str, path: str, root: str, release: str) -> fp.Fingerprint:
    """The inputs of a run that reads ``path`` as ``source`` (resolved, not ``auto``)."""
    modules = in_tree_modules(root, release)
    components = {
        "request": fp.hash_text(STAMP_FORMAT, os.path.abspath(root), release),
        "source": fp.hash_text(source, _state(path)),
        "modules": fp.hash_text(*(f"{name}\0{_state(where)}" for name, where in modules)),
    }
    notes = {"request": f"{release} under {os.path.abspath(root)}",
             "source": f"{source} {path}", "modules": f"{len(modules)} modules"}
    return fp.Fingerprint(components=components, notes=notes)


def recorded(dest: str, now: fp.Fingerprint) -> tuple[dict[str, Any] | None, list[str]]:
    """The result recorded for ``dest`` when its stamp agrees with the inputs ``now`` and
    ``dest`` is the file the stamp recorded: ``(result, [])``; else ``(None, reasons)``, the
    reasons in words."""
    try:
        old = fp.load(stamp_path(dest))
    except OSError:  # unreadable (permissions, a directory): as if there were none
        old = None
    if old is None:
        return None, [f"no stamp of an earlier run ({stamp_path(dest)})"]
    reasons = now.differences(old, LABELS)
    if not old.outputs:
        reasons.append("the stamp records no file")
    reasons += fp.outputs_intact(os.path.dirname(os.path.abspath(dest)), old.outputs)
    if not all(key in old.data for key in RESULT_KEYS):
        reasons.append("the stamp records no result")
    if reasons:
        return None, reasons
    return _result(old.data), []


def record(dest: str, now: fp.Fingerprint, result: dict[str, Any]) -> None:
    """Store the stamp of ``dest`` as it is now: the inputs ``now`` and the ``result``."""
    dest = os.path.abspath(dest)
    stamp = fp.Fingerprint(components=now.components, notes=now.notes,
                           outputs=fp.output_digests(os.path.dirname(dest), [dest]),
                           data=_result(result))
    fp.store(stamp_path(dest), stamp)
