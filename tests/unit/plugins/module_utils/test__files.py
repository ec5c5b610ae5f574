from __future__ import annotations

import os

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._files import read_bytes, write_atomic


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


def test_read_bytes_whole_part_and_errors(tmp_path):
    class Oops(Exception):
        pass

    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    assert read_bytes(str(path), Oops) == b"0123456789"
    assert read_bytes(str(path), Oops, size=4) == b"0123"
    with pytest.raises(Oops, match="is a directory, not a kernel image"):
        read_bytes(str(tmp_path), Oops, "a kernel image")
    with pytest.raises(Oops, match="cannot read .*missing: No such file"):
        read_bytes(str(tmp_path / "missing"), Oops)
