from __future__ import annotations

import copy
import gzip
import json
import os
import re

import pytest

from ansible_collections.vermagic.kmod.plugins.modules import modinfo
from tests.support.elf_fixture import Spec, make_module, sign
from tests.support.fake_ko import build_id_note
from tests.support.module_runner import run_module

MAGIC = "6.1.0-56-amd64 SMP preempt mod_unload modversions "
RELEASE = "6.1.0-56-amd64"
KERNEL = {
    "release": RELEASE, "vermagic": MAGIC, "elf_machine": "EM_X86_64", "elf_class": 64,
    "modversions": True, "sig_enforce": False, "lockdown": "none", "running": False,
    "symvers": [],
    "config": {"options": {"MODVERSIONS": "y", "MODULE_SIG": "y", "MODULE_FORCE_LOAD": "y"}},
}
SYMVERS = ("0x0b4c6ac4\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
           "0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n")


def ko(tmp_path, data: bytes | None = None, name: str = "fixture.ko") -> str:
    path = tmp_path / name
    path.write_bytes(make_module() if data is None else data)
    return str(path)


def run(args, **kw):
    result = run_module(modinfo.main, args, **kw)
    assert "Traceback" not in json.dumps(result)
    return result


def test_reads_a_module(tmp_path):
    result = run({"path": ko(tmp_path, sign(make_module()))})
    assert not result["failed"] and not result["changed"]
    assert result["name"] == "fixture"
    assert result["fields"]["vermagic"] == MAGIC
    assert result["vermagic"]["release"] == RELEASE and result["vermagic"]["modversions"]
    assert result["versions"][0] == {"symbol": "module_layout", "crc": "0x0b4c6ac4",
                                     "extended": False}
    assert result["elf"]["class"] == 64 and result["elf"]["machine"] == "EM_X86_64"
    assert result["signature"]["signer"] == "Fixture key"
    assert "verdict" not in result
    json.dumps(result)  # everything is JSON


def test_check_mode_gives_the_same_result(tmp_path):
    args = {"path": ko(tmp_path), "kernel": KERNEL}
    assert run(args, check_mode=True) == run(args)


def test_verdict_with_kernel_facts_and_symvers(tmp_path):
    symvers = tmp_path / "Module.symvers"
    symvers.write_text(SYMVERS)
    result = run({"path": ko(tmp_path), "kernel": KERNEL, "symvers": str(symvers)})
    assert not result["failed"]
    assert result["verdict"]["compatible"]
    assert result["verdict"]["symvers"] == str(symvers)
    assert result["kernel_release"] == RELEASE
    assert "loaded" not in result


def test_symvers_defaults_to_the_kernel_facts_source(tmp_path):
    symvers = tmp_path / "Module.symvers"
    symvers.write_text(SYMVERS.replace("0x92997ed8", "0x00000001"))
    kernel = dict(KERNEL, symvers=[{"source": "headers", "path": str(tmp_path / "nope")},
                                   {"source": "boot", "path": str(symvers)}])
    result = run({"path": ko(tmp_path), "kernel": kernel})
    assert result["verdict"]["symvers"] == str(symvers)
    assert [p["code"] for p in result["verdict"]["problems"]] == ["crc_mismatch"]


def test_incompatible_is_a_verdict_not_a_failure(tmp_path):
    data = make_module(Spec(versions=[]))
    result = run({"path": ko(tmp_path, data), "kernel": KERNEL})
    assert not result["failed"]
    assert not result["verdict"]["compatible"]
    assert "no symbol version for module_layout" in result["verdict"]["problems"][0]["msg"]


