"""A command runner on ``subprocess`` for tests and bench scripts (modules use ``run_command``).

``_commands.use(run)`` makes module_utils run their commands here; the root ``conftest.py``
registers it for every test, the bench scripts at their start.
"""

from __future__ import annotations

import subprocess

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands


def run(argv: list[str], *, cwd: str | None = None, data: bytes | None = None,
        env: _commands.Env | None = None, timeout: float | None = None) -> _commands.Result:
    """The ``_commands`` runner contract, on ``subprocess.run``."""
    try:
        proc = subprocess.run(argv, cwd=cwd, input=data,
                              stdin=None if data is not None else subprocess.DEVNULL,
                              capture_output=True, env=_commands.environment(env),
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout} seconds") from None
    return proc.returncode, proc.stdout, proc.stderr


def register() -> None:
    _commands.use(run)
