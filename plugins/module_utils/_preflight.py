# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Will the running kernel take this module? Asked before anything touches the kernel.

This is modload's side of the verdict: the running kernel's facts (``_kernel_facts.gather``),
the best Module.symvers there is, the module file (``_modfile``), and what ``force`` changes in
the kernel's checks.

SEAM: ``verdict()`` uses ``_verdict.py`` (branch ``reader``, the modinfo verdict) when that file
is part of the collection; until then ``interim_verdict()`` below applies the same kernel rules
with the codes and shape of SCHEMA.md (``{compatible, problems, warnings}``, each ``{code, msg,
fix}``). When ``_verdict`` lands, ``verdict()`` is the one place to adapt and
``interim_verdict()`` goes.
"""

from __future__ import annotations

import gzip
import re
from typing import Any, Iterable

from ._symvers import ExportedSymbol, SymversError, parse_line, parse_symvers
from ._vermagic import same_magic

# What each ``force`` value makes the kernel skip, as problem codes of the verdict.
FORCE_CHOICES = ("preflight", "vermagic", "modversion")
WAIVED_BY = {
    "vermagic": frozenset({"vermagic"}),
    "modversion": frozenset({"no_symbol_version", "crc_mismatch", "no_versions_forbidden"}),
}


def _item(code: str, msg: str, fix: str) -> dict:
    return {"code": code, "msg": msg, "fix": fix}


def lookup_symbols(path: str, names: Iterable[str]) -> dict[str, ExportedSymbol]:
    """The lines of ``names`` in the Module.symvers at ``path`` (plain or gzip), found by search
    rather than by parsing all ~25,000 lines: a module imports a handful of symbols."""
    names = set(names)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except IsADirectoryError:
        raise SymversError(f"{path} is a directory, not a Module.symvers file") from None
    except OSError as exc:
        raise SymversError(f"cannot read {path}: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SymversError(f"{path} looks gzip-compressed but does not decompress: {exc}") from None
    if data and not re.match(rb"0x[0-9a-fA-F]+\s", data):
        raise SymversError(f"{path} is not a Module.symvers file (it does not start with a CRC)")
    if b"\t" not in data[:200]:  # an old, space-separated file: parse it all
        return {name: symbol for name, symbol in parse_symvers(data.decode("ascii", "replace"),
                                                               path).items() if name in names}
    table: dict[str, ExportedSymbol] = {}
    for name in names:
        needle = b"\t" + name.encode() + b"\t"
        at = data.find(needle)
        while at >= 0:  # the last line of a name wins, as in a full parse
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            line = data[start:end if end >= 0 else len(data)].decode("ascii", "replace")
            symbol = parse_line(line, path)
            if symbol.name == name:
                table[name] = symbol
            at = data.find(needle, at + 1)
    return table


def load_symvers(kernel: dict, names: Iterable[str], explicit: str | None = None
                 ) -> tuple[dict[str, ExportedSymbol] | None, str | None, list[str]]:
    """``(table of names, path, notes)`` from ``explicit`` if given (an error if unreadable),
    else from the best source in ``kernel["symvers"]`` that reads (notes say which did not)."""
    names = set(names)
    notes: list[str] = []
    if explicit:
        return lookup_symbols(explicit, names), explicit, notes
    for source in kernel.get("symvers") or []:
        path = source.get("path")
        try:
            return lookup_symbols(path, names), path, notes
        except SymversError as exc:
            notes.append(str(exc))
    return None, None, notes


def wanted_symbols(module: Any) -> set[str]:
    """What the kernel checks a CRC for: module_layout and every symbol the module imports."""
    return {"module_layout"} | {symbol.name for symbol in module.imports}


def _loaded_identity(loaded: Any) -> tuple[str | None, str | None]:
    if loaded is None:
        return None, None
    return getattr(loaded, "srcversion", None), getattr(loaded, "build_id", None)


def interim_verdict(module: Any, kernel: dict, symvers: dict[str, ExportedSymbol] | None = None,
                    loaded: Any = None, module_build_id: str | None = None) -> dict:
    """The kernel's load-time checks (kernel/module/main.c, version.c, signing.c in 6.1) applied
    to ``module`` (a ``_modfile.ModuleFile``) and ``kernel`` (``kmod_kernel`` facts)."""
    problems: list[dict] = []
    warnings: list[dict] = []
    name = module.name or "the module"
    release = kernel.get("release") or "the running kernel"
    options = (kernel.get("config") or {}).get("options") or {}
    rebuild = (f"rebuild it against the headers or a prepared tree of {release} "
               "(vermagic.kmod.deploy does this)")

    config_path = (kernel.get("config") or {}).get("path")
    if config_path and options.get("MODULES") is None:
        problems.append(_item("modules_disabled", f"{release} is built without CONFIG_MODULES "
                              f"({config_path}): it cannot load any module",
                              "build the code into a kernel instead; a module cannot help here"))
    k_class, k_machine = kernel.get("elf_class"), kernel.get("elf_machine")
    if k_class and module.elf.elf_class != k_class:
        problems.append(_item("elf_class", f"{name} is a {module.elf.elf_class}-bit ELF object; "
                              f"{release} loads {k_class}-bit modules", rebuild))
    if k_machine and module.elf.machine != k_machine:
        problems.append(_item("machine", f"{name} is built for {module.elf.machine}; {release} "
                              f"runs on {k_machine}", rebuild + " with the right cross compiler"))

    k_magic, m_magic = kernel.get("vermagic"), module.vermagic
    if m_magic is None:
        warnings.append(_item("forced_load", f"{name} has no vermagic: the kernel loads it only "
                              "by forcing (taint F)", rebuild))
    elif k_magic is None:
        warnings.append(_item("vermagic_unchecked", f"the vermagic of {release} is unknown (no "
                              "in-tree module could be read): it was not compared", "install the "
                              "kernel's modules (/lib/modules/<release>/kernel)"))
    elif not same_magic(m_magic, k_magic, module.has_versions):
        problems.append(_item("vermagic", f"{name}: version magic '{m_magic}' should be "
                              f"'{k_magic}'", rebuild))
    elif module.has_versions and m_magic.split(" ", 1)[0] != k_magic.split(" ", 1)[0]:
        warnings.append(_item("release_differs", f"{name} was built for release "
                              f"{m_magic.split(' ', 1)[0]}, the kernel is {release}; it loads "
                              "because its symbol CRCs are checked instead", "none needed"))

    if kernel.get("modversions"):
        force_load = options.get("MODULE_FORCE_LOAD") == "y"
        if not module.has_versions:
            if force_load:
                warnings.append(_item("forced_load", f"{name} has no __versions section: the "
                                      "kernel loads it only by forcing each symbol (taint F)",
                                      rebuild + " with its Module.symvers"))
            else:
                problems.append(_item("no_versions_forbidden", f"{name} has no __versions section "
                                      f"and {release} has no CONFIG_MODULE_FORCE_LOAD",
                                      rebuild + " with its Module.symvers"))
        else:
            crcs = {entry.symbol: entry.crc for entry in module.versions}
            if "module_layout" not in crcs:
                problems.append(_item("no_symbol_version", f"{name}: no symbol version for "
                                      "module_layout (built without the kernel's Module.symvers)",
                                      rebuild + " with its Module.symvers"))
            if symvers is None:
                warnings.append(_item("crcs_unchecked", "no Module.symvers of the running kernel "
                                      "was found: symbol CRCs were not compared",
                                      "install the kernel's headers, or give symvers (the "
                                      "vermagic.kmod.symvers module can recover one)"))
            else:
                wanted = [("module_layout", False)] + [(s.name, s.weak) for s in module.imports]
                for symbol, weak in wanted:
                    exported = symvers.get(symbol)
                    if exported is None:
                        if not weak and symbol != "module_layout":
                            problems.append(_item("unknown_symbol", f"{name} needs {symbol}, which "
                                                  f"neither {release} nor its modules export",
                                                  "load the module that exports it first, or "
                                                  "give its Module.symvers"))
                        continue
                    if symbol not in crcs:
                        if symbol != "module_layout":
                            problems.append(_item("no_symbol_version", f"{name}: no symbol "
                                                  f"version for {symbol}", rebuild))
                    elif crcs[symbol] & 0xFFFFFFFF != exported.crc:
                        problems.append(_item("crc_mismatch", f"{name}: disagrees about version "
                                              f"of symbol {symbol} (module 0x{crcs[symbol]:08x}, "
                                              f"kernel 0x{exported.crc:08x})", rebuild))

    signed = module.signature is not None
    locked = kernel.get("lockdown") in ("integrity", "confidentiality")
    enforced = kernel.get("sig_enforce") or locked
    if enforced and not signed:
        why = ("sig_enforce is on" if kernel.get("sig_enforce")
               else f"the kernel is locked down ({kernel.get('lockdown')})")
        problems.append(_item("signature_required", f"{name} is unsigned and {why}: the kernel "
                              "answers 'Key was rejected by service'",
                              "sign it with a key the kernel trusts (MOK or the built-in keyring)"))
    elif enforced:
        warnings.append(_item("signature_untrusted", f"{name} is signed; whether the kernel trusts "
                              "the key cannot be known before loading", "none, or enroll the key"))
    elif not signed and options.get("MODULE_SIG") == "y":
        warnings.append(_item("unsigned", f"{name} is unsigned: it loads and taints the kernel E",
                              "sign it to avoid the taint"))
    if module.fields.get("intree") != "Y":
        warnings.append(_item("out_of_tree", f"{name} is built out of tree: it taints the "
                              "kernel O", "none needed"))

    srcversion, build_id = _loaded_identity(loaded)
    if loaded is not None and getattr(loaded, "state", "") != "builtin":
        same = identity_matches(module.fields.get("srcversion"), module_build_id,
                                srcversion, build_id)
        if same:
            warnings.append(_item("already_loaded", f"{name} is loaded already (the same build)",
                                  "none needed"))
        else:
            warnings.append(_item("other_version_loaded", f"another build of {name} is loaded "
                                  f"(srcversion {srcversion or 'none'}): inserting fails with "
                                  "'File exists' unless it is replaced", "set replace: true"))
    return {"compatible": not problems, "problems": problems, "warnings": warnings}


def identity_matches(srcversion_a: str | None, build_id_a: str | None,
                     srcversion_b: str | None, build_id_b: str | None) -> bool | None:
    """Whether two builds are the same: every identity both sides have agrees; None when they
    share none (nothing can be compared)."""
    compared = False
    for a, b in ((build_id_a, build_id_b), (srcversion_a, srcversion_b)):
        if a and b:
            compared = True
            if a != b:
                return False
    return True if compared else None


def verdict(module: Any, kernel: dict, symvers: dict[str, ExportedSymbol] | None = None,
            loaded: Any = None, module_build_id: str | None = None) -> dict:
    """SEAM: the verdict of ``_verdict`` once it is part of the collection; the interim one now."""
    return interim_verdict(module, kernel, symvers, loaded, module_build_id)


def apply_force(result: dict, force: Iterable[str], kernel: dict, module: Any) -> dict:
    """What is left of the verdict's refusal once ``force`` is applied.

    Returns ``{"refused": [...], "waived": [...], "overridden": [...], "notes": [...]}``:
    ``waived`` are problems the kernel will not check because of ``vermagic``/``modversion``,
    ``overridden`` are problems ``preflight`` lets through to the kernel (which then decides),
    ``refused`` is what still stops the load. Forcing has its own conditions (the kernel needs
    CONFIG_MODULE_FORCE_LOAD; with ``modversion`` alone the whole vermagic is compared).
    """
    force = set(force)
    name = module.name or "the module"
    options = (kernel.get("config") or {}).get("options") or {}
    problems = list(result.get("problems") or [])
    waived: list[dict] = []
    notes: list[str] = []
    kernel_force = force & {"vermagic", "modversion"}
    if kernel_force:
        if options.get("MODULE_FORCE_LOAD") != "y":
            problems.append(_item("force_unsupported", f"force {sorted(kernel_force)} needs "
                                  "CONFIG_MODULE_FORCE_LOAD, which the running kernel does not "
                                  "have (or its configuration cannot be read): a forced load "
                                  "fails with 'Exec format error'", "rebuild the module instead"))
        notes.append(f"forcing {', '.join(sorted(kernel_force))}: the kernel logs '{name}: "
                     "…: kernel tainted.' and taints F (forced module) until the next reboot")
        if module.signature is not None:
            notes.append(f"{name} is signed: a forced load changes the image the signature "
                         "covers, so it counts as unsigned (taint E) or, with kmod versions that "
                         "load from memory, is refused for a broken signature")
    if "modversion" in force and "vermagic" not in force:
        k_magic, m_magic = kernel.get("vermagic"), module.vermagic
        if k_magic and m_magic and module.has_versions and m_magic != k_magic \
                and same_magic(m_magic, k_magic, True):
            problems.append(_item("vermagic", f"with force modversion the kernel ignores the "
                                  f"__versions section and so compares the whole vermagic: "
                                  f"'{m_magic}' should be '{k_magic}'",
                                  "add vermagic to force, or rebuild the module"))
    for force_name, codes in WAIVED_BY.items():
        if force_name in force:
            waived.extend(p for p in problems if p["code"] in codes)
            problems = [p for p in problems if p["code"] not in codes]
    overridden: list[dict] = []
    if "preflight" in force:
        overridden, problems = problems, []
    return {"refused": problems, "waived": waived, "overridden": overridden, "notes": notes}
