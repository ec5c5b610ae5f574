#!/usr/bin/python
# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kernel_facts
short_description: Facts about a kernel that out-of-tree modules must match
version_added: 0.1.0
description:
  - Gathers what a kernel module must match to load into a kernel, as C(ansible_facts.kmod_kernel)
    - the release, the vermagic string (read from an in-tree module and cross-checked against the
    kernel configuration), the configuration's key options, the compiler that built the kernel,
    whether a build directory (headers) is there and usable, where C(Module.symvers) can come
    from, module compression, signature enforcement, lockdown and taint.
  - By default the running kernel (C(uname -r)); O(release) names another kernel installed on the
    host, O(root) a kernel in an unpacked image or a chroot.
  - Only reads files. Nothing that is absent is an error - the module succeeds on a host without
    C(/lib/modules) or C(/boot) and lists each absence, in words, in C(missing).
  - The vermagic is read from an in-tree module with the collection's module reader, which needs
    C(pyelftools) on the managed host; without it the vermagic is derived from the configuration
    and C(missing) says so.
author:
  - vermagic.kmod contributors (!UNKNOWN)
options:
  release:
    description:
      - The kernel release to describe, as C(uname -r) prints it, for example V(6.1.0-56-amd64).
      - Defaults to the running kernel when O(root=/); under another O(root), to the only kernel
        found there (in C(lib/modules/) or as C(boot/vmlinuz-*), whose release is read from the
        bzImage header). With several kernels there, the module fails and lists them.
    type: str
  root:
    description:
      - The root directory the kernel is installed in - V(/) for this host, or the directory of an
        unpacked image or chroot.
      - Symbolic links are followed inside O(root), as in a chroot; an absolute link such as
        C(lib/modules/<release>/build -> /usr/src/linux-headers-<release>) stays under O(root).
      - Under a root other than V(/) the kernel is never the running one - C(sig_enforce) and
        C(lockdown) then come from its configuration, and C(taint) is null.
    type: path
    default: /
extends_documentation_fragment:
  - vermagic.kmod._attributes
  - vermagic.kmod._attributes.facts
  - vermagic.kmod._attributes.facts_module
notes:
  - Paths in the facts are paths on the managed host; under a O(root) other than V(/) they lie
    inside O(root), with symbolic links resolved there.
seealso:
  - module: vermagic.kmod.modinfo
"""

EXAMPLES = r"""
- name: Facts about the running kernel
  vermagic.kmod.kernel_facts:

- name: Refuse to go on where modules cannot be built
  ansible.builtin.assert:
    that: ansible_facts.kmod_kernel.build_dir.usable
    fail_msg: "{{ ansible_facts.kmod_kernel.build_dir.reason }}"

- name: Facts about a kernel installed but not running
  vermagic.kmod.kernel_facts:
    release: 6.1.0-56-amd64

- name: Facts about the kernel in an unpacked image
  vermagic.kmod.kernel_facts:
    root: /srv/images/debian12
  register: image

- name: Show its vermagic and what could not be found
  ansible.builtin.debug:
    msg: "{{ image.ansible_facts.kmod_kernel.vermagic }} / {{ image.ansible_facts.kmod_kernel.missing }}"