def test_loaded_check_only_for_the_running_kernel(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(modinfo, "_loaded", lambda name: seen.append(name) or
                        {"name": name, "srcversion": "OTHER"})
    result = run({"path": ko(tmp_path), "kernel": dict(KERNEL, running=True)})
    assert seen == ["fixture"] and result["loaded"]["srcversion"] == "OTHER"
    assert "other_version_loaded" in [w["code"] for w in result["verdict"]["warnings"]]
    seen.clear()
    run({"path": ko(tmp_path), "kernel": KERNEL})
    assert seen == []


def test_build_id_is_returned_and_tells_builds_apart(tmp_path, monkeypatch):
    from tests.support.elf_fixture import Section
    from tests.support.fake_ko import SHT_NOTE

    note = Section(".note.gnu.build-id", build_id_note(bytes(range(20))), SHT_NOTE)
    path = ko(tmp_path, make_module(Spec(extra=[note])))
    srcversion = "0123456789ABCDEF0123456"  # elf_fixture's
    loaded = {"name": "fixture", "srcversion": srcversion, "build_id": "ee" * 20}
    monkeypatch.setattr(modinfo, "_loaded", lambda name: loaded)
    result = run({"path": path, "kernel": dict(KERNEL, running=True)})
    assert result["build_id"] == bytes(range(20)).hex()
    assert result["loaded"]["build_id"] == "ee" * 20
    codes = [w["code"] for w in result["verdict"]["warnings"]]
    assert "other_version_loaded" in codes  # same srcversion, another build
    loaded["build_id"] = result["build_id"]
    again = run({"path": path, "kernel": dict(KERNEL, running=True)})
    assert "already_loaded" in [w["code"] for w in again["verdict"]["warnings"]]


def test_loaded_reads_sys_module(tmp_path):
    base = tmp_path / "sys" / "module" / "hello"
    base.mkdir(parents=True)
    assert modinfo._loaded("hello", str(tmp_path / "sys" / "module")) is None  # built in
    (base / "initstate").write_text("live\n")
    (base / "srcversion").write_text("ABC\n")
    assert modinfo._loaded("hello", str(tmp_path / "sys" / "module")) == {
        "name": "hello", "srcversion": "ABC", "build_id": None}
    (base / "notes").mkdir()
    (base / "notes" / ".note.gnu.build-id").write_bytes(build_id_note(b"\x12\x34"))
    assert modinfo._loaded("hello", str(tmp_path / "sys" / "module"))["build_id"] == "1234"


def test_release_and_root_gather_the_kernel(tmp_path):
    root = tmp_path / "root"
    moddir = root / "lib" / "modules" / RELEASE / "kernel" / "fs"
    moddir.mkdir(parents=True)
    (moddir / "intree.ko").write_bytes(make_module(Spec(modinfo=[
        "intree=Y", "name=intree", "vermagic=" + MAGIC])))
    (root / "boot").mkdir()
    (root / "boot" / f"config-{RELEASE}").write_text(
        "CONFIG_MODULES=y\nCONFIG_MODVERSIONS=y\nCONFIG_SMP=y\nCONFIG_PREEMPT_BUILD=y\n"
        "CONFIG_MODULE_UNLOAD=y\nCONFIG_64BIT=y\nCONFIG_X86_64=y\nCONFIG_MODULE_FORCE_LOAD=y\n")
    result = run({"path": ko(tmp_path), "root": str(root), "release": RELEASE})
    assert not result["failed"], result["msg"]
    assert result["kernel_release"] == RELEASE
    assert result["verdict"]["compatible"]
    other = run({"path": ko(tmp_path, make_module(Spec(modinfo=[
        "name=fixture", "vermagic=6.1.0-56-amd64 SMP mod_unload modversions "]))),
        "root": str(root), "release": RELEASE})
    assert [p["code"] for p in other["verdict"]["problems"]] == ["vermagic"]


def test_a_kernel_without_module_support_is_said_first(tmp_path):
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / f"config-{RELEASE}").write_text(
        "# CONFIG_MODULES is not set\nCONFIG_SMP=y\nCONFIG_64BIT=y\nCONFIG_X86_64=y\n")
    (root / "lib" / "modules" / RELEASE).mkdir(parents=True)
    result = run({"path": ko(tmp_path), "root": str(root), "release": RELEASE})
    assert not result["failed"], result["msg"]
    assert result["verdict"]["compatible"] is False
    first = result["verdict"]["problems"][0]
    assert first["code"] == "modules_disabled"
    assert f"/boot/config-{RELEASE}" in first["msg"] and first["fix"]


def test_kernel_and_release_are_exclusive(tmp_path):
    result = run({"path": ko(tmp_path), "kernel": KERNEL, "release": RELEASE})
    assert result["failed"] and "mutually exclusive" in result["msg"]


def test_bad_root_fails_clearly(tmp_path):
    result = run({"path": ko(tmp_path), "root": str(tmp_path / "no-root"), "release": RELEASE})
    assert result["failed"] and "cannot gather the kernel's facts" in result["msg"]


# ---- bad input: each fails with a message that names the problem ------------------------------

def _truncated(fraction):
    data = make_module()
    return data[:max(24, int(len(data) * fraction))]


