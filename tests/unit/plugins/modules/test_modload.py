"""The module as Ansible runs it, in-process. Only check mode here: this machine's kernel loads
no modules, and check mode touches nothing (the real runs are tests/vm/test_modload.py)."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from ansible_collections.vermagic.kmod.plugins.modules import modload
from tests.support.fake_ko import make_ko
from tests.support.module_runner import run_module


@pytest.fixture
def ko(tmp_path):
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "hello.ko"
    path.write_bytes(make_ko("hello", versions={"module_layout": 1}, params={"repeat": "int"}))
    os.chmod(path, 0o644)
    return str(path)


def test_check_mode_tells_what_would_happen(ko):
    # force preflight: whatever this host's kernel thinks of the fake module, say what would happen
    res = run_module(modload.main, {"path": ko, "params": {"repeat": 2}, "force": ["preflight"]},
                     check_mode=True, diff=True)
    assert not res["failed"], res["msg"]
    assert res["action"] == "inserted" and res["changed"] and res["loaded"] is None
    assert res["module"]["name"] == "hello" and res["module"]["srcversion"]
    assert res["forced"] == ["preflight"]
    assert res["verdict"]["problems"] == res["verdict"]["overridden"]
    assert res["diff"][0]["after"].startswith("module hello\n")
    assert not os.path.exists("/sys/module/hello")


def test_this_hosts_kernel_is_judged(ko):
    # this machine's own kernel: whatever it is, the verdict must follow its facts
    from ansible_collections.vermagic.kmod.plugins.module_utils._kernel_facts import gather

    facts, _warnings = gather("/")
    expected = set()
    if facts["lockdown"] in ("integrity", "confidentiality") or facts["sig_enforce"]:
        expected.add("signature_required")
    if facts["config"]["path"] and facts["config"]["options"].get("MODULES") is None:
        expected.add("modules_disabled")
    res = run_module(modload.main, {"path": ko}, check_mode=True)
    assert expected <= {p["code"] for p in res["verdict"]["problems"]}
    if expected:
        assert res["failed"] and "preflight refuses" in res["msg"]
        assert "nothing was touched" in res["msg"]


def test_without_diff_there_is_no_diff_key(ko):
    res = run_module(modload.main, {"path": ko, "force": ["preflight"]}, check_mode=True)
    assert "diff" not in res


@pytest.mark.parametrize("args, words", [
    ({}, "one of the following is required: path, name"),
    ({"path": "/nonexistent/hello.ko"}, "No such file"),
    ({"name": "hello", "force": ["all"]}, "value of force must be one or more of"),
    ({"path": "/x.ko", "params": {"bad name": 1}}, "params: parameter name"),
])
def test_bad_input_fails_with_a_message(args, words):
    res = run_module(modload.main, args, check_mode=True)
    assert res["failed"] and words in res["msg"], res["msg"]


def test_unknown_parameter_is_refused_before_anything(ko):
    res = run_module(modload.main, {"path": ko, "params": "colour=red"}, check_mode=True)
    assert res["failed"] and "has no parameter colour" in res["msg"]


def test_missing_pyelftools_is_reported(ko):
    with mock.patch.object(modload, "HAS_ELFTOOLS", False):
        res = run_module(modload.main, {"path": ko}, check_mode=True)
    assert res["failed"] and "pyelftools" in res["msg"]


def test_not_root_outside_check_mode(ko):
    with mock.patch.object(modload.os, "geteuid", return_value=1000):
        res = run_module(modload.main, {"path": ko})
    assert res["failed"] and "must run as root" in res["msg"]
