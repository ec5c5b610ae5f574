"""A stand-in ``make`` and compiler for the error paths and bookkeeping of ``kbuild`` tests.

Real builds are tested on real trees (``tests/kernel/test_kbuild.py``); this fake exists to
prove what must *not* happen (no make on a skipped run), to time locks, and to replay
recorded kbuild logs as failures. ``FakeToolchain(tmp_path)`` writes ``bin/make`` and
``bin/gcc-12`` and a tiny tree; put ``toolchain.bin`` first on PATH. Every make call is appended
to ``toolchain.calls_file`` as JSON (argv, start, end).

The fake make understands ``-C dir``, ``M=dir``, ``olddefconfig``/``oldconfig`` (writes
auto.conf and autoconf.h), ``listnewconfig`` (prints $FAKE_LISTNEWCONFIG),
``modules_prepare``/``prepare`` (writes the prepared files) and ``modules`` with ``M=``
(one ``.ko`` per ``obj-m`` entry of the Kbuild file, plus ``modules.order``). $FAKE_SLEEP makes
each target take that long; $FAKE_OUTPUT is a file whose text it prints ($FAKE_STDERR: on
stderr); $FAKE_EXIT its status.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

CC_TEXT = "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"

FAKE_MAKE = textwrap.dedent('''\
    #!/usr/bin/env python3
    import hashlib, json, os, re, sys, time
    start = time.time()
    argv = sys.argv[1:]
    tree, src, targets = os.getcwd(), None, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-C":
            tree = argv[i + 1]; i += 2; continue
        if a.startswith("M="):
            src = a[2:]
        elif a == "-s" or a.startswith("-j") or "=" in a:
            pass
        else:
            targets.append(a)
        i += 1
    def write(rel, text="x\\n", base=None):
        path = os.path.join(base or tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    sleep = float(os.environ.get("FAKE_SLEEP", "0"))
    print(f"make: Entering directory '{tree}'")
    for t in targets:
        if t in ("olddefconfig", "oldconfig"):
            write("include/config/auto.conf", open(os.path.join(tree, ".config")).read())
            write("include/generated/autoconf.h")
        elif t == "listnewconfig":
            sys.stdout.write(os.environ.get("FAKE_LISTNEWCONFIG", ""))
        elif t in ("modules_prepare", "prepare"):
            time.sleep(sleep)
            for rel in ("scripts/mod/modpost", "scripts/basic/fixdep", "include/config/kernel.release"):
                if not os.path.exists(os.path.join(tree, rel)):
                    write(rel, "6.1.0-56-amd64\\n")
            if not os.path.exists(os.path.join(tree, "include/generated/utsrelease.h")):
                write("include/generated/utsrelease.h", '#define UTS_RELEASE "6.1.0-56-amd64"\\n')
        elif t == "modules" and src:
            time.sleep(sleep)
            kbuild = open(os.path.join(src, "Kbuild")).read()
            objs = re.findall(r"(\\w+)\\.o", kbuild.split(":=", 1)[-1])
            digest = hashlib.sha256()
            for name in sorted(os.listdir(src)):
                if name.endswith((".c", ".h")):
                    digest.update(open(os.path.join(src, name), "rb").read())
            for obj in objs:
                print(f"  LD [M]  {src}/{obj}.ko")
                write(f"{obj}.ko", digest.hexdigest(), base=src)
            write("modules.order", "".join(f"{src}/{o}.ko\\n" for o in objs), base=src)
    out = os.environ.get("FAKE_OUTPUT")
    if out:
        sys.stdout.write(open(out).read())
    err = os.environ.get("FAKE_STDERR")
    if err:
        sys.stderr.write(open(err).read())
    print(f"make: Leaving directory '{tree}'")
    with open(os.environ["FAKE_MAKE_CALLS"], "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "start": start, "end": time.time()}) + "\\n")
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
''')


class FakeToolchain:
    def __init__(self, base: Path, *, cc_text: str = CC_TEXT, with_gcc: bool = True) -> None:
        self.base = base
        self.bin = base / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.sysbin = base / "sysbin"  # python3 only: no real make or compiler reachable
        self.sysbin.mkdir(exist_ok=True)
        python = self.sysbin / "python3"
        if not python.exists():
            python.symlink_to(sys.executable)
        self.calls_file = base / "make-calls.jsonl"
        self.calls_file.touch()
        make = self.bin / "make"
        make.write_text(FAKE_MAKE)
        make.chmod(0o755)
        if with_gcc:
            name = cc_text.split()[0]
            gcc = self.bin / name
            gcc.write_text(f"#!/bin/sh\necho '{cc_text}'\necho 'Copyright (C) fake'\n")
            gcc.chmod(0o755)

    @property
    def path(self) -> str:
        """PATH with the fakes and python3, and no real make or compiler."""
        return f"{self.bin}:{self.sysbin}"

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": self.path, "FAKE_MAKE_CALLS": str(self.calls_file), **extra}

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.calls_file.read_text().splitlines() if line]

    def tree(self, name: str = "tree", *, prepared: bool = False, config: str | None = None) -> Path:
        tree = self.base / name
        tree.mkdir(parents=True, exist_ok=True)
        (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\n")
        (tree / "scripts" / "kconfig").mkdir(parents=True, exist_ok=True)
        (tree / "scripts" / "kconfig" / "Makefile").write_text(
            "PHONY += oldconfig olddefconfig listnewconfig\n")
        text = config if config is not None else (
            f'CONFIG_CC_VERSION_TEXT="{CC_TEXT}"\nCONFIG_MODVERSIONS=y\n')
        (tree / ".config").write_text(text)
        if prepared:
            for rel, body in (("include/config/auto.conf", text),
                              ("include/generated/autoconf.h", "x\n"),
                              ("scripts/mod/modpost", "x\n"),
                              ("scripts/basic/fixdep", "x\n"),
                              ("include/config/kernel.release", "6.1.0-56-amd64\n"),
                              ("include/generated/utsrelease.h",
                               '#define UTS_RELEASE "6.1.0-56-amd64"\n')):
                path = tree / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body)
            (tree / "Module.symvers").write_text(
                "0x12345678\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n")
        return tree

    def module(self, name: str = "hello", objs: tuple[str, ...] = ("hello",)) -> Path:
        src = self.base / name
        src.mkdir(parents=True, exist_ok=True)
        (src / "Kbuild").write_text("obj-m := " + " ".join(f"{o}.o" for o in objs) + "\n")
        for obj in objs:
            (src / f"{obj}.c").write_text(f"/* {obj} */\nint x;\n")
        return src
