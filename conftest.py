"""Make ``ansible_collections.vermagic.kmod`` importable from a plain checkout.

The collection's root is this repository's root. Python imports it as
``ansible_collections.vermagic.kmod``, so a directory of that shape is made (a
symbolic link to this checkout, outside the tree) and put on ``sys.path``.
module_utils run their commands on ``subprocess`` here (``tests/support/subprocess_runner.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.support.collection import collections_dir  # noqa: E402

sys.path.insert(0, str(collections_dir()))

import pytest  # noqa: E402

from tests.support import subprocess_runner  # noqa: E402

subprocess_runner.register()  # for session fixtures, which are made before the one below


@pytest.fixture(autouse=True)
def command_runner():
    """module_utils run commands on ``subprocess``; a module run in-process by a test registers
    its own AnsibleModule's run_command, which must not outlive that test."""
    subprocess_runner.register()
    yield
    subprocess_runner.register()
