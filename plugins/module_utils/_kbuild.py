# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Running kbuild: ``modules_prepare`` on a kernel tree, ``modules`` for an external module.

``build(request)`` does the whole job and returns the result dict of ``vermagic.kmod.kbuild``:

* It refuses what cannot work before it runs anything, and says why: no tree, no ``.config``,
  a tree not prepared for ``M=`` builds, a compiler that is not installed, unusable make
  variables.
* The compiler defaults to the one ``CONFIG_CC_VERSION_TEXT`` names (``gcc-12`` for Debian 12)
  when it is installed; else the tree's default, with a warning that the versions differ.
* A fingerprint of the inputs (source files, the tree's release, ``.config``,
  ``Module.symvers``, the compiler's path and version, the arguments) is stored next to the
  products. When it is unchanged and the products are still there, nothing runs: no make.
* ``modules_prepare`` is preceded by ``make olddefconfig`` when the configuration needs it
  (no ``include/config/auto.conf``, ``.config`` newer than it, or ``make -s listnewconfig``
  not empty). make never reads a terminal: stdin is ``/dev/null``.
* One lock per tree and one per module source (``_lock.tree_lock``, the lock file outside the
  directory, the same one ``kernel_release`` takes): ``modules_prepare`` holds the tree's lock
  exclusively; an ``M=`` build holds its source's lock exclusively and the tree's shared, so
  builds of different modules against one tree run side by side, never while the tree is being
  prepared or its release edited, and two builds of one source never overlap.
* make's output goes to a log file (its path is in the result and in every error); failures
  and warnings are explained from it (``_build_diagnosis``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible_collections.vermagic.kmod.plugins.module_utils import _fingerprint as fp
from ansible_collections.vermagic.kmod.plugins.module_utils._build_diagnosis import (
    ERROR,
    PREPARE_FIX,
    WARNING,
    Finding,
    diagnose,
    tail,
)
from ansible_collections.vermagic.kmod.plugins.module_utils._commands import run, run_text
from ansible_collections.vermagic.kmod.plugins.module_utils._files import write_atomic
from ansible_collections.vermagic.kmod.plugins.module_utils._kconfig import parse_config
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import tree_lock

LOG_NAME = ".vermagic-kmod.log"
SRC_FINGERPRINT = ".vermagic-kmod.fingerprint"
TREE_FINGERPRINT = ".vermagic-kmod.prepare.fingerprint"

# Targets whose products the fingerprint can vouch for; anything else runs every time.
PREPARE_TARGETS = frozenset({"modules_prepare", "prepare"})
MODULE_TARGETS = frozenset({"modules"})
# Tree targets that do not need a configured tree (no olddefconfig before them).
CONFIG_FREE = frozenset({"clean", "mrproper", "distclean", "help", "kernelrelease",
                         "kernelversion", "image_name", "listnewconfig"})

VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TARGET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./+-]*\Z")
RESERVED_VARS = {
    "M": "give the module's directory as src",
    "SUBDIRS": "give the module's directory as src",
    "KBUILD_EXTMOD": "give the module's directory as src",
    "KBUILD_EXTRA_SYMBOLS": "give the files in extra_symbols",
    "O": "building into a separate output directory (O=) is not supported; build in the tree",
    "KBUILD_OUTPUT": "building into a separate output directory is not supported; build in the tree",
}

# Files that make a tree "prepared": (alternatives, required). The first existing alternative
# is recorded; 2.6-era trees keep autoconf.h and utsrelease.h under include/linux.
PREPARED_FILES = (
    (("include/config/auto.conf",), True),
    (("include/generated/autoconf.h", "include/linux/autoconf.h"), True),
    (("scripts/mod/modpost",), True),
    (("scripts/basic/fixdep",), False),
    (("include/config/kernel.release",), False),
    (("include/generated/utsrelease.h", "include/linux/utsrelease.h", "include/linux/version.h"),
     False),
)
UTSRELEASE_FILES = ("include/generated/utsrelease.h", "include/linux/utsrelease.h",
                    "include/linux/version.h")


class KbuildError(Exception):
    """A build that cannot run or that failed; carries the findings, log path and log tail."""

    def __init__(self, msg: str, *, diagnosis: list[Finding] | None = None, log: str | None = None,
                 log_tail: list[str] | None = None, commands: list[list[str]] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.diagnosis = diagnosis or []
        self.log = log
        self.log_tail = log_tail or []
        self.commands = commands or []

    def result(self) -> dict[str, Any]:
        return {"msg": self.msg, "diagnosis": [f.as_dict() for f in self.diagnosis],
                "log": self.log, "log_tail": self.log_tail, "commands": self.commands}


@dataclass
class Request:
    kernel_dir: str
    src: str | None = None
    targets: list[str] | None = None
    jobs: int | None = None
    make_vars: dict[str, str] = field(default_factory=dict)
    extra_symbols: list[str] = field(default_factory=list)
    cc: str | None = None
    config: str | None = None
    force: bool = False
    log_lines: int = 30
    lock_timeout: float = 3600.0


@dataclass
class Compiler:
    command: str | None      # what goes to CC= (None: the tree's default, no CC= given)
    path: str | None         # resolved path of the program
    version: str             # first line of --version without '#', as kbuild's CC_VERSION_TEXT
    version_output: str      # the whole --version output (part of the fingerprint)
    expected: str | None     # the tree's CONFIG_CC_VERSION_TEXT
    source: str              # "option", "config" or "default"

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "path": self.path, "version": self.version,
                "expected": self.expected, "source": self.source,
                "matches": None if self.expected is None else self.version == self.expected}


@dataclass
class Tree:
    path: str
    config: dict[str, str | None]
    release: str | None
    prepared_missing: list[str]

    @property
    def modversions(self) -> bool | None:
        if not self.config:
            return None
        return self.config.get("MODVERSIONS") == "y"


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def read_tree(path: str) -> Tree:
    text = _read_text(os.path.join(path, ".config"))
    if text is None:
        text = _read_text(os.path.join(path, "include", "config", "auto.conf")) or ""
    missing = []
    for alternatives, required in PREPARED_FILES:
        if required and not any(os.path.exists(os.path.join(path, a)) for a in alternatives):
            missing.append(" or ".join(alternatives))
    return Tree(path=path, config=parse_config(text), release=tree_release(path),
                prepared_missing=missing)


def tree_release(path: str) -> str | None:
    """The release the tree's modules get (UTS_RELEASE), or kernel.release, or None."""
    for rel in UTSRELEASE_FILES:
        text = _read_text(os.path.join(path, rel))
        match = re.search(r'#define\s+UTS_RELEASE\s+"([^"]*)"', text or "")
        if match:
            return match.group(1)
    text = _read_text(os.path.join(path, "include", "config", "kernel.release"))
    return text.strip() if text and text.strip() else None


# ----------------------------------------------------------------------------- validation

def validate(request: Request) -> Request:
    """Normalise the request; raise KbuildError for anything that cannot work."""
    if not request.kernel_dir:
        raise KbuildError("kernel_dir is empty: give the kernel tree (a headers directory such as "
                          "/lib/modules/<release>/build, or a prepared source tree)")
    kernel_dir = os.path.abspath(request.kernel_dir)
    src = os.path.abspath(request.src) if request.src else None
    for name, value in (("kernel_dir", kernel_dir), ("src", src)):
        if value and (re.search(r"[\s:#$]", value)):
            raise KbuildError(f"{name} {value!r} contains a space, ':', '#' or '$', which kbuild "
                              "cannot handle in a path; move it to a plain path")
    targets = list(request.targets or (["modules"] if src else ["modules_prepare"]))
    for target in targets:
        if not TARGET_NAME.match(target or ""):
            raise KbuildError(f"target {target!r} is not a make target name (letters, digits, "
                              "'_', '.', '/', '+', '-'; not starting with '-')")
    if request.jobs is not None and request.jobs < 1:
        raise KbuildError(f"jobs must be 1 or more, got {request.jobs}")
    make_vars = validate_make_vars(request.make_vars)
    cc = request.cc
    if "CC" in make_vars:
        if cc and cc != make_vars["CC"]:
            raise KbuildError(f"cc ({cc!r}) and make_vars CC ({make_vars['CC']!r}) disagree; "
                              "give the compiler once, as cc")
        cc = make_vars.pop("CC")
    if cc is not None and (not cc.strip() or "\n" in cc or "\0" in cc):
        raise KbuildError(f"cc {cc!r} is not a compiler command")
    if request.config and src:
        raise KbuildError("config applies to a kernel tree (no src): prepare the tree first, "
                          "then build the module against it")
    config = os.path.abspath(request.config) if request.config else None
    if config and not os.path.isfile(config):
        raise KbuildError(f"config {config} does not exist or is not a file: give the running "
                          "kernel's configuration, e.g. /boot/config-<release>")
    extra = []
    for item in request.extra_symbols or []:
        path = os.path.abspath(item)
        if os.path.isdir(path):
            path = os.path.join(path, "Module.symvers")
        if not os.path.isfile(path):
            raise KbuildError(f"extra_symbols: {path} does not exist; build the module that "
                              "exports the symbols first (it writes Module.symvers), or remove it")
        if re.search(r"\s", path):
            raise KbuildError(f"extra_symbols: {path!r} contains a space, which kbuild cannot handle")
        extra.append(path)
    if request.log_lines < 0:
        raise KbuildError(f"log_lines must be 0 or more, got {request.log_lines}")
    return Request(kernel_dir=kernel_dir, src=src, targets=targets,
                   jobs=request.jobs or os.cpu_count() or 1, make_vars=make_vars,
                   extra_symbols=extra, cc=cc, config=config, force=request.force,
                   log_lines=request.log_lines, lock_timeout=request.lock_timeout)


def validate_make_vars(make_vars: dict[str, Any] | None) -> dict[str, str]:
    """``VAR=value`` items for make's argv: names [A-Za-z_][A-Za-z0-9_]*, no newline/NUL."""
    checked: dict[str, str] = {}
    for name, value in (make_vars or {}).items():
        name = str(name)
        if not VAR_NAME.match(name):
            raise KbuildError(f"make_vars: {name!r} is not a make variable name "
                              "([A-Za-z_][A-Za-z0-9_]*)")
        if name in RESERVED_VARS:
            raise KbuildError(f"make_vars: {name} is set by the module: {RESERVED_VARS[name]}")
        if value is None:
            value = ""
        if isinstance(value, bool):
            value = "y" if value else "n"
        value = str(value)
        if "\n" in value or "\r" in value or "\0" in value:
            raise KbuildError(f"make_vars: the value of {name} contains a newline or NUL; make "
                              "cannot take it on the command line")
        checked[name] = value
    return checked


# ----------------------------------------------------------------------------- compiler

Probe = Callable[[str], str]  # program path -> its --version output (raises OSError)


def probe_version(program: str) -> str:
    return run_text([program, "--version"], timeout=60)[1]


def version_text(output: str) -> str:
    """kbuild's CC_VERSION_TEXT: the first line of ``--version``, '#' removed."""
    first = output.splitlines()[0] if output.strip() else ""
    return first.replace("#", "").strip()


def compiler_candidates(expected: str) -> list[str]:
    """Program names CONFIG_CC_VERSION_TEXT points at, best first.

    gcc prints its own name first (``gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0``); clang prints
    ``[Vendor] clang version 14.0.6 …``, so clang-<major> then clang.
    """
    match = re.search(r"clang version (\d+)", expected)
    if match:
        return [f"clang-{match.group(1)}", "clang"]
    first = expected.split()[0] if expected.split() else ""
    if re.match(r"[A-Za-z0-9_.+-]+\Z", first):
        return [first]
    return []


def select_compiler(cc: str | None, tree: Tree, which: Callable[[str], str | None] = shutil.which,
                    probe: Probe = probe_version) -> tuple[Compiler, list[Finding]]:
    """The compiler to build with, and warnings about it (``KbuildError`` if there is none)."""
    expected = tree.config.get("CC_VERSION_TEXT") or None
    findings: list[Finding] = []
    if cc:
        program = cc.split()[-1] if " " in cc.strip() else cc  # "ccache gcc-12": the last word
        path = which(program)
        if not path:
            raise KbuildError(
                f"the compiler {cc!r} is not installed (not found on PATH); install it "
                f"(Debian: apt-get install {program}) or give another cc",
                diagnosis=[Finding("missing_compiler", ERROR, f"the compiler {cc!r} is not installed",
                                   f"install {program}, or give another cc")])
        compiler = _probed(cc, path, expected, "option", probe)
    else:
        compiler = None
        for name in compiler_candidates(expected or ""):
            path = which(name)
            if path:
                compiler = _probed(name, path, expected, "config", probe)
                break
        if compiler is None:
            default = "clang" if tree.config.get("CC_IS_CLANG") == "y" else "gcc"
            path = which(default)
            if not path:
                wanted = (compiler_candidates(expected or "") or [default])[0]
                raise KbuildError(
                    f"no compiler: {wanted} (which the kernel was built with) is not installed, "
                    f"and neither is {default}; install {wanted}",
                    diagnosis=[Finding("missing_compiler", ERROR,
                                       f"the kernel's compiler {wanted} is not installed",
                                       f"install it (Debian: apt-get install {wanted})")])
            compiler = _probed(None, path, expected, "default", probe)
            if expected:
                findings.append(Finding(
                    "compiler_fallback", WARNING,
                    f"the kernel was built by {expected!r}, whose compiler is not installed; "
                    f"building with the tree's default {default} ({compiler.version!r}) instead: "
                    "the versions differ",
                    f"install {(compiler_candidates(expected) or [default])[0]} for a module built "
                    "like the kernel's own"))
    if compiler.expected and compiler.source != "default" and compiler.version != compiler.expected:
        findings.append(Finding(
            "compiler_mismatch", WARNING,
            f"the compiler {compiler.command!r} says {compiler.version!r} but the kernel was built "
            f"by {compiler.expected!r}: the versions differ",
            "install the kernel's compiler and let cc default to it"))
    return compiler, findings


def _probed(command: str | None, path: str, expected: str | None, source: str,
            probe: Probe) -> Compiler:
    try:
        output = probe(path)
    except OSError as exc:
        raise KbuildError(f"the compiler {path} does not run ({exc}); reinstall it or give "
                          "another cc") from None
    return Compiler(command=command, path=os.path.realpath(path), version=version_text(output),
                    version_output=output, expected=expected, source=source)


# ----------------------------------------------------------------------------- commands

def make_argv(make: str, request: Request, compiler: Compiler, targets: list[str],
              jobs: bool = True) -> list[str]:
    """make's argv: ``make -C <tree> [-jN] [M=<src>] [CC=…] [KBUILD_EXTRA_SYMBOLS=…] VAR=… targets``."""
    argv = [make, "-C", request.kernel_dir]
    if jobs:
        argv.append(f"-j{request.jobs}")
    if request.src:
        argv.append(f"M={request.src}")
    if compiler.command:
        argv.append(f"CC={compiler.command}")
    if request.extra_symbols:
        argv.append("KBUILD_EXTRA_SYMBOLS=" + " ".join(request.extra_symbols))
    argv.extend(f"{name}={value}" for name, value in request.make_vars.items())
    argv.extend(targets)
    return argv


PARENT_MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS",
                         "KBUILD_EXTMOD", "M", "O", "KBUILD_OUTPUT")


