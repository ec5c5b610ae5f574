#!/usr/bin/python
# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: symvers
short_description: Write a kernel's Module.symvers from its headers, /boot, or the kernel itself
version_added: 0.1.0
description:
  - Writes the C(Module.symvers) of a kernel, the table of exported symbols and their CRCs that
    C(modpost) needs so that an out-of-tree module built against a prepared source tree carries
    the CRCs of the running kernel (without them a CONFIG_MODVERSIONS kernel refuses the module
    with C(no symbol version for module_layout)).
  - Sources, best first. C(headers) is the headers package's copy,
    C(<root>/lib/modules/<release>/build/Module.symvers) (the absolute C(build) link is followed
    inside O(root)). C(boot) is C(<root>/boot/symvers-<release>.gz) of the RHEL family.
    C(recover) rebuilds the table from the kernel itself, for when the headers package is gone
    from the mirrors.
  - Recovery extracts vmlinux from C(/boot/vmlinuz-<release>) in Python (gzip, xz, lzma, bzip2
    and zstd payloads; lz4 and lzo through the C(lz4) and C(lzop) programs), reads its export
    tables C(__ksymtab), C(__ksymtab_gpl), the parallel C(__kcrctab*) and C(__ksymtab_strings)
    (present even in a stripped image), and adds every in-tree module's own exports in the order
    of C(modules.order). On Debian 12's kernel this gives the same lines as the headers package's
    file; the modules' lines come in modpost's order, vmlinux's in the order of its own tables
    (modpost's order for them is not kept in a kernel image).
  - Every in-tree module's C(__versions) is checked against the table, whatever the source. A CRC
    that disagrees with the exporter's, or a symbol exported twice with different CRCs, is
    reported in RV(conflicts) and as a warning; the exporter's own CRC is written, since it is
    the one the kernel checks modules against.
  - The file is written only when its symbols change (a file with the same lines in another order
    is left as it is), atomically, under the lock of the directory it is written into (the tree's
    lock, which M(vermagic.kmod.kbuild) and M(vermagic.kmod.kernel_release) take too, so no
    prepare or build of that tree runs meanwhile).
  - A stamp of the inputs is kept next to O(dest), in C(.vermagic-kmod.<dest name>.fingerprint).
    It holds the source used and what C(stat) says of the file it reads (size, mtime, inode), the
    same of every in-tree module, the release and root, the SHA-256 of O(dest) as written, and
    the result. A rerun whose inputs and O(dest) agree with the stamp reads no kernel image and
    no module; it returns the recorded result with RV(cached=true). Anything else (O(dest)
    edited or removed, the kernel package or its headers updated, a module added or removed,
    another source available to O(source=auto)) is a full run, with the reasons in RV(reasons).
extends_documentation_fragment:
  - vermagic.kmod._attributes
attributes:
  check_mode:
    support: full
    details:
      - The source is read (and a recovery done) in check mode too, so RV(symbols),
        RV(conflicts) and the change are reported; nothing is written, not even the stamp. A
        stamp that agrees answers in check mode as it does otherwise.
  diff_mode:
    support: full
    details:
      - The diff shows the symbol lines that go and come (at most 50 of each), not the whole
        file, which is about 1.7 MB on a distribution kernel.
options:
  dest:
    description:
      - The C(Module.symvers) to write, usually the top of a prepared kernel source tree.
      - When it is an existing directory, C(Module.symvers) is written inside it.
      - Its directory must exist.
    type: path
    required: true
  release:
    description:
      - The kernel release, as C(uname -r) prints it, e.g. C(6.1.0-56-amd64).
      - Default, with O(root=/), the running kernel's; with another O(root), the only kernel
        under it (in C(lib/modules) or C(boot/vmlinuz-*)); the module fails when there are
        several.
    type: str
  root:
    description:
      - The root of the system whose kernel is meant, e.g. an unpacked image or a chroot.
        Paths such as C(/boot) and C(/lib/modules) are looked up under it.
    type: path
    default: /
  source:
    description:
      - Where the table comes from. C(auto) takes the first of C(headers), C(boot) and
        C(recover) that is available and says which in RV(source).
      - A source asked for by name that is missing fails with what is missing and what to do.
    type: str
    choices: [auto, headers, boot, recover]
    default: auto
  lock_timeout:
    description:
      - How long to wait, in seconds, for another run that holds the lock of the directory of
        O(dest) (a prepare or build of that tree, or another write).
    type: int
    default: 600
notes:
  - Recovery needs no pyelftools and no kernel tools; C(zstd) payloads need the C(zstandard)
    Python package or the C(zstd) program.
  - The lock is the tree's lock the other modules take, a file under C(/run/lock/vermagic-kmod)
    (for root; the temporary directory otherwise) named after the device and inode of the
    directory of O(dest), never a file in the tree. It is taken only to write.
  - Recovery writes the line layout of Linux 5.8 and later (C(CRC symbol module export
    namespace)). For older kernels use the C(headers) or C(boot) source, which are written as
    they are.
author:
  - vermagic.kmod contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Module.symvers for the running kernel, from wherever it can be had
  vermagic.kmod.symvers:
    dest: /usr/src/linux-source-6.1
  register: symvers

- name: Say where it came from
  ansible.builtin.debug:
    msg: "{{ symvers.symbols }} symbols from {{ symvers.source }}"

- name: Recover it from the kernel itself (the headers package is gone from the mirrors)
  vermagic.kmod.symvers:
    dest: /usr/src/linux-source-6.1/Module.symvers
    release: 6.1.0-56-amd64
    source: recover

- name: The same for an unpacked kernel image package
  vermagic.kmod.symvers:
    dest: /srv/build/linux/Module.symvers
    root: /srv/images/debian-6.1.0-56
    release: 6.1.0-56-amd64
"""

RETURN = r"""
dest:
  description: The file written (or that would be written in check mode).
  returned: success
  type: str
  sample: /usr/src/linux-source-6.1/Module.symvers
source:
  description: The source used, C(auto) resolved.
  returned: success
  type: str
  sample: recover
path:
  description: What was read, the source file or, for C(recover), the kernel image.
  returned: success
  type: str
  sample: /boot/vmlinuz-6.1.0-56-amd64
release:
  description: The kernel release.
  returned: success
  type: str
  sample: 6.1.0-56-amd64
symbols:
  description: How many symbols the table holds.
  returned: success
  type: int
  sample: 24683
conflicts:
  description:
    - CRCs that disagree. C(kind=crc), an in-tree module (C(module)) was built against another
      CRC (C(crc)) than its exporter's (C(exporter), C(exporter_crc)); C(kind=duplicate), a symbol
      exported a second time with another CRC. Empty when all agree.
  returned: success
  type: list
  elements: dict
  sample: []
modules_checked:
  description:
    - How many in-tree modules were read (their exports and C(__versions)); when RV(cached), by
      the run that wrote O(dest).
  returned: success
  type: int
  sample: 4023
cached:
  description:
    - The stamp next to O(dest) agreed with the inputs and with O(dest), so the result is the
      one recorded by the run that wrote it, and nothing was read again.
  returned: success
  type: bool
  sample: true
reasons:
  description: Why the source was read again (empty when RV(cached)).
  returned: success
  type: list
  elements: str
  sample: ["the in-tree modules changed: '4023 modules' -> '4024 modules'"]
changes:
  description: How many symbols the write adds, removes and changes against the file there was.
  returned: success
  type: dict
  sample: {added: 24683, removed: 0, changed: 0}
recovery:
  description:
    - How the table was recovered. C(image), C(compression) of the payload, C(layout) of the
      export entries, C(vmlinux_exports), C(modversions) (whether the kernel has CRCs at all),
      C(modules).
  returned: when O(source) resolved to C(recover)
  type: dict
  sample:
    image: /boot/vmlinuz-6.1.0-56-amd64
    compression: xz
    layout: 12-byte PC-relative entries with namespace
    vmlinux_exports: 10503
    modversions: true
    modules: 4023
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from ansible_collections.vermagic.kmod.plugins.module_utils._files import write_atomic
from ansible_collections.vermagic.kmod.plugins.module_utils._kernel_facts import (
    KernelFactsError, RunningView, choose_release)
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import LockTimeout, tree_lock
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers import (
    SymversError, compare, parse_symvers, read_text)
from ansible_collections.vermagic.kmod.plugins.module_utils._symvers_sources import (
    SourceError, load, resolve_source)
from ansible_collections.vermagic.kmod.plugins.module_utils import _symvers_stamp as stamp

NO_CHANGES = {"added": 0, "removed": 0, "changed": 0}


def _warn_conflicts(module: AnsibleModule, conflicts: list[dict[str, str]]) -> None:
    if conflicts:
        module.warn(f"{len(conflicts)} CRC conflicts between the Module.symvers and the "
                    f"in-tree modules' __versions, e.g.: {conflicts[0]['msg']}")


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            release=dict(type="str"),
            root=dict(type="path", default="/"),
            source=dict(type="str", default="auto",
                        choices=["auto", "headers", "boot", "recover"]),
            lock_timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    _commands.use(_commands.from_module(module))
    root = module.params["root"]
    dest = module.params["dest"]
    if os.path.isdir(dest):
        dest = os.path.join(dest, "Module.symvers")
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        module.fail_json(msg=f"the directory of dest {dest} does not exist; create it first "
                             "(it is usually the top of the prepared kernel tree)")
    if not os.path.isdir(root):
        module.fail_json(msg=f"root {root} is not a directory")
    try:
        view = RunningView.from_host() if os.path.abspath(root) == "/" else None
        release = choose_release(root, module.params["release"], view)
        source, path = resolve_source(module.params["source"], root, release)
        inputs = stamp.inputs(source, path, root, release)
    except (KernelFactsError, SourceError) as exc:
        module.fail_json(msg=str(exc))

    cached, reasons = stamp.recorded(dest, inputs)
    if cached is not None:  # nothing changed since the last run: nothing read again
        _warn_conflicts(module, cached["conflicts"])
        module.exit_json(changed=False, cached=True, reasons=[], dest=dest, release=release,
                         changes=dict(NO_CHANGES), **cached)

    try:
        result = load(source, root, release)
    except SourceError as exc:
        module.fail_json(msg=str(exc))
    before_text = None
    before = {}
    if os.path.exists(dest):
        try:
            before_text = read_text(dest)
            before = parse_symvers(before_text, dest)
        except SymversError:
            before = {}  # unreadable or not a Module.symvers: it is replaced
    same = before_text is not None and (
        before_text == result.text
        or set(before_text.splitlines()) == set(result.text.splitlines()))
    changes = compare(before, result.symbols)
    out = dict(
        changed=not same,
        cached=False,
        reasons=reasons,
        dest=dest,
        source=result.source,
        path=result.path,
        release=release,
        symbols=len(result.symbols),
        conflicts=result.conflicts,
        modules_checked=result.modules_checked,
        changes=changes.counts() if not same else dict(NO_CHANGES),
    )
    if result.source == "recover":
        out["recovery"] = result.details
    if module._diff and not same:
        gone, come = changes.diff()
        if before_text is not None and not changes:
            gone, come = "(the same symbols in another layout)\n", ""
        out["diff"] = dict(before_header=dest, after_header=dest, before=gone, after=come)
    if not module.check_mode:
        try:
            # The tree's lock: no prepare or build of the tree runs while it is written.
            with tree_lock(directory, timeout=module.params["lock_timeout"]):
                if not same:
                    write_atomic(dest, to_bytes(result.text))
                stamp.record(dest, inputs, out)
        except LockTimeout as exc:
            module.fail_json(msg=f"cannot write {dest}: {exc} (option lock_timeout)")
        except OSError as exc:
            module.fail_json(msg=f"cannot write {exc.filename or dest}: {exc.strerror}; check "
                                 "that its directory is writable", exception=traceback.format_exc())
    _warn_conflicts(module, result.conflicts)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
