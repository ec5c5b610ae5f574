#!/usr/bin/python
# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kernel_release
short_description: Make a Linux source tree build for exactly a given kernel release
version_added: 0.1.0
description:
  - Edits a kernel source tree so that modules built against it carry exactly the release of a
    running kernel (the first word of their vermagic), keeping every byte that need not change.
  - B(The release of a tree) is the C(UTS_RELEASE) its preparation writes into
    C(include/generated/utsrelease.h), which is what C(make -s kernelrelease) prints on a configured tree.
    It is C(VERSION.PATCHLEVEL.SUBLEVEL) and C(EXTRAVERSION) from the top Makefile, then the
    contents of the C(localversion*) files at the top of the tree (name order, names with C(~)
    skipped), then C(CONFIG_LOCALVERSION) from C(.config), then what C(scripts/setlocalversion)
    takes from git (with C(CONFIG_LOCALVERSION_AUTO=y) the git description, otherwise a C(+) or
    C(-dirty) when the tree is the top of a git work tree that is not exactly at a tag or has
    uncommitted changes); unless C(override KERNELRELEASE = ...) in the top Makefile sets it.
    A C(LOCALVERSION) given to make at build time also appends to it; this module cannot see it.
  - In C(makefile) mode it sets C(VERSION), C(PATCHLEVEL), C(SUBLEVEL) and C(EXTRAVERSION) from
    the target, so C(LINUX_VERSION_CODE) follows the target's numbers.
  - In C(header) mode the version numbers stay the tree's own, so C(LINUX_VERSION_CODE) stays true,
    and a managed block right after them in the top Makefile sets the release, as distribution
    headers do (C(override KERNELRELEASE), and C(KERNELVERSION) for the C(kernelrelease) and
    C(include/config/kernel.release) targets only, so that C(make -s kernelrelease),
    C(include/config/kernel.release) and C(utsrelease.h) all give the target).
  - Whatever appends to a release and would spoil the target is neutralized; what the target
    already ends with is kept. C(localversion*) files are removed, C(CONFIG_LOCALVERSION) is set
    to C("") and C(CONFIG_LOCALVERSION_AUTO) switched off in C(.config) (and in
    C(include/config/auto.conf) when it exists). A git tree, which these edits make dirty, gets
    C(export LOCALVERSION ?=) in the managed block, so that no C(+) or C(-dirty) is appended.
  - Generated files that exist are made to agree without a rebuild, exactly as kbuild would
    write them, so a tree prepared with a wrong release is repaired in place. They are
    C(include/config/kernel.release), C(include/generated/utsrelease.h),
    C(include/linux/utsrelease.h) (2.6.18 to 2.6.32), C(include/linux/version.h) (on 2.6-era trees,
    C(UTS_RELEASE) and C(LINUX_VERSION_CODE)) and C(include/generated/uapi/linux/version.h).
  - A tree it cannot understand (no version fields, a computed version field, unreadable,
    read-only, not a directory) makes it fail with a message that says why; then nothing is
    changed, because every check comes before the first write. Each file is written atomically.
  - Writes are made under the tree's lock (a file under C(/run/lock/vermagic-kmod), for root, named after
    the tree's device and inode, not in the tree), which the other modules of this collection that
    write into a tree take too.