def make_env() -> dict[str, str | None]:
    """make's changes to the environment (None: removed, see ``_commands``): English messages,
    no jobserver or flags of a parent make."""
    env: dict[str, str | None] = dict.fromkeys(PARENT_MAKE_VARIABLES)
    env.update({"LC_ALL": "C", "LANG": "C", "LANGUAGE": ""})
    return env


def knows_target(tree: str, target: str) -> bool:
    """Whether the tree's kconfig Makefile has a target (olddefconfig arrived in 3.7)."""
    text = _read_text(os.path.join(tree, "scripts", "kconfig", "Makefile")) or ""
    return re.search(rf"(?<![\w-]){re.escape(target)}\b", text) is not None


# ----------------------------------------------------------------------------- the plan

@dataclass
class Plan:
    request: Request
    tree: Tree
    compiler: Compiler
    make: str
    kind: str                      # "module" (M=), "prepare", or "other" (never skipped)
    fingerprint_path: str | None
    fingerprint: fp.Fingerprint | None
    old: fp.Fingerprint | None
    reasons: list[str]
    findings: list[Finding]
    log_path: str

    @property
    def skip(self) -> bool:
        return self.kind != "other" and not self.reasons


LABELS = {
    "arguments": "arguments", "sources": "source files", "release": "tree release",
    "config": ".config", "config_source": "config file", "symvers": "Module.symvers",
    "extra_symbols": "extra_symbols", "compiler": "compiler", "tree_prepare": "tree preparation",
    "release_inputs": "release inputs (Makefile, localversion*)",
}


