from __future__ import annotations

import json
import os

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _fingerprint as fp


@pytest.mark.parametrize("name", [
    "hello.o", "hello.ko", "hello.mod", "hello.mod.c", "hello.mod.o", ".hello.o.cmd",
    ".hello.ko.cmd", "modules.order", "Module.symvers", ".Module.symvers.cmd", "built-in.a",
    ".vermagic-kmod.fingerprint", ".vermagic-kmod.log", ".vermagic-kmod.lock", "hello.ko.xz",
    ".hello.o.d", "compile_commands.json",
])
def test_build_products_are_not_sources(name):
    assert fp.is_build_product(name)


@pytest.mark.parametrize("name", [
    "hello.c", "hello.h", "Kbuild", "Makefile", "entry.S", "dkms.conf", "firmware.bin",
    "Kconfig", "lib.rs", ".gitignore", "nv-kernel.o_binary",
])
def test_sources_count(name):
    assert not fp.is_build_product(name)


def _module(tmp_path):
    src = tmp_path / "hello"
    (src / "sub").mkdir(parents=True)
    (src / "Kbuild").write_text("obj-m := hello.o\n")
    (src / "hello.c").write_text("int x;\n")
    (src / "sub" / "util.h").write_text("#define Y 1\n")
    for product in ("hello.o", "hello.ko", ".hello.o.cmd", "modules.order", "Module.symvers"):
        (src / product).write_text("built")
    (src / ".tmp_versions").mkdir()
    (src / ".tmp_versions" / "hello.mod").write_text("built")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    return src


def test_source_files_skip_products_and_vcs(tmp_path):
    src = _module(tmp_path)
    files = fp.source_files(str(src))
    assert sorted(files) == ["Kbuild", "hello.c", os.path.join("sub", "util.h")]
    assert files["hello.c"] == "-" + fp.hash_bytes(b"int x;\n")


def test_source_files_see_links_and_exec_bits(tmp_path):
    src = _module(tmp_path)
    os.symlink("hello.c", src / "alias.c")
    before = fp.source_files(str(src))
    assert before["alias.c"] == "link:hello.c"
    os.chmod(src / "hello.c", 0o755)
    after = fp.source_files(str(src))
    assert after["hello.c"].startswith("x") and before["hello.c"].startswith("-")


def test_products_do_not_change_the_digest(tmp_path):
    src = _module(tmp_path)
    before = fp.digest_of_files(fp.source_files(str(src)))
    (src / "hello.ko").write_text("rebuilt")
    (src / "other.o").write_text("new object")
    assert fp.digest_of_files(fp.source_files(str(src))) == before
    (src / "hello.c").write_text("int y;\n")
    assert fp.digest_of_files(fp.source_files(str(src))) != before


def test_round_trip_and_differences_in_words(tmp_path):
    src = _module(tmp_path)
    files = fp.source_files(str(src))
    old = fp.Fingerprint({"sources": fp.digest_of_files(files), "compiler": "a"}, files=files,
                         outputs={"hello.ko": "abc"}, notes={"compiler": "gcc-12 (Debian) 12.2.0"})
    path = str(tmp_path / "fp.json")
    fp.store(path, old)
    loaded = fp.load(path)
    assert loaded == old and loaded.digest == old.digest
    assert sorted(os.listdir(tmp_path)) == ["fp.json", "hello"]  # no temp file left

    (src / "hello.c").write_text("int y;\n")
    (src / "new.c").write_text("int z;\n")
    os.unlink(src / "sub" / "util.h")
    files2 = fp.source_files(str(src))
    new = fp.Fingerprint({"sources": fp.digest_of_files(files2), "compiler": "b"}, files=files2,
                         notes={"compiler": "gcc-12 (Debian) 12.3.0"})
    reasons = new.differences(loaded, {"sources": "source files"})
    assert reasons == [
        "compiler changed: 'gcc-12 (Debian) 12.2.0' -> 'gcc-12 (Debian) 12.3.0'",
        f"source files changed: modified hello.c; added new.c; removed {os.path.join('sub', 'util.h')}",
    ]
    assert new.differences(None) == ["no fingerprint of an earlier build"]
    same = fp.Fingerprint(dict(old.components), files=dict(files))
    assert same.differences(loaded) == []


def test_data_is_kept_and_absent_when_empty(tmp_path):
    path = str(tmp_path / "fp.json")
    fp.store(path, fp.Fingerprint({"a": "1"}))
    assert "data" not in json.loads(open(path).read())  # kbuild's fingerprints stay as they were
    result = {"symbols": 24683, "conflicts": [{"kind": "crc"}], "recovery": {"modversions": True}}
    fp.store(path, fp.Fingerprint({"a": "1"}, data=result))
    assert fp.load(path).data == result


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": 99, "components": {}}',
                                  '{"format": 1}', '{"format": 1, "components": 5}'])
def test_unreadable_fingerprints_count_as_absent(tmp_path, text):
    path = tmp_path / "fp.json"
    path.write_text(text)
    assert fp.load(str(path)) is None
    assert fp.load(str(tmp_path / "missing.json")) is None


def test_outputs_intact_names_missing_and_replaced(tmp_path):
    (tmp_path / "a.ko").write_bytes(b"a")
    (tmp_path / "b.ko").write_bytes(b"b")
    (tmp_path / "modpost").write_bytes(b"tool")
    outputs = fp.output_digests(str(tmp_path), [str(tmp_path / n) for n in ("a.ko", "b.ko", "c.ko")])
    assert sorted(outputs) == ["a.ko", "b.ko"]
    outputs["modpost"] = "exists"
    assert fp.outputs_intact(str(tmp_path), outputs) == []
    (tmp_path / "a.ko").write_bytes(b"other")
    os.unlink(tmp_path / "b.ko")
    assert fp.outputs_intact(str(tmp_path), outputs) == ["a.ko was replaced since", "b.ko is missing"]


def test_absent_files_hash_to_a_marker(tmp_path):
    assert fp.hash_optional_file(str(tmp_path / "nope")) == "absent"
    fp.remove(str(tmp_path / "nope"))  # no error
