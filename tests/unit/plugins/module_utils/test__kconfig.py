from __future__ import annotations

import gzip

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._kconfig import (
    KconfigError, arch_vermagic, compiler, compression, config_vermagic, key_options,
    lockdown_minimum, machine, parse_config, preempt_flag, read_config)
from tests.support.fakeroot import DEBIAN_CONFIG, RELEASE, VERMAGIC, config_with


def opts(**values: str | None) -> dict[str, str | None]:
    return dict(values)


def test_parse_set_unset_and_strings():
    options = parse_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="a \\"q\\" b\\\\"\n'
                           "CONFIG_D=0x10\n# a comment\nnot a line\nCONFIG_E=\"\"\n")
    assert options == {"A": "y", "B": None, "C": 'a "q" b\\', "D": "0x10", "E": ""}


def test_debian_options():
    options = parse_config(DEBIAN_CONFIG)
    keys = key_options(options)
    assert keys["MODVERSIONS"] == "y"
    assert keys["MODULE_SIG_FORCE"] is None
    assert keys["BUILD_SALT"] is None  # Debian's /boot/config drops it
    assert keys["CC_VERSION_TEXT"] == "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"
    assert keys["MODULE_SIG_HASH"] == "sha256"
    assert keys["LOCALVERSION"] == ""


def test_read_config_plain_gzip_and_errors(tmp_path):
    plain = tmp_path / "config"
    plain.write_text(DEBIAN_CONFIG)
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress(DEBIAN_CONFIG.encode()))
    assert read_config(str(plain)) == read_config(str(packed))
    with pytest.raises(KconfigError, match="directory"):
        read_config(str(tmp_path))
    with pytest.raises(KconfigError, match="cannot read"):
        read_config(str(tmp_path / "missing"))
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(KconfigError, match="does not decompress"):
        read_config(str(broken))
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(KconfigError, match="no CONFIG_ line"):
        read_config(str(empty))


@pytest.mark.parametrize("values, flag", [
    (opts(PREEMPT_BUILD="y", PREEMPT_VOLUNTARY="y", PREEMPT_DYNAMIC="y"), "preempt"),  # Debian 12
    (opts(PREEMPT="y"), "preempt"),                 # before 5.16
    (opts(PREEMPT_RT="y"), "preempt_rt"),
    (opts(PREEMPT_NONE="y", PREEMPT=None), "none"),
    (opts(PREEMPT_VOLUNTARY="y"), "none"),         # voluntary without PREEMPT_DYNAMIC
])
def test_preempt_flag(values, flag):
    assert preempt_flag(values) == flag


def test_config_vermagic_debian():
    text, why = config_vermagic(RELEASE, parse_config(DEBIAN_CONFIG))
    assert text == VERMAGIC
    assert "configuration" in why


@pytest.mark.parametrize("values, arch", [
    (opts(X86_64="y"), ""),
    (opts(X86_32="y", M686="y"), "686 "),
    (opts(X86_32="y", MPENTIUM4="y"), "PENTIUM4 "),
    (opts(ARM64="y"), "aarch64"),
    (opts(RISCV="y"), "riscv"),
    (opts(PPC="y", PPC64="y", MPROFILE_KERNEL="y", RELOCATABLE="y"), "mprofile-kernel relocatable "),
    (opts(ARM="y", CPU_32v7="y", CPU_32v6="y", ARM_PATCH_PHYS_VIRT="y"), "ARMv6 p2v8 "),
    (opts(ARM="y", CPU_32v7="y", THUMB2_KERNEL="y"), "ARMv7 thumb2 "),
    (opts(S390="y"), ""),
    (opts(X86_32="y"), None),   # no processor family
    (opts(ARM="y"), None),      # no architecture version
    (opts(MIPS="y"), None),     # not known here
])
def test_arch_vermagic(values, arch):
    assert arch_vermagic(values) == arch


def test_config_vermagic_i386_and_unknown_arch():
    options = opts(X86_32="y", M686="y", SMP="y", MODULE_UNLOAD="y")
    assert config_vermagic("2.6.32-5-686", options)[0] == "2.6.32-5-686 SMP mod_unload 686 "
    text, why = config_vermagic("5.10.0-1-octeon", opts(MIPS="y"))
    assert text is None and "architecture" in why


