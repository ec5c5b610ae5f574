#!/usr/bin/python
# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: modload
short_description: Insert, replace (with rollback) or remove a kernel module, safely
version_added: 0.1.0
description:
  - Loads a kernel module into the running kernel from a file (O(path), with kmod's C(insmod)) or
    from the kernel's module tree (O(name), with C(modprobe)), with parameters; replaces a loaded
    build of it with rollback; unloads it; and optionally makes it load at boot.
  - Before it touches the kernel it runs a preflight verdict against the running kernel (ELF class
    and machine, the vermagic rule, C(module_layout) and symbol CRCs against the best
    C(Module.symvers) there is, the signature policy) and refuses a module the kernel would refuse,
    with the reason and the fix. O(force) is the only way past a refusal.
  - Idempotent. A module counts as loaded when C(/sys/module/<name>/srcversion) and the GNU build
    id in C(/sys/module/<name>/notes/.note.gnu.build-id) match the file (each one that both sides
    have) and the parameters under C(/sys/module/<name>/parameters/) have the asked values
    (compared by the parameter's type, for example V(true) and C(Y) for a bool).
  - Replacing needs O(replace). The old build must be unused (no holders, reference count 0) and a
    file of exactly that build must exist to roll back to - the copy this module keeps of every
    module it inserts (under C(/var/lib/vermagic-kmod/modules/<name>/)), or a file under
    C(/lib/modules/<release>) with the same srcversion and build id. The old module is unloaded
    (C(rmmod), never C(-f)), the new one inserted; if the kernel refuses it, the old one is inserted
    again with its old parameters, and the task fails with both stories and RV(action=rolled_back).
  - Returns the kernel log lines written during the operation (read from C(/dev/kmsg), else by
    comparing C(dmesg) before and after) and the kernel's taint before and after.
  - A file that users other than root could have written, or that lies under a directory such
    users can write to, is refused (loading it would hand them the kernel) unless
    O(allow_unsafe_path). What is inserted is a root-only copy of the bytes that were checked.
  - Never reboots, never forces an unload. Concurrent runs on a host wait for each other (an
    exclusive lock on C(/run/vermagic-kmod/modload.lock)).
author:
  - vermagic.kmod contributors (!UNKNOWN)
requirements:
  - kmod (C(insmod), C(rmmod), C(modprobe), C(modinfo), C(depmod)) on the managed host
  - pyelftools on the managed host (Debian - C(python3-pyelftools))
  - root (C(become=true))
options:
  path:
    description:
      - A module file (C(.ko), or C(.ko.gz), C(.ko.xz), C(.ko.zst)) on the managed host, inserted with
        C(insmod). Its module name comes from the file.
      - One of O(path) and O(name) is required.
    type: path
  name:
    description:
      - A module of the running kernel's tree (what C(modprobe <name>) loads, with its dependencies),
        or with O(path), the module name the file must have.
      - With O(state=absent), the module to unload.
    type: str
  params:
    description:
      - The module's parameters. A dictionary of name to value (a string, an integer, a boolean -
        passed as C(1)/C(0) - or a list, joined with commas as array parameters take it), or a string
        in the kernel's syntax (V(greeting="hello world" repeat=2)).
      - Names are letters, digits and underscores, and must be parameters the module declares;
        values cannot contain newlines or double quotes (the kernel has no escape for them).
      - A loaded module whose parameters differ counts as not what is asked (reloading needs
        O(replace)).
    type: raw
  state:
    description:
      - V(present) loads the module, V(absent) unloads it (refused while it is in use).
    type: str
    choices: [present, absent]
    default: present
  replace:
    description:
      - Swap a loaded build of the module (another srcversion or build id, or other parameters) for
        this one, with rollback. Without it such a task fails and touches nothing.
    type: bool
    default: false
  replace_without_rollback:
    description:
      - Replace even when no file of the loaded build can be found to roll back to. If the new
        module is then refused, the module stays unloaded.
    type: bool
    default: false
  persistent:
    description:
      - With O(state=present) - install the module file into C(/lib/modules/<release>/updates/<name>.ko)
        (with O(path)) and run C(depmod -a <release>) when that file changed, write
        C(/etc/modules-load.d/<name>.conf), and C(/etc/modprobe.d/<name>.conf) with
        C(options <name> ...) when there are parameters. Each file is written only when its content
        differs, and is marked as made by this collection.
      - With O(state=absent) - remove each of those files that this collection made (a file of the
        same path made by someone else is left alone and reported in RV(persistence.skipped)).
      - V(false) leaves persistence files as they are.
    type: bool
    default: false
  force:
    description:
      - What to bypass, only when asked, each reported in RV(forced).
      - V(preflight) - insert even though the preflight verdict refuses the module; the kernel
        decides (and a replaced module is rolled back if it refuses).
      - V(vermagic) - the kernel ignores the vermagic string (C(insmod)/C(modprobe) C(--force-vermagic)).
      - V(modversion) - the kernel ignores the symbol versions (C(--force-modversion)); it then
        compares the whole vermagic, release included.
      - V(vermagic) and V(modversion) need C(CONFIG_MODULE_FORCE_LOAD) in the kernel and taint it
        C(F) until the next reboot. kmod before 31 can only force both at once by file (C(insmod -f)).
    type: list
    elements: str
    choices: [preflight, vermagic, modversion]
    default: []
  allow_unsafe_path:
    description:
      - Load O(path) even if users other than root could have written it or a directory above it.
    type: bool
    default: false
  symvers:
    description:
      - The running kernel's C(Module.symvers) to check the module's symbol CRCs against.
      - Default - the headers' (C(/lib/modules/<release>/build/Module.symvers)), else
        C(/boot/symvers-<release>.gz); with none, the CRCs are not compared and the verdict says so
        (warning C(crcs_unchecked)).
    type: path
extends_documentation_fragment:
  - vermagic.kmod._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports the action it would take, with the verdict, and touches nothing (no lock, no copy,
        no files).
  diff_mode:
    support: full
    details:
      - The loaded module (build and parameters) before and after, and each persistence file.
notes:
  - There is no ansible-test integration target for this module - inserting modules needs a
    kernel that can load them, which a test container does not have. The proof runs on real
    Debian kernels under qemu (C(tests/vm/test_modload.py)), through C(ansible-playbook).
  - Modules of the kernel's tree that have no srcversion are still compared by build id.
seealso:
  - module: vermagic.kmod.modinfo
  - module: vermagic.kmod.kernel_facts
"""

EXAMPLES = r"""
- name: Insert a module built for this kernel, with parameters
  become: true
  vermagic.kmod.modload:
    path: /usr/local/lib/modules/hello.ko
    params:
      greeting: hi
      repeat: 2

- name: Swap the loaded build for a new one; the old one comes back if the new one is refused
  become: true
  vermagic.kmod.modload:
    path: /usr/local/lib/modules/hello-2.0.ko
    replace: true
  register: swap

- name: Load at boot too (updates/, depmod, modules-load.d, modprobe.d)
  become: true
  vermagic.kmod.modload:
    path: /usr/local/lib/modules/hello.ko
    params: greeting=hi
    persistent: true

- name: A module of the kernel's own tree
  become: true
  vermagic.kmod.modload:
    name: loop
    params:
      max_loop: 16

- name: Unload it and remove every file that made it persistent
  become: true
  vermagic.kmod.modload:
    name: hello
    state: absent
    persistent: true
"""

RETURN = r"""
action:
  description:
    - What happened to the kernel - V(none), V(inserted), V(replaced), V(removed), or
      V(rolled_back) (the new module was refused and the old one is loaded again). A replace whose
      rollback also failed is V(removed) (nothing of that name is loaded). In check mode, what
      would happen.
  returned: always
  type: str
  sample: inserted
loaded:
  description: The module as the kernel has it after the operation (null when none is loaded).
  returned: always
  type: dict
  contains:
    name:
      description: The module name.
      type: str
    state:
      description: C(live), C(coming), C(going), or C(builtin).
      type: str
    srcversion:
      description: C(/sys/module/<name>/srcversion), or null when the module has none.
      type: str
    build_id:
      description: The GNU build id from C(/sys/module/<name>/notes/.note.gnu.build-id).
      type: str
    version:
      description: Its MODULE_VERSION, or null.
      type: str
    params:
      description: Readable parameters under C(/sys/module/<name>/parameters/) (null for one that cannot be read).
      type: dict
    refcnt:
      description: Reference count.
      type: int
    holders:
      description: Modules that use it.
      type: list
      elements: str
    taint:
      description: The module's taint letters (for example C(OE)).
      type: str
  sample:
    name: hello
    state: live
    srcversion: 6C2C6E3A0F1D8B5E4A7C9D2
    build_id: 5d41402abc4b2a76b9719d911017c592a4e3b1c2
    version: "1.0"
    params: {greeting: hi, repeat: "2"}
    refcnt: 0
    holders: []
    taint: OE
previous:
  description: The module of that name before the operation (same keys as RV(loaded)), or null.
  returned: always
  type: dict
module:
  description: The module file asked for (with O(state=present)) - path, name, srcversion, build_id, vermagic, sha256, size.
  returned: when a module file was read
  type: dict
verdict:
  description:
    - The preflight verdict against the running kernel - C(compatible), C(problems) and
      C(warnings) (each C(code), C(msg), C(fix)), the C(symvers) file used (null when none), and
      with O(force) the problems C(waived) (not checked by the kernel) and C(overridden) (left to
      the kernel).
  returned: with O(state=present) once the module file is read
  type: dict
  sample:
    compatible: false
    problems:
      - code: crc_mismatch
        msg: "hello: disagrees about version of symbol _printk (module 0x92997ed9, kernel 0x92997ed8)"
        fix: rebuild it against the headers or a prepared tree of 6.1.0-56-amd64
    warnings: []
    symvers: /lib/modules/6.1.0-56-amd64/build/Module.symvers
forced:
  description: The O(force) values that applied to this insert (empty when nothing was forced).
  returned: always
  type: list
  elements: str
kernel_log:
  description: The kernel log lines written during the operation, oldest first.
  returned: always
  type: list
  elements: str
  sample: ["hello: hello from version 2.0 (built for 6.1.0-56-amd64, LINUX_VERSION_CODE 393664)"]
taint_before:
  description: The kernel's taint before (C(value), C(flags), C(reasons)); null when not read.
  returned: always
  type: dict
taint_after:
  description: The kernel's taint after, as RV(taint_before).
  returned: always
  type: dict
rollback:
  description:
    - For a replace - the C(file) to roll back to and how it was C(found), the C(params) it would
      be loaded with, whether it was C(attempted), and if so whether it was C(ok) and its
      C(kernel_log).
  returned: when replacing
  type: dict
persistence:
  description: What O(persistent) did (or would do) to the persistence files.
  returned: when O(persistent=true)
  type: dict
  contains:
    changed:
      description: Whether any persistence file was (or would be) written or removed.
      type: bool
    files:
      description: Each file considered - C(path) and C(action) (C(create), C(update), C(remove), C(none)).
      type: list
      elements: dict
    skipped:
      description: Files of those paths not made by this collection, left alone, with the reason.
      type: list
      elements: str
    depmod:
      description: Whether C(depmod -a <release>) ran (or would run) because the module file changed.
      type: bool
notes:
  description: Things worth knowing that are not failures (parameters that cannot be read back, an unreadable kernel log).
  returned: when there are some
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import (
    ELFTOOLS_IMPORT_ERROR, HAS_ELFTOOLS)
from ansible_collections.vermagic.kmod.plugins.module_utils._modload import (
    Host, ModloadError, Request, run)

TOOLS = ("insmod", "rmmod", "modprobe", "depmod", "modinfo")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "name": {"type": "str"},
            "params": {"type": "raw"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "replace": {"type": "bool", "default": False},
            "replace_without_rollback": {"type": "bool", "default": False},
            "persistent": {"type": "bool", "default": False},
            "force": {"type": "list", "elements": "str", "default": [],
                      "choices": ["preflight", "vermagic", "modversion"]},
            "allow_unsafe_path": {"type": "bool", "default": False},
            "symvers": {"type": "path"},
        },
        required_one_of=[("path", "name")],
        supports_check_mode=True,
    )
    _commands.use(_commands.from_module(module))
    if not HAS_ELFTOOLS:
        module.fail_json(msg=missing_required_lib("pyelftools"), exception=ELFTOOLS_IMPORT_ERROR)
    if os.geteuid() != 0 and not module.check_mode:
        module.fail_json(msg="modload loads and unloads kernel modules: it must run as root "
                             "(become: true)")
    tools = {tool: module.get_bin_path(tool, required=True, opt_dirs=["/sbin", "/usr/sbin"])
             for tool in TOOLS}
    tools["dmesg"] = module.get_bin_path("dmesg", opt_dirs=["/bin", "/usr/bin"])

    def runner(argv: list) -> tuple:
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    params = module.params
    request = Request(
        path=params["path"], name=params["name"], params=params["params"], state=params["state"],
        replace=params["replace"], persistent=params["persistent"], force=tuple(params["force"]),
        allow_unsafe_path=params["allow_unsafe_path"],
        replace_without_rollback=params["replace_without_rollback"], symvers=params["symvers"],
        check_mode=module.check_mode)
    host = Host(run=runner, tools=tools, warn=module.warn)
    try:
        result = run(request, host)
    except ModloadError as exc:
        result = dict(exc.result)
        diff = result.pop("diff", [])
        if module._diff and diff:
            result["diff"] = diff
        module.fail_json(msg=exc.msg, **result)
    diff = result.pop("diff", [])
    if module._diff and diff:
        result["diff"] = diff
    kernel_forced = sorted(set(result.get("forced") or []) & {"vermagic", "modversion"})
    if kernel_forced:
        module.warn(f"FORCED {', '.join(kernel_forced)}: the kernel skipped those checks and is "
                    "tainted F (forced module) until the next reboot")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
