# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Will this module load into that kernel? The kernel's own rules, applied offline.

``verdict(module, kernel, symvers, loaded)`` follows Linux's load path (6.1
``kernel/module/main.c``, ``version.c``, ``signing.c``) in its order, so the first problem is
the one the kernel would print:

0. A kernel built without ``CONFIG_MODULES`` has no ``init_module`` system call at all: nothing
   loads (``modules_disabled``; insmod: ``Function not implemented``).
1. ``module_sig_check``: an unsigned module is refused when ``sig_enforce`` is set or lockdown is
   on (``signature_required``); on a ``MODULE_SIG`` kernel it otherwise loads with taint E
   (``unsigned``); an unparseable signature is fatal even when not enforced
   (``signature_invalid``). Whether the kernel trusts a signing key cannot be known offline
   (``signature_untrusted``, only when enforcement makes it matter).
2. ``elf_validity_check``: ELF class and ``e_machine`` (``elf_class``, ``machine``).
3. ``check_modstruct_version``: ``check_version(module_layout)``.
4. ``check_modinfo``: ``same_magic(modmagic, vermagic, has_crcs)`` (``vermagic``); the release
   word is skipped when the module has a ``__versions`` section, so a different one only warns
   (``release_differs``); no ``intree`` taints O (``out_of_tree``).
5. ``add_unformed_module``: a module of that name already loaded (``already_loaded`` when it
   is this very build, ``other_version_loaded`` otherwise). A build is known by its srcversion
   and its GNU build id (``identity_matches``): the srcversion is a digest of the sources only,
   so two builds of the same sources (another tree, other CRCs) share it; the build id tells
   them apart.
6. ``simplify_symbols`` -> ``resolve_symbol``: each undefined symbol must be exported
   (``unknown_symbol``; GPL-only exports are invisible to non-GPL modules), its CRC checked by
   ``check_version`` (``no_symbol_version``, ``crc_mismatch``), its namespace imported
   (``namespace_not_imported``).

``check_version`` with no ``__versions`` section at all calls ``try_to_force_load``: it loads
with taint F when ``CONFIG_MODULE_FORCE_LOAD=y`` (``forced_load``), else is refused
(``no_versions_forbidden``). A present but empty section is a plain refusal
(``no symbol version for module_layout``).

A refusal in ``check_modstruct_version``, ``elf_validity_check`` or ``check_modinfo`` is
ENOEXEC (insmod: ``Invalid module format``); a symbol refused by ``check_version`` or the
namespace check in ``resolve_symbol`` is EINVAL, logged again as ``Unknown symbol X (err -22)``
(insmod: ``Invalid parameters``); a symbol not found at all is ENOENT (``Unknown symbol in
module``). These were measured on Debian's 6.1 kernel under qemu (``tests/support/variants.py``).

Each item is ``{"code", "msg", "fix"}`` (plus ``symbols`` where it concerns several): ``msg``
says what the kernel would do or print, ``fix`` what the operator should do.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ._modfile import ModuleFile
from ._symvers import ExportedSymbol
from ._vermagic import parse_vermagic, same_magic

