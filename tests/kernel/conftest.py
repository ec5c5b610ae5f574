"""Fixtures of the real-kernel tests: Debian's kernel from the cache, its source unpacked once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import source_tree
from tests.support.debian import DebianKernel, fetch


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
