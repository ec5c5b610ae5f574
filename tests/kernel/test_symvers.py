"""``symvers`` on Debian's real kernel: recovery from vmlinuz + 4,023 in-tree modules gives the
headers package's Module.symvers (the same set of lines; the modules' lines in modpost's order),
and a rerun with unchanged inputs answers from its stamp without reading any of them."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from unittest import mock

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _symvers_sources
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers_sources import recover
from ansible_collections.vermagic.kmod.plugins.modules import symvers
from tests.support.module_runner import run_module


@pytest.fixture(scope="module")
def official(kernel) -> list[str]:
    return (kernel.headers / "Module.symvers").read_text().splitlines()


@pytest.fixture
def headerless_root(kernel, tmp_path):
    """The image without the headers packages: boot, and lib/modules/<release> without build."""
    root = tmp_path / "root"
    (root / "lib" / "modules" / kernel.release).mkdir(parents=True)
    os.symlink(kernel.root / "boot", root / "boot")
    for entry in kernel.modules_dir.iterdir():
        if entry.name not in ("build", "source"):
            os.symlink(entry, root / "lib" / "modules" / kernel.release / entry.name)
    return root


def test_recovery_equals_the_headers_package(kernel, official):
    start = time.monotonic()
    result = recover(str(kernel.root), kernel.release, lambda msg: print(msg, flush=True))
    took = time.monotonic() - start
    lines = result.text.splitlines()
    assert len(lines) == len(official) == len(result.symbols) == 24683
    assert set(lines) == set(official)
    assert result.conflicts == [] and result.modules_checked == len(kernel.modules())
    assert result.details["compression"] == "xz" and result.details["vmlinux_exports"] == 10503
    # The modules' lines come in modpost's order; vmlinux's in the order of its own tables.
    assert [line for line in lines if "\tvmlinux\t" not in line] == \
        [line for line in official if "\tvmlinux\t" not in line]
    print(f"recovered {len(lines)} symbols in {took:.1f} s")


def test_module_recover_unchanged_and_check_mode(kernel, official, headerless_root, tmp_path):
    dest = tmp_path / "tree"
    dest.mkdir()
    args = dict(dest=str(dest), root=str(headerless_root), release=kernel.release)
    checked = run_module(symvers.main, args, check_mode=True, diff=True)
    assert checked["changed"] and checked["source"] == "recover"  # auto, no headers
    assert checked["diff"]["after"].endswith(f"… and {24683 - 50} more\n")
    assert list(dest.iterdir()) == []  # check mode wrote nothing, not even the lock

    start = time.monotonic()
    first = run_module(symvers.main, args)
    first_took = time.monotonic() - start
    assert first["changed"] and not first["failed"] and not first["cached"]
    assert (first["source"], first["symbols"], first["conflicts"]) == ("recover", 24683, [])
    written = (dest / "Module.symvers").read_text().splitlines()
    assert set(written) == set(official)
    stamp = (dest / "Module.symvers").stat().st_mtime_ns

    # The rerun answers from the stamp: no kernel image and no module is read.
    with _no_reading():
        start = time.monotonic()
        again = run_module(symvers.main, args)
        took = time.monotonic() - start
    assert not again["changed"] and again["changes"] == {"added": 0, "removed": 0, "changed": 0}
    assert again["cached"] and not again["failed"]
    assert _result(again) == _result(first)
    assert (dest / "Module.symvers").stat().st_mtime_ns == stamp
    # the stat of 4,023 modules and a hash of 1.7 MB: about 0.05 s natively (first run 1.5-4 s)
    assert took < 1.0, f"the cached rerun took {took:.2f} s"
    print(f"first run {first_took:.2f} s, cached rerun {took:.3f} s")


def test_auto_takes_the_headers_package_when_present(kernel, official, tmp_path):
    args = dict(dest=str(tmp_path), root=str(kernel.root), release=kernel.release)
    result = run_module(symvers.main, args)
    assert result["source"] == "headers" and result["path"] == str(kernel.headers / "Module.symvers")
    assert result["conflicts"] == [] and result["modules_checked"] == len(kernel.modules())
    assert (tmp_path / "Module.symvers").read_text().splitlines() == official
    with _no_reading():  # the 4,023 modules' __versions are not checked again
        again = run_module(symvers.main, args)
    assert again["cached"] and not again["changed"] and _result(again) == _result(result)


def _result(result):
    """What a run says of the table, apart from what it did this time."""
    return {k: v for k, v in result.items() if k not in ("changed", "cached", "reasons", "changes", "diff")}


@contextmanager
def _no_reading():
    """Any read of the kernel image, an in-tree module or a source Module.symvers fails."""
    def refuse(path, *args, **kwargs):
        raise AssertionError(f"{path} read by a rerun whose inputs are unchanged")
    with mock.patch.multiple(_symvers_sources, read_module=refuse, read_vmlinux=refuse,
                             read_text=refuse):
        yield


def test_headers_asked_for_but_missing(kernel, headerless_root, tmp_path):
    result = run_module(symvers.main, dict(dest=str(tmp_path), root=str(headerless_root),
                                           release=kernel.release, source="headers"))
    assert result["failed"]
    assert f"install linux-headers-{kernel.release}" in result["msg"]
    assert "source=recover" in result["msg"]
