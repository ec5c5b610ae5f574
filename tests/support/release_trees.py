"""Small kernel trees of three eras for the ``kernel_release`` tests.

Each holds the top Makefile's version fields and the generated files of its era, as kbuild
wrote them. The 2.6.5 and the modern trees carry a miniature of their kbuild's release rules
(the real rules, cut down to what makes the release), so a test can run ``make`` on them and
compare what kbuild would generate with what the module wrote. The real thing, Debian's
Linux 6.1 source, is exercised in ``tests/kernel/test_kernel_release.py``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Linux 2.6.5 as Fedora Core 2 shipped it (kernel 2.6.5-1.358), built once with a wrong
# EXTRAVERSION: version.h says 2.6.5-1.358custom.
MAKEFILE_2_6_5 = """\
VERSION = 2
PATCHLEVEL = 6
SUBLEVEL = 5
EXTRAVERSION = -1.358custom
NAME=Zonked Quokka

# *DOCUMENTATION*
# To see a list of typical targets execute "make help"
# More info can be located in ./README
# Comments in this file are targeted only to the developer, do not
# expect to learn how to build the kernel reading this file.

KERNELRELEASE=$(VERSION).$(PATCHLEVEL).$(SUBLEVEL)$(EXTRAVERSION)

uts_len := 64

include/linux/version.h: Makefile
\t@if expr length "$(KERNELRELEASE)" \\> $(uts_len) >/dev/null ; then \\
\t  echo '"$(KERNELRELEASE)" exceeds $(uts_len) characters' >&2; \\
\t  exit 1; \\
\tfi;
\t@(echo \\#define UTS_RELEASE \\"$(KERNELRELEASE)\\"; \\
\t  echo \\#define LINUX_VERSION_CODE `expr $(VERSION) \\\\* 65536 + $(PATCHLEVEL) \\\\* 256 + $(SUBLEVEL)`; \\
\t echo '#define KERNEL_VERSION(a,b,c) (((a) << 16) + ((b) << 8) + (c))'; \\
\t) > $@

kernelrelease:
\t@echo $(KERNELRELEASE)
"""

VERSION_H_2_6_5 = """\
#define UTS_RELEASE "2.6.5-1.358custom"
#define LINUX_VERSION_CODE 132613
#define KERNEL_VERSION(a,b,c) (((a) << 16) + ((b) << 8) + (c))
"""

# Linux 2.6.18 (RHEL 5 era): utsrelease.h on its own, kernel.release, a quoted auto.conf.
MAKEFILE_2_6_18 = """\
VERSION = 2
PATCHLEVEL = 6
SUBLEVEL = 18
EXTRAVERSION = -prep
NAME=Avast! A bilge rat!

# *DOCUMENTATION*
KERNELRELEASE = $(shell cat include/config/kernel.release 2> /dev/null)
KERNELVERSION = $(VERSION).$(PATCHLEVEL).$(SUBLEVEL)$(EXTRAVERSION)
"""

# The release rules of Linux 6.1's top Makefile, cut down (same variables, same recipes).
MAKEFILE_6_1 = """\
# SPDX-License-Identifier: GPL-2.0
VERSION = 6
PATCHLEVEL = 1
SUBLEVEL = 192
EXTRAVERSION =
NAME = Curry Ramen

# *DOCUMENTATION*
# To see a list of typical targets execute "make help"

PHONY := __all
__all: prepare

srctree := .
CONFIG_SHELL := sh

# Read KERNELRELEASE from include/config/kernel.release (if it exists)
KERNELRELEASE = $(shell cat include/config/kernel.release 2> /dev/null)
KERNELVERSION = $(VERSION)$(if $(PATCHLEVEL),.$(PATCHLEVEL)$(if $(SUBLEVEL),.$(SUBLEVEL)))$(EXTRAVERSION)
export VERSION PATCHLEVEL SUBLEVEL KERNELRELEASE KERNELVERSION

define filechk
\t@set -e; mkdir -p $(dir $@); trap "rm -f $@.tmp" EXIT; \\
\t{ $(filechk_$(1)); } > $@.tmp; \\
\tif [ ! -r $@ ] || ! cmp -s $@ $@.tmp; then mv -f $@.tmp $@; fi
endef

filechk_kernel.release = \\
\techo "$(KERNELVERSION)$$($(CONFIG_SHELL) $(srctree)/scripts/setlocalversion $(srctree))"

include/config/kernel.release: FORCE
\t$(call filechk,kernel.release)

version_h := include/generated/uapi/linux/version.h
prepare: include/config/kernel.release $(version_h) include/generated/utsrelease.h

