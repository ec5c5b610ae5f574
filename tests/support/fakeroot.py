"""Small fake root file systems for the error paths of ``kernel_facts`` (unit tests).

Real kernel material lives in ``tests/support/debian.py``; these roots only have the shapes
(files, links, headers) that the gathering logic looks at, with the values of Debian 12's
6.1.0-56-amd64 where a value matters.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

RELEASE = "6.1.0-56-amd64"
UTS_VERSION = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
VERMAGIC = f"{RELEASE} SMP preempt mod_unload modversions "

# The lines of Debian's /boot/config-6.1.0-56-amd64 that kernel_facts reads.
DEBIAN_CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.192 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"
CONFIG_CC_IS_GCC=y
CONFIG_GCC_VERSION=120200
CONFIG_CLANG_VERSION=0
CONFIG_LOCALVERSION=""
# CONFIG_LOCALVERSION_AUTO is not set
CONFIG_PREEMPT_BUILD=y
# CONFIG_PREEMPT_NONE is not set
CONFIG_PREEMPT_VOLUNTARY=y
# CONFIG_PREEMPT is not set
CONFIG_PREEMPT_DYNAMIC=y
CONFIG_64BIT=y
CONFIG_X86_64=y
CONFIG_SMP=y
CONFIG_GENERIC_CPU=y
CONFIG_MODULES=y
CONFIG_MODULE_FORCE_LOAD=y
CONFIG_MODULE_UNLOAD=y
CONFIG_MODVERSIONS=y
CONFIG_MODULE_SIG=y
# CONFIG_MODULE_SIG_FORCE is not set
CONFIG_MODULE_SIG_HASH="sha256"
CONFIG_MODULE_COMPRESS_NONE=y
# CONFIG_MODULE_COMPRESS_GZIP is not set
# CONFIG_MODULE_COMPRESS_XZ is not set
# CONFIG_MODULE_COMPRESS_ZSTD is not set
CONFIG_SECURITY_LOCKDOWN_LSM=y
CONFIG_SECURITY_LOCKDOWN_LSM_EARLY=y
CONFIG_LOCK_DOWN_KERNEL_FORCE_NONE=y
# CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY is not set
# CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY is not set
CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT=y
CONFIG_RANDSTRUCT_NONE=y
"""


def config_with(**changes: str | None) -> str:
    """DEBIAN_CONFIG with options changed (``None``: "is not set"), added where new."""
    lines = DEBIAN_CONFIG.splitlines()
    for name, value in changes.items():
        new = f"# CONFIG_{name} is not set" if value is None else f"CONFIG_{name}={value}"
        for index, line in enumerate(lines):
            if line.startswith((f"CONFIG_{name}=", f"# CONFIG_{name} is not set")):
                lines[index] = new
                break
        else:
            lines.append(new)
    return "\n".join(lines) + "\n"


def bzimage(release: str = RELEASE, version: str = UTS_VERSION) -> bytes:
    """A file with an x86 boot header naming ``release`` (what ``_bzimage`` reads)."""
    text = f"{release} (debian-kernel@lists.debian.org) {version}".encode()
    data = bytearray(0x4000)
    data[0x1F1] = 39
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x020F)
    struct.pack_into("<H", data, 0x20E, 0x3000 - 0x200)
    data[0x3000:0x3000 + len(text) + 1] = text + b"\0"
    return bytes(data)


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def add_modules(root: Path, release: str = RELEASE,
                names: tuple[str, ...] = ("kernel/lib/crc-itu-t.ko", "kernel/fs/fat/fat.ko")) -> None:
    """Placeholder module files (their contents come from an injected reader in the tests)."""
    for name in names:
        write(root / "lib" / "modules" / release / name, b"module " + name.encode())
    write(root / "lib" / "modules" / release / "modules.order", "\n".join(names) + "\n")


def add_headers(root: Path, release: str = RELEASE, *, tree_release: str | None = None,
                absolute_link: bool = True, symvers: bool = True,
                modpost: bool = True) -> Path:
    """A Debian-like headers tree under usr/src, linked from lib/modules/<release>/build."""
    tree = root / "usr" / "src" / f"linux-headers-{release}"
    common = root / "usr" / "src" / "linux-headers-common"
    write(common / "Makefile", "# the common Makefile\n")
    write(tree / "Makefile", "include /usr/src/linux-headers-common/Makefile\n")
    write(tree / ".config", DEBIAN_CONFIG)
    write(tree / "include/generated/autoconf.h", "#define CONFIG_MODULES 1\n")
    write(tree / "include/config/auto.conf", "CONFIG_MODULES=y\n")
    write(tree / "include/generated/utsrelease.h",
          f'#define UTS_RELEASE "{tree_release or release}"\n')
    kbuild = root / "usr" / "lib" / "linux-kbuild" / "scripts"
    kbuild.mkdir(parents=True, exist_ok=True)
    if modpost:
        write(kbuild / "mod" / "modpost", "#!/bin/sh\n")
    os.symlink("../../lib/linux-kbuild/scripts", tree / "scripts")
    if symvers:
        write(tree / "Module.symvers", "0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n")
    link = root / "lib" / "modules" / release / "build"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(f"/usr/src/linux-headers-{release}" if absolute_link
               else f"../../../usr/src/linux-headers-{release}", link)
    return tree


def make_root(path: Path, release: str = RELEASE, *, config: str | None = DEBIAN_CONFIG,
              vmlinuz: bool = True, modules: bool = True, headers: bool = True) -> Path:
    """An installed kernel: /boot (config, vmlinuz), /lib/modules, headers."""
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        write(path / "boot" / f"config-{release}", config)
    if vmlinuz:
        write(path / "boot" / f"vmlinuz-{release}", bzimage(release))
    if modules:
        add_modules(path, release)
    if headers:
        add_headers(path, release)
    return path


def add_running(root: Path, *, config: str | None = None, sig_enforce: str | None = "N",
                lockdown: str | None = "[none] integrity confidentiality",
                tainted: str | None = "12288", cmdline: str = "quiet") -> None:
    """``proc/`` and ``sys/`` of a running kernel inside a fake root."""
    if config is not None:
        write(root / "proc" / "config.gz", gzip.compress(config.encode()))
    if sig_enforce is not None:
        write(root / "sys/module/module/parameters/sig_enforce", sig_enforce + "\n")
    if lockdown is not None:
        write(root / "sys/kernel/security/lockdown", lockdown + "\n")
    if tainted is not None:
        write(root / "proc/sys/kernel/tainted", tainted + "\n")
    write(root / "proc/cmdline", cmdline + "\n")
