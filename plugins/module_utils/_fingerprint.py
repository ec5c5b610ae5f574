# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fingerprints of a build's inputs, so that an unchanged build is skipped without running make.

A fingerprint is a set of named *components* (``sources``, ``config``, ``compiler``, …), each a
SHA-256 digest, plus the per-file digests of the source tree (to say *which* file changed) and
the digests of the outputs the build produced (to notice outputs that were removed or replaced).
It is stored as JSON next to the build products and compared component by component.
A fingerprint may also carry the *result* of the work it vouches for (``data``, any JSON), so
that a run whose inputs and outputs are unchanged can answer without redoing the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Iterable

from ansible_collections.vermagic.kmod.plugins.module_utils._files import write_atomic

FORMAT = 1
PREFIX = ".vermagic-kmod"  # our own files (fingerprint, log, lock) start with this

# Files kbuild writes into an external module's directory: never inputs of the build.
PRODUCT_SUFFIXES = (
    ".o", ".ko", ".mod", ".mod.c", ".a", ".order", ".symvers", ".cmd", ".d", ".dwo", ".su",
    ".gcno", ".ko.gz", ".ko.xz", ".ko.zst", ".lto.o", ".tmp",
)
PRODUCT_NAMES = frozenset({
    "Module.symvers", "Module.markers", "modules.order", "modules.nsdeps", "modules.builtin",
    "modules.builtin.modinfo", "compile_commands.json", ".cache.mk", "Module.symvers.cmd",
})
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", ".tmp_versions", "__pycache__", ".cache"})


def is_build_product(name: str) -> bool:
    """Whether a file name is something kbuild (or we) write, not a source of the build."""
    if name in PRODUCT_NAMES or name.startswith(PREFIX):
        return True
    if name.startswith(".") and name.endswith((".cmd", ".d", ".tmp")):
        return True
    return name.endswith(PRODUCT_SUFFIXES)


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_optional_file(path: str) -> str:
    """The file's digest, or a marker that says it is absent (absence is an input too)."""
    try:
        return hash_file(path)
    except FileNotFoundError:
        return "absent"


def hash_text(*parts: str) -> str:
    return hash_bytes("\0".join(parts).encode("utf-8", "surrogateescape"))


def source_files(root: str) -> dict[str, str]:
    """Digests of every source file under ``root`` by relative path (build products skipped).

    Symbolic links count by their target text; directories kbuild or version control keep
    (``.tmp_versions``, ``.git``, …) are not walked.
    """
    found: dict[str, str] = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            if is_build_product(name):
                continue
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                mode = "x" if info.st_mode & 0o111 else "-"
                found[rel] = mode + hash_file(path)
    return found


def digest_of_files(files: dict[str, str]) -> str:
    return hash_text(*(f"{rel}={digest}" for rel, digest in sorted(files.items())))


@dataclass
class Fingerprint:
    """What a build depended on, and what it produced."""

    components: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # human-readable values (release, compiler)
    data: dict[str, Any] = field(default_factory=dict)   # the work's result, returned on a match

    @property
    def digest(self) -> str:
        return hash_text(*(f"{name}={value}" for name, value in sorted(self.components.items())))

    def to_json(self) -> str:
        stored: dict[str, Any] = {
            "format": FORMAT,
            "digest": self.digest,
            "components": self.components,
            "notes": self.notes,
            "files": self.files,
            "outputs": self.outputs,
        }
        if self.data:
            stored["data"] = self.data
        return json.dumps(stored, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Fingerprint | None:
        """The stored fingerprint, or None when it is unreadable or of another format."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        try:
            return cls(components=dict(data["components"]), files=dict(data.get("files", {})),
                       outputs=dict(data.get("outputs", {})), notes=dict(data.get("notes", {})),
                       data=dict(data.get("data", {})))
        except (KeyError, TypeError, ValueError):
            return None

    def differences(self, old: Fingerprint | None, labels: dict[str, str] | None = None) -> list[str]:
        """Why a build is needed compared with ``old``, in words (empty: nothing changed)."""
        if old is None:
            return ["no fingerprint of an earlier build"]
        labels = labels or {}
        reasons = []
        for name in sorted(set(self.components) | set(old.components)):
            if self.components.get(name) == old.components.get(name):
                continue
            label = labels.get(name, name)
            if name == "sources" and (self.files or old.files):
                reasons.append(f"{label} changed: {describe_file_changes(old.files, self.files)}")
                continue
            before, after = old.notes.get(name), self.notes.get(name)
            if before is not None and after is not None and before != after:
                reasons.append(f"{label} changed: {before!r} -> {after!r}")
            else:
                reasons.append(f"{label} changed")
        return reasons


def describe_file_changes(before: dict[str, str], after: dict[str, str], limit: int = 5) -> str:
    changed = sorted(p for p in after if p in before and before[p] != after[p])
    added = sorted(p for p in after if p not in before)
    removed = sorted(p for p in before if p not in after)
    parts = []
    for word, names in (("modified", changed), ("added", added), ("removed", removed)):
        if names:
            shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
            parts.append(f"{word} {shown}")
    return "; ".join(parts) or "contents differ"


def load(path: str) -> Fingerprint | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return Fingerprint.from_json(handle.read())
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None


def store(path: str, fingerprint: Fingerprint) -> None:
    write_atomic(path, fingerprint.to_json().encode("utf-8"))


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def output_digests(root: str, paths: Iterable[str]) -> dict[str, str]:
    """Digests of build outputs by path relative to ``root`` (absent ones are left out)."""
    found = {}
    for path in paths:
        try:
            found[os.path.relpath(path, root)] = hash_file(path)
        except FileNotFoundError:
            continue
    return found


def outputs_intact(root: str, outputs: dict[str, str]) -> list[str]:
    """The recorded outputs that are missing or were replaced since (empty: all intact)."""
    problems = []
    for rel, digest in sorted(outputs.items()):
        path = os.path.join(root, rel)
        try:
            now = hash_file(path) if digest != "exists" else "exists"
        except FileNotFoundError:
            problems.append(f"{rel} is missing")
            continue
        if now != digest:
            problems.append(f"{rel} was replaced since")
    return problems
