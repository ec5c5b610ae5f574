#!/usr/bin/python
# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: modinfo
short_description: Read a kernel module file and tell whether a kernel would load it
version_added: 0.1.0
description:
  - Reads a kernel module file (C(.ko), C(.ko.gz), C(.ko.xz), C(.ko.zst); the compression is
    recognised by its magic bytes) and returns what kmod's C(modinfo) shows (RV(fields), with the
    same values as C(modinfo -F KEY)), the parsed vermagic, the C(__versions) symbol CRCs, the ELF
    class and machine, and the appended signature (signer, key id, hash algorithm).
  - Given a kernel, by its facts (O(kernel), what M(vermagic.kmod.kernel_facts) returns) or by
    O(release) and O(root), it also returns a RV(verdict) that follows the kernel's own load
    checks in their order (Linux 6.1 C(kernel/module)) - module support at all
    (C(CONFIG_MODULES)), signature policy, ELF class and
    machine, C(module_layout), the C(same_magic) rule (the release word is skipped when the
    module carries C(__versions)), a module of that name already loaded, and with a
    C(Module.symvers) every imported symbol's existence, CRC and namespace.
  - Nothing is changed on the host; no module is loaded.
extends_documentation_fragment:
  - vermagic.kmod._attributes
  - vermagic.kmod._attributes.info_module
options:
  path:
    description:
      - The module file.
    type: path
    required: true
  kernel:
    description:
      - The kernel to judge the module against, as the C(kmod_kernel) facts of
        M(vermagic.kmod.kernel_facts) (C(ansible_facts.kmod_kernel)).
      - The verdict uses C(vermagic), C(modversions), C(elf_class), C(elf_machine),
        C(sig_enforce), C(lockdown), C(running), C(symvers), C(config.path) and
        C(config.options) (C(MODULES), C(MODULE_SIG), C(MODULE_FORCE_LOAD),
        C(MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS)). A key
        that is missing or null means unknown; what cannot be checked is said in the warnings.
      - Mutually exclusive with O(release) and O(root).
    type: dict
  release:
    description:
      - The release of the kernel to judge the module against, e.g. C(6.1.0-56-amd64); its facts
        are gathered as M(vermagic.kmod.kernel_facts) does (the vermagic of an in-tree module of
        that release, its config, its Module.symvers sources).
      - Default when only O(root) is given, the only kernel installed under O(root), or with
        O(root=/) the running one.
    type: str
  root:
    description:
      - The root of the system whose kernel is meant (an unpacked image or a chroot); with
        O(release).
    type: path
  symvers:
    description:
      - The kernel's C(Module.symvers) (plain or gzip-compressed), to compare the module's symbol
        CRCs with the kernel's and to find symbols the kernel does not export.
      - Default, the first C(symvers) source of the kernel's facts that exists.
    type: path
notes:
  - The ELF fast path is plain Python; pyelftools reads the symbol table (for the verdict's symbol
    checks). A full C(/lib/modules) of a distribution kernel reads in about the time kmod's
    C(modinfo) needs for it (see C(bench/README.md)).
  - A module for another ELF class or machine than the kernel is a wrong input rather than a
    verdict, so the task fails; the result still carries the module's data and the verdict.
  - A module with no C(vermagic) in C(.modinfo) is not something kbuild produces; the task fails.
  - Whether the kernel trusts the key that signed the module cannot be known offline; with
    signature enforcement on, the verdict says so as a warning.
  - The loaded-module check reads C(/sys/module/<name>) only when the kernel is the running one.
requirements:
  - pyelftools (Debian C(python3-pyelftools)) on the host that runs the module.
  - For C(.ko.zst), the C(zstandard) Python package or the C(zstd) program.
seealso:
  - module: vermagic.kmod.kernel_facts
  - module: vermagic.kmod.symvers
author:
  - vermagic.kmod contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: What is in this module file
  vermagic.kmod.modinfo:
    path: /lib/modules/6.1.0-56-amd64/kernel/fs/fat/vfat.ko
  register: vfat

