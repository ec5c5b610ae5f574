# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The x86 boot header of a ``vmlinuz`` (bzImage): its release string and where its payload is.

Layout from Documentation/x86/boot.rst: the real-mode header starts at 0x1f1; "HdrS" at 0x202;
``kernel_version`` (0x20e) points, minus 0x200, at a string such as
``6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 …``;
from protocol 2.08 ``payload_offset``/``payload_length`` (0x248/0x24c) locate the compressed
vmlinux inside the protected-mode part, which starts at ``(setup_sects + 1) * 512``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._files import read_bytes

HEADER_MAGIC = b"HdrS"


class BzImageError(Exception):
    """Not a bzImage, or one this reader cannot understand; the message says which."""


@dataclass(frozen=True)
class BzImageHeader:
    protocol: tuple[int, int]
    version_string: str
    setup_size: int
    payload_offset: int | None
    payload_length: int | None

    @property
    def release(self) -> str:
        """The first word of the version string, what ``uname -r`` prints."""
        return self.version_string.split(" ", 1)[0]


def parse_header(data: bytes, source: str = "vmlinuz") -> BzImageHeader:
    """Parse the boot header from the first bytes of a bzImage (64 KiB are plenty)."""
    if len(data) < 0x250 or data[0x202:0x206] != HEADER_MAGIC:
        raise BzImageError(f"{source} is not an x86 bzImage (no 'HdrS' boot header at 0x202)")
    protocol = struct.unpack_from("<H", data, 0x206)[0]
    major, minor = protocol >> 8, protocol & 0xFF
    setup_sects = data[0x1F1] or 4
    setup_size = (setup_sects + 1) * 512
    pointer = struct.unpack_from("<H", data, 0x20E)[0]
    version = ""
    if pointer:
        start = pointer + 0x200
        end = data.find(b"\0", start, start + 512)
        if end < 0:
            raise BzImageError(f"{source}: the kernel version string at {start:#x} is not terminated")
        version = data[start:end].decode("ascii", "replace")
    if not version:
        raise BzImageError(f"{source}: the boot header names no kernel version string")
    payload_offset = payload_length = None
    if (major, minor) >= (2, 8):
        payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
    return BzImageHeader((major, minor), version, setup_size, payload_offset, payload_length)


def read_header(path: str) -> BzImageHeader:
    return parse_header(read_bytes(path, BzImageError, "a kernel image", 0x10000), path)