def _arguments(request: Request, compiler: Compiler) -> str:
    return fp.hash_text(json.dumps({
        "kernel_dir": request.kernel_dir, "src": request.src, "targets": request.targets,
        "make_vars": sorted(request.make_vars.items()), "cc": compiler.command,
        "config": request.config,
    }, sort_keys=True))


def _release_inputs(tree: str) -> str:
    names = ["Makefile"] + sorted(n for n in os.listdir(tree) if n.startswith("localversion"))
    return fp.hash_text(*(f"{n}={fp.hash_optional_file(os.path.join(tree, n))}" for n in names))


def compute_fingerprint(request: Request, tree: Tree, compiler: Compiler,
                        kind: str) -> fp.Fingerprint:
    """The inputs of this build as a fingerprint (outputs are filled in after the build)."""
    t = request.kernel_dir
    compiler_id = fp.hash_text(compiler.path or "", compiler.version_output)
    components = {"arguments": _arguments(request, compiler), "compiler": compiler_id,
                  "config": fp.hash_optional_file(os.path.join(t, ".config"))}
    notes = {"compiler": compiler.version, "release": tree.release or ""}
    files: dict[str, str] = {}
    if kind == "prepare":
        components["release_inputs"] = _release_inputs(t)
        if request.config:
            components["config_source"] = fp.hash_file(request.config)
            notes["config_source"] = request.config
    elif request.src is not None:
        files = fp.source_files(request.src)
        components["sources"] = fp.digest_of_files(files)
        components["release"] = fp.hash_text(*(
            fp.hash_optional_file(os.path.join(t, rel))
            for rel in ("include/config/kernel.release",) + UTSRELEASE_FILES))
        components["symvers"] = fp.hash_optional_file(os.path.join(t, "Module.symvers"))
        components["extra_symbols"] = fp.hash_text(*(
            f"{p}={fp.hash_file(p)}" for p in request.extra_symbols))
        prepared = fp.load(os.path.join(t, TREE_FINGERPRINT))
        components["tree_prepare"] = prepared.digest if prepared else "none"
    return fp.Fingerprint(components=components, files=files, notes=notes)


