from __future__ import annotations

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._vermagic import (
    build_vermagic, parse_vermagic, same_magic)

DEBIAN = "6.1.0-56-amd64 SMP preempt mod_unload modversions "


def test_parse_debian_vermagic_keeps_trailing_space():
    vm = parse_vermagic(DEBIAN)
    assert vm.release == "6.1.0-56-amd64"
    assert vm.flags == ["SMP", "preempt", "mod_unload", "modversions"]
    assert (vm.smp, vm.preempt, vm.mod_unload, vm.modversions) == (True, "preempt", True, True)
    assert vm.tail == " SMP preempt mod_unload modversions "
    assert vm.raw.endswith(" ")


def test_parse_old_i386_vermagic_has_arch_flags():
    vm = parse_vermagic("2.6.5-1.358 686 REGPARM 4KSTACKS gcc-3.3")
    assert vm.preempt == "none" and not vm.smp
    assert vm.arch_flags == ["686", "REGPARM", "4KSTACKS", "gcc-3.3"]


@pytest.mark.parametrize("raw", ["", "   "])
def test_parse_empty_is_an_error(raw):
    with pytest.raises(ValueError, match="empty"):
        parse_vermagic(raw)


def test_same_magic_skips_release_only_with_versions():
    other_release = "6.1.0-9-amd64 SMP preempt mod_unload modversions "
    assert same_magic(other_release, DEBIAN, has_versions=True)
    assert not same_magic(other_release, DEBIAN, has_versions=False)
    assert same_magic(DEBIAN, DEBIAN, has_versions=False)


def test_same_magic_compares_the_rest_exactly():
    assert not same_magic("6.1.0-56-amd64 SMP mod_unload modversions ", DEBIAN, True)
    assert not same_magic(DEBIAN.rstrip(), DEBIAN, True)  # the trailing space counts


def test_build_is_the_inverse_of_parse():
    built = build_vermagic("6.1.0-56-amd64", smp=True, preempt="preempt", mod_unload=True,
                           modversions=True)
    assert built == DEBIAN
    assert build_vermagic("2.6.5-1.358", smp=False, preempt="none", mod_unload=False,
                          modversions=False, arch="686 REGPARM 4KSTACKS gcc-3.3") \
        == "2.6.5-1.358 686 REGPARM 4KSTACKS gcc-3.3"