uts_len := 64
define filechk_utsrelease.h
\tif [ `echo -n "$(KERNELRELEASE)" | wc -c ` -gt $(uts_len) ]; then \\
\t  echo '"$(KERNELRELEASE)" exceeds $(uts_len) characters' >&2;    \\
\t  exit 1;                                                         \\
\tfi;                                                               \\
\techo \\#define UTS_RELEASE \\"$(KERNELRELEASE)\\"
endef

define filechk_version.h
\tif [ $(SUBLEVEL) -gt 255 ]; then                                 \\
\t\techo \\#define LINUX_VERSION_CODE $(shell                 \\
\t\texpr $(VERSION) \\* 65536 + $(PATCHLEVEL) \\* 256 + 255); \\
\telse                                                             \\
\t\techo \\#define LINUX_VERSION_CODE $(shell                 \\
\t\texpr $(VERSION) \\* 65536 + $(PATCHLEVEL) \\* 256 + $(SUBLEVEL)); \\
\tfi;                                                              \\
\techo '#define KERNEL_VERSION(a,b,c) (((a) << 16) + ((b) << 8) +  \\
\t((c) > 255 ? 255 : (c)))';                                       \\
\techo \\#define LINUX_VERSION_MAJOR $(VERSION);                    \\
\techo \\#define LINUX_VERSION_PATCHLEVEL $(PATCHLEVEL);            \\
\techo \\#define LINUX_VERSION_SUBLEVEL $(SUBLEVEL)
endef

$(version_h): PATCHLEVEL := $(or $(PATCHLEVEL), 0)
$(version_h): SUBLEVEL := $(or $(SUBLEVEL), 0)
$(version_h): FORCE
\t$(call filechk,version.h)

include/generated/utsrelease.h: include/config/kernel.release FORCE
\t$(call filechk,utsrelease.h)

kernelrelease:
\t@echo "$(KERNELVERSION)$$($(CONFIG_SHELL) $(srctree)/scripts/setlocalversion $(srctree))"

kernelversion:
\t@echo $(KERNELVERSION)

PHONY += FORCE kernelrelease kernelversion prepare
FORCE:
.PHONY: $(PHONY)
"""

# What Linux 6.1's scripts/setlocalversion decides, in fewer lines (same inputs, same output).
SETLOCALVERSION_6_1 = """\
#!/bin/sh
# Local version of the release: localversion* files, CONFIG_LOCALVERSION, then git.
srctree=${1:-.}

scm_version()
{
\tcd "$srctree"
\tif test -e .scmversion; then cat .scmversion; return; fi
\ttest -z "$(git rev-parse --show-cdup 2>/dev/null)" || return
\thead=$(git rev-parse --verify HEAD 2>/dev/null) || return
\tif [ -z "$(git describe --exact-match 2>/dev/null)" ]; then
\t\tif test "$1" = "--short"; then echo "+"; return; fi
\t\tif atag="$(git describe 2>/dev/null)"; then
\t\t\techo "$atag" | awk -F- '{printf("-%05d", $(NF-1))}'
\t\tfi
\t\tprintf '%s%s' -g "$(echo $head | cut -c1-12)"
\tfi
\tif git --no-optional-locks status -uno --porcelain 2>/dev/null | read dummy; then
\t\tprintf '%s' -dirty
\tfi
}

res=
for file in localversion*; do
\tcase "$file" in *\\~*) continue;; esac
\ttest -e "$file" && res="$res$(cat "$file")"
done
res="${res}$(sed -n 's/^CONFIG_LOCALVERSION=\\(.*\\)$/\\1/p' include/config/auto.conf 2>/dev/null)${LOCALVERSION}"
if grep -q "^CONFIG_LOCALVERSION_AUTO=y$" include/config/auto.conf 2>/dev/null; then
\tres="$res$(scm_version)"
elif [ "${LOCALVERSION+set}" != "set" ]; then
\tscm=$(scm_version --short)
\tres="$res${scm:++}"
fi
echo "$res"
"""

UTSRELEASE_H = '#define UTS_RELEASE "{release}"\n'
VERSION_H_6_1 = """\
#define LINUX_VERSION_CODE {code}
#define KERNEL_VERSION(a,b,c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))
#define LINUX_VERSION_MAJOR {major}
#define LINUX_VERSION_PATCHLEVEL {patchlevel}
#define LINUX_VERSION_SUBLEVEL {sublevel}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def tree_2_6_5(root: Path) -> Path:
    """The issue's 2.6-era tree: Makefile EXTRAVERSION and version.h say -1.358custom."""
    return write(root, {"Makefile": MAKEFILE_2_6_5, "include/linux/version.h": VERSION_H_2_6_5,
                        "README": "Linux kernel release 2.6.xx\n", "init/main.c": "/* main */\n"})