def make_plan(request: Request, *, which: Callable[[str], str | None] = shutil.which,
              probe: Probe = probe_version) -> Plan:
    """Everything decided without writing anything: compiler, fingerprint, whether to build."""
    tree_dir = request.kernel_dir
    check_paths(request)
    tree = read_tree(tree_dir)
    findings: list[Finding] = []
    if request.src:
        if tree.prepared_missing:
            missing = ", ".join(tree.prepared_missing)
            raise KbuildError(
                f"the kernel tree {tree_dir} is not prepared for building modules ({missing} "
                f"missing); {PREPARE_FIX}",
                diagnosis=[Finding("unprepared_tree", ERROR,
                                   f"the kernel tree is not prepared: {missing} missing",
                                   PREPARE_FIX)])
        kind = "module" if set(request.targets or []) <= MODULE_TARGETS else "other"
    else:
        needs_config = any(t not in CONFIG_FREE and not t.endswith("config")
                           for t in request.targets or [])
        if needs_config and not request.config and not os.path.isfile(
                os.path.join(tree_dir, ".config")):
            raise KbuildError(
                f"{tree_dir} has no .config: give config (the running kernel's, e.g. "
                "/boot/config-<release>), or copy it to the tree's .config",
                diagnosis=[Finding("no_config", ERROR, f"{tree_dir}/.config does not exist",
                                   "give config: /boot/config-<release>")])
        kind = "prepare" if set(request.targets or []) <= PREPARE_TARGETS else "other"
    if request.config:
        tree.config = parse_config(_read_text(request.config) or "")
    make = which("make")
    if not make:
        raise KbuildError("make is not installed: install it (Debian: apt-get install make "
                          "build-essential)",
                          diagnosis=[Finding("missing_make", ERROR, "make is not installed",
                                             "apt-get install make")])
    compiler, compiler_findings = select_compiler(request.cc, tree, which, probe)
    findings.extend(compiler_findings)
    home = request.src or tree_dir
    if kind == "other":
        return Plan(request, tree, compiler, make, kind, None, None, None,
                    [f"target {', '.join(request.targets or [])} always runs"], findings,
                    os.path.join(home, LOG_NAME))
    path = os.path.join(home, SRC_FINGERPRINT if kind == "module" else TREE_FINGERPRINT)
    new = compute_fingerprint(request, tree, compiler, kind)
    old = fp.load(path)
    reasons = new.differences(old, LABELS)
    if old is not None and not reasons:
        if not old.outputs:
            reasons.append("the earlier build recorded no outputs")
        reasons.extend(fp.outputs_intact(home, old.outputs))
    if request.force and not reasons:
        reasons.append("force is set")
    return Plan(request, tree, compiler, make, kind, path, new, old, reasons, findings,
                os.path.join(home, LOG_NAME))


