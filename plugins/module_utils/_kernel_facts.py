# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Facts about a kernel: the running one, another one installed, or one in an unpacked image.

``gather(root, release)`` returns the ``kmod_kernel`` dictionary (the shape other modules rely
on) and warnings. It only reads files. Everything found under ``root`` is read with symbolic
links resolved inside ``root`` (``_rootfs``). What concerns the *running* kernel (uname,
``/proc``, ``/sys``) comes from a ``RunningView``, which tests replace with a fake one.

Absences are never errors: each one is a sentence in ``missing``. Errors are only for input
that makes no answer possible (a ``root`` that is not a directory, a ``release`` that is not
one, several kernels under ``root`` and no ``release`` to choose).
"""

from __future__ import annotations

import heapq
import os
import re
import stat
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterator

from ansible_collections.vermagic.kmod.plugins.module_utils import _kconfig
from ansible_collections.vermagic.kmod.plugins.module_utils._bzimage import BzImageError, read_header
from ansible_collections.vermagic.kmod.plugins.module_utils._commands import run_text
from ansible_collections.vermagic.kmod.plugins.module_utils._rootfs import RootPathError, inside, resolve
from ansible_collections.vermagic.kmod.plugins.module_utils._taint import read_taint
from ansible_collections.vermagic.kmod.plugins.module_utils._vermagic import parse_vermagic

MODULE_SUFFIXES = {".ko": "none", ".ko.gz": "gzip", ".ko.xz": "xz", ".ko.zst": "zstd"}

# Small in-tree modules that nearly every distribution kernel builds as modules; the first one
# present gives the vermagic. Otherwise the smallest in-tree module does.
PREFERRED_MODULES = (
    "kernel/lib/crc-itu-t", "kernel/lib/crc7", "kernel/lib/crc16", "kernel/lib/libcrc32c",
    "kernel/fs/fat/fat", "kernel/crypto/cmac", "kernel/drivers/block/loop",
)

# What to try when a module cannot be read: how many other in-tree modules.
MODULE_ATTEMPTS = 5

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ELF_MACHINE_TO_UNAME = {
    "EM_X86_64": "x86_64", "EM_386": "i686", "EM_AARCH64": "aarch64", "EM_ARM": "armv7l",
    "EM_PPC64": "ppc64le", "EM_PPC": "ppc", "EM_S390": "s390x", "EM_RISCV": "riscv64",
    "EM_LOONGARCH": "loongarch64", "EM_MIPS": "mips",
}

_RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")
_UTS_RELEASE = re.compile(r'^\s*#\s*define\s+UTS_RELEASE\s+"([^"]*)"', re.M)
_RANDSTRUCT_HASH = re.compile(r'^\s*#\s*define\s+RANDSTRUCT_HASHED_SEED\s+"([^"]*)"', re.M)
_LOCKDOWN = re.compile(r"\[(\w+)\]")


class KernelFactsError(Exception):
    """Input that allows no answer; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class RunningView:
    """The running kernel as this host shows it: uname, and ``proc/``, ``sys/`` under ``base``.

    ``base`` is also the root directory of the running system: facts for that root (and the
    running release) are facts about the running kernel. Tests point it at a fake root.
    """

    release: str
    version: str
    machine: str
    base: str = "/"
    path: str = DEFAULT_PATH

    @classmethod
    def from_host(cls) -> RunningView:
        uname = os.uname()
        return cls(uname.release, uname.version, uname.machine, "/",
                   os.environ.get("PATH") or DEFAULT_PATH)

    def file(self, relative: str) -> str:
        return os.path.join(self.base, relative)

    def read(self, relative: str) -> str | None:
        try:
            with open(self.file(relative), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def compiler_version(self, path: str) -> str | None:
        """``12.2.0`` from ``gcc -dumpfullversion`` (``clang -dumpversion``), or None."""
        try:
            status, out, _err = run_text([path, "-dumpfullversion", "-dumpversion"], timeout=30)
        except OSError:
            return None
        words = out.split()
        return words[0] if status == 0 and words else None


@dataclass(frozen=True)
class ModuleView:
    """What kernel_facts needs from one module file."""

    vermagic: str | None
    elf_class: int | None
    elf_machine: str | None
    intree: bool


class ModuleReadError(Exception):
    """One module file could not be read; the message says why."""


class ReaderUnavailable(ModuleReadError):
    """No module file can be read on this host (pyelftools is missing)."""


def read_module_view(path: str) -> ModuleView:
    """Read a module with the collection's reader (``_modfile``, needs pyelftools)."""
    try:
        from ansible_collections.vermagic.kmod.plugins.module_utils import _modfile
    except ImportError as exc:
        raise ReaderUnavailable(f"the module reader is not available ({exc}): "
                                "install pyelftools (Debian: python3-pyelftools)") from None
    try:
        module = _modfile.read_module(path)
    except Exception as exc:  # the reader's own error types: the message says what is wrong
        raise ModuleReadError(str(exc)) from None
    intree = module.fields.get("intree")
    return ModuleView(vermagic=module.vermagic, elf_class=module.elf.elf_class,
                      elf_machine=module.elf.machine, intree=intree == "Y")


@dataclass
class _State:
    root: str
    release: str
    running: bool
    view: RunningView | None
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def host(self, path: str) -> str:
        """A path inside the root as a path on this host, links resolved inside the root."""
        try:
            return resolve(self.root, path)
        except RootPathError as exc:
            if str(exc) not in self.missing:
                self.missing.append(str(exc))
            return inside(self.root, path)

    def show(self, path: str) -> str:
        return inside(self.root, path)


def _check_release(release: str) -> None:
    if not _RELEASE.match(release) or release in (".", ".."):
        raise KernelFactsError(f"release {release!r} is not a kernel release (such as "
                               "6.1.0-56-amd64, what uname -r prints)")


def _check_root(root: str) -> str:
    if not root:
        raise KernelFactsError("root is empty: give / or the directory of an unpacked image")
    if not os.path.exists(root):
        raise KernelFactsError(f"root {root} does not exist: give / or the directory of an "
                               "unpacked image or chroot")
    if not os.path.isdir(root):
        raise KernelFactsError(f"root {root} is not a directory: give / or the directory of an "
                               "unpacked image or chroot")
    return os.path.abspath(root)


def _is_kernel_dir(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, name))
               for name in ("kernel", "modules.order", "modules.builtin", "modules.dep"))


