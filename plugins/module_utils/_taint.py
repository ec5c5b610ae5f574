# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The kernel's taint mask (``/proc/sys/kernel/tainted``), decoded as kernel/panic.c does."""

from __future__ import annotations

# bit -> (letter, meaning); kernel/panic.c taint_flags[] and Documentation/admin-guide/tainted-kernels.rst
TAINT_FLAGS: tuple[tuple[str, str], ...] = (
    ("P", "proprietary module was loaded"),
    ("F", "module was force loaded"),
    ("S", "kernel running on an out of specification system"),
    ("R", "module was force unloaded"),
    ("M", "processor reported a Machine Check Exception"),
    ("B", "bad page referenced or some unexpected page flags"),
    ("U", "taint requested by userspace application"),
    ("D", "kernel died recently, i.e. there was an OOPS or BUG"),
    ("A", "an ACPI table was overridden by user"),
    ("W", "kernel issued warning"),
    ("C", "staging driver was loaded"),
    ("I", "workaround for bug in platform firmware applied"),
    ("O", "externally-built (out-of-tree) module was loaded"),
    ("E", "unsigned module was loaded"),
    ("L", "soft lockup occurred"),
    ("K", "kernel has been live patched"),
    ("X", "auxiliary taint, defined for and used by distros"),
    ("T", "kernel was built with the struct randomization plugin"),
    ("N", "an in-kernel test has been run"),
    ("J", "userspace used a mutating debug operation in fwctl"),
)


def decode_taint(mask: int) -> dict:
    """``{"value": 12288, "flags": "OE", "reasons": [...]}``; unknown bits are named by number."""
    if mask < 0:
        raise ValueError(f"a taint mask is never negative (got {mask})")
    letters = []
    reasons = []
    for bit in range(max(mask.bit_length(), 0)):
        if not mask & (1 << bit):
            continue
        if bit < len(TAINT_FLAGS):
            letter, meaning = TAINT_FLAGS[bit]
            letters.append(letter)
            reasons.append(f"{letter}: {meaning}")
        else:
            reasons.append(f"bit {bit}: unknown to this collection")
    return {"value": mask, "flags": "".join(letters), "reasons": reasons}


def read_taint(path: str = "/proc/sys/kernel/tainted") -> dict | None:
    """The decoded taint of the running kernel, or None where the file cannot be read."""
    try:
        with open(path, encoding="ascii") as handle:
            return decode_taint(int(handle.read().strip() or "0"))
    except (OSError, ValueError):
        return None