def test_config_vermagic_randstruct_needs_the_seed_hash():
    options = parse_config(config_with(RANDSTRUCT_FULL="y", RANDSTRUCT="y", RANDSTRUCT_NONE=None))
    text, why = config_vermagic(RELEASE, options)
    assert text is None and "randstruct_hash.h" in why
    text, _why = config_vermagic(RELEASE, options, "f00d")
    assert text == VERMAGIC + "RANDSTRUCT_f00d"
    old = opts(X86_64="y", GCC_PLUGIN_RANDSTRUCT="y")
    assert config_vermagic("5.4.0", old, "beef")[0] == "5.4.0 RANDSTRUCT_PLUGIN_beef"


@pytest.mark.parametrize("values, kind", [
    (parse_config(DEBIAN_CONFIG), "none"),
    (opts(MODULE_COMPRESS_NONE=None, MODULE_COMPRESS_ZSTD="y"), "zstd"),         # 5.13 - 6.5
    (opts(MODULE_COMPRESS="y", MODULE_COMPRESS_XZ="y"), "xz"),                   # before 5.13
    (opts(MODULE_COMPRESS=None, MODULE_COMPRESS_GZIP="y"), "none"),              # choice unused
    (opts(MODULE_COMPRESS="y", MODULE_COMPRESS_GZIP="y"), "gzip"),               # 6.6+
    ({}, "none"),
])
def test_compression(values, kind):
    assert compression(values) == kind


@pytest.mark.parametrize("values, level", [
    (parse_config(DEBIAN_CONFIG), "none"),
    (opts(SECURITY_LOCKDOWN_LSM="y", LOCK_DOWN_KERNEL_FORCE_INTEGRITY="y"), "integrity"),
    (opts(SECURITY_LOCKDOWN_LSM="y", LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY="y"), "confidentiality"),
    (opts(SECURITY_LOCKDOWN_LSM=None), None),
])
def test_lockdown_minimum(values, level):
    assert lockdown_minimum(values) == level


@pytest.mark.parametrize("values, expected", [
    (opts(X86_64="y", **{"64BIT": "y"}), ("x86_64", "EM_X86_64", 64)),
    (opts(X86_32="y"), ("i686", "EM_386", 32)),
    (opts(ARM64="y", **{"64BIT": "y"}), ("aarch64", "EM_AARCH64", 64)),
    (opts(ARM="y", CPU_32v7="y"), ("armv7l", "EM_ARM", 32)),
    (opts(PPC="y", PPC64="y", CPU_LITTLE_ENDIAN="y"), ("ppc64le", "EM_PPC64", 64)),
    (opts(S390="y"), ("s390x", "EM_S390", 64)),
    (opts(RISCV="y", **{"64BIT": "y"}), ("riscv64", "EM_RISCV", 64)),
    (opts(LOONGARCH="y", **{"64BIT": "y"}), ("loongarch64", "EM_LOONGARCH", 64)),
    ({}, (None, None, None)),
])
def test_machine(values, expected):
    assert machine(values) == expected


@pytest.mark.parametrize("values, name, version", [
    (parse_config(DEBIAN_CONFIG), "gcc-12", "12.2.0"),
    (opts(CC_VERSION_TEXT="gcc (GCC) 14.2.1 20240912 (Red Hat 14.2.1-3)", CC_IS_GCC="y",
          GCC_VERSION="140201"), "gcc", "14.2.1"),
    (opts(CC_VERSION_TEXT="x86_64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) 13.2.0"),
     "x86_64-linux-gnu-gcc-13", "13.2.0"),
    (opts(CC_VERSION_TEXT="Debian clang version 16.0.6 (15)", CC_IS_CLANG="y",
          CLANG_VERSION="160006"), "clang-16", "16.0.6"),
    (opts(CC_VERSION_TEXT="Ubuntu clang version 18.1.3 (1ubuntu1)"), "clang-18", "18.1.3"),
])
def test_compiler(values, name, version):
    found = compiler(values)
    assert found == {"text": values["CC_VERSION_TEXT"], "name": name, "version": version}


def test_no_compiler_text_before_5_8():
    assert compiler(opts(GCC_VERSION="80300")) is None
