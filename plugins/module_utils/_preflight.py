# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Will the running kernel take this module? Asked before anything touches the kernel.

modload's side of the verdict: the best Module.symvers there is (only the lines of the symbols
the module imports are read), the verdict of ``_verdict`` (the one ``modinfo`` gives), and what
``force`` changes in the kernel's checks.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from ._symvers import ExportedSymbol, SymversError, parse_line, parse_symvers, read_text
from ._verdict import verdict as modinfo_verdict
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
    text = read_text(path)
    if text and not re.match(r"0x[0-9a-fA-F]+\s", text):
        raise SymversError(f"{path} is not a Module.symvers file (it does not start with a CRC)")
    if "\t" not in text[:200]:  # an old, space-separated file: parse it all
        return {name: symbol for name, symbol in parse_symvers(text, path).items()
                if name in names}
    table: dict[str, ExportedSymbol] = {}
    for name in names:
        needle = f"\t{name}\t"
        at = text.find(needle)
        while at >= 0:  # the last line of a name wins, as in a full parse
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            symbol = parse_line(text[start:end if end >= 0 else len(text)], path)
            if symbol.name == name:
                table[name] = symbol
            at = text.find(needle, at + 1)
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


def verdict(module: Any, kernel: dict, symvers: dict[str, ExportedSymbol] | None = None,
            loaded: Any = None, symvers_path: str | None = None) -> dict:
    """The modinfo verdict (``_verdict.verdict``, which also refuses a kernel without
    CONFIG_MODULES) of ``module`` against the running kernel, with ``loaded`` a
    ``_sysfs.LoadedModule``."""
    return modinfo_verdict(module, kernel, symvers, loaded.as_dict() if loaded else None,
                           symvers_path)


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
