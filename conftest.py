"""Make ``ansible_collections.vermagic.kmod`` importable from a plain checkout.

The collection's root is this repository's root. Python imports it as
``ansible_collections.vermagic.kmod``, so a directory of that shape is made (a
symbolic link to this checkout, outside the tree) and put on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.support.collection import collections_dir  # noqa: E402

sys.path.insert(0, str(collections_dir()))
