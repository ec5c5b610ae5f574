"""roles/deploy/files/pack_source.py: the module's source as one tar, the same bytes every time."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.support.collection import ROOT

SCRIPT = ROOT / "roles" / "deploy" / "files" / "pack_source.py"
_spec = importlib.util.spec_from_file_location("pack_source", SCRIPT)
assert _spec and _spec.loader
pack_source = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pack_source)


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "mod"
    (src / "sub").mkdir(parents=True)
    (src / "hello.c").write_text("int x;\n")
    (src / "Kbuild").write_text("obj-m := hello.o\n")
    (src / "sub" / "helper.h").write_text("#define Y 1\n")
    for product in ("hello.o", "hello.ko", "hello.mod", "hello.mod.c", ".hello.o.cmd",
                    "modules.order", "Module.symvers", ".vermagic-kmod.fingerprint"):
        (src / product).write_text("built\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    os.utime(src / "hello.c", (1_600_000_000, 1_600_000_000))
    return src


def _run(src: Path, cache: Path) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    out = subprocess.run([sys.executable, str(SCRIPT), str(src), "mod"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def test_sources_only_with_their_times_owned_by_root(tmp_path: Path) -> None:
    result = _run(_source(tmp_path), tmp_path / "cache")
    assert result["path"].startswith(str(tmp_path / "cache" / "vermagic-kmod" / "deploy-src"))
    assert Path(result["path"]).name == "mod.src.tar"
    with tarfile.open(result["path"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["Kbuild", "hello.c", "sub", "sub/helper.h"]
    assert members["hello.c"].mtime == 1_600_000_000
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members.values())


def test_same_bytes_for_the_same_files_and_another_checksum_after_an_edit(tmp_path: Path) -> None:
    src = _source(tmp_path)
    first = _run(src, tmp_path / "cache")
    first_bytes = Path(first["path"]).read_bytes()
    (src / "hello.o").write_text("rebuilt\n")  # a build product changes nothing
    second = _run(src, tmp_path / "cache")
    assert second == first
    assert Path(second["path"]).read_bytes() == first_bytes
    (src / "hello.c").write_text("int x = 2;\n")
    third = _run(src, tmp_path / "cache")
    assert third["path"] == first["path"] and third["sha1"] != first["sha1"]
    assert not [p for p in Path(first["path"]).parent.iterdir() if p.name.endswith(".tmp")]


def test_usage_error_for_a_missing_directory(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope"), "mod"], check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "must be a directory" in proc.stderr


def test_members_walks_in_name_order(tmp_path: Path) -> None:
    src = _source(tmp_path)
    (src / "a.c").write_text("")
    assert pack_source.members(str(src)) == ["Kbuild", "a.c", "hello.c", "sub", "sub/helper.h"]