def installed_kernels(root: str) -> dict[str, list[str]]:
    """Releases found under ``root``: ``{release: [where it was seen, ...]}``."""
    found: dict[str, list[str]] = {}
    try:
        moddir = resolve(root, "/lib/modules")
        names = sorted(os.listdir(moddir)) if os.path.isdir(moddir) else []
    except (OSError, RootPathError):
        names = []
    for name in names:
        if os.path.isdir(os.path.join(moddir, name)) and _is_kernel_dir(os.path.join(moddir, name)):
            found.setdefault(name, []).append(f"/lib/modules/{name}")
    for name, header in _vmlinuz_headers(root).items():
        release = header if isinstance(header, str) else name[len("vmlinuz-"):]
        if release:
            found.setdefault(release, []).append(f"/boot/{name}")
    return found


def _vmlinuz_headers(root: str) -> dict[str, str | None]:
    """``{file name: release from its bzImage header, or None when it has no such header}``."""
    try:
        boot = resolve(root, "/boot")
        names = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz-"))
    except (OSError, RootPathError):
        return {}
    result: dict[str, str | None] = {}
    for name in names:
        path = os.path.join(boot, name)
        if not os.path.isfile(path):
            continue
        try:
            result[name] = read_header(path).release
        except BzImageError:
            result[name] = None
    return result


