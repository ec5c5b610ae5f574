# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A kernel's ``.config`` (``/boot/config-*``, ``/proc/config.gz``) and what follows from it.

``CONFIG_X=value`` and ``# CONFIG_X is not set`` lines become ``{"X": "value"}`` and
``{"X": None}``; string values lose their quotes and backslash escapes as Kconfig writes them.
From the options: the vermagic string a module must carry (include/linux/vermagic.h and the
architectures' asm/vermagic.h), the module compression, the compiler and the machine.
"""

from __future__ import annotations

import gzip
import re
import zlib

from ansible_collections.vermagic.kmod.plugins.module_utils._vermagic import build_vermagic

# One pass over the whole text (kernel_facts parses a ~9,000-line config on every gather):
# ``CONFIG_X=value`` or ``# CONFIG_X is not set``, blanks around the line ignored.
_LINE = re.compile(r"^[ \t]*(?:CONFIG_([A-Za-z0-9_]+)=(.*?)|# CONFIG_([A-Za-z0-9_]+) is not set)"
                   r"[ \t\r]*$", re.M)
_ESCAPE = re.compile(r"\\(.)")

# Reported in kmod_kernel.config.options, always (null when absent or "is not set").
KEY_OPTIONS = (
    "MODULES", "MODVERSIONS", "ASM_MODVERSIONS", "MODULE_REL_CRCS", "BASIC_MODVERSIONS",
    "EXTENDED_MODVERSIONS", "GENDWARFKSYMS", "MODULE_SIG", "MODULE_SIG_FORCE", "MODULE_SIG_ALL",
    "MODULE_SIG_HASH", "MODULE_FORCE_LOAD", "MODULE_UNLOAD", "MODULE_FORCE_UNLOAD", "SMP",
    "PREEMPT_BUILD", "PREEMPT", "PREEMPT_RT", "PREEMPT_VOLUNTARY", "PREEMPT_NONE", "PREEMPT_DYNAMIC",
    "LOCALVERSION", "LOCALVERSION_AUTO", "CC_VERSION_TEXT", "CC_IS_GCC", "CC_IS_CLANG",
    "GCC_VERSION", "CLANG_VERSION", "BUILD_SALT", "MODULE_COMPRESS", "MODULE_COMPRESS_NONE",
    "MODULE_COMPRESS_GZIP", "MODULE_COMPRESS_XZ", "MODULE_COMPRESS_ZSTD", "MODULE_DECOMPRESS",
    "SECURITY_LOCKDOWN_LSM", "SECURITY_LOCKDOWN_LSM_EARLY", "LOCK_DOWN_KERNEL_FORCE_NONE",
    "LOCK_DOWN_KERNEL_FORCE_INTEGRITY", "LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY",
    "LOCK_DOWN_IN_EFI_SECURE_BOOT", "RANDSTRUCT", "GCC_PLUGIN_RANDSTRUCT",
    "DEBUG_INFO_BTF_MODULES", "MODULE_ALLOW_BTF_MISMATCH", "TRIM_UNUSED_KSYMS", "RETPOLINE",
    "MITIGATION_RETPOLINE", "64BIT", "X86_64", "X86_32", "ARM64", "ARM", "PPC64", "PPC32", "S390",
    "RISCV", "LOONGARCH", "MIPS", "CPU_BIG_ENDIAN", "CPU_LITTLE_ENDIAN",
)

COMPRESSIONS = ("gzip", "xz", "zstd")

LOCKDOWN_LEVELS = ("none", "integrity", "confidentiality")


class KconfigError(Exception):
    """A kernel configuration that cannot be read; the message says which and why."""


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return _ESCAPE.sub(r"\1", inner) if "\\" in inner else inner
    return value


def parse_config(text: str) -> dict[str, str | None]:
    """Options by name without the ``CONFIG_`` prefix; ``None`` for ``is not set``."""
    options: dict[str, str | None] = {}
    for name, value, unset in _LINE.findall(text):
        if name:
            options[name] = _unquote(value) if value[:1] == '"' else value
        else:
            options[unset] = None
    return options


def read_config(path: str) -> dict[str, str | None]:
    """Read a ``.config``, plain or gzip-compressed (``/proc/config.gz``)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except IsADirectoryError:
        raise KconfigError(f"{path} is a directory, not a kernel configuration") from None
    except OSError as exc:
        raise KconfigError(f"cannot read {path}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise KconfigError(f"{path} looks gzip-compressed but does not decompress: {exc}") from None
    text = data.decode("utf-8", "replace")
    options = parse_config(text)
    if not options:
        raise KconfigError(f"{path} is not a kernel configuration (no CONFIG_ line in it)")
    return options


def enabled(options: dict[str, str | None], name: str) -> bool:
    return options.get(name) in ("y", "m")


def key_options(options: dict[str, str | None]) -> dict[str, str | None]:
    """The options other tools look at: KEY_OPTIONS plus every MODULE_SIG_*/MODULE_COMPRESS_*."""
    wanted = {name: options.get(name) for name in KEY_OPTIONS}
    for name, value in options.items():
        if name.startswith(("MODULE_SIG_", "MODULE_COMPRESS_", "LOCK_DOWN_KERNEL_")):
            wanted[name] = value
    return wanted


def preempt_flag(options: dict[str, str | None]) -> str:
    """``preempt``, ``preempt_rt`` or ``none`` as include/linux/vermagic.h decides.

    Since 5.16 the word follows CONFIG_PREEMPT_BUILD (set by PREEMPT and by PREEMPT_DYNAMIC,
    whatever the boot-time default); before it followed CONFIG_PREEMPT.
    """
    if enabled(options, "PREEMPT_BUILD") or enabled(options, "PREEMPT"):
        return "preempt"
    if enabled(options, "PREEMPT_RT"):
        return "preempt_rt"
    return "none"


_X86_32_FAMILIES = (  # arch/x86/include/asm/vermagic.h, in its order
    ("M486SX", "486SX"), ("M486", "486"), ("M586", "586"), ("M586TSC", "586TSC"),
    ("M586MMX", "586MMX"), ("MCORE2", "CORE2"), ("MATOM", "ATOM"), ("M686", "686"),
    ("MPENTIUMII", "PENTIUMII"), ("MPENTIUMIII", "PENTIUMIII"), ("MPENTIUMM", "PENTIUMM"),
    ("MPENTIUM4", "PENTIUM4"), ("MK6", "K6"), ("MK7", "K7"), ("MK8", "K8"), ("MELAN", "ELAN"),
    ("MCRUSOE", "CRUSOE"), ("MEFFICEON", "EFFICEON"), ("MWINCHIPC6", "WINCHIPC6"),
    ("MWINCHIP3D", "WINCHIP3D"), ("MCYRIXIII", "CYRIXIII"), ("MVIAC3_2", "VIAC3-2"),
    ("MVIAC7", "VIAC7"), ("MGEODEGX1", "GEODEGX1"), ("MGEODE_LX", "GEODE"),
)

# arch/arm/Makefile: the last matching assignment wins, i.e. the oldest architecture enabled.
_ARM_ARCH = (("CPU_32v3", 3), ("CPU_32v4", 4), ("CPU_32v4T", 4), ("CPU_32v5", 5),
             ("CPU_32v6", 6), ("CPU_32v6K", 6), ("CPU_32v7", 7), ("CPU_32v7M", 7))


def _arm_arch(options: dict[str, str | None]) -> int | None:
    for name, number in _ARM_ARCH:
        if enabled(options, name):
            return number
    return None


def arch_vermagic(options: dict[str, str | None]) -> str | None:
    """MODULE_ARCH_VERMAGIC for this configuration, or None where this collection cannot tell."""
    if enabled(options, "X86_64"):
        return ""
    if enabled(options, "X86_32"):
        for name, family in _X86_32_FAMILIES:
            if enabled(options, name):
                return family + " "
        return None
    if enabled(options, "ARM64"):
        return "aarch64"
    if enabled(options, "RISCV"):
        return "riscv"
    if enabled(options, "PPC"):
        return (("mprofile-kernel " if enabled(options, "MPROFILE_KERNEL") else "")
                + ("relocatable " if enabled(options, "RELOCATABLE") else ""))
    if enabled(options, "ARM"):
        number = _arm_arch(options)
        if number is None:
            return None
        return (f"ARMv{number} " + ("thumb2 " if enabled(options, "THUMB2_KERNEL") else "")
                + ("p2v8 " if enabled(options, "ARM_PATCH_PHYS_VIRT") else ""))
    if enabled(options, "S390"):
        return ""  # s390 has no asm/vermagic.h part
    return None


def randstruct_prefix(options: dict[str, str | None]) -> str | None:
    """``RANDSTRUCT_`` (5.19+) or ``RANDSTRUCT_PLUGIN_`` (4.13-5.18) when structure layout
    randomization is on: the vermagic then ends with that prefix and the seed's hash."""
    if enabled(options, "RANDSTRUCT") or enabled(options, "RANDSTRUCT_FULL") \
            or enabled(options, "RANDSTRUCT_PERFORMANCE"):
        return "RANDSTRUCT_"
    if enabled(options, "GCC_PLUGIN_RANDSTRUCT"):
        return "RANDSTRUCT_PLUGIN_"
    return None


def config_vermagic(release: str, options: dict[str, str | None],
                    randstruct_hash: str | None = None) -> tuple[str | None, str]:
    """The vermagic string this configuration gives modules, and how sure that is in words.

    Returns ``(None, reason)`` when the architecture part (or the structure randomization seed)
    cannot be known from the configuration alone.
    """
    arch = arch_vermagic(options)
    if arch is None:
        return None, ("the architecture part of the vermagic cannot be derived from this "
                      "configuration (an architecture this collection does not know)")
    prefix = randstruct_prefix(options)
    if prefix:
        if not randstruct_hash:
            return None, ("structure layout randomization is on, and its seed hash "
                          "(include/generated/randstruct_hash.h in the build directory) is unknown")
        arch += prefix + randstruct_hash
    text = build_vermagic(release, smp=enabled(options, "SMP"), preempt=preempt_flag(options),
                          mod_unload=enabled(options, "MODULE_UNLOAD"),
                          modversions=enabled(options, "MODVERSIONS"), arch=arch)
    return text, "derived from the configuration"


def compression(options: dict[str, str | None]) -> str:
    """``none``, ``gzip``, ``xz`` or ``zstd``: how ``make modules_install`` compresses modules."""
    if options.get("MODULE_COMPRESS_NONE") == "y":
        return "none"
    for name in COMPRESSIONS:
        if options.get(f"MODULE_COMPRESS_{name.upper()}") == "y":
            # before 5.13 the choice only counted with CONFIG_MODULE_COMPRESS=y; since 6.6 again
            if "MODULE_COMPRESS" in options and options["MODULE_COMPRESS"] != "y":
                return "none"
            return name
    return "none"


def lockdown_minimum(options: dict[str, str | None]) -> str | None:
    """The lockdown level the kernel enforces from boot (LOCK_DOWN_KERNEL_FORCE_*), or None
    when the lockdown LSM is not built in."""
    if not enabled(options, "SECURITY_LOCKDOWN_LSM"):
        return None
    for level in ("confidentiality", "integrity"):
        if enabled(options, f"LOCK_DOWN_KERNEL_FORCE_{level.upper()}"):
            return level
    return "none"


def machine(options: dict[str, str | None]) -> tuple[str | None, str | None, int | None]:
    """``(uname -m, ELF e_machine name, ELF class)`` of the configured architecture."""
    is64 = enabled(options, "64BIT")
    if enabled(options, "X86_64"):
        return "x86_64", "EM_X86_64", 64
    if enabled(options, "X86_32"):
        return "i686", "EM_386", 32
    if enabled(options, "ARM64"):
        return ("aarch64_be" if enabled(options, "CPU_BIG_ENDIAN") else "aarch64"), "EM_AARCH64", 64
    if enabled(options, "ARM"):
        number = _arm_arch(options) or 7
        return f"armv{number}" + ("b" if enabled(options, "CPU_BIG_ENDIAN") else "l"), "EM_ARM", 32
    if enabled(options, "PPC64"):
        return ("ppc64le" if enabled(options, "CPU_LITTLE_ENDIAN") else "ppc64"), "EM_PPC64", 64
    if enabled(options, "PPC32") or enabled(options, "PPC"):
        return "ppc", "EM_PPC", 32
    if enabled(options, "S390"):
        return "s390x", "EM_S390", 64
    if enabled(options, "RISCV"):
        return ("riscv64" if is64 else "riscv32"), "EM_RISCV", 64 if is64 else 32
    if enabled(options, "LOONGARCH"):
        return "loongarch64", "EM_LOONGARCH", 64
    if enabled(options, "MIPS"):
        return ("mips64" if is64 else "mips"), "EM_MIPS", 64 if is64 else 32
    return None, None, None


_NUMBER = re.compile(r"\b(\d+)\.(\d+)(?:\.(\d+))?\b")


def _from_code(value: str | None) -> str | None:
    """CONFIG_GCC_VERSION=120200 -> 12.2.0 (0 means "not this compiler")."""
    if not value or not value.isdigit() or int(value) == 0:
        return None
    code = int(value)
    return f"{code // 10000}.{code // 100 % 100}.{code % 100}"


def compiler(options: dict[str, str | None]) -> dict | None:
    """``{text, name, version}`` from CONFIG_CC_VERSION_TEXT (5.8+) and the version codes.

    ``name`` is the command that built the kernel as far as the text tells: gcc prints the name
    it was invoked by (``gcc-12``, ``x86_64-linux-gnu-gcc-13``, ``gcc``); clang does not, so it
    is ``clang-<major>`` as Debian, Ubuntu and Fedora install it.
    """
    text = options.get("CC_VERSION_TEXT")
    if not text:
        return None
    is_clang = enabled(options, "CC_IS_CLANG") or "clang" in text.split("(")[0].lower()
    version = _from_code(options.get("CLANG_VERSION" if is_clang else "GCC_VERSION"))
    if version is None:
        found = _NUMBER.search(text.split(")", 1)[-1]) or _NUMBER.search(text)
        version = ".".join(g for g in found.groups() if g is not None) if found else None
    if is_clang:
        name = f"clang-{version.split('.', maxsplit=1)[0]}" if version else "clang"
    else:
        name = text.split()[0]
    return {"text": text, "name": name, "version": version}