options:
  path:
    description:
      - The top directory of the kernel source tree (the one that holds the kernel's Makefile).
    type: path
    required: true
  release:
    description:
      - The release the tree must build for, as C(uname -r) prints it on the target kernel,
        e.g. C(6.1.0-56-amd64).
      - At most 64 characters (C(UTS_RELEASE)), starting with C(VERSION.PATCHLEVEL) numbers;
        letters, digits and the characters C(._+~,:@-) only.
    type: str
    required: true
  mode:
    description:
      - C(makefile) sets the version fields of the top Makefile from the target, the only way
        on 2.6-era trees, and right when the target's numbers are the tree's.
      - C(header) keeps the tree's version numbers, so that C(LINUX_VERSION_CODE) stays true,
        and sets only the release. Use it when the running kernel's numbers are not its source's,
        for example Debian's C(6.1.0-56-amd64) built from Linux 6.1.192, where rewriting C(SUBLEVEL)
        would turn C(LINUX_VERSION_CODE) 393664 into 393472 and flip C(#if) checks in module code.
      - C(auto) is C(makefile) when the target's numbers equal the tree's, C(header) otherwise.
      - C(header) after an earlier C(makefile) run keeps the numbers that run wrote.
    type: str
    choices: [auto, makefile, header]
    default: auto
  backup:
    description:
      - Before changing or removing a file, keep a copy of it next to it, named like
        M(ansible.builtin.copy)'s backups (C(<file>.<pid>.<timestamp>~)); kbuild ignores
        C(localversion*) files with C(~) in their names.
    type: bool
    default: false
  lock_timeout:
    description:
      - How long to wait, in seconds, for another run that holds the tree's lock.
    type: int
    default: 600
extends_documentation_fragment:
  - vermagic.kmod._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff holds the whole before and after of every file that changes.
notes:
  - Put the final C(.config) in place before this module runs, because it reads C(CONFIG_LOCALVERSION)
    from there. In C(header) mode C(utsrelease.h) gets the target even if the configuration
    changes later; in C(makefile) mode a later C(CONFIG_LOCALVERSION) would append to it.
  - Only the tree's own files are read; trees built with C(O=) keep their output directory's
    C(localversion*) files and generated headers, which this module does not see.
author:
  - vermagic.kmod contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Make the source tree build for the running kernel (header mode when the numbers differ)
  vermagic.kmod.kernel_release:
    path: /usr/src/linux-source-6.1
    release: "{{ ansible_facts.kernel }}"
  register: tree_release

- name: The classic way, on a 2.6-era tree, keeping copies of the files it changes
  vermagic.kmod.kernel_release:
    path: /usr/src/linux-2.6.5
    release: 2.6.5-1.358
    mode: makefile
    backup: true

- name: Show what was done
  ansible.builtin.debug:
    msg: >-
      {{ tree_release.release_before }} -> {{ tree_release.release_after }}
      ({{ tree_release.mode }} mode, LINUX_VERSION_CODE {{ tree_release.version_code }}):
      {{ tree_release.files | join(', ') }}
"""

RETURN = r"""
release_before:
  description:
    - The release the tree built for before the run (what C(make -s kernelrelease) would have
      printed, or the managed block's release).
  returned: success
  type: str
  sample: 6.1.192
release_after:
  description: The release the tree builds for after the run (in check mode, would build for).
  returned: success
  type: str
  sample: 6.1.0-56-amd64
uts_release_before:
  description:
    - What the tree's generated C(utsrelease.h) (or 2.6-era C(include/linux/version.h)) said
      before the run, or null when the tree is not prepared.
  returned: success
  type: str
  sample: 6.1.192
mode:
  description: The mode used, C(makefile) or C(header) (what C(auto) chose).
  returned: success
  type: str
  sample: header
version_code:
  description: The tree's C(LINUX_VERSION_CODE) after the run.
  returned: success
  type: int
  sample: 393664
version_code_before:
  description: The tree's C(LINUX_VERSION_CODE) before the run.
  returned: success
  type: int
  sample: 393664
files:
  description: The files changed (in check mode, that would change), in the order they are written.
  returned: success
  type: list
  elements: str
  sample: [/usr/src/linux-source-6.1/Makefile, /usr/src/linux-source-6.1/include/generated/utsrelease.h]
changes:
  description: For each file in RV(files), why it changes.
  returned: success
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
    why:
      description: What is changed in it, in words.
      type: str
  sample: [{path: /usr/src/linux-2.6.5/Makefile, why: "makefile mode: EXTRAVERSION = -1.358"}]
diff:
  description:
    - Before and after of each file that changes, in the shape of Ansible's diff
      (C(before_header), C(after_header), C(before), C(after)); shown with C(--diff).
  returned: success
  type: list
  elements: dict
backup_files:
  description: The backup copies made (with O(backup) only).
  returned: success
  type: list
  elements: str
  sample: [/usr/src/linux-2.6.5/Makefile.4242.2025-01-01@12:00:00~]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import LockTimeout
from ansible_collections.vermagic.kmod.plugins.module_utils._release import MODES, ReleaseError, align


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            release=dict(type="str", required=True),
            mode=dict(type="str", default="auto", choices=list(MODES)),
            backup=dict(type="bool", default=False),
            lock_timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    _commands.use(_commands.from_module(module))
    params = module.params
    try:
        plan, backups = align(params["path"], params["release"], params["mode"], backup=params["backup"],
                              check_mode=module.check_mode, lock_timeout=params["lock_timeout"])
    except (ReleaseError, LockTimeout) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:  # the lock file, or a race with another writer
        module.fail_json(msg=f"{exc.filename or params['path']}: {exc.strerror or exc}; nothing more was changed")
    module.exit_json(
        changed=plan.changed,
        release_before=plan.release_before,
        release_after=plan.release_after,
        uts_release_before=plan.uts_release_before,
        mode=plan.mode,
        version_code=plan.version_code_after,
        version_code_before=plan.version_code_before,
        files=plan.files,
        changes=[{"path": name, "why": change.why} for name, change in zip(plan.files, plan.changes)],
        diff=plan.diff(),
        backup_files=backups,
    )


if __name__ == "__main__":
    main()