def check_paths(request: Request) -> None:
    """The tree (and src) exist and look like what kbuild needs."""
    tree = request.kernel_dir
    if not os.path.isdir(tree):
        dangling = os.path.islink(tree)
        what = f"is a dangling link to {os.readlink(tree)}" if dangling else "does not exist"
        raise KbuildError(
            f"the kernel tree {tree} {what}: install the headers package of this kernel "
            "(Debian: linux-headers-<release>), or prepare a source tree and give it as kernel_dir",
            diagnosis=[Finding("missing_tree", ERROR, f"the kernel tree {tree} {what}",
                               "install the headers package, or prepare a source tree")])
    if not os.path.isfile(os.path.join(tree, "Makefile")):
        raise KbuildError(
            f"{tree} has no Makefile: it is not a kernel tree (a headers directory or a kernel "
            "source tree has one at the top)",
            diagnosis=[Finding("not_a_tree", ERROR, f"{tree} has no Makefile",
                               "give the top directory of a kernel tree as kernel_dir")])
    src = request.src
    if src is None:
        return
    if not os.path.isdir(src):
        raise KbuildError(f"src {src} does not exist or is not a directory: give the directory "
                          "that holds the module's Kbuild or Makefile")
    if not any(os.path.isfile(os.path.join(src, n)) for n in ("Kbuild", "Makefile")):
        raise KbuildError(
            f"{src} has neither a Kbuild nor a Makefile: kbuild needs one that sets obj-m "
            "(e.g. 'obj-m := hello.o')",
            diagnosis=[Finding("no_kbuild_file", ERROR, f"{src} has no Kbuild/Makefile",
                               "add a Kbuild file with obj-m, or point src at its directory")])