"""

RETURN = r"""
ansible_facts:
  description: The facts.
  returned: always
  type: dict
  contains:
    kmod_kernel:
      description: What a module must match to load into the kernel.
      returned: always
      type: dict
      contains:
        release:
          description: The kernel release (C(uname -r)).
          type: str
          returned: always
          sample: 6.1.0-56-amd64
        version:
          description: The kernel's version string as C(uname -v) prints it - from uname for the
            running kernel, else from the bzImage header of its C(vmlinuz); null when unknown.
          type: str
          returned: always
          sample: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
        running:
          description: Whether this is the running kernel (O(root=/) and the same release).
          type: bool
          returned: always
          sample: false
        root:
          description: The root directory it was looked for under.
          type: str
          returned: always
          sample: /
        arch:
          description: The machine as C(uname -m) prints it (from uname when running, else from
            the configuration or an in-tree module); null when unknown.
          type: str
          returned: always
          sample: x86_64
        elf_machine:
          description: The ELF machine a module for this kernel must have (pyelftools' name);
            from an in-tree module, else from the configuration; null when unknown.
          type: str
          returned: always
          sample: EM_X86_64
        elf_class:
          description: The ELF class (V(32) or V(64)) a module must have; null when unknown.
          type: int
          returned: always
          sample: 64
        vermagic:
          description:
            - The vermagic string a module must carry, byte for byte (the trailing space is part
              of it). From an in-tree module of the release; from the configuration when there
              is no readable module; null when neither is there, or when the kernel was built
              without module support (C(CONFIG_MODULES)).
            - When the module and the configuration disagree the module wins, and C(missing) and
              a warning say so.
          type: str
          returned: always
          sample: "6.1.0-56-amd64 SMP preempt mod_unload modversions "
        vermagic_source:
          description: The in-tree module the vermagic was read from (relative to
            C(/lib/modules/<release>)), V(config) when derived from the configuration, or null.
          type: str
          returned: always
          sample: kernel/lib/crc-itu-t.ko
        vermagic_parsed:
          description: The vermagic split into its parts (raw, release, flags, smp, preempt,
            mod_unload, modversions, arch); null with no vermagic.
          type: dict
          returned: always
          sample: {"raw": "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
                   "release": "6.1.0-56-amd64", "flags": ["SMP", "preempt", "mod_unload", "modversions"],
                   "smp": true, "preempt": "preempt", "mod_unload": true, "modversions": true, "arch": []}
        config:
          description: The kernel configuration used.
          type: dict
          returned: always
          contains:
            path:
              description: The file read - C(/proc/config.gz) (running kernel), else
                C(/boot/config-<release>), C(/lib/modules/<release>/config) or the build
                directory's C(.config), the first there; null when none is.
              type: str
              returned: always
              sample: /boot/config-6.1.0-56-amd64
            options:
              description: Key options without the C(CONFIG_) prefix, valued as in the file
                without quotes; null for "is not set" or absent. Always holds MODULES, MODVERSIONS,
                MODULE_SIG, MODULE_SIG_FORCE, MODULE_FORCE_LOAD, MODULE_UNLOAD, SMP, PREEMPT_BUILD,
                PREEMPT, PREEMPT_RT, LOCALVERSION, CC_VERSION_TEXT, BUILD_SALT, the
                MODULE_COMPRESS and lockdown options and the architecture options, and every
                MODULE_SIG_*, MODULE_COMPRESS_* and LOCK_DOWN_KERNEL_* option the file sets.
                Empty when no configuration was found.
              type: dict
              returned: always
              sample: {"MODVERSIONS": "y", "MODULE_SIG": "y", "MODULE_SIG_FORCE": null,
                       "CC_VERSION_TEXT": "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"}
        modversions:
          description: Whether the kernel checks symbol CRCs (C(CONFIG_MODVERSIONS), else the
            vermagic's C(modversions) flag); null when unknown.
          type: bool
          returned: always
          sample: true
        compiler:
          description: The compiler that built the kernel, from C(CONFIG_CC_VERSION_TEXT); null
            without a configuration or on kernels before 5.8.
          type: dict
          returned: always
          contains:
            text:
              description: C(CONFIG_CC_VERSION_TEXT).
              type: str
              returned: success
              sample: gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0
            name:
              description: The command name (gcc prints the name it was called by; clang is
                named V(clang-<major>)).
              type: str
              returned: success
              sample: gcc-12
            version:
              description: Its version (from C(CONFIG_GCC_VERSION) or C(CONFIG_CLANG_VERSION)).
              type: str
              returned: success
              sample: 12.2.0
            path:
              description: Where a compiler of that name is installed (in PATH for O(root=/),
                else in the usual directories under O(root)); null when it is not. A plain
                C(gcc) or C(clang) under O(root=/) must have the same major version.
              type: str
              returned: success
              sample: /usr/bin/gcc-12
        build_dir:
          description: The build directory (C(/lib/modules/<release>/build), the kernel headers).
          type: dict
          returned: always
          contains:
            path:
              description: Its path with symbolic links resolved (inside O(root)).
              type: str
              returned: always
              sample: /usr/src/linux-headers-6.1.0-56-amd64
            exists:
              description: Whether it is a directory.
              type: bool
              returned: always
            usable:
              description: Whether modules can be built against it - a Makefile (and what it
                includes), C(.config), C(include/generated/autoconf.h), C(include/config/auto.conf),
                a C(utsrelease.h) naming this release, and C(scripts/mod/modpost).
              type: bool
              returned: always
            reason:
              description: Why it is usable or not, in words.
              type: str
              returned: always
        symvers:
          description: Where a C(Module.symvers) for this kernel is available, best first -
            V(headers) (the build directory's) and V(boot) (C(/boot/symvers-<release>.gz), RHEL).
          type: list
          elements: dict
          returned: always
          sample: [{"source": "headers", "path": "/usr/src/linux-headers-6.1.0-56-amd64/Module.symvers"}]
        module_compression:
          description: How the in-tree modules are compressed (V(none), V(gzip), V(xz), V(zstd)) -
            by their file names, else by the configuration.
          type: str
          returned: always
          sample: none
        sig_enforce:
          description: Whether only signed modules load - C(/sys/module/module/parameters/sig_enforce)
            for the running kernel, else C(CONFIG_MODULE_SIG_FORCE) (C(missing) says so); null
            when unknown or without module support.
          type: bool
          returned: always
          sample: false
        lockdown:
          description: The lockdown level (V(none), V(integrity), V(confidentiality)) -
            C(/sys/kernel/security/lockdown) for the running kernel, else the minimum the
            configuration forces (C(missing) says so); null when unknown.
          type: str
          returned: always
          sample: none
        taint:
          description: The running kernel's taint (C(/proc/sys/kernel/tainted)) decoded; null
            for a kernel that is not running.
          type: dict
          returned: always
          sample: {"value": 12288, "flags": "OE", "reasons": ["O: externally-built (out-of-tree) module was loaded",
                   "E: unsigned module was loaded"]}
        missing:
          description: Everything that could not be found or had to be inferred, one sentence each.
          type: list
          elements: str
          returned: always
          sample: ["no /lib/modules: no kernel modules are installed, so no in-tree module gives the vermagic"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from ansible_collections.vermagic.kmod.plugins.module_utils._kernel_facts import KernelFactsError, gather


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "release": {"type": "str"},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    _commands.use(_commands.from_module(module))
    try:
        facts, warnings = gather(root=module.params["root"], release=module.params["release"])
    except KernelFactsError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:  # a file that vanished or became unreadable while being looked at
        module.fail_json(msg=f"reading {exc.filename or 'a file'} failed: {exc.strerror or exc}; "
                         "check that root is readable and run again")
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"kmod_kernel": facts})


if __name__ == "__main__":
    main()
