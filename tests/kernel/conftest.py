"""Fixtures of the real-kernel tests, each made once per session: Debian's kernel from the cache,
its facts, its source unpacked, the sample module's variants built against its headers."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._kernel_facts import gather
from tests.support import source_tree
from tests.support.debian import DebianKernel, fetch
from tests.support.variants import Variant, build_all


@pytest.fixture(scope="session")
def kernel() -> DebianKernel:
    return fetch()


@pytest.fixture(scope="session")
def pristine(kernel: DebianKernel, tmp_path_factory) -> Path:
    """linux-source-X.Y unpacked once per session (keyed by the tarball); clone it to change it."""
    top = source_tree.session_pristine(kernel.source_tarball(), tmp_path_factory.mktemp)
    yield top
    written = source_tree.modified(top)
    shutil.rmtree(top.parent, ignore_errors=True)  # 1.5 GB: not kept for pytest's retention
    assert written == [], "a copy wrote into the pristine tree through a hard link"


@pytest.fixture(scope="session")
def facts(kernel: DebianKernel) -> dict:
    """``kmod_kernel`` facts of the unpacked image (shared: change a copy, not this dict)."""
    found, _warnings = gather(str(kernel.root), kernel.release)
    return found


@pytest.fixture(scope="session")
def variants(kernel: DebianKernel, tmp_path_factory) -> dict[str, Variant]:
    """Variants a-e of the sample module (``tests/support/variants.py``) built from the headers."""
    start = time.monotonic()
    built = build_all(kernel, tmp_path_factory.mktemp("variants"))
    print(f"[kernel tests] built variants a-e in {time.monotonic() - start:.1f} s",
          file=sys.stderr, flush=True)
    return built
