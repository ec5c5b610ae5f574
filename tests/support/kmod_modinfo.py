"""kmod's own ``modinfo`` as the reference: run it over many files at once and parse its output.

``modinfo -0 FILE…`` prints, per file, ``filename:<pad>PATH\\0``, then ``key=value\\0`` for each
``.modinfo`` entry except ``parm``/``parmtype`` (and for the signature keys kmod adds), then one
``parm:<pad>name:…\\0`` per parameter. Values may contain newlines (``signature``) but never NUL,
so the output splits cleanly. Few processes, many files each (argv stays far below ARG_MAX).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterable

FILENAME = "filename:"
PARM = "parm:"
BATCH = 1000


def modinfo_listing(paths: Iterable[str | os.PathLike], modinfo: str = "modinfo"
                    ) -> dict[str, list[tuple[str, str]]]:
    """For each file, kmod's full listing as ``(key, value)`` pairs, in kmod's order.

    Parameters come last as ``("parm", "name:description (type)")`` exactly as kmod's full
    listing prints them (a parameter with a type and no description prints ``name:type``).
    """
    paths = [str(p) for p in paths]
    out: dict[str, list[tuple[str, str]]] = {}
    for start in range(0, len(paths), BATCH):
        batch = paths[start:start + BATCH]
        proc = subprocess.run([modinfo, "-0", *batch], capture_output=True, check=False,
                              env=dict(os.environ, LC_ALL="C"))
        if proc.returncode != 0:
            raise RuntimeError(f"{modinfo} failed ({proc.returncode}): "
                               f"{proc.stderr.decode(errors='replace')[-500:]}")
        current: list[tuple[str, str]] | None = None
        for item in proc.stdout.decode("utf-8", "replace").split("\0")[:-1]:
            if item.startswith(FILENAME):
                current = out.setdefault(item[len(FILENAME):].lstrip(" "), [])
                continue
            if current is None:
                raise RuntimeError(f"unexpected modinfo output before a filename: {item[:80]!r}")
            if item.startswith(PARM) and item[len(PARM):len(PARM) + 1] == " ":
                current.append(("parm", item[len(PARM):].lstrip(" ")))
                continue
            key, _sep, value = item.partition("=")
            current.append((key, value))
    missing = [p for p in paths if p not in out]
    if missing:
        raise RuntimeError(f"{modinfo} printed nothing for {len(missing)} files, e.g. {missing[0]}")
    return out


def modinfo_field(path: str | os.PathLike, field: str, modinfo: str = "modinfo") -> list[str]:
    """``modinfo -0 -F FIELD PATH``: the values kmod prints for one key of one file."""
    proc = subprocess.run([modinfo, "-0", "-F", field, str(Path(path))], capture_output=True,
                          check=True, env=dict(os.environ, LC_ALL="C"))
    return proc.stdout.decode("utf-8", "replace").split("\0")[:-1]
