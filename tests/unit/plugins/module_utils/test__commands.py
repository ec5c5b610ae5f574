from __future__ import annotations

import os
import sys

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from tests.support import subprocess_runner
from tests.support.module_runner import patch_module_args

# What the child saw: its stdin, two variables and its working directory, one per line.
SHOW = ("import os, sys; print(repr(sys.stdin.buffer.read())); print(os.environ.get('LC_ALL')); "
        "print(os.environ.get('MAKEFLAGS')); print(os.getcwd()); sys.stderr.write('err'); "
        "sys.exit(3)")


class FakeModule:
    """Records run_command's arguments and what the process looked like during the call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict]] = []
        self.seen: dict = {}

    def run_command(self, args, **kwargs):
        self.calls.append((args, kwargs))
        self.seen = {"MAKEFLAGS": os.environ.get("MAKEFLAGS"),
                     "stdin": os.fstat(0).st_rdev}
        return 7, b"out", b"err"


def real_module_runner() -> _commands.Runner:
    with patch_module_args({}):
        module = AnsibleModule(argument_spec={})
    return _commands.from_module(module)


RUNNERS = {"subprocess": lambda: subprocess_runner.run, "run_command": real_module_runner}


def test_run_without_a_runner_names_the_fix(monkeypatch):
    monkeypatch.setattr(_commands, "_registry", {})
    with pytest.raises(RuntimeError, match=r"cannot run git: no command runner .*"
                                           r"_commands.use\(_commands.from_module\(module\)\)"):
        _commands.run(["git", "status"])


def test_run_hands_everything_to_the_registered_runner():
    calls = []

    def runner(argv, **kwargs):
        calls.append((argv, kwargs))
        return 0, b"", b""

    _commands.use(runner)
    assert _commands.run(("make", "-s"), cwd="/t", data=b"x", env={"A": None}, timeout=5) == (0, b"", b"")
    assert calls == [(["make", "-s"], {"cwd": "/t", "data": b"x", "env": {"A": None}, "timeout": 5})]


def test_run_text_decodes_in_the_c_locale():
    calls = []

    def runner(argv, **kwargs):
        calls.append(kwargs["env"])
        return 1, b"gcc \xff 12\n", b"warn\n"

    _commands.use(runner)
    assert _commands.run_text(["gcc", "--version"], env={"A": "1"}) == (1, "gcc \ufffd 12\n", "warn\n")
    assert _commands.run_text(["gcc", "--version"], env={"LC_ALL": "en_US.UTF-8"})[0] == 1
    assert calls == [{"LC_ALL": "C", "A": "1"}, {"LC_ALL": "en_US.UTF-8"}]


def test_environment_sets_and_removes(monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "-j8")
    monkeypatch.setenv("KEEP", "1")
    env = _commands.environment({"MAKEFLAGS": None, "LC_ALL": "C", "ABSENT": None})
    assert "MAKEFLAGS" not in env and "ABSENT" not in env
    assert env["LC_ALL"] == "C" and env["KEEP"] == "1"


def test_from_module_calls_run_command_without_its_conveniences(monkeypatch, tmp_path):
    monkeypatch.setenv("MAKEFLAGS", "-j8")
    module = FakeModule()
    result = _commands.from_module(module)(["make", "$HOME"], cwd=str(tmp_path),
                                           env={"LC_ALL": "C", "MAKEFLAGS": None})
    assert result == (7, b"out", b"err")
    ((args, kwargs),) = module.calls
    assert args == ["make", "$HOME"]
    callback = kwargs.pop("before_communicate_callback")
    assert callable(callback)
    assert kwargs == {"check_rc": False, "cwd": str(tmp_path), "data": None, "binary_data": True,
                      "environ_update": {"LC_ALL": "C"}, "encoding": None,
                      "expand_user_and_vars": False, "handle_exceptions": False}
    # removed for the call only, and stdin was /dev/null meanwhile
    assert module.seen == {"MAKEFLAGS": None, "stdin": os.stat(os.devnull).st_rdev}
    assert os.environ["MAKEFLAGS"] == "-j8"


def test_from_module_passes_data_and_refuses_a_missing_directory(tmp_path):
    module = FakeModule()
    runner = _commands.from_module(module)
    runner(["zstd", "-dc"], data=b"\x28\xb5\x2f\xfd")
    assert module.calls[0][1]["data"] == b"\x28\xb5\x2f\xfd"
    with pytest.raises(NotADirectoryError, match="nope is not a directory"):
        runner(["make"], cwd=str(tmp_path / "nope"))
    assert len(module.calls) == 1


# ---- the contract, on subprocess and on a real AnsibleModule's run_command ---------------------

@pytest.fixture(params=sorted(RUNNERS))
def runner(request) -> _commands.Runner:
    return RUNNERS[request.param]()


def test_contract_output_status_env_cwd_and_stdin(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("MAKEFLAGS", "-j8")
    status, out, err = runner([sys.executable, "-c", SHOW], cwd=str(tmp_path),
                              env={"LC_ALL": "C", "MAKEFLAGS": None})
    assert (status, err) == (3, b"err")
    assert out.decode().splitlines() == ["b''", "C", "None", str(tmp_path)]
    assert os.environ["MAKEFLAGS"] == "-j8"
    status, out, _err = runner([sys.executable, "-c", SHOW], data=b"\n\n")
    assert out.decode().splitlines()[:3] == [repr(b"\n\n"), str(os.environ.get("LC_ALL")), "-j8"]


def test_contract_arguments_are_not_expanded(runner):
    status, out, _err = runner([sys.executable, "-c", "import sys; print(sys.argv[1])", "$HOME ~"])
    assert (status, out) == (0, b"$HOME ~\n")


def test_contract_missing_program_raises_oserror(runner):
    with pytest.raises(FileNotFoundError):
        runner(["vermagic-kmod-no-such-program", "--version"])


def test_contract_timeout_kills_and_raises(runner):
    with pytest.raises(TimeoutError, match="did not finish within 0.5 seconds"):
        runner([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