def choose_release(root: str, release: str | None, view: RunningView | None) -> str:
    if release is not None:
        _check_release(release)
        return release
    if view is not None:  # root is the running system's
        return view.release
    kernels = installed_kernels(root)
    if not kernels:
        raise KernelFactsError(f"no kernel found under {root}: neither lib/modules/<release> "
                               "nor boot/vmlinuz-<release>; give release, or point root at an "
                               "unpacked kernel image or a system's root directory")
    if len(kernels) > 1:
        listing = "; ".join(f"{rel} ({', '.join(where)})" for rel, where in sorted(kernels.items()))
        raise KernelFactsError(f"{len(kernels)} kernels under {root}: {listing}; "
                               "give release to choose one")
    return next(iter(kernels))


# ---------------------------------------------------------------- the pieces


def _version(state: _State) -> str | None:
    """uname -v of the kernel: from uname when it runs, else from its vmlinuz's boot header."""
    boot = state.host("/boot")
    named = f"vmlinuz-{state.release}"
    try:
        others = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz-") and n != named)
    except OSError:
        others = []
    found = problem = None
    for name in [named] + others:
        path = os.path.join(boot, name)
        if not os.path.isfile(path):
            continue
        try:
            header = read_header(path)
        except BzImageError as exc:
            if name == named:
                problem = str(exc)
            continue
        if header.release != state.release:
            if name == named:
                state.warnings.append(f"{state.show('/boot/' + name)} holds release "
                                      f"{header.release}, not {state.release}")
            continue
        text = header.version_string
        hash_at = text.find(" #")
        found = text[hash_at + 1:] if hash_at >= 0 else text
        break
    unknown = "" if state.running else "; the kernel's version string (uname -v) is unknown"
    if found is None and os.path.isdir(boot):
        if problem:
            state.missing.append(f"version: {problem}{unknown}")
        elif not os.path.isfile(os.path.join(boot, named)):
            state.missing.append(f"no {state.show('/boot/' + named)}: symbol CRCs cannot be "
                                 f"recovered from it{unknown}")
    if state.running and state.view is not None:
        return state.view.version
    return found


def _config(state: _State, build_path: str | None) -> tuple[str | None, dict[str, str | None] | None]:
    """The configuration: path shown in the facts, and the options."""
    places: list[tuple[str, str]] = []
    if state.running and state.view is not None:
        places.append(("/proc/config.gz", state.view.file("proc/config.gz")))
    places.append((state.show(f"/boot/config-{state.release}"),
                   state.host(f"/boot/config-{state.release}")))
    places.append((state.show(f"/lib/modules/{state.release}/config"),
                   state.host(f"/lib/modules/{state.release}/config")))
    if build_path:
        places.append((os.path.join(build_path, ".config"), os.path.join(build_path, ".config")))
    problems = []
    for shown, path in places:
        if not os.path.exists(path):
            continue
        if not os.path.isfile(path):
            problems.append(f"{shown} is not a regular file")
            continue
        try:
            return path, _kconfig.read_config(path)
        except _kconfig.KconfigError as exc:
            problems.append(str(exc))
    tried = ", ".join(shown for shown, _path in places)
    state.missing.append(f"no kernel configuration for {state.release} (looked at {tried}"
                         + (f"; {'; '.join(problems)}" if problems else "")
                         + "): MODVERSIONS, signature, preemption and compiler are unknown, "
                         "and the vermagic cannot be cross-checked")
    return None, None


def _count_compression(moddir: str) -> dict[str, int]:
    """How many in-tree module files under ``moddir/kernel`` have each compression.

    Runs on every gather (modload gathers before each load), over some 4,000 files in 900
    directories, so it does the least per entry: ``os.scandir`` (the file type comes with the
    directory listing; only a symbolic link costs a ``stat``), the suffix looked up in one
    dictionary, no path built for a file. Like ``os.walk``, linked directories are not entered.
    """
    counts: dict[str, int] = {}
    kinds = MODULE_SUFFIXES
    pending = [os.path.join(moddir, "kernel")]
    while pending:
        try:
            listing = os.scandir(pending.pop())
        except OSError:
            continue
        with listing:
            for entry in listing:
                name = entry.name
                at = name.rfind(".ko")
                if at > 0:
                    kind = kinds.get(name[at:])
                    if kind is not None:
                        try:
                            if entry.is_file():  # a directory or a pipe named like one is not
                                counts[kind] = counts.get(kind, 0) + 1
                                continue
                        except OSError:
                            continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                except OSError:
                    continue
    return counts


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _preferred_modules(moddir: str) -> list[str]:
    """``PREFERRED_MODULES`` that exist (relative to ``moddir``), found by their paths alone."""
    found = []
    for stem in PREFERRED_MODULES:
        for suffix in MODULE_SUFFIXES:
            if _is_file(os.path.join(moddir, stem + suffix)):
                found.append(stem + suffix)
                break
    return found


