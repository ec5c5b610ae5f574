# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What went wrong in a kbuild run, in words, from its log.

``diagnose(log)`` reads the output of ``make`` (kbuild, Kconfig, gcc, modpost) and returns
findings, each ``{code, severity, msg, fix, line}``. Errors explain a failed build; warnings
are things that let ``make`` succeed but matter for loading the module, above all a build
without the kernel's ``Module.symvers``: the module gets an empty ``__versions`` section and a
kernel with CONFIG_MODVERSIONS refuses it (``no symbol version for module_layout``).

Stable codes. Errors: ``missing_tree``, ``unprepared_tree``, ``missing_compiler``,
``compile_error``, ``link_error``, ``modpost_error``, ``config_error``, ``no_kbuild_file``,
``make_error``. Warnings: ``compiler_mismatch``, ``missing_symvers``, ``undefined_symbols``.
(``_kbuild`` adds ``not_a_tree``, ``no_config``, ``missing_make``, ``compiler_fallback`` and
``no_modules`` from its own checks.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    msg: str
    fix: str = ""
    line: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "msg": self.msg, "fix": self.fix,
                "line": self.line}


PREPARE_FIX = ("prepare the tree first: run vermagic.kmod.kbuild on it without src (it runs "
               "'make olddefconfig modules_prepare'), or install the headers package of this kernel")
SYMVERS_FIX = ("write the kernel's Module.symvers into the tree with vermagic.kmod.symvers (or use "
               "the headers package's tree), then build again")

_UNPREPARED = re.compile(
    r"ERROR: Kernel configuration is invalid"
    r"|include/generated/autoconf\.h or include/config/auto\.conf are missing"
    r"|(?:scripts/basic/fixdep|scripts/mod/modpost|scripts/genksyms/genksyms)"
    r"(?:: No such file or directory|: not found)"
    r"|generated/(?:autoconf|utsrelease|bounds|asm-offsets)\.h: No such file or directory"
    r"|linux/(?:autoconf|version|utsrelease)\.h: No such file or directory"
    r"|Kernel configuration is invalid|run 'make (?:oldconfig|prepare|modules_prepare)")
_MISSING_TREE = re.compile(r"make(?:\[\d+\])?: \*\*\* (\S+): No such file or directory\.\s+Stop\.")
_CC_DIFFERS = re.compile(r"warning: the compiler differs from the one used to build the kernel")
_CC_BUILT_BY = re.compile(r"The kernel was built by:\s*(.*)")
_CC_USING = re.compile(r"You are using:\s*(.*)")
_CMD_NOT_FOUND = re.compile(
    r"(?:/bin/sh: \d+: |sh: |make(?:\[\d+\])?: )?(\S*(?:gcc|cc|clang|ld|as)\S*)"
    r"(?:: not found|: Command not found|: No such file or directory)$")
_SYMVERS_MISSING = re.compile(
    r"WARNING: (?:Module\.symvers is missing|Symbol version dump \S*Module\.symvers"
    r"|modpost: Symbol info of vmlinux is missing)")
_UNDEFINED = re.compile(r'(WARNING|ERROR): (?:modpost: )?"([^"]+)" \[([^\]]+)\] undefined!')
_COMPILE_ERROR = re.compile(r"^(\S+?):(\d+):(?:(\d+):)? (?:fatal )?error: (.*)$")
_LINK_ERROR = re.compile(r"(?:undefined reference to|multiple definition of|ld(?:\.\w+)?: .*error)")
_MODPOST_ERROR = re.compile(r"^ERROR: (?:modpost: )?(.*)$")
_CONFIG_ERROR = re.compile(r"\*\*\* Error during (?:update|writing) of the configuration"
                           r"|Restart config|\*\*\* Configuration file \S+ not found")
_NO_KBUILD = re.compile(r"(\S+/(?:Makefile|Kbuild)): No such file or directory")
_MAKE_STOP = re.compile(r"^make(?:\[\d+\])?: \*\*\* (.*)$")
_CC1_OPTION = re.compile(r"(?:cc1|gcc\S*): error: unrecognized (?:command[- ]line )?option")


