"""kbuild's logic: validation, argv, compiler choice, fingerprint skip, olddefconfig, locks.

Builds here use the fake make of ``tests/support/fake_kbuild.py`` (it records every call), so
that "no make ran" and lock timing can be asserted; real builds are in tests/kernel/.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from ansible_collections.vermagic.kmod.plugins.module_utils import _kbuild as kb
from ansible_collections.vermagic.kmod.plugins.module_utils._build_diagnosis import Finding
from tests.support.fake_kbuild import CC_TEXT, FakeToolchain

LOGS = Path(__file__).parent / "kbuild_logs"


def reader(path: str) -> dict:
    return {"name": Path(path).stem, "vermagic": "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
            "srcversion": "ABC"}


@pytest.fixture
def tc(tmp_path, monkeypatch):
    toolchain = FakeToolchain(tmp_path)
    for name, value in toolchain.env().items():
        monkeypatch.setenv(name, value)
    for name in ("FAKE_SLEEP", "FAKE_OUTPUT", "FAKE_STDERR", "FAKE_EXIT", "FAKE_LISTNEWCONFIG", "MAKEFLAGS"):
        monkeypatch.delenv(name, raising=False)
    return toolchain


def build(check_mode=False, **kw):
    return kb.build(kb.Request(**kw), check_mode=check_mode, reader=reader)


def targets_run(tc):
    return [[a for a in call["argv"] if not a.startswith(("-C", "-j", "CC=", "M=", "/"))]
            for call in tc.calls()]


# ----------------------------------------------------------------------------- validation

def test_make_vars_become_argv_items():
    assert kb.validate_make_vars({"V": 1, "KCFLAGS": "-O2 -g", "FLAG": True, "EMPTY": None}) == {
        "V": "1", "KCFLAGS": "-O2 -g", "FLAG": "y", "EMPTY": ""}


@pytest.mark.parametrize("make_vars, words", [
    ({"1ABC": "x"}, "not a make variable name"),
    ({"A-B": "x"}, "not a make variable name"),
    ({"A B": "x"}, "not a make variable name"),
    ({"": "x"}, "not a make variable name"),
    ({"KCFLAGS": "a\nb"}, "newline"),
    ({"KCFLAGS": "a\rb"}, "newline"),
    ({"KCFLAGS": "a\0b"}, "NUL"),
    ({"M": "/tmp/x"}, "give the module's directory as src"),
    ({"KBUILD_EXTRA_SYMBOLS": "/x"}, "extra_symbols"),
    ({"O": "/tmp/out"}, "not supported"),
])
def test_bad_make_vars_are_refused_with_the_reason(make_vars, words):
    with pytest.raises(kb.KbuildError, match=words):
        kb.validate_make_vars(make_vars)


@pytest.mark.parametrize("kw, words", [
    ({"kernel_dir": ""}, "kernel_dir is empty"),
    ({"kernel_dir": "/usr/src/my tree"}, "contains a space"),
    ({"kernel_dir": "/usr/src/t", "src": "/srv/a:b"}, "contains a space, ':'"),
    ({"kernel_dir": "/usr/src/t", "targets": ["-n"]}, "not a make target name"),
    ({"kernel_dir": "/usr/src/t", "targets": ["modules; rm"]}, "not a make target name"),
    ({"kernel_dir": "/usr/src/t", "jobs": 0}, "jobs must be 1 or more"),
    ({"kernel_dir": "/usr/src/t", "cc": "gcc-12", "make_vars": {"CC": "clang"}}, "disagree"),
    ({"kernel_dir": "/usr/src/t", "src": "/srv/m", "config": "/boot/config"}, "config applies"),
    ({"kernel_dir": "/usr/src/t", "config": "/nonexistent/config"}, "does not exist"),
    ({"kernel_dir": "/usr/src/t", "extra_symbols": ["/nonexistent/Module.symvers"]},
     "extra_symbols: /nonexistent/Module.symvers does not exist"),
    ({"kernel_dir": "/usr/src/t", "log_lines": -1}, "log_lines"),
])
def test_bad_requests_are_refused_before_anything_runs(kw, words):
    with pytest.raises(kb.KbuildError, match=words):
        kb.validate(kb.Request(**kw))


def test_validate_normalises(tmp_path):
    provider = tmp_path / "provider"
    provider.mkdir()
    (provider / "Module.symvers").write_text("")
    req = kb.validate(kb.Request(kernel_dir="tree", src="mod", make_vars={"CC": "gcc-12", "V": 1},
                                 extra_symbols=[str(provider)], jobs=None))
    assert req.kernel_dir == os.path.abspath("tree") and req.src == os.path.abspath("mod")
    assert req.targets == ["modules"] and req.cc == "gcc-12" and req.make_vars == {"V": "1"}
    assert req.extra_symbols == [str(provider / "Module.symvers")]
    assert req.jobs == (os.cpu_count() or 1)
    assert kb.validate(kb.Request(kernel_dir="/t")).targets == ["modules_prepare"]


def test_make_argv_order():
    req = kb.Request(kernel_dir="/usr/src/t", src="/srv/m", targets=["modules"], jobs=4,
                     make_vars={"KCFLAGS": "-O2 -g", "V": "1"},
                     extra_symbols=["/srv/a/Module.symvers", "/srv/b/Module.symvers"])
    cc = kb.Compiler("gcc-12", "/usr/bin/gcc-12", CC_TEXT, CC_TEXT, CC_TEXT, "config")
    assert kb.make_argv("/usr/bin/make", req, cc, ["modules"]) == [
        "/usr/bin/make", "-C", "/usr/src/t", "-j4", "M=/srv/m", "CC=gcc-12",
        "KBUILD_EXTRA_SYMBOLS=/srv/a/Module.symvers /srv/b/Module.symvers",
        "KCFLAGS=-O2 -g", "V=1", "modules"]
    default = kb.Compiler(None, "/usr/bin/gcc", "gcc", "gcc", None, "default")
    assert kb.make_argv("make", kb.Request(kernel_dir="/t", jobs=2), default, ["olddefconfig"],
                        jobs=False) == ["make", "-C", "/t", "olddefconfig"]


def test_make_env_is_english_and_free_of_a_parent_make(monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "-j8 --jobserver-auth=3,4")
    monkeypatch.setenv("MAKELEVEL", "1")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    env = _commands.environment(kb.make_env())
    assert "MAKEFLAGS" not in env and "MAKELEVEL" not in env
    assert env["LC_ALL"] == "C" and env["LANG"] == "C"


# ----------------------------------------------------------------------------- config, compiler

def test_parse_config_and_release(tmp_path):
    text = ('CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"\n'
            "CONFIG_MODVERSIONS=y\n# CONFIG_MODULE_SIG_FORCE is not set\n"
            'CONFIG_LOCALVERSION=""\nCONFIG_X="a \\"q\\" b"\n# comment\n')
    options = kb.parse_config(text)
    assert options == {"CC_VERSION_TEXT": "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0",
                       "MODVERSIONS": "y", "MODULE_SIG_FORCE": None, "LOCALVERSION": "",
                       "X": 'a "q" b'}
    (tmp_path / "include" / "generated").mkdir(parents=True)
    assert kb.tree_release(str(tmp_path)) is None
    (tmp_path / "include" / "config").mkdir()
    (tmp_path / "include" / "config" / "kernel.release").write_text("6.1.192\n")
    assert kb.tree_release(str(tmp_path)) == "6.1.192"
    (tmp_path / "include" / "generated" / "utsrelease.h").write_text(
        '#define UTS_RELEASE "6.1.0-56-amd64"\n')
    assert kb.tree_release(str(tmp_path)) == "6.1.0-56-amd64"  # what modules get wins


@pytest.mark.parametrize("text, names", [
    ("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", ["gcc-12"]),
    ("gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-18)", ["gcc"]),
    ("x86_64-linux-gnu-gcc-10 (Debian 10.2.1-6) 10.2.1 20210110", ["x86_64-linux-gnu-gcc-10"]),
    ("Debian clang version 14.0.6", ["clang-14", "clang"]),
    ("clang version 15.0.7 (Fedora 15.0.7-2.fc37)", ["clang-15", "clang"]),
    ("", []),
])
def test_compiler_candidates(text, names):
    assert kb.compiler_candidates(text) == names


def _tree(config: str) -> kb.Tree:
    return kb.Tree(path="/t", config=kb.parse_config(config), release=None, prepared_missing=[])


CFG = f'CONFIG_CC_VERSION_TEXT="{CC_TEXT}"\n'


def fake_which(*installed):
    return lambda name: f"/usr/bin/{name}" if name in installed else None


def fake_probe(versions):
    return lambda path: versions[os.path.basename(path)] + "\nCopyright\n"


def test_the_configs_compiler_is_chosen_when_installed():
    cc, findings = kb.select_compiler(None, _tree(CFG), fake_which("gcc-12", "gcc"),
                                      fake_probe({"gcc-12": CC_TEXT}))
    assert (cc.command, cc.source, cc.version, cc.as_dict()["matches"]) == (
        "gcc-12", "config", CC_TEXT, True)
    assert findings == []


def test_same_name_other_version_warns():
    cc, findings = kb.select_compiler(None, _tree(CFG), fake_which("gcc-12"),
                                      fake_probe({"gcc-12": "gcc-12 (Debian 12.2.0-14) 12.2.0"}))
    assert cc.command == "gcc-12"
    assert [f.code for f in findings] == ["compiler_mismatch"]
    assert "versions differ" in findings[0].msg


def test_missing_config_compiler_falls_back_to_the_default_with_a_warning():
    cc, findings = kb.select_compiler(None, _tree(CFG), fake_which("gcc"),
                                      fake_probe({"gcc": "gcc (Debian 10.2.1-6) 10.2.1"}))
    assert (cc.command, cc.source) == (None, "default")  # the tree's own CC, no CC= given
    (finding,) = findings
    assert finding.code == "compiler_fallback" and finding.severity == "warning"
    assert "'gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0'" in finding.msg
    assert "the versions differ" in finding.msg and "install gcc-12" in finding.fix


def test_no_compiler_at_all():
    with pytest.raises(kb.KbuildError, match="gcc-12 .* is not installed, and neither is gcc") as exc:
        kb.select_compiler(None, _tree(CFG), fake_which(), fake_probe({}))
    assert exc.value.diagnosis[0].code == "missing_compiler"


def test_given_cc_must_exist():
    with pytest.raises(kb.KbuildError, match="'gcc-13' is not installed") as exc:
        kb.select_compiler("gcc-13", _tree(CFG), fake_which("gcc-12"), fake_probe({}))
    assert exc.value.diagnosis[0].code == "missing_compiler"
    cc, findings = kb.select_compiler("ccache gcc-12", _tree(CFG), fake_which("gcc-12"),
                                      fake_probe({"gcc-12": CC_TEXT}))
    assert cc.command == "ccache gcc-12" and cc.source == "option" and findings == []


def test_a_tree_without_cc_version_text_uses_the_default_silently():
    cc, findings = kb.select_compiler(None, _tree("CONFIG_MODVERSIONS=y\n"), fake_which("gcc"),
                                      fake_probe({"gcc": "gcc (GCC) 4.4.7"}))
    assert (cc.command, cc.expected, cc.as_dict()["matches"], findings) == (None, None, None, [])


# ----------------------------------------------------------------------------- pre-checks

def test_missing_tree(tc, tmp_path):
    with pytest.raises(kb.KbuildError, match="does not exist: install the headers package") as exc:
        build(kernel_dir=str(tmp_path / "nope"), src=str(tc.module()))
    assert exc.value.diagnosis[0].code == "missing_tree"
    link = tmp_path / "build"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(kb.KbuildError, match="dangling link"):
        build(kernel_dir=str(link), src=str(tc.module()))
    assert tc.calls() == []


def test_not_a_tree(tc, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(kb.KbuildError, match="has no Makefile: it is not a kernel tree") as exc:
        build(kernel_dir=str(tmp_path / "empty"))
    assert exc.value.diagnosis[0].code == "not_a_tree"


def test_unprepared_tree_is_refused_before_make(tc):
    tree = tc.tree(prepared=False)
    with pytest.raises(kb.KbuildError, match="not prepared .*include/config/auto.conf") as exc:
        build(kernel_dir=str(tree), src=str(tc.module()))
    assert exc.value.diagnosis[0].code == "unprepared_tree"
    assert "without src (it runs 'make olddefconfig modules_prepare')" in exc.value.msg
    assert tc.calls() == []


def test_tree_without_config(tc):
    tree = tc.tree()
    os.unlink(tree / ".config")
    with pytest.raises(kb.KbuildError, match="has no .config: give config") as exc:
        build(kernel_dir=str(tree))
    assert exc.value.diagnosis[0].code == "no_config"


def test_src_without_kbuild(tc):
    tree = tc.tree(prepared=True)
    empty = tc.base / "empty"
    empty.mkdir()
    with pytest.raises(kb.KbuildError, match="neither a Kbuild nor a Makefile") as exc:
        build(kernel_dir=str(tree), src=str(empty))
    assert exc.value.diagnosis[0].code == "no_kbuild_file"


def test_no_make(tc, monkeypatch):
    os.unlink(tc.bin / "make")
    with pytest.raises(kb.KbuildError, match="make is not installed") as exc:
        build(kernel_dir=str(tc.tree(prepared=True)), src=str(tc.module()))
    assert exc.value.diagnosis[0].code == "missing_make"


# ----------------------------------------------------------------------------- prepare

def test_prepare_runs_olddefconfig_then_modules_prepare_then_nothing(tc):
    tree = tc.tree()
    first = build(kernel_dir=str(tree), jobs=2)
    assert targets_run(tc) == [["olddefconfig"], ["modules_prepare"]]
    assert first["changed"] and not first["skipped"]
    assert first["olddefconfig"] == "no include/config/auto.conf yet"
    assert first["commands"][-1] == [str(tc.bin / "make"), "-C", str(tree), "-j2", "CC=gcc-12",
                                     "modules_prepare"]
    assert first["log"] == str(tree / ".vermagic-kmod.log")
    assert "### " + " ".join(first["commands"][-1]) in Path(first["log"]).read_text()
    assert (tree / ".vermagic-kmod.prepare.fingerprint").exists()
    assert first["release"] == "6.1.0-56-amd64"

    second = build(kernel_dir=str(tree), jobs=2)
    assert len(tc.calls()) == 2  # no make at all
    assert (second["changed"], second["skipped"], second["commands"], second["reasons"]) == (
        False, True, [], [])
    assert build(check_mode=True, kernel_dir=str(tree))["skipped"]
    # jobs is not an input
    assert build(kernel_dir=str(tree), jobs=1)["skipped"]


def test_olddefconfig_when_config_is_newer_than_auto_conf(tc):
    tree = tc.tree(prepared=True)
    past = time.time() - 100
    os.utime(tree / "include" / "config" / "auto.conf", (past, past))
    result = build(kernel_dir=str(tree))
    assert result["olddefconfig"] == ".config is newer than include/config/auto.conf"
    assert targets_run(tc) == [["olddefconfig"], ["modules_prepare"]]


def test_olddefconfig_when_listnewconfig_lists_options(tc, monkeypatch):
    tree = tc.tree(prepared=True)
    os.utime(tree / ".config", (time.time() - 100,) * 2)
    monkeypatch.setenv("FAKE_LISTNEWCONFIG", 'CONFIG_BUILD_SALT=""\nCONFIG_MODULE_SIG_ALL=y\n')
    result = build(kernel_dir=str(tree))
    assert result["olddefconfig"] == "make listnewconfig lists 2 option(s) the .config does not set"
    assert targets_run(tc) == [["-s", "listnewconfig"], ["olddefconfig"], ["modules_prepare"]]


def test_no_olddefconfig_when_the_config_is_complete(tc):
    tree = tc.tree(prepared=True)
    os.utime(tree / ".config", (time.time() - 100,) * 2)
    result = build(kernel_dir=str(tree))
    assert result["olddefconfig"] is None
    assert targets_run(tc) == [["-s", "listnewconfig"], ["modules_prepare"]]
    # modules_prepare rewrote nothing (all prepared files were there): not a change
    assert result["changed"] is False and result["skipped"] is False


def test_force_reruns_make_but_an_untouched_tree_is_not_a_change(tc):
    tree = tc.tree(prepared=True)
    for rel in ("include/linux/utsrelease.h", "include/linux/version.h"):  # 2.6-era leftovers
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text('#define UTS_RELEASE "6.1.0-56-amd64"\n')
    os.utime(tree / ".config", (time.time() - 100,) * 2)
    build(kernel_dir=str(tree))
    again = build(kernel_dir=str(tree), force=True)
    assert again["reasons"] == ["force is set"] and again["commands"]
    assert again["changed"] is False


def test_config_option_is_copied_once_and_keeps_the_task_idempotent(tc):
    tree = tc.tree()
    os.unlink(tree / ".config")
    boot = tc.base / "config-6.1.0-56-amd64"
    boot.write_text(CFG + "CONFIG_MODVERSIONS=y\n")
    first = build(kernel_dir=str(tree), config=str(boot))
    assert first["changed"] and (tree / ".config").read_text() == boot.read_text()
    assert build(kernel_dir=str(tree), config=str(boot))["skipped"]
    # the tree's .config changes (kernel_release neutralising CONFIG_LOCALVERSION): it is kept,
    # completed by olddefconfig, and the next run is skipped
    edited = CFG + 'CONFIG_MODVERSIONS=y\nCONFIG_LOCALVERSION=""\n'
    (tree / ".config").write_text(edited)
    again = build(kernel_dir=str(tree), config=str(boot))
    assert again["reasons"] == [".config changed"]
    assert again["olddefconfig"] == ".config is newer than include/config/auto.conf"
    assert (tree / ".config").read_text() == edited
    assert build(kernel_dir=str(tree), config=str(boot))["skipped"]
    # a new config file is put in place
    boot.write_text(CFG + "CONFIG_MODVERSIONS=y\nCONFIG_X=y\n")
    assert "config file changed" in build(kernel_dir=str(tree), config=str(boot))["reasons"]
    assert (tree / ".config").read_text() == boot.read_text()
    # a tree whose .config is gone gets it again
    os.unlink(tree / ".config")
    assert build(kernel_dir=str(tree), config=str(boot))["changed"]
    assert (tree / ".config").read_text() == boot.read_text()


def test_release_inputs_changing_reprepares(tc):
    tree = tc.tree()
    build(kernel_dir=str(tree))
    with open(tree / "Makefile", "a") as handle:
        handle.write("override KERNELRELEASE = 6.1.0-56-amd64\n")
    result = build(kernel_dir=str(tree))
    assert result["reasons"] == ["release inputs (Makefile, localversion*) changed"]
    (tree / "localversion-x").write_text("-x\n")
    assert build(kernel_dir=str(tree))["reasons"] == [
        "release inputs (Makefile, localversion*) changed"]


def test_other_targets_always_run(tc):
    tree = tc.tree(prepared=True)
    for _run in range(2):
        result = build(kernel_dir=str(tree), targets=["kernelrelease"])
        assert result["fingerprint"] is None and result["reasons"] == [
            "target kernelrelease always runs"]
    assert targets_run(tc) == [["kernelrelease"], ["kernelrelease"]]


# ----------------------------------------------------------------------------- module builds

def test_module_build_skip_and_rebuild(tc):
    tree = tc.tree(prepared=True)
    src = tc.module()
    first = build(kernel_dir=str(tree), src=str(src))
    assert first["changed"] and not first["skipped"]
    assert first["modules"] == [{"path": str(src / "hello.ko"), "name": "hello",
                                 "vermagic": "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
                                 "srcversion": "ABC"}]
    assert first["log"] == str(src / ".vermagic-kmod.log")
    assert len(tc.calls()) == 1

    second = build(kernel_dir=str(tree), src=str(src))
    assert (second["changed"], second["skipped"]) == (False, True)
    assert second["modules"] == first["modules"]
    assert len(tc.calls()) == 1  # no make

    (src / "hello.c").write_text("/* hello, edited */\n")
    third = build(kernel_dir=str(tree), src=str(src))
    assert third["reasons"] == ["source files changed: modified hello.c"] and third["changed"]
    assert len(tc.calls()) == 2

    os.unlink(src / "hello.ko")
    assert build(kernel_dir=str(tree), src=str(src))["reasons"] == ["hello.ko is missing"]
    (src / "hello.ko").write_text("not what we built")
    assert build(kernel_dir=str(tree), src=str(src))["reasons"] == ["hello.ko was replaced since"]


@pytest.mark.parametrize("change, reason", [
    (lambda t: (t / "Module.symvers").write_text("0x1\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"),
     "Module.symvers changed"),
    (lambda t: (t / "include/generated/utsrelease.h").write_text('#define UTS_RELEASE "6.1.0-57"\n'),
     "tree release changed: '6.1.0-56-amd64' -> '6.1.0-57'"),
    (lambda t: (t / ".config").write_text(CFG + "CONFIG_MODVERSIONS=y\nCONFIG_X=y\n"),
     ".config changed"),
])
def test_tree_inputs_rebuild_the_module(tc, change, reason):
    tree = tc.tree(prepared=True)
    src = tc.module()
    build(kernel_dir=str(tree), src=str(src))
    change(tree)
    assert build(kernel_dir=str(tree), src=str(src))["reasons"] == [reason]


def test_compiler_and_arguments_rebuild_the_module(tc):
    tree = tc.tree(prepared=True)
    src = tc.module()
    build(kernel_dir=str(tree), src=str(src))
    assert build(kernel_dir=str(tree), src=str(src), make_vars={"KCFLAGS": "-g"})["reasons"] == [
        "arguments changed"]
    gcc = tc.bin / "gcc-12"
    gcc.write_text("#!/bin/sh\necho 'gcc-12 (Debian 12.2.0-14+deb12u2) 12.2.0'\n")
    result = build(kernel_dir=str(tree), src=str(src), make_vars={"KCFLAGS": "-g"})
    assert result["reasons"] == ["compiler changed: 'gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0' -> "
                                 "'gcc-12 (Debian 12.2.0-14+deb12u2) 12.2.0'"]
    assert [d["code"] for d in result["diagnosis"]] == ["compiler_mismatch"]


def test_reprepared_tree_rebuilds_the_module(tc):
    tree = tc.tree()
    src = tc.module()
    build(kernel_dir=str(tree))
    build(kernel_dir=str(tree), src=str(src))
    build(kernel_dir=str(tree), force=True)  # prepared again from the same inputs: same digest
    assert build(kernel_dir=str(tree), src=str(src))["skipped"]
    (tree / "localversion-y").write_text("-y\n")
    build(kernel_dir=str(tree))
    assert build(kernel_dir=str(tree), src=str(src))["reasons"] == ["tree preparation changed"]


def test_check_mode_touches_nothing(tc):
    tree = tc.tree(prepared=True)
    src = tc.module()

    def state():
        return sorted((str(p), p.stat().st_mtime_ns) for d in (tree, src) for p in d.rglob("*"))

    before = state()
    predicted = build(check_mode=True, kernel_dir=str(tree), src=str(src))
    assert (predicted["changed"], predicted["skipped"], predicted["log"]) == (True, False, None)
    assert predicted["reasons"] == ["no fingerprint of an earlier build"]
    assert predicted["commands"] == [[str(tc.bin / "make"), "-C", str(tree), f"-j{os.cpu_count()}",
                                      f"M={src}", "CC=gcc-12", "modules"]]
    assert state() == before and tc.calls() == []
    fresh = tc.tree("fresh")
    predicted = build(check_mode=True, kernel_dir=str(fresh))
    assert [c[-1] for c in predicted["commands"]] == ["olddefconfig", "modules_prepare"]
    assert sorted(p.name for p in fresh.iterdir()) == [".config", "Makefile", "scripts"]
    assert tc.calls() == []


def test_failure_is_explained_with_log_and_leaves_no_fingerprint(tc, monkeypatch):
    tree = tc.tree(prepared=True)
    src = tc.module()
    build(kernel_dir=str(tree), src=str(src))
    (src / "hello.c").write_text("broken")
    monkeypatch.setenv("FAKE_OUTPUT", str(LOGS / "compile_error.log"))
    monkeypatch.setenv("FAKE_EXIT", "2")
    with pytest.raises(kb.KbuildError) as exc:
        build(kernel_dir=str(tree), src=str(src), log_lines=5)
    err = exc.value
    assert err.msg.startswith(f"make modules failed for {src}: compile error at "
                              "/srv/hello/hello.c:41: expected")
    assert err.msg.endswith(f"(log: {src}/.vermagic-kmod.log)")
    assert err.diagnosis[0].code == "compile_error"
    assert len(err.log_tail) == 5 and err.log_tail[-1] == "### exit status 2"
    assert err.result()["log"] == str(src / ".vermagic-kmod.log")
    assert not (src / ".vermagic-kmod.fingerprint").exists()
    monkeypatch.delenv("FAKE_OUTPUT")
    monkeypatch.delenv("FAKE_EXIT")
    assert build(kernel_dir=str(tree), src=str(src))["reasons"] == [
        "no fingerprint of an earlier build"]


def test_missing_symvers_warning_survives_the_skip(tc, monkeypatch):
    tree = tc.tree(prepared=True)
    os.unlink(tree / "Module.symvers")
    src = tc.module()
    monkeypatch.setenv("FAKE_OUTPUT", str(LOGS / "missing_symvers.log"))
    first = build(kernel_dir=str(tree), src=str(src))
    assert [d["code"] for d in first["diagnosis"]] == ["missing_symvers"]
    assert "refuses the module" in first["diagnosis"][0]["msg"]
    second = build(kernel_dir=str(tree), src=str(src))
    assert second["skipped"] and second["diagnosis"] == first["diagnosis"]
    assert build(check_mode=True, kernel_dir=str(tree), src=str(src))["diagnosis"] == \
        first["diagnosis"]


def test_no_ko_is_a_warning(tc):
    tree = tc.tree(prepared=True)
    src = tc.module()
    (src / "Kbuild").write_text("# obj-m forgotten\n")
    result = build(kernel_dir=str(tree), src=str(src))
    assert [d["code"] for d in result["diagnosis"]] == ["no_modules"]
    assert result["modules"] == [] and result["changed"] is False
    assert not (src / ".vermagic-kmod.fingerprint").exists()  # nothing to vouch for


def test_several_modules_in_one_src(tc):
    tree = tc.tree(prepared=True)
    src = tc.module("pair", objs=("a", "b"))
    result = build(kernel_dir=str(tree), src=str(src))
    assert [m["name"] for m in result["modules"]] == ["a", "b"]
    assert [m["name"] for m in build(kernel_dir=str(tree), src=str(src))["modules"]] == ["a", "b"]


# ----------------------------------------------------------------------------- locks

def _in_thread(results, key, **kw):
    def target():
        try:
            results[key] = build(**kw)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[key] = exc
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def _together(**requests: dict) -> dict:
    """Start the builds at once, each in a thread; their results (or exceptions) by name."""
    results: dict = {}
    threads = [_in_thread(results, name, **kw) for name, kw in requests.items()]
    for thread in threads:
        thread.join(30)
    return results


def _spans(tc):
    return {tuple(a for a in c["argv"] if a.startswith("M=") or a == "modules_prepare"):
            (c["start"], c["end"]) for c in tc.calls()}


def test_module_builds_against_one_tree_overlap(tc, monkeypatch):
    tree = tc.tree(prepared=True)
    one, two = tc.module("one"), tc.module("two")
    monkeypatch.setenv("FAKE_SLEEP", "1.0")
    results = _together(one={"kernel_dir": str(tree), "src": str(one)},
                        two={"kernel_dir": str(tree), "src": str(two)})
    assert all(isinstance(r, dict) and r["changed"] for r in results.values()), results
    (s1, e1), (s2, e2) = _spans(tc)[(f"M={one}",)], _spans(tc)[(f"M={two}",)]
    assert s1 < e2 and s2 < e1  # ran at the same time: the tree lock is shared


def test_prepare_waits_for_a_module_build_and_a_build_for_prepare(tc, monkeypatch):
    tree = tc.tree(prepared=True)
    os.utime(tree / ".config", (time.time() - 100,) * 2)
    src = tc.module()
    monkeypatch.setenv("FAKE_SLEEP", "0.6")
    results: dict = {}
    building = _in_thread(results, "module", kernel_dir=str(tree), src=str(src))
    time.sleep(0.2)
    preparing = _in_thread(results, "prepare", kernel_dir=str(tree))
    building.join(30)
    preparing.join(30)
    spans = _spans(tc)
    assert spans[("modules_prepare",)][0] >= spans[(f"M={src}",)][1]

    (src / "hello.c").write_text("/* changed */\n")
    with open(tree / "Makefile", "a") as handle:
        handle.write("# changed\n")
    tc.calls_file.write_text("")
    preparing = _in_thread(results, "prepare2", kernel_dir=str(tree))
    time.sleep(0.2)
    building = _in_thread(results, "module2", kernel_dir=str(tree), src=str(src))
    preparing.join(30)
    building.join(30)
    spans = _spans(tc)
    assert spans[(f"M={src}",)][0] >= spans[("modules_prepare",)][1]


def test_same_src_builds_one_at_a_time(tc, monkeypatch):
    tree_a, tree_b = tc.tree("a", prepared=True), tc.tree("b", prepared=True)
    src = tc.module()
    monkeypatch.setenv("FAKE_SLEEP", "0.5")
    _together(a={"kernel_dir": str(tree_a), "src": str(src)},
              b={"kernel_dir": str(tree_b), "src": str(src)})
    (s1, e1), (s2, e2) = sorted((c["start"], c["end"]) for c in tc.calls())
    assert s2 >= e1


def test_lock_timeout_names_the_lock(tc):
    from ansible_collections.vermagic.kmod.plugins.module_utils._lock import LockTimeout, tree_lock
    tree = tc.tree(prepared=True)
    with tree_lock(str(tree)):
        with pytest.raises(LockTimeout, match=r"is held by another run"):
            build(kernel_dir=str(tree), lock_timeout=0.3)
        with pytest.raises(LockTimeout, match=r"is held by another run"):
            build(kernel_dir=str(tree), src=str(tc.module()), lock_timeout=0.3)
    assert tc.calls() == []


def test_findings_round_trip_through_the_fingerprint():
    finding = Finding("missing_symvers", "warning", "m", "f", "l")
    assert Finding(**finding.as_dict()) == finding
