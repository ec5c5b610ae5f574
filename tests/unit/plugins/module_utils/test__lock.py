from __future__ import annotations

import multiprocessing
import time

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._lock import LockTimeout, exclusive_lock


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