- name: Show its vermagic and signer
  ansible.builtin.debug:
    msg: "{{ vfat.fields.vermagic }} signed by {{ vfat.signature.signer | default('nobody') }}"

- name: Gather the running kernel's facts
  vermagic.kmod.kernel_facts:

- name: Will it load into the running kernel?
  vermagic.kmod.modinfo:
    path: /root/hello/hello.ko
    kernel: "{{ ansible_facts.kmod_kernel }}"
  register: hello

- name: Stop here if not
  ansible.builtin.assert:
    that: hello.verdict.compatible
    fail_msg: "{{ hello.verdict.problems | map(attribute='msg') | join('; ') }}"

- name: Judge against a kernel unpacked from its package, with its Module.symvers
  vermagic.kmod.modinfo:
    path: /srv/build/hello.ko
    root: /srv/images/debian-6.1.0-56
    release: 6.1.0-56-amd64
    symvers: /srv/images/debian-6.1.0-56/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers
"""

RETURN = r"""
path:
  description: The file read.
  returned: always
  type: str
  sample: /lib/modules/6.1.0-56-amd64/kernel/fs/fat/vfat.ko
name:
  description:
    - The module's name as the kernel will know it (from C(struct module) in
      C(.gnu.linkonce.this_module); the C(name) field when that cannot be read).
  returned: success
  type: str
  sample: vfat
compression:
  description: How the file is compressed (C(none), C(gzip), C(xz), C(zstd)).
  returned: success
  type: str
  sample: none
fields:
  description:
    - Every C(.modinfo) key as kmod's C(modinfo -F KEY) prints it, plus C(sig_id), C(signer),
      C(sig_key), C(sig_hashalgo) and C(signature) when kmod would print them.
    - C(alias), C(author), C(firmware), C(import_ns), C(parm), C(parmtype), C(softdep) and
      C(weakdep) are always lists; another key is a string, or a list when the file repeats it.
    - "C(parm) combines the C(parm) and C(parmtype) entries as C(modinfo -F parm) does
      (C(name:description (type)), C(name: (type)) without a description), in kmod's order."
    - C(depends) is one comma-separated string, as in the file.
  returned: success
  type: dict
  sample:
    alias: [fs-vfat]
    author: [Gordon Chaffee]
    depends: fat
    description: VFAT filesystem support
    intree: "Y"
    license: GPL
    name: vfat
    retpoline: "Y"
    sig_hashalgo: sha256
    sig_id: "PKCS#7"
    sig_key: "66:F5:4E:15:66:A0:43:CC:30:30:42:0E:18:1C:F8:50:FB:9F:42:AC"
    signer: Build time autogenerated kernel key
    vermagic: "6.1.0-56-amd64 SMP preempt mod_unload modversions "
vermagic:
  description:
    - The vermagic string parsed; C(raw) keeps it byte for byte (the trailing space is real).
    - C(arch) holds the words after the generic flags.
  returned: success
  type: dict
  sample:
    raw: "6.1.0-56-amd64 SMP preempt mod_unload modversions "
    release: 6.1.0-56-amd64
    flags: [SMP, preempt, mod_unload, modversions]
    smp: true
    preempt: preempt
    mod_unload: true
    modversions: true
    arch: []
build_id:
  description:
    - The GNU build id of the module (the descriptor of its C(.note.gnu.build-id) note, hex),
      null when it has none. kbuild links every module with one; it tells apart two builds of
      the same sources, which share their C(srcversion).
    - Once loaded, the kernel shows it in C(/sys/module/<name>/notes/.note.gnu.build-id).
  returned: success
  type: str
  sample: 3f2b6c1e0a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b
has_versions:
  description:
    - Whether the module has a C(__versions) section (even an empty one), which makes the kernel
      skip the release word of the vermagic and check symbol CRCs.
  returned: success
  type: bool
  sample: true
