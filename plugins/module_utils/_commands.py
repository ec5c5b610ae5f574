# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one place where this collection's code runs programs: ``run(argv, ...)``.

Code in modules and module_utils does not start processes itself: a module runs them through
its ``AnsibleModule.run_command``. So ``run`` hands every command to the runner registered for
the process: a module calls ``use(from_module(module))`` right after creating its AnsibleModule;
tests and scripts register one built on ``subprocess`` (``tests/support/subprocess_runner.py``).

Every runner keeps one contract:

* ``argv`` runs without a shell; ``argv[0]`` is looked up on PATH.
* ``cwd``: the working directory; ``data``: the bytes on stdin, which is empty otherwise (the
  program never reads a terminal).
* ``env``: changes to this process's environment, a value of None removes the variable.
* ``timeout``: seconds, after which the program is killed and ``TimeoutError`` raised.
* The result is ``(returncode, stdout, stderr)``, output as bytes. A program that cannot be
  started raises ``OSError`` (``FileNotFoundError`` when it is not installed), as ``subprocess``
  does; ``TimeoutError`` is an ``OSError`` too.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Protocol

Env = Mapping[str, Optional[str]]
Result = tuple[int, bytes, bytes]


class Runner(Protocol):
    def __call__(self, argv: list[str], *, cwd: str | None = None, data: bytes | None = None,
                 env: Env | None = None, timeout: float | None = None) -> Result:
        ...


_registry: dict[str, Runner] = {}


def use(runner: Runner) -> None:
    """Make ``runner`` run every command of this process from now on."""
    _registry["runner"] = runner


def run(argv: list[str], *, cwd: str | None = None, data: bytes | None = None,
        env: Env | None = None, timeout: float | None = None) -> Result:
    """Run a program through the registered runner (see the module's docstring)."""
    runner = _registry.get("runner")
    if runner is None:
        raise RuntimeError(
            f"cannot run {argv[0]}: no command runner is registered. A module calls "
            "_commands.use(_commands.from_module(module)) right after creating its AnsibleModule; "
            "tests and scripts register tests.support.subprocess_runner.run")
    return runner(list(argv), cwd=cwd, data=data, env=env, timeout=timeout)


def run_text(argv: list[str], *, cwd: str | None = None, data: bytes | None = None,
             env: Env | None = None, timeout: float | None = None) -> tuple[int, str, str]:
    """``run`` in the C locale (messages to parse are English), the output decoded as UTF-8
    (bytes that are not are replaced)."""
    status, out, err = run(argv, cwd=cwd, data=data, env={"LC_ALL": "C", **(env or {})},
                           timeout=timeout)
    return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def environment(env: Env | None) -> dict[str, str]:
    """This process's environment with the changes of ``env`` made."""
    result = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def from_module(module: Any) -> Runner:
    """A runner on ``module.run_command`` (an AnsibleModule of ansible-core 2.17 or later)."""

    def runner(argv: list[str], *, cwd: str | None = None, data: bytes | None = None,
               env: Env | None = None, timeout: float | None = None) -> Result:
        if cwd is not None and not os.path.isdir(cwd):  # run_command would run it elsewhere
            raise NotADirectoryError(f"the working directory {cwd} is not a directory")
        env = env or {}
        added = {name: value for name, value in env.items() if value is not None}
        removed = [name for name, value in env.items() if value is None]
        deadline = _Deadline(timeout)
        try:
            with _environ_without(removed), _stdin_empty(not data):
                result = module.run_command(
                    argv, check_rc=False, cwd=cwd, data=data or None, binary_data=True,
                    environ_update=added, encoding=None, expand_user_and_vars=False,
                    handle_exceptions=False, before_communicate_callback=deadline.start)
        finally:
            deadline.cancel()
        if deadline.expired:
            raise TimeoutError(f"{argv[0]} did not finish within {timeout} seconds")
        rc, out, err = result
        return rc, out, err

    return runner


class _Deadline:
    """Kills a process that runs longer than ``timeout`` seconds (run_command has no timeout)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.expired = False
        self._timer: threading.Timer | None = None

    def start(self, process: Any) -> None:
        if self.timeout is None:
            return

        def kill() -> None:
            self.expired = True
            process.kill()

        self._timer = threading.Timer(self.timeout, kill)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


@contextmanager
def _environ_without(names: list[str]) -> Iterator[None]:
    """run_command starts from ``os.environ`` and can only add to it: the variables to remove
    leave ``os.environ`` for the call (a module's process runs one command at a time)."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextmanager
def _stdin_empty(empty: bool) -> Iterator[None]:
    """run_command passes its own stdin on when there is no data: ``/dev/null`` is, meanwhile."""
    if not empty:
        yield
        return
    try:
        saved: int | None = os.dup(0)
    except OSError:  # no stdin at all
        saved = None
    null = os.open(os.devnull, os.O_RDONLY)  # fd 0 itself when there was no stdin
    try:
        if null != 0:
            os.dup2(null, 0)
        yield
    finally:
        if saved is None:
            os.close(0)
        else:
            os.dup2(saved, 0)
            os.close(saved)
        if null != 0:
            os.close(null)