# ----------------------------------------------------------------------------- running

def snapshot(paths: list[str]) -> dict[str, tuple[int, int, int]]:
    found = {}
    for path in paths:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue
        found[path] = (info.st_mtime_ns, info.st_size, info.st_ino)
    return found


def built_modules(src: str) -> list[str]:
    """The .ko files of an M= build: modules.order's entries, else every .ko under src."""
    order = _read_text(os.path.join(src, "modules.order")) or ""
    found = []
    for line in order.splitlines():
        entry = line.strip()
        if not entry:
            continue
        if entry.startswith("kernel/"):
            entry = entry[len("kernel/"):]
        if entry.endswith(".o"):
            entry = entry[:-2] + ".ko"
        path = entry if os.path.isabs(entry) else os.path.join(src, entry)
        if os.path.isfile(path) and path not in found:
            found.append(path)
    if found:
        return found
    kos = []
    for top, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        kos.extend(os.path.join(top, f) for f in sorted(files) if f.endswith(".ko"))
    return kos


def prepared_outputs(tree: str) -> list[str]:
    paths = []
    for alternatives, _required in PREPARED_FILES:
        for rel in alternatives:
            if os.path.exists(os.path.join(tree, rel)):
                paths.append(os.path.join(tree, rel))
                break
    return paths


class Runner:
    """Runs make with its output appended to the log file; records what ran."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.commands: list[list[str]] = []
        self.started = time.monotonic()

    def start_log(self) -> None:
        write_atomic(self.log_path, b"")

    def run(self, argv: list[str], cwd: str, stdin_text: str | None = None) -> int:
        return self.capture(argv, cwd, stdin_text)[0]

    def capture(self, argv: list[str], cwd: str, stdin_text: str | None = None) -> tuple[int, str]:
        """Run and return the output too. The log gets make's output when make has finished:
        its stdout, then its stderr."""
        self.commands.append(argv)
        with open(self.log_path, "ab") as log:
            log.write(("### " + " ".join(argv) + "\n").encode())
        status, out, err = run(argv, cwd=cwd, env=make_env(),
                               data=None if stdin_text is None else stdin_text.encode())
        with open(self.log_path, "ab") as log:
            for output in (out, err):
                log.write(output if not output or output.endswith(b"\n") else output + b"\n")
            log.write(f"### exit status {status}\n".encode())
        return status, out.decode("utf-8", "replace")

    def text(self) -> str:
        return _read_text(self.log_path) or ""


def config_needs_update(tree: str, runner: Runner, listnewconfig: list[str]) -> str | None:
    """Why the tree's configuration needs olddefconfig, or None."""
    auto = os.path.join(tree, "include", "config", "auto.conf")
    config = os.path.join(tree, ".config")
    if not os.path.exists(auto):
        return "no include/config/auto.conf yet"
    if os.stat(config).st_mtime_ns > os.stat(auto).st_mtime_ns:
        return ".config is newer than include/config/auto.conf"
    if knows_target(tree, "listnewconfig"):
        status, out = runner.capture(listnewconfig, tree)
        new = [line for line in out.splitlines() if line.startswith("CONFIG_")]
        if status != 0:
            return "make listnewconfig failed (see the log)"
        if new:
            return f"make listnewconfig lists {len(new)} option(s) the .config does not set"
    return None


