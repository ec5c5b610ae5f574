"""The kbuild module as Ansible runs it (in-process), on the fake make: arguments, errors, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.module_utils.common.warnings import get_warning_messages

from ansible_collections.vermagic.kmod.plugins.modules import kbuild
from tests.support.fake_kbuild import FakeToolchain
from tests.support.module_runner import run_module

LOGS = Path(__file__).parents[1] / "module_utils" / "kbuild_logs"


@pytest.fixture
def tc(tmp_path, monkeypatch):
    toolchain = FakeToolchain(tmp_path)
    for name, value in toolchain.env().items():
        monkeypatch.setenv(name, value)
    for name in ("FAKE_SLEEP", "FAKE_OUTPUT", "FAKE_STDERR", "FAKE_EXIT", "FAKE_LISTNEWCONFIG"):
        monkeypatch.delenv(name, raising=False)
    return toolchain


def test_build_then_skip_then_check_mode(tc):
    tree, src = tc.tree(prepared=True), tc.module()
    args = {"kernel_dir": str(tree), "src": str(src), "jobs": 2}
    first = run_module(kbuild.main, args)
    assert not first["failed"] and first["changed"] and not first["skipped"]
    (module,) = first["modules"]
    assert module["path"] == str(src / "hello.ko") and module["name"] == "hello"
    # the fake .ko is no ELF file: the reader's complaint is reported, not raised
    assert "error" in module and module["vermagic"] is None
    second = run_module(kbuild.main, args)
    assert (second["changed"], second["skipped"]) == (False, True)
    (src / "hello.c").write_text("/* new */\n")
    predicted = run_module(kbuild.main, args, check_mode=True)
    assert predicted["changed"] and predicted["reasons"] == ["source files changed: modified hello.c"]
    assert len(tc.calls()) == 1


def test_warnings_become_task_warnings(tc, monkeypatch):
    tree, src = tc.tree(prepared=True), tc.module()
    monkeypatch.setenv("FAKE_OUTPUT", str(LOGS / "missing_symvers.log"))
    result = run_module(kbuild.main, {"kernel_dir": str(tree), "src": str(src)})
    assert [d["code"] for d in result["diagnosis"]] == ["missing_symvers"]
    assert any(m.startswith("built without the kernel's Module.symvers") and "vermagic.kmod.symvers" in m
               for m in get_warning_messages())


@pytest.mark.parametrize("args, words", [
    ({"make_vars": {"KCFLAGS": "-g\n-O0"}}, "newline"),
    ({"make_vars": {"M": "/x"}}, "give the module's directory as src"),
    ({"targets": ["--eval=x"]}, "not a make target name"),
])
def test_bad_arguments_fail_with_a_message(tc, args, words):
    result = run_module(kbuild.main, {"kernel_dir": str(tc.tree(prepared=True)), **args})
    assert result["failed"] and words in result["msg"]
    assert tc.calls() == []


def test_missing_tree_fails_with_diagnosis(tc, tmp_path):
    result = run_module(kbuild.main, {"kernel_dir": str(tmp_path / "build"), "src": str(tc.module())})
    assert result["failed"]
    assert result["msg"].startswith(f"the kernel tree {tmp_path / 'build'} does not exist")
    assert result["diagnosis"][0]["code"] == "missing_tree"


def test_failed_build_returns_log_and_tail(tc, monkeypatch):
    tree, src = tc.tree(prepared=True), tc.module()
    monkeypatch.setenv("FAKE_OUTPUT", str(LOGS / "unprepared.log"))
    monkeypatch.setenv("FAKE_EXIT", "2")
    result = run_module(kbuild.main, {"kernel_dir": str(tree), "src": str(src), "log_lines": 3})
    assert result["failed"]
    assert result["log"] == str(src / ".vermagic-kmod.log")
    assert str(src / ".vermagic-kmod.log") in result["msg"]
    assert result["diagnosis"][0]["code"] == "unprepared_tree"
    assert len(result["log_tail"]) == 3
    assert result["commands"][0][-1] == "modules"


def test_errors_on_stderr_reach_the_log_after_stdout(tc, monkeypatch):
    tree, src = tc.tree(prepared=True), tc.module()
    monkeypatch.setenv("FAKE_STDERR", str(LOGS / "compile_error.log"))
    monkeypatch.setenv("FAKE_EXIT", "2")
    result = run_module(kbuild.main, {"kernel_dir": str(tree), "src": str(src), "log_lines": 2})
    assert result["failed"] and result["diagnosis"][0]["code"] == "compile_error"
    log = (src / ".vermagic-kmod.log").read_text()
    assert log.index("make: Leaving directory") < log.index("hello.c:41:17: error: expected")
    assert result["log_tail"][-1] == "### exit status 2"
