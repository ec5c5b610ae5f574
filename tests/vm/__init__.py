"""Real stock kernels under qemu for the tests, the molecule scenario and the demo.

``from tests.vm import VM``; ``with VM.boot(release=None, profile="base") as vm: ...``.
See ``tests/vm/README.md``; the CLI is ``python3 -m tests.vm up|down|ssh|inventory|status|build``.
"""

from __future__ import annotations

from tests.vm.image import PROFILES, Image, ensure_image
from tests.vm.machine import VM, VMError

__all__ = ["PROFILES", "VM", "Image", "VMError", "ensure_image"]
