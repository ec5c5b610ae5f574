"""Issue 3's whole chain on Debian's real source: a tree that builds modules the image accepts.

linux-source-6.1 (Linux 6.1.192) is made to build for the image's release ``6.1.0-56-amd64``:
``kernel_release`` (header mode), ``kbuild`` with the image's ``/boot/config-*`` (olddefconfig +
modules_prepare), ``symvers`` recovered from the image's vmlinuz and in-tree modules (no
headers), then ``kbuild`` of the sample module. The module's ``.modinfo`` and ``__versions``
must be byte for byte those of the same module built against Debian's official headers, and the
``modinfo`` verdict against the image must be compatible. Without the symvers step the verdict
refuses it for ``module_layout``. A second run of the whole chain changes nothing and starts
no make (a recording make first on PATH proves it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ansible_collections.vermagic.kmod.plugins.modules import kbuild, kernel_release, modinfo, symvers
from tests.support import source_tree
from tests.support.hello import hello_copy, section
from tests.support.make_wrapper import MakeRecorder
from tests.support.module_runner import run_module

JOBS = min(os.cpu_count() or 1, 4)


def run(main, args: dict, what: str) -> dict:
    start = time.monotonic()
    result = run_module(main, args)
    source_tree.say(f"{what}: changed={result.get('changed')} in {time.monotonic() - start:.1f} s")
    assert not result["failed"], f"{what}: {result.get('msg')}"
    return result


def test_prepared_source_builds_what_the_official_headers_build(pristine, kernel, tmp_path,
                                                                monkeypatch):
    tree = source_tree.clone(pristine, tmp_path / "linux")
    src = hello_copy(tmp_path / "hello")
    steps = [
        ("kernel_release", kernel_release.main, {"path": str(tree), "release": kernel.release}),
        ("kbuild modules_prepare", kbuild.main,
         {"kernel_dir": str(tree), "config": str(kernel.config), "jobs": JOBS}),
        ("symvers", symvers.main, {"dest": str(tree), "root": str(kernel.root),
                                   "release": kernel.release, "source": "recover"}),
        ("kbuild hello", kbuild.main, {"kernel_dir": str(tree), "src": str(src), "jobs": JOBS}),
    ]
    first = {}
    for name, main, args in steps:
        first[name] = run(main, args, name)
        if name == "kbuild modules_prepare":
            unversioned = source_tree.clone(tree, tmp_path / "linux-without-symvers")
    assert all(result["changed"] for result in first.values())
    assert first["kernel_release"]["mode"] == "header"
    assert first["symvers"]["source"] == "recover" and first["symvers"]["symbols"] == 24683
    assert first["kbuild hello"]["diagnosis"] == []
    ko = first["kbuild hello"]["modules"][0]["path"]
    assert first["kbuild hello"]["modules"][0]["vermagic"] == \
        f"{kernel.release} SMP preempt mod_unload modversions "

    official_src = hello_copy(tmp_path / "official")
    official = run(kbuild.main, {"kernel_dir": str(kernel.headers), "src": str(official_src)},
                   "kbuild hello against the headers")["modules"][0]["path"]
    assert section(ko, ".modinfo") == section(official, ".modinfo")
    assert section(ko, "__versions") == section(official, "__versions")
    assert len(section(ko, "__versions")) == 64 * 6  # module_layout + the 5 symbols hello uses

    verdict = run(modinfo.main, {"path": ko, "release": kernel.release, "root": str(kernel.root)},
                  "modinfo verdict")["verdict"]
    assert verdict["compatible"] is True, verdict["problems"]

    # the same chain without the symvers step
    bare_src = hello_copy(tmp_path / "hello-bare")
    bare = run(kbuild.main, {"kernel_dir": str(unversioned), "src": str(bare_src)},
               "kbuild hello without symvers")
    assert [d["code"] for d in bare["diagnosis"]] == ["missing_symvers"]
    refused = run_module(modinfo.main, {"path": bare["modules"][0]["path"],
                                        "release": kernel.release, "root": str(kernel.root)})
    problems = refused["verdict"]["problems"]
    assert refused["verdict"]["compatible"] is False
    assert any(p["code"] == "no_symbol_version" and "module_layout" in p["msg"] for p in problems)

    # the second run of the whole preparation: nothing changes, no make starts
    recorder = MakeRecorder(tmp_path)
    monkeypatch.setenv("PATH", recorder.path)
    watched = (tree / ".config", tree / "Makefile", tree / "Module.symvers", Path(ko))
    before = {p: p.stat().st_mtime_ns for p in watched}
    for name, main, args in steps:
        again = run(main, args, f"{name} (second run)")
        assert again["changed"] is False, f"{name} changed on the second run"
    assert recorder.calls() == [], "the second run started make"
    assert {p: p.stat().st_mtime_ns for p in before} == before