versions:
  description:
    - The C(__versions) entries (and those of the extended version sections of Linux 6.15+,
      C(extended=true)), in file order. C(crc) is hexadecimal as in C(Module.symvers).
  returned: success
  type: list
  elements: dict
  sample:
    - {symbol: module_layout, crc: "0x0b4c6ac4", extended: false}
    - {symbol: _printk, crc: "0x92997ed8", extended: false}
elf:
  description: ELF C(class) (32, 64), C(byte_order), C(machine) (as pyelftools names it),
    C(machine_code) and C(type).
  returned: success
  type: dict
  sample: {class: 64, byte_order: little, machine: EM_X86_64, machine_code: 62, type: ET_REL}
signature:
  description:
    - The appended signature, null when the file is unsigned.
    - C(sig_id), C(signer), C(sig_key), C(sig_hashalgo) as kmod prints them; C(key_id_source)
      says whether the key id is the issuer's serial number (PKCS#7 as C(sign-file) writes it),
      a subjectKeyIdentifier, or the raw key id of an old-style signature; C(module_signature)
      is the trailer's C(struct module_signature); C(error) says why a PKCS#7 blob could not be
      read (kmod then prints no signature keys).
  returned: success
  type: dict
  sample:
    sig_id: "PKCS#7"
    signer: Build time autogenerated kernel key
    sig_key: "66:F5:4E:15:66:A0:43:CC:30:30:42:0E:18:1C:F8:50:FB:9F:42:AC"
    sig_hashalgo: sha256
    key_id_source: serial
    algo: null
    signature_length: 512
    module_signature: {algo: 0, hash: 0, id_type: 2, signer_len: 0, key_id_len: 0, sig_len: 681}
    error: null
kernel_release:
  description: The release of the kernel the verdict is about.
  returned: when a kernel is given
  type: str
  sample: 6.1.0-56-amd64
loaded:
  description:
    - The loaded module of the same name (C(name), C(srcversion), C(build_id) from
      C(/sys/module/<name>)), null when none is loaded.
    - The verdict says C(already_loaded) when it is this very build (srcversion and build id
      agree, as far as both sides have them), C(other_version_loaded) otherwise.
  returned: when the kernel is the running one
  type: dict
  sample: {name: hello, srcversion: 6B2AF7C8D0F1E2A3B4C5D6E,
           build_id: 3f2b6c1e0a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b}
verdict:
  description:
    - C(compatible) is true when the kernel would load the module (possibly with a taint).
    - C(problems) are what makes the kernel refuse it, in the kernel's order, so the first is
      what it would print; C(warnings) are what it would log or taint, or what could not be
      checked. Each item has a stable C(code), C(msg) (what the kernel would do or print) and
      C(fix) (what to do); C(symbols) lists the symbols when an item concerns several.
    - Problem codes C(modules_disabled) (the kernel's configuration has no C(CONFIG_MODULES),
      so it loads no module at all), C(signature_required), C(signature_invalid), C(elf_class),
      C(machine), C(no_symbol_version), C(crc_mismatch), C(no_versions_forbidden), C(vermagic),
      C(unknown_symbol), C(namespace_not_imported). Warning codes C(unsigned),
      C(signature_untrusted), C(forced_load), C(release_differs), C(out_of_tree),
      C(already_loaded), C(other_version_loaded), C(crcs_unchecked), C(vermagic_unchecked).
    - C(symvers) is the C(Module.symvers) used for the symbol checks, null when none.
  returned: when a kernel is given
  type: dict
  sample:
    compatible: false
    problems:
      - code: crc_mismatch
        msg: >-
          the kernel would refuse it: 'hello: disagrees about version of symbol _printk'
          then 'hello: Unknown symbol _printk (err -22)' (module 0x92997ed9, kernel
          0x92997ed8; insmod: Invalid parameters); CRCs differ for _printk
        fix: >-
          build against a tree whose Module.symvers matches this kernel (the kernel's headers
          package, or vermagic.kmod.symvers), then rebuild the module
        symbols: [_printk]
    warnings:
      - code: out_of_tree
        msg: "the kernel logs 'hello: loading out-of-tree module taints kernel.' and sets taint O"
        fix: "nothing to do: expected for a module built outside the kernel tree"
    symvers: /usr/src/linux-headers-6.1.0-56-amd64/Module.symvers
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import (
    ELFTOOLS_IMPORT_ERROR, HAS_ELFTOOLS, ModuleFileError, read_module)
