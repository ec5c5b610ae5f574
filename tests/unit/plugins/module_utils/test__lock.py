from __future__ import annotations

import multiprocessing
import os
import re
import time

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._lock import (
    LockTimeout, exclusive_lock, shared_lock, tree_lock, tree_lock_path)


def _hold(path: str, ready, release) -> None:
    with exclusive_lock(path):
        ready.set()
        release.wait(10)


def test_second_holder_times_out_naming_the_holder(tmp_path):
    path = str(tmp_path / "locks" / "tree.lock")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.monotonic()
        with pytest.raises(LockTimeout, match=f"pid {holder.pid}"):
            with exclusive_lock(path, timeout=0.5, poll=0.05):
                pass
        assert time.monotonic() - start >= 0.5
    finally:
        release.set()
        holder.join(10)
    with exclusive_lock(path, timeout=1):
        pass


def test_lock_is_released_when_the_holder_dies(tmp_path):
    path = str(tmp_path / "tree.lock")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, ready, release))
    holder.start()
    assert ready.wait(10)
    holder.kill()
    holder.join(10)
    with exclusive_lock(path, timeout=2):
        pass


def test_tree_lock_is_outside_the_tree_and_the_same_by_every_path(tmp_path):
    tree = tmp_path / "linux"
    tree.mkdir()
    (tmp_path / "link").symlink_to(tree)
    path = tree_lock_path(str(tree))
    assert path == tree_lock_path(str(tmp_path / "link")) == tree_lock_path(str(tree) + "/")
    assert not path.startswith(str(tree))
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockTimeout, match=re.escape(path)):
            with tree_lock(str(tmp_path / "link"), timeout=0.3):
                pass
    finally:
        release.set()
        holder.join(10)
    with tree_lock(str(tree), timeout=1):
        assert open(path).read() == f"{os.getpid()}\n"
    assert os.listdir(tree) == []


def _hold_shared(path: str, ready, release) -> None:
    with shared_lock(path):
        ready.set()
        release.wait(10)


def test_shared_holders_coexist_and_keep_an_exclusive_one_out(tmp_path):
    path = str(tmp_path / "tree.lock")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_shared, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with shared_lock(path, timeout=0.5, poll=0.05):
            pass  # a second reader gets in at once
        with pytest.raises(LockTimeout, match="shared holders"):
            with exclusive_lock(path, timeout=0.3, poll=0.05):
                pass
    finally:
        release.set()
        holder.join(10)
    with exclusive_lock(path, timeout=1):
        pass


def test_shared_waits_for_an_exclusive_holder(tmp_path):
    path = str(tmp_path / "tree.lock")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockTimeout, match=f"pid {holder.pid}"):
            with shared_lock(path, timeout=0.3, poll=0.05):
                pass
    finally:
        release.set()
        holder.join(10)
    with shared_lock(path, timeout=1):
        pass


def test_tree_lock_shared_lets_readers_in_together(tmp_path):
    tree = tmp_path / "linux"
    tree.mkdir()
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_shared,
                                     args=(tree_lock_path(str(tree)), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with tree_lock(str(tree), timeout=0.5, shared=True):
            pass
        with pytest.raises(LockTimeout):
            with tree_lock(str(tree), timeout=0.3):
                pass
    finally:
        release.set()
        holder.join(10)
