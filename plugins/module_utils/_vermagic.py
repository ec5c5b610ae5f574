# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The module version magic string, and the kernel's rule for comparing two of them.

The kernel builds it as (include/linux/vermagic.h)::

    UTS_RELEASE " " [SMP ][preempt |preempt_rt ][mod_unload ][modversions ] ARCH_PART [RANDSTRUCT_…]

e.g. ``6.1.0-56-amd64 SMP preempt mod_unload modversions `` (the trailing space is real), or on
old i386 kernels ``2.6.5-1.358 686 REGPARM 4KSTACKS gcc-3.3``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GENERIC_FLAGS = ("SMP", "preempt", "preempt_rt", "mod_unload", "modversions")


@dataclass(frozen=True)
class Vermagic:
    raw: str
    release: str
    flags: list[str] = field(default_factory=list)

    @property
    def smp(self) -> bool:
        return "SMP" in self.flags

    @property
    def preempt(self) -> str:
        """``preempt``, ``preempt_rt`` or ``none``."""
        for name in ("preempt_rt", "preempt"):
            if name in self.flags:
                return name
        return "none"

    @property
    def mod_unload(self) -> bool:
        return "mod_unload" in self.flags

    @property
    def modversions(self) -> bool:
        return "modversions" in self.flags

    @property
    def arch_flags(self) -> list[str]:
        """Everything after the generic flags: CPU family, REGPARM, gcc-3.3, RANDSTRUCT_… ."""
        return [f for f in self.flags if f not in GENERIC_FLAGS]

    @property
    def tail(self) -> str:
        """What follows the release word: the part ``same_magic()`` compares for CRC modules."""
        return self.raw[len(self.release):]

    def as_dict(self) -> dict:
        return {
            "raw": self.raw,
            "release": self.release,
            "flags": list(self.flags),
            "smp": self.smp,
            "preempt": self.preempt,
            "mod_unload": self.mod_unload,
            "modversions": self.modversions,
            "arch": self.arch_flags,
        }


def parse_vermagic(raw: str) -> Vermagic:
    """Split a vermagic string into release and flags; the raw string is kept byte for byte."""
    if not raw or not raw.strip():
        raise ValueError("the vermagic string is empty")
    release, _sep, rest = raw.partition(" ")
    return Vermagic(raw=raw, release=release, flags=rest.split())


def same_magic(module: str, kernel: str, has_versions: bool) -> bool:
    """The kernel's ``same_magic()`` (kernel/module/version.c).

    With a ``__versions`` section the release word (up to the first space) is skipped on both
    sides and the rest must match exactly; without one the whole strings must match.
    """
    if has_versions:
        module = module[len(module.split(" ", 1)[0]):]
        kernel = kernel[len(kernel.split(" ", 1)[0]):]
    return module == kernel


def build_vermagic(release: str, *, smp: bool, preempt: str, mod_unload: bool,
                   modversions: bool, arch: str = "") -> str:
    """The string a kernel of this configuration expects (the inverse of ``parse_vermagic``)."""
    parts = [release, " "]
    if smp:
        parts.append("SMP ")
    if preempt in ("preempt", "preempt_rt"):
        parts.append(preempt + " ")
    if mod_unload:
        parts.append("mod_unload ")
    if modversions:
        parts.append("modversions ")
    parts.append(arch)
    return "".join(parts)
