#!/usr/bin/python
# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kbuild
short_description: Run kbuild to prepare a kernel tree or build an external module against one
version_added: 0.1.0
description:
  - Without O(src), runs a target on the kernel tree itself, by default C(make modules_prepare),
    preceded by C(make olddefconfig) when the configuration needs it (no
    C(include/config/auto.conf) yet, C(.config) newer than it, or C(make -s listnewconfig) not
    empty). make never waits for an answer, its standard input is C(/dev/null).
  - With O(src), builds the external module in that directory, C(make -C <kernel_dir> M=<src>
    modules), and returns each C(.ko) with its vermagic and srcversion.
  - The compiler defaults to the one the tree's C(CONFIG_CC_VERSION_TEXT) names (C(gcc-12) for
    Debian 12) when it is installed; otherwise the tree's default compiler is used, with a
    warning that the versions differ.
  - A fingerprint of the inputs (the source files, the tree's release, C(.config),
    C(Module.symvers), the compiler's path and version, the arguments) is stored next to the
    products (C(<src>/.vermagic-kmod.fingerprint), C(<kernel_dir>/.vermagic-kmod.prepare.fingerprint)).
    When it is unchanged and the products are still there, the task is skipped without running
    make at all. O(jobs) is not part of it.
  - Two runs never prepare or build in the same place at once. Preparing holds the tree's lock
    exclusively; a module build holds its source directory's lock exclusively and the tree's lock
    shared, so several modules can build against one tree at the same time, never while it is
    being prepared.
  - make's output goes to a log file, C(.vermagic-kmod.log) in O(src) or O(kernel_dir). Its path
    is in the result and in every error message, and failures are explained in words from it
    (missing tree, unprepared tree, missing compiler, compiler mismatch, missing C(Module.symvers),
    the first compile error). For long builds use C(async) on the task.
  - Build products of one O(src) are shared by every kernel it is built for; build a copy of the
    source per kernel when several kernels are involved.
author:
  - vermagic.kmod contributors (!UNKNOWN)
options:
  kernel_dir:
    description:
      - The kernel tree, a headers directory (C(/lib/modules/<release>/build)) or a kernel source
        tree.
    type: path
    required: true
  src:
    description:
      - The external module's directory (it holds a C(Kbuild) or C(Makefile) that sets C(obj-m)).
      - Omitted, the targets run on the kernel tree itself.
    type: path
  targets:
    description:
      - The make targets. Default C(modules) with O(src), C(modules_prepare) without.
      - Only C(modules) (with O(src)) and C(modules_prepare)/C(prepare) (without) are
        fingerprinted and skipped when unchanged; other targets run every time.
    type: list
    elements: str
  jobs:
    description:
      - Parallel make jobs (C(-j)). Default the number of CPUs.
    type: int
  make_vars:
    description:
      - Variables for make's command line, each passed as one C(NAME=value) argument.
      - Names must match C([A-Za-z_][A-Za-z0-9_]*); values must not contain a newline.
        C(M), C(KBUILD_EXTMOD), C(KBUILD_EXTRA_SYMBOLS) and C(O) are refused (use O(src),
        O(extra_symbols)); C(CC) is the same as O(cc).
    type: dict
    default: {}
  extra_symbols:
    description:
      - C(Module.symvers) files of other external modules whose symbols this one uses
        (C(KBUILD_EXTRA_SYMBOLS)). A directory stands for its C(Module.symvers).
    type: list
    elements: path
    default: []
  cc:
    description:
      - The compiler (C(CC=)), a name on PATH or a path.
      - Default the compiler C(CONFIG_CC_VERSION_TEXT) names, when installed.
    type: str
  config:
    description:
      - Without O(src) only. A kernel configuration (for example C(/boot/config-<release>)) for
        the tree. It is copied to the tree's C(.config) when the tree has none, on the first run
        when they differ, and whenever the file itself changes; then C(make olddefconfig)
        completes it. A C(.config) changed in the tree since (for example by
        M(vermagic.kmod.kernel_release), which neutralises C(CONFIG_LOCALVERSION)) is kept.
      - Giving it on every run keeps the task idempotent although C(olddefconfig) rewrites
        C(.config).
    type: path
  force:
    description:
      - Run make even when the fingerprint is unchanged.
    type: bool
    default: false
  log_lines:
    description:
      - How many lines of the end of make's log to return in RV(log_tail).
    type: int
    default: 30
  lock_timeout:
    description:
      - Seconds to wait for another run that holds the tree's or the source's lock.
    type: int
    default: 3600
extends_documentation_fragment:
  - vermagic.kmod._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports whether make would run (the fingerprint differs) and why, and runs nothing.
  diff_mode:
    support: none
notes:
  - Needs C(make) and a compiler on the host, and pyelftools to read the built modules.
  - Debian's C(/boot/config-*) lacks C(CONFIG_BUILD_SALT); it only ends up in the module's
    C(.note.Linux) ELF note (and so its build id), not in C(.modinfo) or C(__versions), and the
    kernel loads the module either way.
requirements:
  - make
  - a C compiler (the kernel's, e.g. gcc-12)
  - pyelftools
seealso:
  - module: vermagic.kmod.kernel_release
  - module: vermagic.kmod.symvers
  - module: vermagic.kmod.modinfo
"""

EXAMPLES = r"""
- name: Prepare a kernel source tree with the running kernel's configuration
  vermagic.kmod.kbuild:
    kernel_dir: /usr/src/linux-source-6.1
    config: /boot/config-{{ ansible_facts.kernel }}
    jobs: 4
  async: 3600
  poll: 15

- name: Build the module against the installed headers
  vermagic.kmod.kbuild:
    kernel_dir: /lib/modules/{{ ansible_facts.kernel }}/build
    src: /usr/local/src/hello
  register: hello_build

- name: Show what was built
  ansible.builtin.debug:
    msg: "{{ item.path }}: {{ item.vermagic }} (srcversion {{ item.srcversion }})"
  loop: "{{ hello_build.modules }}"

- name: Build a module that uses another module's exports, with make variables
  vermagic.kmod.kbuild:
    kernel_dir: /lib/modules/{{ ansible_facts.kernel }}/build
    src: /usr/local/src/consumer
    extra_symbols:
      - /usr/local/src/provider/Module.symvers
    make_vars:
      CONFIG_CONSUMER_DEBUG: "y"
"""

RETURN = r"""
changed:
  description: make ran and wrote new products (a new C(.ko), or changed prepared files).
  returned: always
  type: bool
skipped:
  description: The fingerprint was unchanged and the products were there, so make did not run.
  returned: always
  type: bool
modules:
  description: The modules an O(src) build produced (empty without O(src)).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The C(.ko) file.
      type: str
      sample: /usr/local/src/hello/hello.ko
    name:
      description: The module's name (as the kernel knows it).
      type: str
      sample: hello
    vermagic:
      description: The module's vermagic, byte for byte (the trailing space is real).
      type: str
      sample: "6.1.0-56-amd64 SMP preempt mod_unload modversions "
    srcversion:
      description: The module's srcversion, or null when it has none.
      type: str
      sample: 2FD745A78D58AACA6E5DDDE
    error:
      description: Why the module file could not be read (only present then).
      type: str
  sample:
    - path: /usr/local/src/hello/hello.ko
      name: hello
      vermagic: "6.1.0-56-amd64 SMP preempt mod_unload modversions "
      srcversion: 2FD745A78D58AACA6E5DDDE
log_tail:
  description: The last O(log_lines) lines of make's log (empty when make did not run).
  returned: always
  type: list
  elements: str
log:
  description: The log file of this run (null when make did not run).
  returned: always
  type: str
  sample: /usr/local/src/hello/.vermagic-kmod.log
diagnosis:
  description:
    - Findings from the checks and the build log. Each has C(code), C(severity) (C(error) or
      C(warning)), C(msg), C(fix) and the log C(line) it comes from.
    - Error codes C(missing_tree), C(not_a_tree), C(unprepared_tree), C(no_config),
      C(missing_make), C(missing_compiler), C(no_kbuild_file), C(compile_error), C(link_error),
      C(modpost_error), C(undefined_symbols), C(config_error), C(make_error); warning codes
      C(compiler_mismatch), C(compiler_fallback), C(missing_symvers), C(undefined_symbols),
      C(no_modules). Warnings are also shown as task warnings; a skipped run repeats those of
      the build it stands for.
  returned: always
  type: list
  elements: dict
  sample:
    - code: missing_symvers
      severity: warning
      msg: "built without the kernel's Module.symvers: the module's __versions section is empty; ..."
      fix: write the kernel's Module.symvers into the tree with vermagic.kmod.symvers ...
      line: "WARNING: Module.symvers is missing."
reasons:
  description: Why make runs (or would run in check mode); empty when skipped.
  returned: always
  type: list
  elements: str
  sample: ["source files changed: modified hello.c"]
commands:
  description: The make command lines that ran (in check mode, that would run).
  returned: always
  type: list
  elements: list
olddefconfig:
  description: Why C(make olddefconfig) ran before the targets, or null when it did not.
  returned: always
  type: str
  sample: no include/config/auto.conf yet
release:
  description: The release modules built against the tree get (C(UTS_RELEASE)).
  returned: always
  type: str
  sample: 6.1.0-56-amd64
compiler:
  description: The compiler used, and the one the kernel was built with.
  returned: always
  type: dict
  contains:
    command:
      description: What was passed as C(CC=) (null = the tree's default).
      type: str
    path:
      description: The compiler's resolved path.
      type: str
    version:
      description: The first line of its C(--version).
      type: str
    expected:
      description: The tree's C(CONFIG_CC_VERSION_TEXT).
      type: str
    source:
      description: C(option) (from O(cc)), C(config) (named by the tree's config) or C(default).
      type: str
    matches:
      description: Whether version equals expected (null when the tree names no compiler).
      type: bool
  sample:
    command: gcc-12
    path: /usr/bin/x86_64-linux-gnu-gcc-12
    version: gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0
    expected: gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0
    source: config
    matches: true
fingerprint:
  description: The fingerprint file (null for targets that are not fingerprinted).
  returned: always
  type: str
  sample: /usr/local/src/hello/.vermagic-kmod.fingerprint
kernel_dir:
  description: The tree, as an absolute path.
  returned: always
  type: str
src:
  description: The module's directory, as an absolute path (null without O(src)).
  returned: always
  type: str
targets:
  description: The make targets.
  returned: always
  type: list
  elements: str
duration:
  description: Seconds the task took.
  returned: always
  type: float
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.vermagic.kmod.plugins.module_utils import _commands
from ansible_collections.vermagic.kmod.plugins.module_utils._kbuild import (
    KbuildError,
    Request,
    build,
)
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import LockTimeout

try:
    from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import (
        ModuleFileError,
        read_module,
    )
except ImportError:
    HAS_ELFTOOLS = False
    ELFTOOLS_ERROR = traceback.format_exc()
else:
    HAS_ELFTOOLS = True
    ELFTOOLS_ERROR = None


def read_fields(path: str) -> dict:
    """The fields kbuild returns for a built module, from the module file itself."""
    try:
        module = read_module(path)
    except ModuleFileError as exc:
        return {"error": str(exc)}
    srcversion = module.fields.get("srcversion")
    return {"name": module.name, "vermagic": module.vermagic,
            "srcversion": srcversion if isinstance(srcversion, str) else None}


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            kernel_dir=dict(type="path", required=True),
            src=dict(type="path"),
            targets=dict(type="list", elements="str"),
            jobs=dict(type="int"),
            make_vars=dict(type="dict", default={}),
            extra_symbols=dict(type="list", elements="path", default=[]),
            cc=dict(type="str"),
            config=dict(type="path"),
            force=dict(type="bool", default=False),
            log_lines=dict(type="int", default=30),
            lock_timeout=dict(type="int", default=3600),
        ),
        supports_check_mode=True,
    )
    _commands.use(_commands.from_module(module))
    if not HAS_ELFTOOLS:
        module.fail_json(msg=missing_required_lib("pyelftools"), exception=ELFTOOLS_ERROR)
    p = module.params
    request = Request(kernel_dir=p["kernel_dir"], src=p["src"], targets=p["targets"],
                      jobs=p["jobs"], make_vars=p["make_vars"], extra_symbols=p["extra_symbols"],
                      cc=p["cc"], config=p["config"], force=p["force"], log_lines=p["log_lines"],
                      lock_timeout=p["lock_timeout"])
    try:
        result = build(request, check_mode=module.check_mode, reader=read_fields)
    except KbuildError as exc:
        module.fail_json(**exc.result())
    except LockTimeout as exc:
        module.fail_json(msg=str(exc))
    for finding in result["diagnosis"]:
        if finding["severity"] == "warning":
            module.warn(f"{finding['msg']} ({finding['fix']})" if finding["fix"] else finding["msg"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
