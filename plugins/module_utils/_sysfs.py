# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the running kernel says about a module: ``/sys/module/<name>/`` and ``/proc/modules``.

For a loaded module (kernel/module/sysfs.c, main.c) sysfs has ``initstate`` (live, coming,
going), ``refcnt``, ``holders/`` (modules that use it), ``taint``, ``coresize``, ``srcversion``
(only when the module has one: ``MODULE_VERSION`` or CONFIG_MODULE_SRCVERSION_ALL), ``version``,
``parameters/`` (those with a non-zero permission) and ``notes/``: the module's SHT_NOTE sections
as loaded (mode 0444), among them ``.note.gnu.build-id``, which kbuild links into every module
(``--build-id=sha1``). A built-in "module" has a directory too (for its parameters or version)
but no ``initstate``.

Every function takes the paths it reads, so tests can point them at a fake tree.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from ._modfile import build_id_from_notes

SYS_MODULE = "/sys/module"
PROC_MODULES = "/proc/modules"


def module_name(name: str) -> str:
    """The kernel's name for a module: kbuild turns ``-`` into ``_`` (KBUILD_MODNAME)."""
    return name.replace("-", "_")


@dataclass
class LoadedModule:
    name: str
    state: str  # live, coming, going, or builtin
    srcversion: str | None = None
    version: str | None = None
    build_id: str | None = None
    refcnt: int | None = None
    holders: list[str] = field(default_factory=list)
    params: dict[str, str | None] = field(default_factory=dict)  # None: present, not readable
    taint: str = ""
    coresize: int | None = None

    @property
    def builtin(self) -> bool:
        return self.state == "builtin"

    def in_use(self) -> str | None:
        """Why it cannot be unloaded now, in words, or None."""
        if self.builtin:
            return f"{self.name} is built into the kernel and cannot be unloaded"
        if self.state != "live":
            return f"{self.name} is {self.state} (being loaded or unloaded right now)"
        if self.holders:
            return (f"{self.name} is in use by {', '.join(sorted(self.holders))} "
                    f"(/sys/module/{self.name}/holders); unload those first")
        if self.refcnt:
            return (f"{self.name} is in use (reference count {self.refcnt}): something holds "
                    "it open (a device, a file system, a socket); stop that first")
        return None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "state": self.state,
            "srcversion": self.srcversion,
            "version": self.version,
            "build_id": self.build_id,
            "refcnt": self.refcnt,
            "holders": sorted(self.holders),
            "params": dict(sorted(self.params.items())),
            "taint": self.taint,
        }


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace").rstrip("\n")
    except OSError:
        return None


def read_build_id(base: str) -> str | None:
    """The GNU build id of the loaded module at ``base`` (``/sys/module/<name>``), or None.

    ``notes/.note.gnu.build-id`` holds the section as loaded: ELF notes in the kernel's byte
    order, which is this host's."""
    try:
        with open(os.path.join(base, "notes", ".note.gnu.build-id"), "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return build_id_from_notes(data, "<" if sys.byteorder == "little" else ">")


def read_loaded(name: str, sys_module: str = SYS_MODULE) -> LoadedModule | None:
    """The module ``name`` as the kernel has it now, or None when it is neither loaded nor built in."""
    name = module_name(name)
    base = os.path.join(sys_module, name)
    if not os.path.isdir(base):
        return None
    initstate = _read(os.path.join(base, "initstate"))
    module = LoadedModule(name=name, state=initstate or "builtin")
    module.srcversion = _read(os.path.join(base, "srcversion")) or None
    module.version = _read(os.path.join(base, "version")) or None
    module.taint = _read(os.path.join(base, "taint")) or ""
    refcnt = _read(os.path.join(base, "refcnt"))
    module.refcnt = int(refcnt) if refcnt and refcnt.lstrip("-").isdigit() else None
    coresize = _read(os.path.join(base, "coresize"))
    module.coresize = int(coresize) if coresize and coresize.isdigit() else None
    try:
        module.holders = sorted(os.listdir(os.path.join(base, "holders")))
    except OSError:
        module.holders = []
    module.build_id = read_build_id(base)
    params_dir = os.path.join(base, "parameters")
    try:
        names = sorted(os.listdir(params_dir))
    except OSError:
        names = []
    for param in names:
        module.params[param] = _read(os.path.join(params_dir, param))
    return module


@dataclass(frozen=True)
class ProcModule:
    name: str
    size: int
    refcnt: int
    deps: tuple[str, ...]
    state: str  # Live, Loading, Unloading
    taint: str = ""


def read_proc_modules(path: str = PROC_MODULES) -> dict[str, ProcModule]:
    """``/proc/modules`` by name: ``name size refcnt deps, state address [(taints)]``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return {}
    modules: dict[str, ProcModule] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        deps = tuple(d for d in fields[3].split(",") if d and d != "-")
        taint = fields[6].strip("()") if len(fields) > 6 else ""
        try:
            size, refcnt = int(fields[1]), int(fields[2]) if fields[2] != "-" else 0
        except ValueError:
            continue
        modules[fields[0]] = ProcModule(fields[0], size, refcnt, deps, fields[4], taint)
    return modules