GPL_COMPATIBLE = frozenset(("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                            "Dual MIT/GPL", "Dual MPL/GPL"))
GPL_ONLY_EXPORTS = frozenset(("EXPORT_SYMBOL_GPL", "EXPORT_SYMBOL_GPL_FUTURE",
                              "EXPORT_UNUSED_SYMBOL_GPL"))
LOCKDOWN_ON = frozenset(("integrity", "confidentiality"))
# kernel/module/main.c ignore_undef_symbol(): unreferenced leftovers of some assemblers
IGNORED_UNDEFINED = {"EM_386": {"_GLOBAL_OFFSET_TABLE_"}, "EM_X86_64": {"_GLOBAL_OFFSET_TABLE_"}}
SHOWN = 5  # symbols named in a message before "and N more"

FIX_SYMVERS = ("build against a tree whose Module.symvers matches this kernel (the kernel's "
               "headers package, or vermagic.kmod.symvers), then rebuild the module")


def _item(code: str, msg: str, fix: str, symbols: list[str] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"code": code, "msg": msg, "fix": fix}
    if symbols is not None:
        item["symbols"] = symbols
    return item


def _names(symbols: list[str]) -> str:
    shown = ", ".join(symbols[:SHOWN])
    more = len(symbols) - SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _enabled(options: Mapping[str, Any], name: str) -> bool | None:
    """True/False for a config option; None when the options do not mention it at all."""
    if name not in options:
        return None
    value = options[name]
    return value is True or value in ("y", "m")  # True: a YAML "y" written by hand


def verdict(module: ModuleFile, kernel: Mapping[str, Any],
            symvers: Mapping[str, ExportedSymbol] | None = None,
            loaded: Mapping[str, Any] | None = None,
            symvers_source: str | None = None) -> dict[str, Any]:
    """``{"compatible", "problems", "warnings"}`` for ``module`` against ``kernel``.

    ``kernel`` is a ``kmod_kernel`` facts dict (release, vermagic, elf_machine, elf_class,
    modversions, sig_enforce, lockdown, config.options …; missing keys mean unknown).
    ``symvers`` is the kernel's export table (``_symvers.read_symvers``), ``loaded`` what
    ``/sys/module/<name>`` says (``{"name", "srcversion", "build_id"}``, ``_sysfs.read_loaded``)
    when a module of that name is loaded.
    """
    problems: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    name = module.name or module.fields.get("name") or "module"
    options: Mapping[str, Any] = (kernel.get("config") or {}).get("options") or {}
    kernel_magic = kernel.get("vermagic")
    force_load = _enabled(options, "MODULE_FORCE_LOAD")
    modversions = kernel.get("modversions")
    if modversions is None and kernel_magic:
        modversions = parse_vermagic(kernel_magic).modversions

    _modules_disabled(kernel, options, problems)
    _signature(module, kernel, options, name, problems, warnings)
    _elf(module, kernel, name, problems)
    if modversions:
        _module_layout(module, symvers, force_load, name, problems, warnings)
    _vermagic(module, kernel_magic, force_load, name, problems, warnings)
    if "intree" not in module.fields:
        warnings.append(_item(
            "out_of_tree", f"the kernel logs '{name}: loading out-of-tree module taints kernel.' "
            "and sets taint O", "nothing to do: expected for a module built outside the kernel tree"))
    _loaded(module, loaded, name, warnings)
    if symvers is not None:
        _symbols(module, symvers, options, bool(modversions), name, problems)
    elif modversions and module.has_versions:
        missing = _imports_without_versions(module)
        if missing:
            problems.append(_item(
                "no_symbol_version",
                f"the kernel would refuse it: '{name}: no symbol version for {missing[0]}' "
                f"then '{name}: Unknown symbol {missing[0]} (err -22)' (insmod: Invalid "
                f"parameters); __versions lacks {_names(missing)}",
                FIX_SYMVERS, missing))
    if modversions is None:
        warnings.append(_item(
            "crcs_unchecked", "whether this kernel checks symbol versions (CONFIG_MODVERSIONS) "
            "is unknown, so no symbol CRC was checked",
            "give the kernel's facts (vermagic.kmod.kernel_facts) with its config or vermagic"))
    elif modversions and symvers is None and module.has_versions:
        warnings.append(_item(
            "crcs_unchecked", "no Module.symvers was given, so the module's symbol CRCs were not "
            "compared with the kernel's: a mismatch would refuse it with 'disagrees about version "
            "of symbol'", "pass symvers (the kernel's Module.symvers; vermagic.kmod.symvers "
            "writes one)"))
    return {"compatible": not problems, "problems": problems, "warnings": warnings,
            "symvers": symvers_source}


def _modules_disabled(kernel: Mapping[str, Any], options: Mapping[str, Any],
                      problems: list) -> None:
    """A kernel whose configuration (read from a file) has CONFIG_MODULES not set.

    Only a configuration that was read counts: a hand-written kernel dict without a config path
    says nothing about MODULES by leaving it out or null."""
    config_path = (kernel.get("config") or {}).get("path")
    if config_path and "MODULES" in options and not _enabled(options, "MODULES"):
        problems.append(_item(
            "modules_disabled", f"{kernel.get('release') or 'the kernel'} is built without "
            f"CONFIG_MODULES ({config_path}): it cannot load any module (it has no init_module "
            "system call; insmod: Function not implemented)",
            "build the code into a kernel instead; no module can help here"))


def _signature(module: ModuleFile, kernel: Mapping[str, Any], options: Mapping[str, Any],
               name: str, problems: list, warnings: list) -> None:
    sig = module.signature
    enforce = kernel.get("sig_enforce")
    lockdown = kernel.get("lockdown")
    module_sig = _enabled(options, "MODULE_SIG")
    if module_sig is None and enforce:
        module_sig = True
    if sig is None:
        if enforce:
            problems.append(_item(
                "signature_required", "the kernel would refuse it: module.sig_enforce is on and "
                "the module is unsigned ('Loading of unsigned module is rejected'; insmod: Key "
                "was rejected by service)", "sign the module with a key the kernel trusts "
                "(scripts/sign-file with a key enrolled in the kernel's keyring or MOK)"))
        elif lockdown in LOCKDOWN_ON:
            problems.append(_item(
                "signature_required", f"the kernel would refuse it: lockdown is '{lockdown}' and "
                "the module is unsigned ('Lockdown: insmod: unsigned module loading is "
                "restricted'; insmod: Operation not permitted)", "sign the module with a key the "
                "kernel trusts (enrolled with mokutil, or built into the kernel)"))
        elif module_sig:
            warnings.append(_item(
                "unsigned", f"the kernel logs '{name}: module verification failed: signature "
                "and/or required key missing - tainting kernel' and sets taint E; it loads",
                "sign the module if the kernel's taint matters to you"))
        return
    if sig.error is not None and module_sig:
        problems.append(_item(
            "signature_invalid", f"the kernel would refuse it even without enforcement: {sig.error} "
            "(insmod: Bad message)", "re-sign the module with scripts/sign-file, or strip the "
            "damaged signature"))
        return
    if enforce or lockdown in LOCKDOWN_ON:
        signer = sig.signer or sig.sig_key or "an unnamed key"
        warnings.append(_item(
            "signature_untrusted", f"signature enforcement is on; the module is signed by "
            f"'{signer}', and whether the kernel's keyring trusts that key cannot be known "
            "offline (an untrusted key is refused: Key was rejected by service)",
            "make sure the signing key is enrolled (built in, or mokutil --import)"))


def _elf(module: ModuleFile, kernel: Mapping[str, Any], name: str, problems: list) -> None:
    want_class, want_machine = kernel.get("elf_class"), kernel.get("elf_machine")
    if isinstance(want_class, str) and want_class.isdigit():
        want_class = int(want_class)
    elf = module.elf
    if want_class and elf.elf_class != want_class:
        problems.append(_item(
            "elf_class", f"the kernel would refuse it: the module is a {elf.elf_class}-bit ELF "
            f"object, the kernel is {want_class}-bit ('Invalid architecture in ELF header: "
            f"{elf.machine_code}'; insmod: Invalid module format)",
            f"build the module for the kernel's architecture ({want_machine or want_class}-bit)"))
    if want_machine and elf.machine != want_machine:
        problems.append(_item(
            "machine", f"the kernel would refuse it: the module is for {elf.machine}, the kernel "
            f"for {want_machine} ('Invalid architecture in ELF header: {elf.machine_code}'; "
            "insmod: Invalid module format)",
            f"build the module with the kernel's own toolchain and headers ({want_machine})"))


def _module_layout(module: ModuleFile, symvers: Mapping[str, ExportedSymbol] | None,
                   force_load: bool | None, name: str, problems: list, warnings: list) -> None:
    if not module.has_versions:
        if force_load is False:
            problems.append(_item(
                "no_versions_forbidden", "the kernel would refuse it: the module has no "
                "__versions section and this kernel has no CONFIG_MODULE_FORCE_LOAD "
                "(insmod: Invalid module format)", "rebuild the module with CONFIG_MODVERSIONS "
                "against the kernel's Module.symvers"))
        else:
            warnings.append(_item(
                "forced_load", f"the module has no __versions section: the kernel loads it only "
                f"by try_to_force_load ('{name}: module_layout: kernel tainted.', taint F)"
                + ("" if force_load else "; if CONFIG_MODULE_FORCE_LOAD is not set it is refused"),
                "rebuild the module with CONFIG_MODVERSIONS against the kernel's Module.symvers"))
        return
    versions = {v.symbol: v.crc for v in module.versions}
    if "module_layout" not in versions:
        problems.append(_item(
            "no_symbol_version", f"the kernel would refuse it: '{name}: no symbol version for "
            "module_layout' (insmod: Invalid module format); the module was built without the "
            "kernel's Module.symvers (its __versions is empty or incomplete)",
            FIX_SYMVERS, ["module_layout"]))
        return
    exported = symvers.get("module_layout") if symvers is not None else None
    if exported is not None and exported.crc != versions["module_layout"]:
        problems.append(_item(
            "crc_mismatch", f"the kernel would refuse it: '{name}: disagrees about version of "
            f"symbol module_layout' (module 0x{versions['module_layout']:08x}, kernel "
            f"0x{exported.crc:08x}; insmod: Invalid module format)", FIX_SYMVERS,
            ["module_layout"]))


def _vermagic(module: ModuleFile, kernel_magic: str | None, force_load: bool | None, name: str,
              problems: list, warnings: list) -> None:
    magic = module.vermagic
    if magic is None:
        if force_load is False:
            problems.append(_item(
                "vermagic", "the kernel would refuse it: the module has no vermagic in .modinfo "
                "and this kernel cannot force-load (insmod: Invalid module format)",
                "rebuild the module with kbuild against the kernel's headers"))
        else:
            warnings.append(_item(
                "forced_load", f"the module has no vermagic: the kernel loads it only by "
                f"try_to_force_load ('{name}: bad vermagic: kernel tainted.', taint F)",
                "rebuild the module with kbuild against the kernel's headers"))
        return
    if not kernel_magic:
        warnings.append(_item(
            "vermagic_unchecked", "the kernel's vermagic is unknown, so the module's "
            f"'{magic}' was not compared with it",
            "give the kernel's facts (vermagic.kmod.kernel_facts) so that the vermagic is known"))
        return
    if not same_magic(magic, kernel_magic, module.has_versions):
        problems.append(_item(
            "vermagic", f"the kernel would refuse it, logging: {name}: version magic '{magic}' "
            f"should be '{kernel_magic}' (insmod: Invalid module format)",
            "rebuild against headers configured like this kernel (vermagic.kmod.kernel_facts "
            "shows the expected vermagic; SMP/preempt/mod_unload/modversions must match)"))
        return
    mine, theirs = magic.split(" ", 1)[0], kernel_magic.split(" ", 1)[0]
    if mine != theirs:
        warnings.append(_item(
            "release_differs", f"the module was built for release {mine}, the kernel is "
            f"{theirs}; the kernel ignores the release word because the module carries symbol "
            "CRCs, so it loads, but it was built against another tree",
            f"build against the headers of {theirs} (vermagic.kmod.kernel_release can make a "
            "source tree's release match)"))


def identity_matches(srcversion_a: str | None, build_id_a: str | None,
                     srcversion_b: str | None, build_id_b: str | None) -> bool | None:
    """Whether two builds of a module are the same one: every identity both sides have (GNU
    build id, srcversion) agrees. None when they share none, so nothing can be compared."""
    compared = False
    for a, b in ((build_id_a, build_id_b), (srcversion_a, srcversion_b)):
        if a and b:
            compared = True
            if a != b:
                return False
    return True if compared else None


def _identity(srcversion: Any, build_id: Any) -> str:
    words = [f"srcversion {srcversion}" if srcversion else "no srcversion"]
    if build_id:
        words.append(f"build id {build_id}")
    return ", ".join(words)


def _loaded(module: ModuleFile, loaded: Mapping[str, Any] | None, name: str,
            warnings: list) -> None:
    if not loaded:
        return
    mine = module.fields.get("srcversion")
    mine = mine if isinstance(mine, str) else None
    theirs = loaded.get("srcversion")
    their_build = loaded.get("build_id")
    my_build = module.build_id
    if identity_matches(mine, my_build, theirs, their_build):
        warnings.append(_item(
            "already_loaded", f"this very build of {name} is already loaded "
            f"({_identity(mine, my_build)}): insmod would fail with 'File exists'",
            "nothing to do: this build is already running (vermagic.kmod.modload reports it as "
            "loaded)"))
    else:
        warnings.append(_item(
            "other_version_loaded", f"another build of {name} is loaded "
            f"({_identity(theirs, their_build)}; this file: {_identity(mine, my_build)}): "
            "insmod would fail with 'File exists' unless the loaded one is removed first",
            "replace it (vermagic.kmod.modload with replace: true) or unload it first"))


def _imports_without_versions(module: ModuleFile) -> list[str]:
    versions = {v.symbol for v in module.versions}
    ignored = IGNORED_UNDEFINED.get(module.elf.machine, set())
    return [s.name for s in module.imports
            if not s.weak and s.name not in versions and s.name not in ignored]


def _symbols(module: ModuleFile, symvers: Mapping[str, ExportedSymbol],
             options: Mapping[str, Any], modversions: bool, name: str, problems: list) -> None:
    versions = {v.symbol: v.crc for v in module.versions}
    license_ = module.fields.get("license")
    if isinstance(license_, list):
        license_ = license_[0] if license_ else None
    gpl_ok = license_ in GPL_COMPATIBLE
    imported_ns = module.fields.get("import_ns") or []
    if isinstance(imported_ns, str):
        imported_ns = [imported_ns]
    ignored = IGNORED_UNDEFINED.get(module.elf.machine, set())
    unknown: list[str] = []
    gpl_only: list[str] = []
    no_version: list[str] = []
    mismatch: list[str] = []
    namespace: list[str] = []
    for symbol in module.imports:
        exported = symvers.get(symbol.name)
        if exported is None or (exported.export in GPL_ONLY_EXPORTS and not gpl_ok):
            if symbol.weak or symbol.name in ignored:
                continue
            (unknown if exported is None else gpl_only).append(symbol.name)
            continue
        if modversions and module.has_versions:
            if symbol.name not in versions:
                no_version.append(symbol.name)
                continue
            if versions[symbol.name] != exported.crc:
                mismatch.append(symbol.name)
                continue
        if exported.namespace and exported.namespace not in imported_ns:
            namespace.append(f"{symbol.name} ({exported.namespace})")
    if no_version:
        problems.append(_item(
            "no_symbol_version", f"the kernel would refuse it: '{name}: no symbol version for "
            f"{no_version[0]}' then '{name}: Unknown symbol {no_version[0]} (err -22)' (insmod: "
            f"Invalid parameters); __versions lacks {_names(no_version)}", FIX_SYMVERS,
            no_version))
    if mismatch:
        first = mismatch[0]
        problems.append(_item(
            "crc_mismatch", f"the kernel would refuse it: '{name}: disagrees about version of "
            f"symbol {first}' then '{name}: Unknown symbol {first} (err -22)' (module "
            f"0x{versions[first]:08x}, kernel 0x{symvers[first].crc:08x}; insmod: Invalid "
            f"parameters); CRCs differ for {_names(mismatch)}", FIX_SYMVERS, mismatch))
    if namespace and not _enabled(options, "MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS"):
        symbol, _sep, space = namespace[0].partition(" (")
        problems.append(_item(
            "namespace_not_imported", f"the kernel would refuse it: '{name}: module uses symbol "
            f"({symbol}) from namespace {space.rstrip(')')}, but does not import it.' then "
            f"'{name}: Unknown symbol {symbol} (err -22)' (insmod: Invalid parameters); "
            f"affected: {_names(namespace)}",
            "add MODULE_IMPORT_NS(<namespace>) for each namespace to the module's source",
            [n.split(" ", 1)[0] for n in namespace]))
    if unknown or gpl_only:
        first = (unknown or gpl_only)[0]
        detail = []
        if unknown:
            detail.append(f"not exported by the kernel or any module in Module.symvers: "
                          f"{_names(unknown)}")
        if gpl_only:
            detail.append(f"exported GPL-only while the module's license is "
                          f"{license_ or 'unspecified'}: {_names(gpl_only)}")
        problems.append(_item(
            "unknown_symbol", f"the kernel would refuse it: '{name}: Unknown symbol {first} "
            f"(err -2)' (insmod: Unknown symbol in module); " + "; ".join(detail),
            "build against this kernel's headers (the symbol may not exist in this kernel "
            "version), load the module that exports it first, or use a GPL-compatible "
            "MODULE_LICENSE for GPL-only symbols", unknown + gpl_only))


def item_codes(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """The codes of a problems/warnings list (handy in tests and playbooks)."""
    return [item["code"] for item in items]
