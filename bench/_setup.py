"""Imported first by each benchmark: this checkout importable as ``tests`` and as the collection
``ansible_collections.vermagic.kmod``, and module_utils running their commands on subprocess."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.collection import collections_dir  # noqa: E402

sys.path.insert(0, str(collections_dir()))

from tests.support import subprocess_runner  # noqa: E402

subprocess_runner.register()


def progress(label: str) -> Callable[[str], None]:
    """``say(msg)`` for a benchmark: ``[label] msg`` on stderr, at once."""

    def say(msg: str) -> None:
        print(f"[{label}] {msg}", file=sys.stderr, flush=True)

    return say