from ansible_collections.vermagic.kmod.plugins.module_utils._verdict import verdict
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers import (
    SymversError, read_symvers)
from ansible_collections.vermagic.kmod.plugins.module_utils._sysfs import SYS_MODULE, read_loaded
from ansible_collections.vermagic.kmod.plugins.module_utils._vermagic import parse_vermagic

WRONG_INPUT = ("elf_class", "machine")


def _kernel(module: AnsibleModule) -> dict | None:
    params = module.params
    if params["kernel"] is not None:
        return params["kernel"]
    if params["release"] is None and params["root"] is None:
        return None
    from ansible_collections.vermagic.kmod.plugins.module_utils._kernel_facts import (
        KernelFactsError, gather)
    try:
        facts, _warnings = gather(params["root"] or "/", params["release"])
    except KernelFactsError as exc:
        module.fail_json(msg=f"cannot gather the kernel's facts: {exc}", path=params["path"])
    return facts


def _symvers(module: AnsibleModule, kernel: dict) -> tuple[dict | None, str | None]:
    path = module.params["symvers"]
    if path is None:
        for source in kernel.get("symvers") or []:
            candidate = source.get("path") if isinstance(source, dict) else None
            if candidate and os.path.isfile(candidate):
                path = candidate
                break
    if path is None:
        return None, None
    try:
        return read_symvers(path), path
    except SymversError as exc:
        module.fail_json(msg=f"cannot use the symvers file: {exc}", path=module.params["path"])
    return None, None


def _loaded(name: str | None, sys_module: str = SYS_MODULE) -> dict | None:
    """The loaded module of that name, a built-in one not counted (it has no ``initstate``)."""
    if not name:
        return None
    loaded = read_loaded(name, sys_module)
    if loaded is None or loaded.builtin:
        return None
    return {"name": loaded.name, "srcversion": loaded.srcversion, "build_id": loaded.build_id}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "kernel": {"type": "dict"},
            "release": {"type": "str"},
            "root": {"type": "path"},
            "symvers": {"type": "path"},
        },
        mutually_exclusive=[("kernel", "release"), ("kernel", "root")],
        supports_check_mode=True,
    )
    _commands.use(_commands.from_module(module))
    if not HAS_ELFTOOLS:
        module.fail_json(msg=missing_required_lib("pyelftools"), exception=ELFTOOLS_IMPORT_ERROR)
    path = module.params["path"]
    try:
        modfile = read_module(path)
        result = modfile.as_dict()
    except ModuleFileError as exc:
        module.fail_json(msg=str(exc), path=path)
    magic = modfile.vermagic
    if magic is None or not magic.strip():
        module.fail_json(
            msg=f"{path} has no vermagic in its .modinfo: kbuild always writes one, so the file "
                "was not built by kbuild or was edited; the kernel refuses it unless forced "
                "('bad vermagic'). Rebuild it with kbuild against the kernel's headers",
            **result)
    result["vermagic"] = parse_vermagic(magic).as_dict()

    kernel = _kernel(module)
    if kernel is not None:
        table, source = _symvers(module, kernel)
        loaded = _loaded(modfile.name) if kernel.get("running") else None
        try:
            result["verdict"] = verdict(modfile, kernel, table, loaded, source)
        except ModuleFileError as exc:
            module.fail_json(msg=str(exc), **result)
        result["kernel_release"] = kernel.get("release")
        if kernel.get("running"):
            result["loaded"] = loaded
        wrong = [p for p in result["verdict"]["problems"] if p["code"] in WRONG_INPUT]
        if wrong:
            module.fail_json(msg=f"{path} is not a module for this kernel: {wrong[0]['msg']}; "
                                 f"{wrong[0]['fix']}", **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
