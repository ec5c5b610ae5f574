"""A ``make`` on PATH that records every call and then runs the real make.

``MakeRecorder(tmp_path)`` writes ``bin/make``; ``recorder.path`` is a PATH with it first.
``recorder.calls()`` lists the argv of every make started since (including make's own recursive
calls, which kbuild starts through ``$(MAKE)``, i.e. the real make: only top-level calls are
recorded). This is how the real-kernel tests prove that a skipped run started no make at all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class MakeRecorder:
    def __init__(self, base: Path) -> None:
        real = shutil.which("make")
        if not real:
            raise RuntimeError("make is not installed")
        self.bin = base / "make-recorder"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.calls_file = self.bin / "calls"
        self.calls_file.write_text("")
        script = self.bin / "make"
        script.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> "{self.calls_file}"\n'
            f'exec "{os.path.realpath(real)}" "$@"\n')
        script.chmod(0o755)

    @property
    def path(self) -> str:
        return f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"

    def calls(self) -> list[str]:
        return [line for line in self.calls_file.read_text().splitlines() if line]