BAD_FILES = {
    "empty": (b"", r"is empty \(0 bytes\)"),
    "random": (bytes(range(7, 250)) * 3, "does not start with the ELF magic"),
    "truncated-10": (_truncated(0.1), "truncated"),
    "truncated-50": (_truncated(0.5), "truncated"),
    "truncated-95": (_truncated(0.95), "truncated"),
    "truncated-header": (make_module()[:30], "truncated"),
    "shared-object": (make_module(Spec(e_type=3)), "not a kernel module"),
    "plain-object": (make_module(Spec(this_module=False)), "no .gnu.linkonce.this_module"),
    "no-modinfo": (make_module(Spec(modinfo=None)), "no .modinfo section"),
    "no-vermagic": (make_module(Spec(modinfo=["license=GPL", "name=fixture"])),
                    "has no vermagic in its .modinfo"),
    "gzip-garbage": (b"\x1f\x8b\x08\x00" + b"\x55" * 100, "gzip-compressed .* does not decompress"),
    "xz-garbage": (b"\xfd7zXZ\x00" + b"\x55" * 100, "xz-compressed .* does not decompress"),
    "zstd-garbage": (b"\x28\xb5\x2f\xfd" + b"\x55" * 100, "zstd-compressed .* does not decompress"),
    "gzip-of-text": (gzip.compress(b"hello world\n" * 20), "does not start with the ELF magic"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_fail_with_a_clear_message(tmp_path, case):
    data, needle = BAD_FILES[case]
    path = ko(tmp_path, data, f"{case}.ko")
    result = run({"path": path})
    assert result["failed"]
    assert path in result["msg"]
    assert re.search(needle, result["msg"]), result["msg"]


def test_missing_path_and_directory(tmp_path):
    missing = run({"path": str(tmp_path / "nope.ko")})
    assert missing["failed"] and "does not exist" in missing["msg"]
    directory = run({"path": str(tmp_path)})
    assert directory["failed"] and "is a directory" in directory["msg"]


def test_32_bit_module_against_64_bit_kernel_fails(tmp_path):
    path = ko(tmp_path, make_module(Spec(elf_class=32, machine=3)))
    result = run({"path": path, "kernel": KERNEL})
    assert result["failed"]
    assert "is not a module for this kernel" in result["msg"] and "32-bit" in result["msg"]
    assert result["elf"]["class"] == 32  # the data comes along
    assert [p["code"] for p in result["verdict"]["problems"]][:2] == ["elf_class", "machine"]


@pytest.mark.parametrize("content,needle", [
    ("0x1234\tonly_two\n", "line 1"),
    ("0xZZZZ\tsym\tvmlinux\tEXPORT_SYMBOL\t\n", "not a hexadecimal number"),
    ("0x0b4c6ac4\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\nnonsense\n", "line 2"),
])
def test_malformed_symvers_fails(tmp_path, content, needle):
    symvers = tmp_path / "Module.symvers"
    symvers.write_text(content)
    result = run({"path": ko(tmp_path), "kernel": KERNEL, "symvers": str(symvers)})
    assert result["failed"]
    assert "cannot use the symvers file" in result["msg"] and needle in result["msg"]


def test_symvers_that_is_a_directory_fails(tmp_path):
    result = run({"path": ko(tmp_path), "kernel": KERNEL, "symvers": str(tmp_path)})
    assert result["failed"] and "is a directory" in result["msg"]


def test_without_pyelftools_fails_with_the_usual_message(tmp_path, monkeypatch):
    monkeypatch.setattr(modinfo, "HAS_ELFTOOLS", False)
    monkeypatch.setattr(modinfo, "ELFTOOLS_IMPORT_ERROR", "ImportError: No module named 'elftools'")
    result = run_module(modinfo.main, {"path": ko(tmp_path)})
    assert result["failed"]
    assert "Failed to import the required Python library (pyelftools)" in result["msg"]


def test_kernel_facts_with_unknowns_still_answer(tmp_path):
    kernel = copy.deepcopy(KERNEL)
    for key in ("vermagic", "modversions", "elf_class", "elf_machine", "config"):
        kernel[key] = None
    result = run({"path": ko(tmp_path), "kernel": kernel})
    assert not result["failed"]
    codes = [w["code"] for w in result["verdict"]["warnings"]]
    assert "vermagic_unchecked" in codes and "crcs_unchecked" in codes


def test_result_has_no_bytes(tmp_path):
    result = run({"path": ko(tmp_path, sign(make_module()))})
    assert isinstance(result["signature"]["sig_key"], str)
    assert os.path.basename(result["path"]) == "fixture.ko"
