"""Small kernel trees of three eras for the ``kernel_release`` tests.

Each holds the top Makefile's version fields and the generated files of its era, as kbuild
wrote them. The 2.6.5 and the modern trees carry a miniature of their kbuild's release rules
(the real rules, cut down to what makes the release), so a test can run ``make`` on them and
compare what kbuild would generate with what the module wrote. The real thing, Debian's
Linux 6.1 source, is exercised in ``tests/kernel/test_kernel_release.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# The fixture trees of the integration target, shared with the unit tests.
FIXTURES = Path(__file__).resolve().parents[1] / "integration" / "targets" / "kernel_release" / "files"

# Linux 2.6.5 as Fedora Core 2 shipped it (kernel 2.6.5-1.358), built once with a wrong
# EXTRAVERSION: version.h says 2.6.5-1.358custom. Its Makefile keeps 2.6.5's version.h rule.
MAKEFILE_2_6_5 = (FIXTURES / "linux-2.6.5" / "Makefile").read_text()
VERSION_H_2_6_5 = (FIXTURES / "linux-2.6.5" / "include" / "linux" / "version.h").read_text()

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

# The release rules of Linux 6.1's top Makefile, cut down (same variables, same recipes), and
# what Linux 6.1's scripts/setlocalversion decides, in fewer lines (same inputs, same output).
MAKEFILE_6_1 = (FIXTURES / "linux-6.1" / "Makefile").read_text()
SETLOCALVERSION_6_1 = (FIXTURES / "linux-6.1" / "scripts" / "setlocalversion").read_text()

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
    shutil.copytree(FIXTURES / "linux-2.6.5", root, dirs_exist_ok=True)
    return root


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
                          env=run_env, timeout=1800, check=False)
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