def build(request: Request, *, check_mode: bool = False,
          which: Callable[[str], str | None] = shutil.which,
          probe: Probe = probe_version,
          reader: Callable[[str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run (or in check mode, predict) the build; return the module's result dict."""
    start = time.monotonic()
    request = validate(request)
    check_paths(request)
    if check_mode:
        plan = make_plan(request, which=which, probe=probe)
        return _result(plan, changed=not plan.skip, skipped=plan.skip, reader=reader, start=start,
                       commands=[] if plan.skip else _predicted_commands(plan), log=None,
                       findings=plan.findings + _stored_findings(plan) if plan.skip
                       else plan.findings)
    with ExitStack() as locks:
        if request.src:  # always the source's lock first, then the tree's: no deadlock
            locks.enter_context(tree_lock(request.src, request.lock_timeout))
            locks.enter_context(tree_lock(request.kernel_dir, request.lock_timeout, shared=True))
        else:
            locks.enter_context(tree_lock(request.kernel_dir, request.lock_timeout))
        plan = make_plan(request, which=which, probe=probe)
        if plan.skip:
            return _result(plan, changed=False, skipped=True, reader=reader, start=start,
                           commands=[], log=None, findings=plan.findings + _stored_findings(plan))
        return _run(plan, reader=reader, start=start)


def _stored_findings(plan: Plan) -> list[Finding]:
    """Warnings of the build a skipped run stands for (a refused module stays refused)."""
    stored = (plan.old.notes.get("diagnosis") if plan.old else None) or "[]"
    try:
        return [Finding(**item) for item in json.loads(stored)]
    except (TypeError, ValueError):
        return []


def _predicted_commands(plan: Plan) -> list[list[str]]:
    """What a real run would start with (olddefconfig as far as mtimes tell; no make is run)."""
    request = plan.request
    commands = []
    tree = request.kernel_dir
    auto = os.path.join(tree, "include", "config", "auto.conf")
    config = os.path.join(tree, ".config")
    stale = (not os.path.exists(auto) or not os.path.exists(config)
             or os.stat(config).st_mtime_ns > os.stat(auto).st_mtime_ns)
    if request.src is None and _needs_config(request) and (stale or _config_to_copy(plan)):
        commands.append(make_argv(plan.make, request, plan.compiler, [_olddefconfig(request)],
                                  jobs=False))
    commands.append(make_argv(plan.make, request, plan.compiler, request.targets or []))
    return commands


def _config_to_copy(plan: Plan) -> bool:
    """Whether the ``config`` file goes to the tree's .config: when the tree has none, when it
    was never applied (no fingerprint) and differs, or when the file changed since. A .config
    changed in the tree since (kernel_release neutralising CONFIG_LOCALVERSION, a person) is
    kept: olddefconfig completes it, and the next run is skipped, not a tug of war."""
    request = plan.request
    if not request.config:
        return False
    current = _read_bytes(os.path.join(request.kernel_dir, ".config"))
    wanted = _read_bytes(request.config)
    if current is None:
        return True
    if current == wanted:
        return False
    return plan.old is None or "config_source" in _changed(plan)


def _needs_config(request: Request) -> bool:
    return any(t not in CONFIG_FREE and not t.endswith("config") for t in request.targets or [])


def _olddefconfig(request: Request) -> str:
    return "olddefconfig" if knows_target(request.kernel_dir, "olddefconfig") else "oldconfig"


def _run(plan: Plan, *, reader: Callable[[str], dict[str, Any]] | None,
         start: float) -> dict[str, Any]:
    request = plan.request
    tree = request.kernel_dir
    runner = Runner(plan.log_path)
    if plan.fingerprint_path:
        fp.remove(plan.fingerprint_path)  # an interrupted build must not look finished
    runner.start_log()
    if request.src:
        watched = built_modules(request.src)
    else:
        watched = [os.path.join(tree, rel) for alternatives, _required in PREPARED_FILES
                   for rel in alternatives] + [os.path.join(tree, ".config")]
    before = snapshot(watched)
    olddefconfig_reason = None
    if request.src is None and _needs_config(request):
        config_path = os.path.join(tree, ".config")
        if _config_to_copy(plan):
            write_atomic(config_path, _read_bytes(request.config or "") or b"")
        olddefconfig = _olddefconfig(request)
        listnewconfig = make_argv(plan.make, request, plan.compiler, ["-s", "listnewconfig"],
                                  jobs=False)
        olddefconfig_reason = config_needs_update(tree, runner, listnewconfig)
        if olddefconfig_reason:
            argv = make_argv(plan.make, request, plan.compiler, [olddefconfig], jobs=False)
            status = runner.run(argv, tree, stdin_text="\n" * 20000 if olddefconfig == "oldconfig"
                                else None)
            if status:
                _fail(plan, runner, f"make {olddefconfig} failed in {tree}")
    status = runner.run(make_argv(plan.make, request, plan.compiler, request.targets or []),
                        request.src or tree)
    if status:
        _fail(plan, runner, f"make {' '.join(request.targets or [])} failed"
              + (f" for {request.src}" if request.src else f" in {tree}"))
    log_text = runner.text()
    findings = plan.findings + diagnose(log_text, modversions=plan.tree.modversions)
    if request.src:
        outputs = built_modules(request.src)
        if plan.kind == "module" and not outputs:
            findings.append(Finding(
                "no_modules", WARNING, f"make succeeded but produced no .ko file in {request.src}",
                "check that the module's Kbuild/Makefile sets obj-m (e.g. 'obj-m := hello.o')"))
        changed = snapshot(outputs) != before
    else:
        outputs = prepared_outputs(tree) + [os.path.join(tree, ".config")]
        changed = snapshot(watched) != before
    if plan.fingerprint_path and plan.fingerprint is not None:
        new = plan.fingerprint
        if plan.kind == "prepare":  # olddefconfig may have rewritten .config: record the result
            new = compute_fingerprint(request, read_tree(tree), plan.compiler, plan.kind)
            new.outputs = {os.path.relpath(p, tree): "exists" for p in prepared_outputs(tree)}
        else:
            new.outputs = fp.output_digests(request.src or tree, outputs)
        new.notes["diagnosis"] = json.dumps([f.as_dict() for f in findings if f.severity == WARNING])
        if new.outputs:
            fp.store(plan.fingerprint_path, new)
    result = _result(plan, changed=changed, skipped=False, reader=reader, start=start,
                     commands=runner.commands, log=runner.log_path, findings=findings,
                     log_text=log_text)
    result["olddefconfig"] = olddefconfig_reason
    return result


def _changed(plan: Plan) -> set[str]:
    if plan.old is None or plan.fingerprint is None:
        return set(plan.fingerprint.components if plan.fingerprint else [])
    return {name for name in set(plan.fingerprint.components) | set(plan.old.components)
            if plan.fingerprint.components.get(name) != plan.old.components.get(name)}


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _fail(plan: Plan, runner: Runner, what: str) -> None:
    text = runner.text()
    findings = plan.findings + diagnose(text, modversions=plan.tree.modversions, failed=True)
    errors = [f for f in findings if f.severity == ERROR]
    because = "; ".join(f.msg for f in errors[:3])
    raise KbuildError(f"{what}: {because} (log: {runner.log_path})", diagnosis=findings,
                      log=runner.log_path, log_tail=tail(text, plan.request.log_lines),
                      commands=runner.commands)


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for finding in findings:
        key = (finding.code, finding.msg)
        if key not in seen:
            seen.add(key)
            kept.append(finding)
    return kept


def describe_module(path: str, reader: Callable[[str], dict[str, Any]] | None) -> dict[str, Any]:
    info: dict[str, Any] = {"path": path, "name": os.path.basename(path)[:-3].replace("-", "_"),
                            "vermagic": None, "srcversion": None}
    if reader is not None:
        info.update({k: v for k, v in reader(path).items() if v is not None})
    return info


def _result(plan: Plan, *, changed: bool, skipped: bool, reader: Callable[[str], dict[str, Any]] | None,
            start: float, commands: list[list[str]], log: str | None, findings: list[Finding],
            log_text: str = "") -> dict[str, Any]:
    request = plan.request
    modules = []
    if request.src:
        if skipped and plan.old is not None:
            paths = [os.path.join(request.src, rel) for rel in sorted(plan.old.outputs)]
        else:
            paths = built_modules(request.src)
        modules = [describe_module(p, reader) for p in paths if p.endswith(".ko")]
    return {
        "changed": changed,
        "skipped": skipped,
        "modules": modules,
        "kernel_dir": request.kernel_dir,
        "src": request.src,
        "targets": request.targets,
        "release": read_tree(request.kernel_dir).release,
        "compiler": plan.compiler.as_dict(),
        "reasons": plan.reasons,
        "commands": commands,
        "fingerprint": plan.fingerprint_path,
        "log": log,
        "log_tail": tail(log_text, request.log_lines),
        "diagnosis": [f.as_dict() for f in _unique(findings)],
        "olddefconfig": None,
        "duration": round(time.monotonic() - start, 3),
    }