def _smallest_modules(moddir: str, count: int, skip: set[str]) -> list[str]:
    """The ``count`` smallest in-tree module files (relative to ``moddir``) not in ``skip``.

    Only needed when none of the preferred modules gives a vermagic: this walk stats every file.
    """
    sized: list[tuple[int, str]] = []
    kinds = MODULE_SUFFIXES
    pending = ["kernel"]
    while pending:
        relative_dir = pending.pop()
        try:
            listing = os.scandir(os.path.join(moddir, relative_dir))
        except OSError:
            continue
        with listing:
            for entry in listing:
                name = entry.name
                relative = relative_dir + "/" + name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(relative)
                        continue
                    at = name.rfind(".ko")
                    if at > 0 and name[at:] in kinds and relative not in skip and \
                            entry.is_file():
                        sized.append((entry.stat().st_size, relative))
                except OSError:
                    continue
    return [relative for _size, relative in heapq.nsmallest(count, sized)]


def _candidates(moddir: str) -> Iterator[str]:
    """In-tree modules to read the vermagic from: the preferred ones, then the smallest."""
    preferred = _preferred_modules(moddir)
    yield from preferred
    yield from _smallest_modules(moddir, MODULE_ATTEMPTS, set(preferred))


def _build_dir(state: _State) -> dict:
    link = f"/lib/modules/{state.release}/build"
    path = state.host(link)
    shown = state.show(link)
    result = {"path": path, "exists": os.path.isdir(path), "usable": False, "reason": ""}
    if not result["exists"]:
        entry = os.path.join(state.host(f"/lib/modules/{state.release}"), "build")
        if os.path.islink(entry):
            result["reason"] = (f"{shown} points to {os.readlink(entry)}, which is not there: "
                                "the kernel headers (devel) package of this release is not "
                                "installed")
        elif not os.path.isdir(os.path.dirname(entry)):
            result["reason"] = (f"no {state.show('/lib/modules/' + state.release)}, so no build "
                                "directory link: install the kernel headers (devel) package of "
                                "this release")
        else:
            result["reason"] = (f"no {shown}: install the kernel headers (devel) package of this "
                                "release")
        if not os.path.islink(entry):
            result["path"] = shown  # where it would be, as the system names it
        state.missing.append(f"build directory: {result['reason']}")
        return result
    problems = []
    makefile = os.path.join(path, "Makefile")
    if not os.path.isfile(makefile):
        problems.append("no Makefile")
    else:
        problems.extend(_makefile_includes(state, makefile))
    if not os.path.isfile(os.path.join(path, ".config")):
        problems.append("no .config")
    for needed in ("include/generated/autoconf.h", "include/config/auto.conf"):
        if not os.path.isfile(os.path.join(path, needed)):
            problems.append(f"no {needed} (run 'make modules_prepare' in it)")
    tree_release = build_release(path)
    if tree_release is None:
        problems.append("no include/generated/utsrelease.h (nor include/linux/utsrelease.h or "
                        "include/config/kernel.release) naming its release")
    elif tree_release != state.release:
        problems.append(f"it is for release {tree_release}, not {state.release}")
    if not os.path.isfile(os.path.join(path, "scripts", "mod", "modpost")):
        if os.path.isdir(os.path.join(path, "scripts")):
            problems.append("no scripts/mod/modpost (run 'make modules_prepare' in it)")
        else:
            problems.append("no scripts directory (Debian: the linux-kbuild package is missing)")
    if problems:
        result["reason"] = f"{path} cannot build modules: " + "; ".join(problems)
        state.missing.append(f"build directory: {result['reason']}")
    else:
        result["usable"] = True
        result["reason"] = (f"{path} has a Makefile, .config, generated headers for "
                            f"{state.release} and scripts/mod/modpost")
    return result


