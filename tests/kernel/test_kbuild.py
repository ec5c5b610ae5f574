"""``kbuild`` on real trees: Debian's headers package and Debian's Linux 6.1 source.

* The sample module built against the official headers (``make -C <headers> M=<dir> modules``),
  its vermagic and srcversion as kmod's ``modinfo`` reads them; the second run starts no make (a
  recording ``make`` first on PATH proves it); an edit of ``hello.c`` rebuilds.
* Debian's source tree prepared from the image's ``/boot/config-*`` (``olddefconfig`` because
  the tree has no ``auto.conf``, then ``modules_prepare``), once per session; a second run is
  skipped without make; the module built against it without ``Module.symvers`` is flagged,
  and with the headers' ``Module.symvers`` its ``__versions`` equal the headers build's.
* Debian drops ``CONFIG_BUILD_SALT`` from ``/boot/config-*``: the test shows it reaches only the
  module's ``.note.Linux`` note, not ``.modinfo`` or ``__versions``.
* Failures as a user meets them: no tree, an unprepared tree, a compiler that is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module
from ansible_collections.vermagic.kmod.plugins.modules import kbuild
from tests.support import source_tree
from tests.support.debian import DebianKernel
from tests.support.hello import hello_copy, section
from tests.support.make_wrapper import MakeRecorder
from tests.support.module_runner import run_module

VERMAGIC = "6.1.0-56-amd64 SMP preempt mod_unload modversions "
JOBS = min(os.cpu_count() or 1, 4)


def say(msg: str) -> None:
    source_tree.say(msg)


@pytest.fixture(scope="session")
def prepared(pristine: Path, kernel: DebianKernel, tmp_path_factory) -> dict:
    """Debian's source prepared by kbuild from the image's config (first run's result kept)."""
    tree = source_tree.clone(pristine, tmp_path_factory.mktemp("prepared") / "linux")
    say(f"kbuild modules_prepare on {tree}")
    start = time.monotonic()
    result = run_module(kbuild.main, {"kernel_dir": str(tree), "config": str(kernel.config),
                                      "jobs": JOBS})
    seconds = time.monotonic() - start
    say(f"  prepared in {seconds:.1f} s")
    return {"tree": tree, "result": result, "seconds": seconds}


@pytest.fixture()
def recorder(tmp_path, monkeypatch) -> MakeRecorder:
    rec = MakeRecorder(tmp_path)
    monkeypatch.setenv("PATH", rec.path)
    return rec


def kmod_field(path: str, field: str) -> str:
    return subprocess.run(["modinfo", "-F", field, path], check=True, capture_output=True,
                          text=True).stdout.rstrip("\n")


# ----------------------------------------------------------------------------- headers

def test_hello_against_the_official_headers(kernel, tmp_path, recorder):
    src = hello_copy(tmp_path / "hello")
    args = {"kernel_dir": str(kernel.headers), "src": str(src), "jobs": JOBS}
    first = run_module(kbuild.main, args)
    assert not first["failed"], first.get("msg")
    ko = src / "hello.ko"
    assert first["modules"] == [{"path": str(ko), "name": "hello", "vermagic": VERMAGIC,
                                 "srcversion": kmod_field(str(ko), "srcversion")}]
    assert kmod_field(str(ko), "vermagic") == VERMAGIC  # byte for byte, trailing space too
    assert (first["changed"], first["skipped"], first["diagnosis"]) == (True, False, [])
    assert first["compiler"]["command"] == "gcc-12" and first["compiler"]["matches"] is True
    assert first["release"] == kernel.release
    assert len(recorder.calls()) == 1
    assert recorder.calls()[0] == f"-C {kernel.headers} -j{JOBS} M={src} CC=gcc-12 modules"

    mtime = ko.stat().st_mtime_ns
    second = run_module(kbuild.main, args)
    assert (second["changed"], second["skipped"], second["commands"]) == (False, True, [])
    assert second["modules"] == first["modules"]
    assert len(recorder.calls()) == 1, "a skipped run started make"
    assert ko.stat().st_mtime_ns == mtime

    hello_c = src / "hello.c"
    hello_c.write_text(hello_c.read_text().replace('#define HELLO_VERSION "1.0"',
                                                   '#define HELLO_VERSION "1.1"'))
    predicted = run_module(kbuild.main, args, check_mode=True)
    assert predicted["changed"] and predicted["reasons"] == ["source files changed: modified hello.c"]
    assert len(recorder.calls()) == 1 and ko.stat().st_mtime_ns == mtime

    third = run_module(kbuild.main, args)
    assert third["changed"] and third["reasons"] == ["source files changed: modified hello.c"]
    assert len(recorder.calls()) == 2
    assert third["modules"][0]["srcversion"] != first["modules"][0]["srcversion"]
    assert third["modules"][0]["srcversion"] == kmod_field(str(ko), "srcversion")
    assert kmod_field(str(ko), "version") == "1.1"
    assert (src / ".vermagic-kmod.log").read_text().startswith(f"### {shutil.which('make')} -C ")


def test_no_tree(kernel, tmp_path):
    missing = tmp_path / "lib" / "modules" / "6.1.0-99-amd64" / "build"
    result = run_module(kbuild.main, {"kernel_dir": str(missing), "src": str(hello_copy(tmp_path / "h"))})
    assert result["failed"] and result["diagnosis"][0]["code"] == "missing_tree"
    assert "install the headers package" in result["msg"]


def test_unprepared_tree(pristine, tmp_path):
    tree = source_tree.clone(pristine, tmp_path / "linux")
    result = run_module(kbuild.main, {"kernel_dir": str(tree), "src": str(hello_copy(tmp_path / "h"))})
    assert result["failed"] and result["diagnosis"][0]["code"] == "unprepared_tree"
    assert "include/config/auto.conf" in result["msg"] and "modules_prepare" in result["msg"]


def test_compiler_that_is_not_installed(kernel, tmp_path, monkeypatch):
    src = hello_copy(tmp_path / "h")
    given = run_module(kbuild.main, {"kernel_dir": str(kernel.headers), "src": str(src),
                                     "cc": "gcc-99"})
    assert given["failed"] and given["diagnosis"][0]["code"] == "missing_compiler"
    assert "'gcc-99' is not installed" in given["msg"]

    # A host without gcc-12 but with gcc: the module falls back and says so; Debian's headers
    # insist on gcc-12 (CC in their .kernelvariables), and make's log says it is missing.
    view = tmp_path / "bin-without-gcc-12"
    view.mkdir()
    for name in os.listdir("/usr/bin"):
        if "gcc-12" not in name:
            os.symlink(os.path.join("/usr/bin", name), view / name)
    monkeypatch.setenv("PATH", str(view))
    result = run_module(kbuild.main, {"kernel_dir": str(kernel.headers), "src": str(src)})
    assert result["failed"]
    codes = [(d["code"], d["severity"]) for d in result["diagnosis"]]
    assert codes[0] == ("compiler_fallback", "warning")
    assert ("missing_compiler", "error") in codes
    missing = next(d for d in result["diagnosis"] if d["code"] == "missing_compiler")
    assert missing["line"] == "/bin/sh: 1: gcc-12: not found"
    assert "apt-get install gcc-12" in missing["fix"]
    assert result["log"] == str(src / ".vermagic-kmod.log") and result["log"] in result["msg"]


# ----------------------------------------------------------------------------- source tree

def test_prepare_debians_source(prepared, kernel, tmp_path, recorder):
    tree, first = prepared["tree"], prepared["result"]
    assert not first["failed"], first.get("msg")
    assert (first["changed"], first["skipped"]) == (True, False)
    assert first["olddefconfig"] == "no include/config/auto.conf yet"
    assert [c[-1] for c in first["commands"]] == ["olddefconfig", "modules_prepare"]
    assert first["compiler"]["command"] == "gcc-12" and first["compiler"]["matches"] is True
    for rel in ("include/config/auto.conf", "include/generated/autoconf.h", "scripts/mod/modpost",
                "include/generated/utsrelease.h", "scripts/module.lds"):
        assert (tree / rel).exists(), rel
    config = (tree / ".config").read_text()
    assert 'CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"' in config
    assert 'CONFIG_BUILD_SALT=""' in config  # /boot/config has none; olddefconfig's default
    say(f"prepare took {prepared['seconds']:.1f} s (first run)")

    start = time.monotonic()
    again = run_module(kbuild.main, {"kernel_dir": str(tree), "config": str(kernel.config),
                                     "jobs": JOBS})
    assert (again["changed"], again["skipped"]) == (False, True)
    assert recorder.calls() == [], "a skipped preparation started make"
    assert time.monotonic() - start < 5


def test_module_against_the_source_tree_needs_its_symvers(prepared, kernel, tmp_path, recorder):
    tree = source_tree.clone(prepared["tree"], tmp_path / "linux")
    src = hello_copy(tmp_path / "hello")
    args = {"kernel_dir": str(tree), "src": str(src), "jobs": JOBS}
    bare = run_module(kbuild.main, args)
    assert not bare["failed"], bare.get("msg")
    assert [d["code"] for d in bare["diagnosis"]] == ["missing_symvers"]
    assert "refuses the module: 'no symbol version for module_layout'" in bare["diagnosis"][0]["msg"]
    module = read_module(bare["modules"][0]["path"])
    assert module.has_versions and module.versions == []  # the empty __versions the kernel refuses
    assert bare["modules"][0]["vermagic"] == "6.1.192 SMP preempt mod_unload modversions "

    skipped = run_module(kbuild.main, args)  # the warning stays while the module stays refused
    assert skipped["skipped"] and [d["code"] for d in skipped["diagnosis"]] == ["missing_symvers"]

    shutil.copyfile(kernel.headers / "Module.symvers", tree / "Module.symvers")
    fixed = run_module(kbuild.main, args)
    assert fixed["reasons"] == ["Module.symvers changed"] and fixed["diagnosis"] == []

    official = hello_copy(tmp_path / "official")
    headers = run_module(kbuild.main, {"kernel_dir": str(kernel.headers), "src": str(official)})
    ours_ko, theirs_ko = fixed["modules"][0]["path"], headers["modules"][0]["path"]
    assert section(ours_ko, "__versions") == section(theirs_ko, "__versions")
    ours, theirs = read_module(ours_ko).fields, read_module(theirs_ko).fields
    assert {k: v for k, v in ours.items() if k != "vermagic"} == \
        {k: v for k, v in theirs.items() if k != "vermagic"}
    assert ours["vermagic"].split(" ", 1)[1] == theirs["vermagic"].split(" ", 1)[1]
    assert len(recorder.calls()) == 3


def test_build_salt_only_reaches_the_note(prepared, kernel, tmp_path):
    """Debian's /boot/config lacks CONFIG_BUILD_SALT (the headers' .config has the release).

    modpost puts BUILD_SALT into every module's .mod.c: it becomes the module's .note.Linux
    note (type 0x100), and through it the build id. .modinfo and __versions do not see it, and
    the kernel's loader ignores the note, so a module built without the salt loads the same.
    """
    headers_config = (kernel.headers / ".config").read_text()
    assert f'CONFIG_BUILD_SALT="{kernel.release}"' in headers_config
    assert "CONFIG_BUILD_SALT" not in kernel.config.read_text()

    tree = source_tree.clone(prepared["tree"], tmp_path / "linux")
    shutil.copyfile(kernel.headers / "Module.symvers", tree / "Module.symvers")
    ours = run_module(kbuild.main, {"kernel_dir": str(tree), "src": str(hello_copy(tmp_path / "a"))})
    theirs = run_module(kbuild.main, {"kernel_dir": str(kernel.headers),
                                      "src": str(hello_copy(tmp_path / "b"))})
    ours_ko, theirs_ko = ours["modules"][0]["path"], theirs["modules"][0]["path"]
    assert section(ours_ko, "__versions") == section(theirs_ko, "__versions")
    note_ours, note_theirs = section(ours_ko, ".note.Linux"), section(theirs_ko, ".note.Linux")
    assert note_theirs.rstrip(b"\0").endswith(kernel.release.encode())
    assert kernel.release.encode() not in note_ours and note_ours != note_theirs
    assert section(ours_ko, ".note.gnu.build-id") != section(theirs_ko, ".note.gnu.build-id")