def diagnose(log: str, *, modversions: bool | None = None, failed: bool = False) -> list[Finding]:
    """Findings from a kbuild log; ``failed`` says make exited non-zero (errors are then
    explained even when no specific pattern matches)."""
    lines = log.splitlines()
    findings: list[Finding] = []
    seen: set[str] = set()

    def add(finding: Finding) -> None:
        if finding.code not in seen:
            seen.add(finding.code)
            findings.append(finding)

    built_by = using = ""
    undefined: list[str] = []
    undefined_is_error = False
    undefined_line = ""
    symvers_line = ""
    for line in lines:
        text = line.strip()
        if not text:
            continue
        match = _MISSING_TREE.search(text)
        if match:
            add(Finding("missing_tree", ERROR,
                        f"the kernel tree {match.group(1)} does not exist",
                        "install the headers package of this kernel, or prepare a source tree "
                        "and give its path as kernel_dir", text))
            continue
        if _UNPREPARED.search(text):
            add(Finding("unprepared_tree", ERROR,
                        "the kernel tree is not prepared for building modules (its generated "
                        "configuration and tools are missing)", PREPARE_FIX, text))
            continue
        if _CC_DIFFERS.search(text):
            add(Finding("compiler_mismatch", WARNING, "", "", text))
            continue
        match = _CC_BUILT_BY.search(text)
        if match:
            built_by = match.group(1).strip()
            continue
        match = _CC_USING.search(text)
        if match:
            using = match.group(1).strip()
            continue
        match = _CMD_NOT_FOUND.search(text)
        if match:
            add(Finding("missing_compiler", ERROR,
                        f"the compiler or tool {match.group(1)!r} the build runs is not installed",
                        f"install it (Debian: apt-get install {_package_of(match.group(1))}) or "
                        "give another one with cc", text))
            continue
        if _SYMVERS_MISSING.search(text):
            symvers_line = symvers_line or text
            continue
        match = _UNDEFINED.search(text)
        if match:
            undefined.append(match.group(2))
            undefined_line = undefined_line or text
            undefined_is_error = undefined_is_error or match.group(1) == "ERROR"
            continue
        if _CC1_OPTION.search(text):
            add(Finding("compile_error", ERROR,
                        f"the compiler does not know an option the kernel's build uses: {text}",
                        "use the compiler the kernel was built with (see CONFIG_CC_VERSION_TEXT "
                        "in the tree's .config)", text))
            continue
        match = _COMPILE_ERROR.match(text)
        if match:
            where = f"{match.group(1)}:{match.group(2)}"
            add(Finding("compile_error", ERROR, f"compile error at {where}: {match.group(4)}",
                        "fix the source, or check that it supports this kernel version", text))
            continue
        match = _MODPOST_ERROR.match(text)
        if match:
            add(Finding("modpost_error", ERROR, f"modpost refused the module: {match.group(1)}",
                        "see the log; a missing MODULE_LICENSE() or a GPL-only symbol used by a "
                        "non-GPL module are the usual causes", text))
            continue
        if _LINK_ERROR.search(text):
            add(Finding("link_error", ERROR, f"linking failed: {text}",
                        "see the log for the object that lacks the symbol", text))
            continue
        if _CONFIG_ERROR.search(text):
            add(Finding("config_error", ERROR, f"Kconfig could not produce a configuration: {text}",
                        "check the tree's .config (give config: /boot/config-<release>)", text))
            continue
        match = _NO_KBUILD.search(text)
        if match and "/scripts/" not in match.group(1):
            add(Finding("no_kbuild_file", ERROR,
                        f"{match.group(1)} does not exist: kbuild needs a Kbuild or Makefile that "
                        "sets obj-m in the module's directory",
                        "point src at the directory that holds the module's Kbuild/Makefile", text))
            continue

    if "compiler_mismatch" in seen:
        index = next(i for i, f in enumerate(findings) if f.code == "compiler_mismatch")
        findings[index] = _compiler_mismatch(built_by, using, findings[index].line)
    if symvers_line:
        consequence = ("this kernel has CONFIG_MODVERSIONS, so it refuses the module: 'no symbol "
                       "version for module_layout'" if modversions else
                       "on a kernel with CONFIG_MODVERSIONS it is refused ('no symbol version for "
                       "module_layout')" if modversions is None else
                       "symbol imports are not checked at build time")
        add(Finding("missing_symvers", WARNING,
                    "built without the kernel's Module.symvers: the module's __versions section "
                    f"is empty; {consequence}", SYMVERS_FIX, symvers_line))
    elif undefined:
        names = ", ".join(sorted(set(undefined))[:8])
        add(Finding("undefined_symbols", ERROR if undefined_is_error else WARNING,
                    f"the module uses symbols that neither the kernel nor extra_symbols export: "
                    f"{names}" + ("" if undefined_is_error else
                                  "; loading it fails with 'Unknown symbol'"),
                    "give the Module.symvers of the module that exports them in extra_symbols, "
                    "or fix the names in the source", undefined_line))
    if failed and not any(f.severity == ERROR for f in findings):
        stop = next((ln.strip() for ln in lines if _MAKE_STOP.match(ln.strip())), "")
        first_error = next((ln.strip() for ln in lines
                            if re.search(r"\berror\b", ln, re.I) and not _MAKE_STOP.match(ln.strip())),
                           "")
        add(Finding("make_error", ERROR,
                    f"make failed: {first_error or stop or 'no error line in the log'}",
                    "see the log", first_error or stop))
    return findings


def _compiler_mismatch(built_by: str, using: str, line: str) -> Finding:
    fix = ("install the kernel's compiler (e.g. gcc-12 for Debian 12) and let cc default to it; "
           "modules from another compiler version usually load but may misbehave")
    if not (built_by and using):
        return Finding("compiler_mismatch", WARNING,
                       "the compiler differs from the one that built the kernel", fix, line)
    if built_by.split(" ", 1)[1:] == using.split(" ", 1)[1:]:
        return Finding("compiler_mismatch", WARNING,
                       f"the compiler is called {using.split()[0]!r} here and "
                       f"{built_by.split()[0]!r} in the kernel's config, with the same version "
                       f"text: {using!r} (harmless; kbuild compares the names too)",
                       f"give cc: {built_by.split()[0]} to silence it", line)
    return Finding("compiler_mismatch", WARNING,
                   f"the compiler differs from the one that built the kernel: the kernel was built "
                   f"by {built_by!r}, this build uses {using!r}", fix, line)


def _package_of(tool: str) -> str:
    name = tool.rsplit("/", 1)[-1]
    match = re.match(r"(?:[\w-]+-linux-gnu-)?(gcc|clang)(-\d+)?$", name)
    if match:
        return f"{match.group(1)}{match.group(2) or ''}"
    if name in ("ld", "as") or name.endswith(("-ld", "-as")):
        return "binutils"
    return name


def tail(text: str, count: int) -> list[str]:
    """The last ``count`` lines of a log (all of them when count <= 0 is not asked for)."""
    if count <= 0:
        return []
    return text.splitlines()[-count:]
