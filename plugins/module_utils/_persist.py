# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Making a module come back after a reboot, and taking that away again, touching only our files.

Three files, each written only when its content differs:

* ``/lib/modules/<release>/updates/<name>.ko``: the module, where ``depmod`` (kmod's default
  search order is ``updates`` before the distribution's ``kernel/``) and so ``modprobe <name>``
  find it. A ``.ko`` cannot carry a comment, so what we installed is recorded with its sha256 in a
  manifest (``/var/lib/vermagic-kmod/persist/<name>.json``).
* ``/etc/modules-load.d/<name>.conf``: systemd-modules-load loads ``<name>`` at boot.
* ``/etc/modprobe.d/<name>.conf``: ``options <name> …`` (only when there are parameters).

The ``.conf`` files start with a ``# Managed by vermagic.kmod`` line. A file of the same path
that is not ours (no such line, or a ``.ko`` whose sha256 is not the recorded one) is never
overwritten: that fails with the path named. Removal removes only what is ours.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from ._files import write_atomic

MARK = "# Managed by vermagic.kmod (modload)"
HEADER = (MARK + ": written by vermagic.kmod.modload with persistent=true;\n"
          "# state=absent with persistent=true removes it. Edits are overwritten.\n")


class PersistError(Exception):
    """A persistence file that cannot be written or removed; the message names it and why."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layout:
    release: str
    lib_modules: str = "/lib/modules"
    modules_load_d: str = "/etc/modules-load.d"
    modprobe_d: str = "/etc/modprobe.d"
    manifest_dir: str = "/var/lib/vermagic-kmod/persist"

    def ko(self, name: str) -> str:
        return os.path.join(self.lib_modules, self.release, "updates", f"{name}.ko")

    def load_conf(self, name: str) -> str:
        return os.path.join(self.modules_load_d, f"{name}.conf")

    def options_conf(self, name: str) -> str:
        return os.path.join(self.modprobe_d, f"{name}.conf")

    def manifest(self, name: str) -> str:
        return os.path.join(self.manifest_dir, f"{name}.json")


@dataclass
class Change:
    path: str
    before: bytes | None  # None: absent
    after: bytes | None
    binary: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def what(self) -> str:
        if self.before is None:
            return "create"
        return "remove" if self.after is None else "update"

    def _text(self, data: bytes | None) -> str:
        if data is None:
            return ""
        if self.binary:
            return f"sha256:{sha256(data)} ({len(data)} bytes)\n"
        return data.decode("utf-8", "replace")

    def diff(self) -> dict:
        return {
            "before_header": self.path if self.before is not None else f"{self.path} (absent)",
            "after_header": self.path if self.after is not None else f"{self.path} (absent)",
            "before": self._text(self.before),
            "after": self._text(self.after),
        }

    def as_dict(self) -> dict:
        return {"path": self.path, "action": self.what if self.changed else "none"}


@dataclass
class Plan:
    name: str
    changes: list[Change] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files left alone, with the reason

    @property
    def changed(self) -> bool:
        return any(change.changed for change in self.changes)

    @property
    def needs_depmod(self) -> bool:
        return any(change.changed and change.binary for change in self.changes)

    def diffs(self) -> list[dict]:
        return [change.diff() for change in self.changes if change.changed]

    def as_dict(self) -> dict:
        return {
            "changed": self.changed,
            "files": [change.as_dict() for change in self.changes],
            "skipped": list(self.skipped),
            "depmod": self.needs_depmod,
        }


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise PersistError(f"{path} is a directory; remove it or choose another module name") from None
    except OSError as exc:
        raise PersistError(f"cannot read {path}: {exc.strerror}") from None


def read_manifest(layout: Layout, name: str) -> dict[str, str]:
    """``{path: sha256}`` of the files we installed for ``name`` (empty when none)."""
    data = _read(layout.manifest(name))
    if not data:
        return {}
    try:
        files = json.loads(data.decode("utf-8")).get("files", {})
    except (ValueError, AttributeError):
        raise PersistError(f"{layout.manifest(name)} is not a manifest written by this "
                           "collection; move it away and run again") from None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _ours_text(data: bytes) -> bool:
    return data.startswith(MARK.encode())


def _text_change(path: str, wanted: bytes | None, plan: Plan, purpose: str) -> None:
    current = _read(path)
    if current == wanted:
        plan.changes.append(Change(path, current, wanted))
        return
    if current is not None and not _ours_text(current):
        if wanted is None:
            plan.skipped.append(f"{path}: not made by vermagic.kmod (no '{MARK}' line), left alone")
            return
        raise PersistError(f"{path} exists and was not made by vermagic.kmod (its first line is "
                           f"not '{MARK}'): it would be overwritten to {purpose}. Merge it by hand "
                           "or remove it, then run again")
    plan.changes.append(Change(path, current, wanted))


def plan_present(layout: Layout, name: str, options: str, ko: bytes | None) -> Plan:
    """What makes ``name`` load at boot with ``options``; ``ko`` (the module's bytes) or None to
    leave the module file alone (a module of the kernel's own tree, loaded by name)."""
    plan = Plan(name)
    if ko is not None:
        path = layout.ko(name)
        current = _read(path)
        if current != ko and current is not None:
            recorded = read_manifest(layout, name).get(path)
            if recorded != sha256(current):
                raise PersistError(
                    f"{path} exists and is not the file vermagic.kmod installed there (its sha256 "
                    f"{sha256(current)[:16]}… is not in {layout.manifest(name)}): another tool "
                    "manages it. Remove it, or load this module without persistent")
        plan.changes.append(Change(path, current, ko, binary=True))
    _text_change(layout.load_conf(name), (HEADER + name + "\n").encode(), plan,
                 f"load {name} at boot")
    wanted = (HEADER + f"options {name} {options}\n").encode() if options else None
    _text_change(layout.options_conf(name), wanted, plan, f"set the options of {name}")
    return plan


def plan_absent(layout: Layout, name: str) -> Plan:
    """Removing every persistence file of ``name`` that vermagic.kmod made (and nothing else)."""
    plan = Plan(name)
    path = layout.ko(name)
    current = _read(path)
    if current is not None:
        recorded = read_manifest(layout, name).get(path)
        if recorded == sha256(current):
            plan.changes.append(Change(path, current, None, binary=True))
        else:
            plan.skipped.append(f"{path}: not installed by vermagic.kmod (or changed since), "
                                "left alone")
    for conf in (layout.load_conf(name), layout.options_conf(name)):
        _text_change(conf, None, plan, "remove it")
    return plan


def apply(layout: Layout, plan: Plan) -> None:
    """Carry out ``plan``: atomic writes, removals, and the manifest of the module file."""
    manifest = read_manifest(layout, plan.name)
    for change in plan.changes:
        if not change.changed:
            continue
        try:
            if change.after is None:
                os.unlink(change.path)
                manifest.pop(change.path, None)
            else:
                os.makedirs(os.path.dirname(change.path), exist_ok=True)
                write_atomic(change.path, change.after, 0o644)
                if change.binary:
                    manifest[change.path] = sha256(change.after)
        except FileNotFoundError:
            manifest.pop(change.path, None)
        except OSError as exc:
            raise PersistError(f"cannot {change.what} {change.path}: {exc.strerror}") from None
    path = layout.manifest(plan.name)
    if manifest:
        os.makedirs(layout.manifest_dir, mode=0o700, exist_ok=True)
        write_atomic(path, (json.dumps({"files": manifest}, indent=1, sort_keys=True) + "\n")
                     .encode(), 0o600)
    elif os.path.exists(path):
        os.unlink(path)