def _makefile_includes(state: _State, makefile: str) -> list[str]:
    """A headers package's Makefile is often only ``include <the common headers>/Makefile``."""
    problems = []
    try:
        with open(makefile, encoding="utf-8", errors="replace") as handle:
            text = handle.read(65536)
    except OSError as exc:
        return [f"the Makefile cannot be read: {exc.strerror}"]
    for match in re.finditer(r"^include\s+(/\S+)\s*$", text, re.M):
        target = match.group(1)
        # a path already below root was adjusted to work from this host (an unpacked package)
        if state.root != "/" and target.startswith(state.root.rstrip("/") + "/"):
            host = target
        else:
            host = state.host(target)
        if not os.path.isfile(host):
            problems.append(f"the Makefile includes {target}, which is not there")
    return problems


def build_release(path: str) -> str | None:
    """The release a kernel tree is prepared for (UTS_RELEASE), or None."""
    for relative in ("include/generated/utsrelease.h", "include/linux/utsrelease.h",
                     "include/linux/version.h"):
        try:
            with open(os.path.join(path, relative), encoding="utf-8", errors="replace") as handle:
                match = _UTS_RELEASE.search(handle.read())
        except OSError:
            continue
        if match:
            return match.group(1)
    try:
        with open(os.path.join(path, "include/config/kernel.release"), encoding="utf-8") as handle:
            text = handle.read().strip()
            return text or None
    except (OSError, UnicodeDecodeError):
        return None


def _randstruct_hash(build: dict) -> str | None:
    if not build["exists"]:
        return None
    for relative in ("include/generated/randstruct_hash.h",
                     "include/generated/randomize_layout_hash.h"):
        try:
            with open(os.path.join(build["path"], relative), encoding="utf-8") as handle:
                match = _RANDSTRUCT_HASH.search(handle.read())
        except (OSError, UnicodeDecodeError):
            continue
        if match:
            return match.group(1)
    return None


def _symvers(state: _State, build: dict) -> list[dict]:
    sources = []
    if build["exists"]:
        path = os.path.join(build["path"], "Module.symvers")
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            sources.append({"source": "headers", "path": path})
    for name in (f"/boot/symvers-{state.release}.gz", f"/boot/symvers-{state.release}"):
        path = state.host(name)
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            sources.append({"source": "boot", "path": path})
            break
    if not sources:
        where = (os.path.join(build["path"], "Module.symvers") if build["exists"]
                 else state.show(f"/lib/modules/{state.release}/build/Module.symvers"))
        state.missing.append(f"no Module.symvers: neither {where} nor "
                             f"{state.show('/boot/symvers-' + state.release + '.gz')}; symbol "
                             "CRCs can only be recovered from vmlinuz and the in-tree modules")
    return sources