def tree_2_6_18(root: Path) -> Path:
    """A prepared 2.6.18-era tree: utsrelease.h, code-only version.h, a quoted auto.conf."""
    return write(root, {
        "Makefile": MAKEFILE_2_6_18,
        "include/linux/utsrelease.h": UTSRELEASE_H.format(release="2.6.18-prep"),
        "include/linux/version.h": "#define LINUX_VERSION_CODE 132626\n"
                                   "#define KERNEL_VERSION(a,b,c) (((a) << 16) + ((b) << 8) + (c))\n",
        "include/config/kernel.release": "2.6.18-prep\n",
        ".config": '#\n# Automatically generated make config: don\'t edit\n#\nCONFIG_X86_32=y\n'
                   'CONFIG_LOCALVERSION=""\n# CONFIG_LOCALVERSION_AUTO is not set\n',
        "include/config/auto.conf": 'CONFIG_X86_32=y\nCONFIG_LOCALVERSION=""\n',
    })


def tree_6_1(root: Path, prepared: bool = False, release: str = "6.1.192",
             numbers: tuple[int, int, int] = (6, 1, 192)) -> Path:
    """A Linux 6.1-shaped tree (miniature kbuild); ``prepared``: with its generated files."""
    files = {"Makefile": MAKEFILE_6_1, "scripts/setlocalversion": SETLOCALVERSION_6_1,
             "README": "Linux kernel\n", "init/version.c": "/* UTS_RELEASE */\n"}
    if prepared:
        major, patchlevel, sublevel = numbers
        files.update({
            ".config": '#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_CC_VERSION_TEXT="gcc-12"\n'
                       'CONFIG_LOCALVERSION=""\n# CONFIG_LOCALVERSION_AUTO is not set\nCONFIG_MODULES=y\n',
            "include/config/auto.conf": 'CONFIG_CC_VERSION_TEXT="gcc-12"\nCONFIG_LOCALVERSION=\nCONFIG_MODULES=y\n',
            "include/config/kernel.release": release + "\n",
            "include/generated/utsrelease.h": UTSRELEASE_H.format(release=release),
            "include/generated/uapi/linux/version.h": VERSION_H_6_1.format(
                code=(major << 16) + (patchlevel << 8) + min(sublevel, 255), major=major,
                patchlevel=patchlevel, sublevel=sublevel),
        })
    return write(root, files)


def set_config(root: Path, localversion: str | None = None, auto: bool | None = None) -> None:
    """Set CONFIG_LOCALVERSION / CONFIG_LOCALVERSION_AUTO in .config and auto.conf, kconfig-style."""
    for rel in (".config", "include/config/auto.conf"):
        path = root / rel
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        out = []
        for line in lines:
            if localversion is not None and line.startswith("CONFIG_LOCALVERSION="):
                line = f'CONFIG_LOCALVERSION="{localversion}"' if rel == ".config" \
                    else f"CONFIG_LOCALVERSION={localversion}"
            if auto is not None and ("CONFIG_LOCALVERSION_AUTO" in line):
                continue
            out.append(line)
        if auto:
            out.append("CONFIG_LOCALVERSION_AUTO=y")
        elif auto is False and rel == ".config":
            out.append("# CONFIG_LOCALVERSION_AUTO is not set")
        path.write_text("\n".join(out) + "\n")


def git(root: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org",
               GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def git_init(root: Path, tag: str | None = None) -> None:
    """Make ``root`` a git work tree of its files (generated ones ignored, as kbuild's .gitignore does)."""
    (root / ".gitignore").write_text(".*\n!.gitignore\ninclude/config/\ninclude/generated/\n*.tmp\n")
    git(root, "init", "-q", "-b", "master")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "tree")
    if tag:
        git(root, "tag", "-a", "-m", tag, tag)


def make(root: Path, *targets: str, env: dict[str, str] | None = None) -> str:
    """``make -s TARGETS`` in the tree; its output."""
    run_env = dict(os.environ, LC_ALL="C", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    run_env.pop("LOCALVERSION", None)
    run_env.update(env or {})
    done = subprocess.run(["make", "-s", "-C", str(root), *targets], capture_output=True, text=True,
                          env=run_env, timeout=120)
    if done.returncode:
        raise AssertionError(f"make {' '.join(targets)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (but .git) with its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(root).parts:
            out[str(path.relative_to(root))] = path.read_bytes()
    return out
