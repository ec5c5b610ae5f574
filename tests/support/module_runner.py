"""Run a module's ``main()`` in this process and get what it would have printed as JSON.

``run_module(main, {"path": ...})`` returns the result dict; ``result["failed"]`` tells
exit from fail. This is how tests drive a module over thousands of inputs (one process,
no AnsiballZ round trip) while exercising the module exactly as Ansible runs it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator
from unittest import mock

from ansible.module_utils import basic

try:  # ansible-core >= 2.19
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core 2.17, 2.18
    @contextmanager
    def patch_module_args(args: dict[str, Any] | None = None) -> Iterator[None]:
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
            yield


class ModuleExit(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result


def _exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
    kwargs.setdefault("changed", False)
    kwargs.setdefault("failed", False)
    raise ModuleExit(kwargs)


def _fail_json(self: basic.AnsibleModule, msg: str = "", **kwargs: Any) -> None:
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise ModuleExit(kwargs)


def run_module(main: Callable[[], None], args: dict[str, Any], check_mode: bool = False,
               diff: bool = False) -> dict[str, Any]:
    """Call ``main()`` with module ``args``; return its result (``failed`` is set on failure)."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, "exit_json", _exit_json), \
            mock.patch.object(basic.AnsibleModule, "fail_json", _fail_json):
        try:
            main()
        except ModuleExit as done:
            return done.result
    raise AssertionError("the module returned without calling exit_json or fail_json")