def _compiler(state: _State, options: dict[str, str | None] | None) -> dict | None:
    if options is None:
        return None
    found = _kconfig.compiler(options)
    if found is None:
        state.missing.append("compiler: the configuration has no CONFIG_CC_VERSION_TEXT "
                             "(kernels before 5.8): the compiler that built it is unknown")
        return None
    at_host = state.view is not None
    dirs = (state.view.path if state.view is not None else DEFAULT_PATH).split(":")
    found["path"] = None
    where = "in PATH" if at_host else f"under {state.root}"
    for directory in dirs:
        if not directory.startswith("/"):
            continue
        candidate = state.host(os.path.join(directory, found["name"]))
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            found["path"] = inside(state.root, os.path.join(directory, found["name"])) \
                if at_host else candidate
            break
    if found["path"] is None:
        state.missing.append(f"compiler: {found['name']} (which built this kernel: "
                             f"{found['text']}) is not installed {where}")
    elif not re.search(r"-\d+$", found["name"]) and found["version"]:
        # a plain "gcc" or "clang" can be any version: check it where it can be run
        if state.view is None:
            state.missing.append(f"compiler: {found['path']} is a {found['name']} of unknown "
                                 f"version (it is not run under a root other than /); the "
                                 f"kernel was built with {found['version']}")
        else:
            have = state.view.compiler_version(found["path"])
            want = found["version"]
            if have is None:
                state.missing.append(f"compiler: {found['path']} does not tell its version; "
                                     f"the kernel was built with {want}")
            elif have.split(".")[0] != want.split(".")[0]:
                state.missing.append(f"compiler: {found['path']} is version {have}, the kernel "
                                     f"was built with {found['name']} {want}: install that "
                                     "version")
                found["path"] = None
            elif have != want:
                state.missing.append(f"compiler: {found['path']} is version {have}, the kernel "
                                     f"was built with {want} (same major version: usually fine)")
    return found


def _module_compression(state: _State, options: dict | None, counts: dict[str, int]) -> str:
    configured = _kconfig.compression(options) if options is not None else None
    if counts:
        on_disk = max(sorted(counts), key=lambda kind: counts[kind])
        if configured is not None and configured != on_disk:
            state.warnings.append(f"the configuration says modules are compressed with "
                                  f"{configured}, the in-tree files are {on_disk} "
                                  f"({counts[on_disk]} of {sum(counts.values())}): reporting "
                                  f"{on_disk} (distributions often compress when packaging)")
        return on_disk
    return configured or "none"


def _sig_enforce(state: _State, options: dict | None) -> bool | None:
    if options is not None and not _kconfig.enabled(options, "MODULES"):
        return None
    if state.running and state.view is not None:
        text = state.view.read("sys/module/module/parameters/sig_enforce")
        if text is not None and text.strip() in ("Y", "N"):
            return text.strip() == "Y"
        if options is not None and not _kconfig.enabled(options, "MODULE_SIG"):
            return False
        cmdline = (state.view.read("proc/cmdline") or "").split()
        if "module.sig_enforce=1" in cmdline or "module.sig_enforce=y" in cmdline:
            state.missing.append("sig_enforce: /sys/module/module/parameters/sig_enforce cannot "
                                 "be read; the kernel command line sets module.sig_enforce=1")
            return True
        if options is None:
            state.missing.append("sig_enforce: /sys/module/module/parameters/sig_enforce cannot "
                                 "be read and the configuration is unknown")
            return None
        state.missing.append("sig_enforce: /sys/module/module/parameters/sig_enforce cannot be "
                             "read; taken from the configuration (MODULE_SIG_FORCE)")
        return _kconfig.enabled(options, "MODULE_SIG_FORCE")
    if options is None:
        return None
    if not _kconfig.enabled(options, "MODULE_SIG"):
        return False
    forced = _kconfig.enabled(options, "MODULE_SIG_FORCE")
    if not forced:
        state.missing.append("sig_enforce: this kernel is not running, so it is taken from the "
                             "configuration (MODULE_SIG_FORCE is not set); a boot with "
                             "module.sig_enforce=1 would enforce signatures")
    return forced


