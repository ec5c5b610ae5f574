"""The bundled sample module for real builds: a clean copy of it, and ELF sections to compare."""

from __future__ import annotations

import shutil
from pathlib import Path

from elftools.elf.elffile import ELFFile

from tests.support.collection import ROOT

HELLO = ROOT / "examples" / "hello"
PRODUCTS = ("*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "modules.order", "Module.symvers",
            ".vermagic-kmod.*")


def hello_copy(dest: Path) -> Path:
    """``examples/hello`` copied to ``dest`` without any build products."""
    shutil.copytree(HELLO, dest, ignore=shutil.ignore_patterns(*PRODUCTS))
    return dest


def section(path: str, name: str) -> bytes | None:
    """The bytes of one ELF section of a module (None when it has no such section)."""
    with open(path, "rb") as handle:
        found = ELFFile(handle).get_section_by_name(name)
        return None if found is None else found.data()
