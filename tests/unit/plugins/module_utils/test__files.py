from __future__ import annotations

import os

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._files import write_atomic


def test_write_atomic_keeps_mode_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, 0o600)
    write_atomic(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another owner")
def test_write_atomic_keeps_owner_and_group(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    os.chown(path, 4321, 4322)
    write_atomic(str(path), b"new")
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)
    assert path.read_bytes() == b"new"


def test_write_atomic_new_file_default_mode(tmp_path):
    path = tmp_path / "g"
    write_atomic(str(path), b"x")
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_write_keeps_the_original(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_text("original")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(str(path), b"new")
    assert path.read_text() == "original"
    assert os.listdir(tmp_path) == ["f"]