def _lockdown(state: _State, options: dict | None) -> str | None:
    minimum = _kconfig.lockdown_minimum(options) if options is not None else None
    efi = options is not None and _kconfig.enabled(options, "LOCK_DOWN_IN_EFI_SECURE_BOOT")
    if state.running and state.view is not None:
        text = state.view.read("sys/kernel/security/lockdown")
        match = _LOCKDOWN.search(text or "")
        if match and match.group(1) in _kconfig.LOCKDOWN_LEVELS:
            return match.group(1)
        if options is not None and minimum is None:
            return "none"  # no lockdown LSM in this kernel
        for word in (state.view.read("proc/cmdline") or "").split():
            if word.startswith("lockdown=") and word[9:] in _kconfig.LOCKDOWN_LEVELS:
                state.missing.append("lockdown: /sys/kernel/security/lockdown cannot be read "
                                     "(securityfs not mounted?); taken from the kernel command "
                                     f"line ({word})")
                return word[9:]
        if minimum is None:
            state.missing.append("lockdown: /sys/kernel/security/lockdown cannot be read and "
                                 "the configuration is unknown")
            return None
        state.missing.append("lockdown: /sys/kernel/security/lockdown cannot be read "
                             "(securityfs not mounted?); taken from the configuration "
                             f"(at least {minimum}"
                             + ("; secure boot would raise it to integrity" if efi else "") + ")")
        return minimum
    if options is None:
        return None
    if minimum is None:
        return "none"
    state.missing.append(f"lockdown: this kernel is not running, so it is taken from the "
                         f"configuration (at least {minimum}"
                         + ("; secure boot or lockdown= on the command line would raise it)"
                            if minimum != "confidentiality" else ")"))
    return minimum


def _read_in_tree(state: _State, moddir: str, reader: Callable[[str], ModuleView]
                  ) -> tuple[ModuleView | None, str | None]:
    """The first in-tree module (``intree=Y``) with a vermagic, among a few candidates."""
    failures = []
    fallback: tuple[ModuleView | None, str | None] = (None, None)
    for relative in islice(_candidates(moddir), MODULE_ATTEMPTS):
        try:
            seen = reader(os.path.join(moddir, relative))
        except ReaderUnavailable as exc:
            failures.append(str(exc))
            break
        except ModuleReadError as exc:
            failures.append(f"{relative}: {exc}")
            continue
        if not seen.vermagic:
            failures.append(f"{relative}: it has no vermagic")
            continue
        if seen.intree:
            fallback = (seen, relative)
            break
        if fallback[0] is None:
            fallback = (seen, relative)
    if failures:
        state.missing.append("in-tree modules that could not be read: " + "; ".join(failures))
    return fallback


def _vermagic(state: _State, config_path: str | None, options: dict | None, build: dict,
              module_view: ModuleView | None, module_source: str | None
              ) -> tuple[str | None, str | None]:
    """``(vermagic, source)``: the in-tree module's, checked against the configuration's."""
    config_magic = None
    if options is not None:
        config_magic, why = _kconfig.config_vermagic(state.release, options, _randstruct_hash(build))
        if config_magic is None:
            state.missing.append(f"vermagic from the configuration: {why}")
    module_magic = module_view.vermagic if module_view is not None else None
    if module_view is not None and module_magic is not None:
        if not module_view.intree:
            state.warnings.append(f"no module read says intree=Y; the vermagic of "
                                  f"{module_source} is used all the same")
        if parse_vermagic(module_magic).release != state.release:
            state.warnings.append(f"{module_source} has the vermagic {module_magic!r}, whose "
                                  f"release is not {state.release}")
        if config_magic is not None and config_magic != module_magic:
            text = (f"vermagic: the in-tree module {module_source} says {module_magic!r}, the "
                    f"configuration {config_path} gives {config_magic!r}; trusting the module "
                    "(it is what this kernel's build produced)")
            state.missing.append(text)
            state.warnings.append(text)
        return module_magic, module_source
    if config_magic is not None:
        state.missing.append("vermagic: no in-tree module could be read, so it is derived from "
                             f"the configuration {config_path}")
        return config_magic, "config"
    if options is None:
        state.missing.append("vermagic: unknown (no in-tree module and no configuration)")
    return None, None


# ---------------------------------------------------------------- the whole


