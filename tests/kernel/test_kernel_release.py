"""``kernel_release`` on Debian's real Linux 6.1 source, checked by the source's own kbuild.

The tree is aligned to the release of Debian's image built from it (``6.1.0-56-amd64`` from
Linux 6.1.192), the image's ``/boot/config-*`` is put in place, ``make olddefconfig`` and
``make prepare`` generate ``kernel.release``, ``utsrelease.h`` and ``version.h``, and those
must say the target (and, in header mode, be byte for byte the files of Debian's own headers
package). The traps (localversion files, CONFIG_LOCALVERSION, a dirty git tree) are checked with
the tree's real Makefile and scripts/setlocalversion on a small copy of the tree.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.modules.kernel_release import main
from tests.support import release_trees as trees
from tests.support import source_tree
from tests.support.debian import DebianKernel
from tests.support.module_runner import run_module

GENERATED = ("include/config/kernel.release", "include/generated/utsrelease.h",
             "include/generated/uapi/linux/version.h")
JOBS = str(min(os.cpu_count() or 1, 4))


@pytest.fixture()
def tree(pristine: Path, tmp_path: Path) -> Path:
    clone = source_tree.clone(pristine, tmp_path / "linux")
    yield clone
    shutil.rmtree(clone)  # its hard links would keep the whole source alive after the session


def make(tree: Path, *targets: str) -> str:
    start = time.monotonic()
    source_tree.say(f"make {' '.join(targets)} in {tree}")
    out = trees.make(tree, *targets)
    source_tree.say(f"  done in {time.monotonic() - start:.1f} s")
    return out


def configure_and_prepare(tree: Path, kernel: DebianKernel) -> None:
    shutil.copyfile(kernel.config, tree / ".config")
    make(tree, "olddefconfig")
    make(tree, f"-j{JOBS}", "prepare")


def generated(tree: Path) -> dict[str, bytes]:
    return {rel: (tree / rel).read_bytes() for rel in GENERATED}


def test_header_mode_gives_debians_own_headers(tree: Path, kernel: DebianKernel):
    pristine_makefile = (tree / "Makefile").read_bytes()
    result = run_module(main, {"path": str(tree), "release": kernel.release})
    assert not result["failed"], result["msg"]
    assert (result["mode"], result["release_before"]) == ("header", "6.1.192")
    assert result["release_after"] == kernel.release
    assert result["version_code"] == result["version_code_before"] == 393664
    assert result["files"] == [str(tree / "Makefile")]
    makefile = (tree / "Makefile").read_bytes()
    head = b"".join(pristine_makefile.splitlines(True)[:6])  # the SPDX line, the fields and NAME
    block_end = makefile.index(b"# END vermagic.kmod.kernel_release\n") + len(b"# END vermagic.kmod.kernel_release\n")
    assert makefile.startswith(head) and makefile[block_end:] == pristine_makefile[len(head):]

    configure_and_prepare(tree, kernel)

    assert make(tree, "kernelrelease") == f"{kernel.release}\n"
    assert make(tree, "kernelversion") == "6.1.192\n"
    assert (tree / "include/config/kernel.release").read_text() == f"{kernel.release}\n"
    # Debian's headers package was prepared by Debian's build from the same source
    for rel in ("include/generated/utsrelease.h", "include/generated/uapi/linux/version.h"):
        assert (tree / rel).read_bytes() == (kernel.headers / rel).read_bytes(), rel
    assert b"#define LINUX_VERSION_CODE 393664\n" in (tree / GENERATED[2]).read_bytes()

    again = run_module(main, {"path": str(tree), "release": kernel.release})
    assert not again["changed"] and again["uts_release_before"] == kernel.release


def test_makefile_mode_and_repair_without_rebuild(tree: Path, kernel: DebianKernel):
    result = run_module(main, {"path": str(tree), "release": kernel.release, "mode": "makefile"})
    assert result["changed"] and result["version_code"] == 393472
    assert "SUBLEVEL = 0\nEXTRAVERSION = -56-amd64\n" in (tree / "Makefile").read_text()

    configure_and_prepare(tree, kernel)

    assert make(tree, "kernelrelease") == f"{kernel.release}\n"
    assert (tree / "include/generated/utsrelease.h").read_text() == f'#define UTS_RELEASE "{kernel.release}"\n'
    assert b"#define LINUX_VERSION_CODE 393472\n" in (tree / GENERATED[2]).read_bytes()
    assert not run_module(main, {"path": str(tree), "release": kernel.release})["changed"]

    # a prepared tree with a wrong release is repaired in place, as kbuild itself would write it
    other = kernel.release.replace("-56-", "-57-")
    repaired = run_module(main, {"path": str(tree), "release": other})
    assert repaired["mode"] == "makefile" and repaired["uts_release_before"] == kernel.release
    assert repaired["files"] == [str(tree / rel) for rel in ("Makefile",) + GENERATED[:2]]
    written = {rel: (tree / rel).stat().st_mtime_ns for rel in GENERATED}
    before = generated(tree)
    make(tree, f"-j{JOBS}", "prepare")
    assert generated(tree) == before
    assert {rel: (tree / rel).stat().st_mtime_ns for rel in GENERATED} == written, "kbuild rewrote them"
    assert make(tree, "kernelrelease") == f"{other}\n"


@pytest.fixture()
def small_tree(pristine: Path, tmp_path: Path) -> Path:
    """The real top Makefile, scripts/ and arch/x86/Makefile, configured like Debian's kernel:
    enough for ``make kernelrelease`` (Makefile + scripts/setlocalversion) in a second."""
    root = tmp_path / "small"
    for rel in ("Makefile", "arch/x86/Makefile", "arch/x86/Makefile_32.cpu"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pristine / rel, root / rel)
    shutil.copytree(pristine / "scripts", root / "scripts", symlinks=True)
    trees.write(root, {
        ".config": 'CONFIG_LOCALVERSION=""\n# CONFIG_LOCALVERSION_AUTO is not set\nCONFIG_MODULES=y\n',
        "include/config/auto.conf": "CONFIG_LOCALVERSION=\nCONFIG_MODULES=y\n",
        "include/generated/autoconf.h": '#define CONFIG_LOCALVERSION ""\n#define CONFIG_MODULES 1\n',
    })
    return root


def syncconfig(root: Path) -> None:
    """What kbuild's syncconfig does with the two symbols that matter here (6.1's auto.conf format)."""
    config = (root / ".config").read_text()
    lv = next(line.split("=", 1)[1].strip('"') for line in config.splitlines()
              if line.startswith("CONFIG_LOCALVERSION="))
    auto = "CONFIG_LOCALVERSION_AUTO=y\n" if "CONFIG_LOCALVERSION_AUTO=y" in config else ""
    (root / "include/config/auto.conf").write_text(f"CONFIG_LOCALVERSION={lv}\n{auto}CONFIG_MODULES=y\n")


@pytest.mark.parametrize("mode", ["header", "makefile"])
def test_traps_with_the_real_setlocalversion(small_tree: Path, kernel: DebianKernel, mode: str):
    root = small_tree
    (root / "localversion-00").write_text("-lv")
    (root / "localversion-10~").write_text("-backup")
    trees.set_config(root, localversion="-cfg", auto=True)
    trees.git_init(root)
    (root / "README").write_text("dirty\n")
    trees.git(root, "add", "README")
    real = make(root, "kernelrelease").strip()
    head = trees.git(root, "rev-parse", "HEAD").strip()[:12]
    assert real == f"6.1.192-lv-cfg-g{head}-dirty"

    target = kernel.release if mode == "header" else "6.1.192-56-amd64"
    result = run_module(main, {"path": str(root), "release": target, "mode": mode})

    assert result["release_before"] == real and result["release_after"] == target
    assert make(root, "kernelrelease") == f"{target}\n"
    assert not run_module(main, {"path": str(root), "release": target})["changed"]
    syncconfig(root)  # what the next preparation does with .config: nothing changes
    assert make(root, "kernelrelease") == f"{target}\n"
    assert not run_module(main, {"path": str(root), "release": target})["changed"]


def test_plus_of_a_git_tree_at_its_tag(small_tree: Path):
    root = small_tree
    trees.git_init(root, tag="v6.1.192")
    assert make(root, "kernelrelease") == "6.1.192\n"
    assert not run_module(main, {"path": str(root), "release": "6.1.192"})["changed"]

    result = run_module(main, {"path": str(root), "release": "6.1.192-1"})
    assert result["changed"] and "export LOCALVERSION ?=\n" in (root / "Makefile").read_text()
    assert trees.git(root, "status", "-uno", "--porcelain").strip() == "M Makefile"
    assert make(root, "kernelrelease") == "6.1.192-1\n"
    assert not run_module(main, {"path": str(root), "release": "6.1.192-1"})["changed"]


def test_localversion_kept_when_the_target_ends_with_it(small_tree: Path):
    root = small_tree
    (root / "localversion-rt").write_text("-rt66\n")
    assert make(root, "kernelrelease") == "6.1.192-rt66\n"
    result = run_module(main, {"path": str(root), "release": "6.1.192-1-rt66"})
    assert result["files"] == [str(root / "Makefile")] and (root / "localversion-rt").exists()
    assert make(root, "kernelrelease") == "6.1.192-1-rt66\n"