def gather(root: str = "/", release: str | None = None, view: RunningView | None = None,
           module_reader: Callable[[str], ModuleView] = read_module_view) -> tuple[dict, list[str]]:
    """``(kmod_kernel facts, warnings)`` for ``release`` under ``root``; read-only."""
    root = _check_root(root)
    view = view or RunningView.from_host()
    at_host = os.path.realpath(root) == os.path.realpath(view.base)
    release = choose_release(root, release, view if at_host else None)
    running = at_host and release == view.release
    state = _State(root=root, release=release, running=running, view=view if at_host else None)

    moddir = state.host(f"/lib/modules/{release}")
    has_moddir = os.path.isdir(moddir)
    if not has_moddir:
        if not os.path.isdir(state.host("/lib/modules")):
            state.missing.append(f"no {state.show('/lib/modules')}: no kernel modules are "
                                 "installed, so no in-tree module gives the vermagic")
        else:
            others = sorted(installed_kernels(root))
            state.missing.append(f"no {state.show('/lib/modules/' + release)}: no in-tree "
                                 "module of this release gives the vermagic"
                                 + (f" (kernels under this root: {', '.join(others)})" if others else ""))

    if not os.path.isdir(state.host("/boot")):
        state.missing.append(f"no {state.show('/boot')}: no kernel configuration, vmlinuz or "
                             "symvers file can come from there")
    build = _build_dir(state)
    config_path, options = _config(state, build["path"] if build["exists"] else None)
    version = _version(state)

    compression_counts = _count_compression(moddir) if has_moddir else {}
    if has_moddir and not compression_counts:
        state.missing.append(f"no in-tree module files under "
                             f"{state.show('/lib/modules/' + release + '/kernel')}")

    facts: dict = {
        "release": release, "version": version, "running": running, "root": root,
        "arch": None, "elf_machine": None, "elf_class": None,
        "vermagic": None, "vermagic_source": None, "vermagic_parsed": None,
        "config": {"path": config_path,
                   "options": _kconfig.key_options(options) if options is not None else {}},
        "modversions": None, "compiler": None, "build_dir": build, "symvers": [],
        "module_compression": "none", "sig_enforce": None, "lockdown": None, "taint": None,
        "missing": state.missing,
    }

    # vermagic: an in-tree module, cross-checked against the configuration
    module_view, module_source = (_read_in_tree(state, moddir, module_reader)
                                  if compression_counts else (None, None))

    modules_off = options is not None and not _kconfig.enabled(options, "MODULES")
    if modules_off:
        state.missing.append(f"modules: CONFIG_MODULES is not set in {config_path}: this kernel "
                             "cannot load any module")
    else:
        facts["vermagic"], facts["vermagic_source"] = _vermagic(
            state, config_path, options, build, module_view, module_source)
    if facts["vermagic"] is not None:
        facts["vermagic_parsed"] = parse_vermagic(facts["vermagic"]).as_dict()

    # machine
    if options is not None:
        facts["arch"], facts["elf_machine"], facts["elf_class"] = _kconfig.machine(options)
    if module_view is not None and module_view.elf_machine:
        if facts["elf_machine"] and facts["elf_machine"] != module_view.elf_machine:
            state.warnings.append(f"the configuration is for {facts['elf_machine']}, the in-tree "
                                  f"module {module_source} is {module_view.elf_machine}: "
                                  "trusting the module")
        facts["elf_machine"], facts["elf_class"] = module_view.elf_machine, module_view.elf_class
        if facts["arch"] is None:
            facts["arch"] = ELF_MACHINE_TO_UNAME.get(module_view.elf_machine)
    if running and view is not None:
        facts["arch"] = view.machine
    if facts["arch"] is None:
        state.missing.append("arch: unknown (no configuration and no in-tree module)")

    if options is not None:
        facts["modversions"] = _kconfig.enabled(options, "MODVERSIONS")
    elif facts["vermagic_parsed"] is not None:
        facts["modversions"] = facts["vermagic_parsed"]["modversions"]

    facts["compiler"] = _compiler(state, options)
    facts["symvers"] = _symvers(state, build) if not modules_off else []
    facts["module_compression"] = _module_compression(state, options, compression_counts)
    facts["sig_enforce"] = _sig_enforce(state, options)
    facts["lockdown"] = _lockdown(state, options)
    if running and view is not None:
        facts["taint"] = read_taint(view.file("proc/sys/kernel/tainted"))
        if facts["taint"] is None:
            state.missing.append("taint: /proc/sys/kernel/tainted cannot be read")
    return facts, state.warnings
