# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The release a Linux source tree builds for, and the edits that make it exactly a given one.

**The release of a tree** is the ``UTS_RELEASE`` its preparation writes into
``include/generated/utsrelease.h`` (2.6.18-2.6.32: ``include/linux/utsrelease.h``; earlier:
``include/linux/version.h``), which every module built against the tree carries as the first
word of its vermagic. Kbuild takes it from ``KERNELRELEASE``, which is what ``make -s
kernelrelease`` prints on a configured tree::

    KERNELVERSION   VERSION.PATCHLEVEL.SUBLEVEL + EXTRAVERSION     (top Makefile)
  + localversion*   the files at the top of the tree, in name order ("~" names skipped)
  + CONFIG_LOCALVERSION                                             (.config)
  + LOCALVERSION    make's environment or command line: not visible here, assumed unset
  + scm part        scripts/setlocalversion: with CONFIG_LOCALVERSION_AUTO=y the git
                    description (-gHASH, -dirty); without it a "+" (newer trees: "-dirty")
                    when the tree is the top of a git work tree that is not exactly at a
                    tag or has uncommitted changes, unless LOCALVERSION is set (even empty)

unless ``override KERNELRELEASE = ...`` in the top Makefile sets it outright (what Debian's
headers do through ``.kernelvariables``).

**Two ways to make a tree build for a target release.** *makefile*: the classic edit of VERSION,
PATCHLEVEL, SUBLEVEL and EXTRAVERSION (``LINUX_VERSION_CODE`` follows the target's numbers).
*header*: the numbers stay the tree's own, so ``LINUX_VERSION_CODE`` stays true, and a managed
block right after the version fields sets the release::

    # BEGIN vermagic.kmod.kernel_release ...
    override KERNELRELEASE = 6.1.0-56-amd64
    kernelrelease include/config/kernel.release: override KERNELVERSION = 6.1.0-56-amd64
    # END vermagic.kmod.kernel_release

``override`` wins over the Makefile's own ``KERNELRELEASE = $(shell cat
include/config/kernel.release)`` wherever it stands, so ``utsrelease.h`` follows it. The other
two places that *compute* a release, ``include/config/kernel.release`` and the ``kernelrelease``
target, both print ``KERNELVERSION`` + scripts/setlocalversion (2.6.15 to 6.2: in the recipe;
6.3 on: setlocalversion reads the exported ``KERNELVERSION``), so a target-specific
``KERNELVERSION`` on exactly those two targets makes them agree, while ``make kernelversion``
and everything else keep the tree's true version. (Newer trees, 6.12 checked, print an
overriding ``KERNELRELEASE`` there by themselves; the extra line then changes nothing.) The block
stands right after the version fields, before the Makefile's first target, so it is read on
every make, sub-makes included, and leaves the default goal alone.

**Traps** that append to a release are kept when the target already ends with what they add,
and neutralized otherwise: ``localversion*`` files are removed, CONFIG_LOCALVERSION is set to
``""`` and CONFIG_LOCALVERSION_AUTO switched off (in ``.config``, and in
``include/config/auto.conf`` when the tree is configured; ``.config`` is written last so that
kbuild regenerates the rest at the next preparation). A git tree, which the edits themselves
make dirty, gets ``export LOCALVERSION ?=`` in the managed block, so setlocalversion adds no
``+`` or ``-dirty``.

**Generated files** that exist are made to agree without a rebuild, byte for byte as kbuild
writes them: ``include/config/kernel.release``, ``.kernelrelease`` (2.6.13-2.6.14), the
``utsrelease.h`` files and the ``version.h`` files (``UTS_RELEASE`` on 2.6-era trees,
``LINUX_VERSION_CODE`` and the ``LINUX_VERSION_*`` numbers).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

from ansible_collections.vermagic.kmod.plugins.module_utils._commands import run_text
from ansible_collections.vermagic.kmod.plugins.module_utils._files import write_atomic
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import tree_lock

UTS_LEN = 64  # __NEW_UTS_LEN: kbuild refuses a longer release ("exceeds 64 characters")
MODES = ("auto", "makefile", "header")
BLOCK_BEGIN = "# BEGIN vermagic.kmod.kernel_release"
BLOCK_END = "# END vermagic.kmod.kernel_release"
FIELDS = ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION")

MAKEFILE = "Makefile"
DOT_CONFIG = ".config"
AUTO_CONF = "include/config/auto.conf"
SCMVERSION = ".scmversion"
SETLOCALVERSION = "scripts/setlocalversion"
RELEASE_FILES = ("include/config/kernel.release", ".kernelrelease")
UTS_FILES = ("include/generated/utsrelease.h", "include/linux/utsrelease.h")
VERSION_FILES = ("include/generated/uapi/linux/version.h", "include/linux/version.h")

_RELEASE_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_RELEASE_CHARS = re.compile(r"[A-Za-z0-9._+~,:@-]+")
_FIELD_RE = re.compile(
    r"^(?P<name>VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)[ \t]*[:?]?=(?P<sep>[ \t]*)"
    r"(?P<value>[^#\r\n]*?)[ \t]*(?:#[^\r\n]*)?(?P<eol>\r?\n|$)", re.M)
_NAME_RE = re.compile(r"^NAME[ \t]*[:?]?=[^\r\n]*(?:\r?\n|$)", re.M)
_OVERRIDE_RE = re.compile(r"^[ \t]*override[ \t]+KERNELRELEASE[ \t]*[:?]?=[ \t]*(.*?)[ \t]*\r?$", re.M)
_TARGET_KV_RE = re.compile(
    r"^[ \t]*kernelrelease[ \t]+include/config/kernel\.release[ \t]*:[ \t]*"
    r"override[ \t]+KERNELVERSION[ \t]*[:?]?=[ \t]*(.*?)[ \t]*\r?$", re.M)
_EXPORT_LV_RE = re.compile(r"^[ \t]*export[ \t]+LOCALVERSION[ \t]*\?=[ \t]*\r?$", re.M)
_UTS_RE = re.compile(r'(#define[ \t]+UTS_RELEASE[ \t]+")([^"\n]*)(")')
_CODE_RE = re.compile(r"(#define[ \t]+LINUX_VERSION_CODE[ \t]+)(\d+)")
_NUMBER_RES = {  # the numbers, in version.h since 5.x, in Makefile order
    define: re.compile(rf"(#define[ \t]+{define}[ \t]+)(\d+)")
    for define in ("LINUX_VERSION_MAJOR", "LINUX_VERSION_PATCHLEVEL", "LINUX_VERSION_SUBLEVEL")
}


class ReleaseError(Exception):
    """A target or a tree this module cannot work with; the message says why and what to do."""


# --- the target -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    """A release string split the way the top Makefile holds it."""

    text: str
    version: str
    patchlevel: str
    sublevel: str  # "" when the release has only two numbers ("3.0-rc1")
    rest: str  # what follows the numbers: EXTRAVERSION and any local version

    @property
    def numbers(self) -> str:
        return self.text[:len(self.text) - len(self.rest)]


def parse_release(text: str) -> Release:
    """Check a target release and split it; ReleaseError says what is wrong with it."""
    if not isinstance(text, str) or not text:
        raise ReleaseError("release is empty: give the kernel release, e.g. '6.1.0-56-amd64' (uname -r)")
    if any(ch.isspace() for ch in text):
        raise ReleaseError(f"release {text!r} contains whitespace: give one word, as 'uname -r' prints it")
    if len(text) > UTS_LEN:
        raise ReleaseError(f"release {text!r} is {len(text)} characters long; a kernel release has at "
                           f"most {UTS_LEN} (UTS_RELEASE), so no kernel can run it")
    if not _RELEASE_CHARS.fullmatch(text):
        bad = "".join(sorted({ch for ch in text if not _RELEASE_CHARS.fullmatch(ch)}))
        raise ReleaseError(f"release {text!r} contains {bad!r}: only letters, digits and . _ + ~ , : @ - "
                           "are accepted (they pass through make, the shell and C strings unchanged)")
    match = _RELEASE_RE.match(text)
    if not match:
        raise ReleaseError(f"release {text!r} does not start with VERSION.PATCHLEVEL numbers, "
                           "e.g. '6.1.0-56-amd64'")
    return Release(text, match.group(1), match.group(2), match.group(3) or "", text[match.end():])


def version_code(version: str, patchlevel: str, sublevel: str) -> int:
    """LINUX_VERSION_CODE as kbuild computes it (SUBLEVEL clamped to 255 since 4.4.256/4.9.256)."""
    return (int(version or 0) << 16) + (int(patchlevel or 0) << 8) + min(int(sublevel or 0), 255)


def kernelversion(version: str, patchlevel: str, sublevel: str, extraversion: str) -> str:
    """``$(VERSION)$(if $(PATCHLEVEL),.$(PATCHLEVEL)$(if $(SUBLEVEL),.$(SUBLEVEL)))$(EXTRAVERSION)``."""
    numbers = version
    if patchlevel:
        numbers += f".{patchlevel}" + (f".{sublevel}" if sublevel else "")
    return numbers + extraversion


# --- reading a tree ---------------------------------------------------------------------------

def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class _Field:
    value: str
    sep_start: int  # the blanks after "=", then the value
    start: int
    end: int
    line_end: int  # index just past the line (and its newline)
    eol: str


@dataclass(frozen=True)
class _Block:
    start: int
    end: int
    release: str | None  # override KERNELRELEASE
    kernelversion: str | None  # the target-specific KERNELVERSION
    localversion_set: bool  # export LOCALVERSION ?=


@dataclass(frozen=True)
class _Makefile:
    text: str
    fields: dict[str, _Field]
    block: _Block | None

    @property
    def numbers(self) -> tuple[str, str, str]:
        return (self.fields["VERSION"].value, self.fields["PATCHLEVEL"].value,
                self.fields["SUBLEVEL"].value)

    @property
    def kernelversion(self) -> str:
        return kernelversion(*self.numbers, self.fields["EXTRAVERSION"].value)


def _parse_makefile(text: str, where: str) -> _Makefile:
    fields: dict[str, _Field] = {}
    for match in _FIELD_RE.finditer(text):
        name = match.group("name")
        if name not in fields:
            fields[name] = _Field(match.group("value"), match.start("sep"), match.start("value"),
                                  match.end("value"),
                                  match.end(), match.group("eol") or "\n")
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise ReleaseError(f"{where} has no {', '.join(missing)} line: this is not the top Makefile of a "
                           "Linux source tree (give the directory that holds the kernel's own Makefile)")
    for name in FIELDS:
        value = fields[name].value
        if "$" in value:
            raise ReleaseError(f"{where}: {name} = {value} is computed by make, which this module cannot "
                               f"follow; set {name} to a plain value first")
        if name != "EXTRAVERSION" and value and not value.isdigit():
            raise ReleaseError(f"{where}: {name} = {value} is not a number")
    if not fields["VERSION"].value:
        raise ReleaseError(f"{where}: VERSION is empty: this is not a kernel's top Makefile")
    block = _find_block(text, where)
    outside = text if block is None else text[:block.start] + text[block.end:]
    foreign = _OVERRIDE_RE.search(outside)
    if foreign:
        line = outside.count("\n", 0, foreign.start()) + 1
        raise ReleaseError(f"{where} line {line} sets 'override KERNELRELEASE' itself; remove that line "
                           "and let kernel_release manage the release (mode=header keeps the version "
                           "numbers and sets the release the same way)")
    return _Makefile(text, fields, block)


def _find_block(text: str, where: str) -> _Block | None:
    begin = re.search(r"^" + re.escape(BLOCK_BEGIN) + r"[^\n]*(?:\n|$)", text, re.M)
    end = re.search(r"^" + re.escape(BLOCK_END) + r"[^\n]*(?:\n|$)", text, re.M)
    if begin is None and end is None:
        return None
    if begin is None or end is None or end.start() < begin.end():
        raise ReleaseError(f"{where}: the block from '{BLOCK_BEGIN}' to '{BLOCK_END}' is damaged; "
                           "restore the Makefile from its backup or remove what is left of the block")
    body = text[begin.end():end.start()]
    release = _OVERRIDE_RE.search(body)
    target_kv = _TARGET_KV_RE.search(body)
    return _Block(begin.start(), end.end(), release.group(1) if release else None,
                  target_kv.group(1) if target_kv else None, bool(_EXPORT_LV_RE.search(body)))


def _config_string(raw: str) -> str:
    """A Kconfig string value as kbuild hands it to setlocalversion."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def _config_value(text: str | None, name: str) -> str | None:
    if text is None:
        return None
    match = re.search(rf"^CONFIG_{name}=(.*?)\r?$", text, re.M)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Git:
    """What scripts/setlocalversion would learn from git about the tree (top of a work tree only)."""

    head: str
    at_tag: bool  # exactly at the tag the tree's setlocalversion looks for
    describe: str  # "git describe" output, "" when no tag is reachable
    dirty: bool
    tracked: frozenset[str] = frozenset()  # Makefile and localversion* files under version control


class GitOutput(NamedTuple):
    returncode: int
    stdout: str


def _git(path: str, *args: str) -> GitOutput | None:
    argv = ["git", "-c", f"safe.directory={path}", "-C", path, *args]
    try:
        status, out, _err = run_text(argv, env={"GIT_OPTIONAL_LOCKS": "0"}, timeout=120)
    except OSError:
        return None
    return GitOutput(status, out)


def read_git(path: str, kernel_version: str, modern: bool) -> Git | None:
    """The tree's git state, or None when it is not the top of a git work tree (or git is absent)."""
    cdup = _git(path, "rev-parse", "--show-cdup")
    if cdup is None or cdup.returncode != 0 or cdup.stdout.strip():
        return None
    head = _git(path, "rev-parse", "--verify", "HEAD")
    if head is None or head.returncode != 0:
        return None
    if modern:  # 6.3 on: only the tag named after KERNELVERSION counts
        tag = "v" + re.sub(r"^([0-9]+\.[0-9]+)\.0(.*)$", r"\1\2", kernel_version)
        described = _git(path, "describe", f"--match={tag}")
        describe = described.stdout.strip() if described and described.returncode == 0 else ""
        at_tag = describe == tag
    else:
        exact = _git(path, "describe", "--exact-match")
        at_tag = bool(exact and exact.returncode == 0 and exact.stdout.strip())
        described = _git(path, "describe")
        describe = described.stdout.strip() if described and described.returncode == 0 else ""
    status = _git(path, "status", "-uno", "--porcelain")
    dirty = bool(status and status.stdout.strip())
    listed = _git(path, "ls-files", "-z", "--", MAKEFILE, "localversion*")
    tracked = frozenset(filter(None, listed.stdout.split("\0"))) if listed and listed.returncode == 0 else frozenset()
    return Git(head.stdout.strip(), at_tag, describe, dirty, tracked)


@dataclass(frozen=True)
class _Setlocalversion:
    present: bool = False
    scmversion: bool = False  # honours a .scmversion file (up to 6.2)
    plus: bool = False  # appends "+" when LOCALVERSION is unset (2.6.37 on)
    modern: bool = False  # 6.3 on: "-dirty" instead of "+" at a dirty tag


def _setlocalversion(text: str | None) -> _Setlocalversion:
    if text is None:
        return _Setlocalversion()
    return _Setlocalversion(True, ".scmversion" in text, "LOCALVERSION+set" in text, "version_tag=" in text)


def _scm_part(slv: _Setlocalversion, git: Git | None, scmversion: str | None, auto: bool,
              localversion_set: bool, dirty: bool) -> str:
    """What scripts/setlocalversion appends after CONFIG_LOCALVERSION."""
    if not slv.present:
        return ""

    def scm(short: bool) -> str:
        if slv.scmversion and scmversion is not None:
            return scmversion.rstrip("\n")
        if git is None:
            return ""
        out = ""
        if not git.at_tag:
            if short:
                return "+"
            if git.describe:
                parts = git.describe.split("-")
                if len(parts) >= 3 and parts[-2].isdigit():
                    out += f"-{int(parts[-2]):05d}"
            out += "-g" + git.head[:12]
        if dirty:
            out += "-dirty"
        return out

    if auto:
        return scm(short=False)
    if localversion_set or not slv.plus:
        return ""
    short = scm(short=True)
    if slv.modern:
        return short
    return "+" if short else ""


@dataclass(frozen=True)
class TreeRelease:
    """How a tree's release comes about (see the module docstring)."""

    numbers: tuple[str, str, str]
    kernelversion: str  # what the kernel.release/kernelrelease recipes start from
    file_localversion: str
    config_localversion: str
    localversion_auto: bool
    scm: str
    override: str | None  # override KERNELRELEASE

    @property
    def make_release(self) -> str:
        """What ``make -s kernelrelease`` prints (and include/config/kernel.release holds)."""
        return self.kernelversion + self.file_localversion + self.config_localversion + self.scm

    @property
    def release(self) -> str:
        """KERNELRELEASE: what utsrelease.h gets."""
        return self.override if self.override is not None else self.make_release

    @property
    def version_code(self) -> int:
        return version_code(*self.numbers)


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileChange:
    path: str  # relative to the tree
    before: bytes | None  # None: the file does not exist
    after: bytes | None  # None: the file is removed
    why: str


@dataclass
class Plan:
    path: str
    mode: str  # the mode used: makefile or header
    release_before: str
    release_after: str
    uts_release_before: str | None  # what the generated utsrelease.h says now
    version_code_before: int
    version_code_after: int
    changes: list[FileChange] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def files(self) -> list[str]:
        return [os.path.join(self.path, change.path) for change in self.changes]

    def diff(self) -> list[dict[str, str]]:
        """Ansible's before/after diff, one entry per file."""
        out = []
        for change in self.changes:
            name = os.path.join(self.path, change.path)
            out.append({
                "before_header": name if change.before is not None else f"{name} (absent)",
                "after_header": name if change.after is not None else f"{name} (removed)",
                "before": (change.before or b"").decode("utf-8", "replace"),
                "after": (change.after or b"").decode("utf-8", "replace"),
            })
        return out


class _Files:
    """The files of a tree that matter here, read once; an overlay gives the planned state."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._cache: dict[str, bytes | None] = {}

    def get(self, rel: str) -> bytes | None:
        if rel not in self._cache:
            full = os.path.join(self.root, rel)
            try:
                with open(full, "rb") as handle:
                    self._cache[rel] = handle.read()
            except FileNotFoundError:
                self._cache[rel] = None
            except IsADirectoryError:
                raise ReleaseError(f"{full} is a directory where kbuild expects a file") from None
            except OSError as exc:
                raise ReleaseError(f"cannot read {full}: {exc.strerror}; the tree must be readable") from None
        return self._cache[rel]

    def text(self, rel: str, overlay: Mapping[str, bytes | None] | None = None) -> str | None:
        data = overlay[rel] if overlay is not None and rel in overlay else self.get(rel)
        return None if data is None else _decode(data)

    def localversion_files(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except OSError as exc:
            raise ReleaseError(f"cannot list {self.root}: {exc.strerror}") from None
        return sorted(name for name in names if name.startswith("localversion") and "~" not in name
                      and os.path.isfile(os.path.join(self.root, name)))


@dataclass(frozen=True)
class _State:
    release: TreeRelease
    makefile: _Makefile


def _read_state(files: _Files, overlay: Mapping[str, bytes | None], git: Git | None, dirty: bool) -> _State:
    """The tree's release as its files (with ``overlay`` applied) and ``git`` make it."""
    where = os.path.join(files.root, MAKEFILE)
    makefile_text = files.text(MAKEFILE, overlay)
    if makefile_text is None:
        raise ReleaseError(f"{where} does not exist: give the top directory of a Linux source tree")
    makefile = _parse_makefile(makefile_text, where)
    block = makefile.block
    file_lv = ""
    for name in files.localversion_files():
        content = files.text(name, overlay)
        if content is not None:
            file_lv += content.rstrip("\n")
    config = files.text(DOT_CONFIG, overlay)
    source = config if config is not None else files.text(AUTO_CONF, overlay)
    raw_lv = _config_value(source, "LOCALVERSION")
    auto = _config_value(source, "LOCALVERSION_AUTO") == "y"
    slv = _setlocalversion(files.text(SETLOCALVERSION))
    lv_set = bool(block and block.localversion_set)
    scm = _scm_part(slv, git, files.text(SCMVERSION, overlay), auto, lv_set, dirty)
    kv = block.kernelversion if block and block.kernelversion is not None else makefile.kernelversion
    release = TreeRelease(makefile.numbers, kv, file_lv, _config_string(raw_lv or ""), auto, scm,
                          block.release if block else None)
    return _State(release, makefile)


def _render_block(release: str | None, kv: str | None, localversion_set: bool, eol: str) -> str:
    lines = [BLOCK_BEGIN + ": managed by the Ansible module, keep it as it is"]
    if release is not None:
        lines += [
            "# The release this tree builds for. VERSION, PATCHLEVEL and SUBLEVEL above stay the",
            "# tree's own, so LINUX_VERSION_CODE stays true; kernelrelease and kernel.release follow.",
            f"override KERNELRELEASE = {release}",
            f"kernelrelease include/config/kernel.release: override KERNELVERSION = {kv}",
        ]
    if localversion_set:
        lines += ["# No '+' or '-dirty' from git (scripts/setlocalversion) in the release.",
                  "export LOCALVERSION ?="]
    lines.append(BLOCK_END)
    return "".join(line + eol for line in lines)


def _edit_makefile(makefile: _Makefile, values: Mapping[str, str], release: str | None,
                   kv: str | None, localversion_set: bool) -> str:
    """The Makefile with new field values and block; every other byte kept."""
    text = makefile.text
    edits: list[tuple[int, int, str]] = []
    for name, value in values.items():
        spot = makefile.fields[name]
        if spot.value == value:
            continue
        if not value:  # "EXTRAVERSION =", as the kernel writes an empty field
            edits.append((spot.sep_start, spot.end, ""))
        elif not spot.value:
            sep = text[spot.sep_start:spot.start] or " "
            edits.append((spot.sep_start, spot.end, sep + value))
        else:
            edits.append((spot.start, spot.end, value))
    want_block = release is not None or localversion_set
    eol = makefile.fields["EXTRAVERSION"].eol
    block = makefile.block
    if want_block:
        new = _render_block(release, kv, localversion_set, eol)
        if block is None:
            position = _block_position(makefile)
            if position and text[position - 1] != "\n":  # the fields end the file: no final newline
                new = eol + new
            edits.append((position, position, new))
        elif (block.release, block.kernelversion if release else None, block.localversion_set) != \
                (release, kv, localversion_set):
            edits.append((block.start, block.end, new))
    elif block is not None:
        edits.append((block.start, block.end, ""))
    for start, end, new_text in sorted(edits, reverse=True):
        text = text[:start] + new_text + text[end:]
    return text


def _block_position(makefile: _Makefile) -> int:
    """Right after the version fields (and the NAME line that follows them)."""
    position = max(spot.line_end for spot in makefile.fields.values())
    name = _NAME_RE.match(makefile.text, position)
    return name.end() if name else position


def _set_config_line(text: str, name: str, value: str | None, auto_conf: bool) -> str:
    """Set CONFIG_<name> (value None: not set) the way .config or auto.conf writes it."""
    pattern = re.compile(rf"^CONFIG_{name}=.*?(\r?\n|$)", re.M)
    if value is None:
        if auto_conf:
            return pattern.sub("", text, count=1)
        return pattern.sub(lambda m: f"# CONFIG_{name} is not set{m.group(1)}", text, count=1)

    def repl(match: re.Match) -> str:
        old = match.group(0)[len(f"CONFIG_{name}="):].rstrip("\r\n")
        quoted = not auto_conf or old.startswith('"')
        return f"CONFIG_{name}=" + (f'"{value}"' if quoted else value) + match.group(1)

    return pattern.sub(repl, text, count=1)


def _sub_all(pattern: re.Pattern, text: str, value: str) -> str:
    """Replace group 2 of every match (group 1 and an optional group 3 are kept)."""
    return pattern.sub(lambda m: m.group(1) + value + (m.group(3) if pattern.groups >= 3 else ""), text)


def _generated_changes(files: _Files, release: str, numbers: tuple[str, str, str]) -> list[FileChange]:
    changes = []
    code = str(version_code(*numbers))
    for rel in RELEASE_FILES:
        data = files.get(rel)
        if data is not None and _decode(data).rstrip("\n") != release:
            changes.append(FileChange(rel, data, _encode(release + "\n"), f"holds the release {release}"))
    for rel in UTS_FILES + VERSION_FILES:
        data = files.get(rel)
        if data is None:
            continue
        text = _decode(data)
        where = os.path.join(files.root, rel)
        if rel in UTS_FILES and not _UTS_RE.search(text):
            raise ReleaseError(f"{where} has no '#define UTS_RELEASE' line; remove it and prepare the tree "
                               "again (make modules_prepare)")
        if rel in VERSION_FILES and not _CODE_RE.search(text):
            raise ReleaseError(f"{where} has no '#define LINUX_VERSION_CODE' line; remove it and prepare "
                               "the tree again (make modules_prepare)")
        whats = []
        new = _sub_all(_UTS_RE, text, release)
        if new != text:
            whats.append(f"UTS_RELEASE {release}")
        if rel in VERSION_FILES:
            coded = _sub_all(_CODE_RE, new, code)
            if coded != new:
                whats.append(f"LINUX_VERSION_CODE {code}")
            new = coded
            for (define, pattern), value in zip(_NUMBER_RES.items(), numbers):
                numbered = _sub_all(pattern, new, value or "0")
                if numbered != new:
                    whats.append(f"{define} {value or '0'}")
                new = numbered
        if new != text:
            changes.append(FileChange(rel, data, _encode(new), ", ".join(whats)))
    return changes


def read_release(path: str) -> TreeRelease:
    """The release the tree at ``path`` builds for, and where each part of it comes from."""
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise ReleaseError(f"{root} is not a directory: give the top directory of a Linux source tree")
    files = _Files(root)
    state = _read_state(files, {}, None, False)
    slv = _setlocalversion(files.text(SETLOCALVERSION))
    if not slv.present:
        return state.release
    git = read_git(root, state.release.kernelversion, slv.modern)
    return _read_state(files, {}, git, bool(git and git.dirty)).release


def _config_edits(files: _Files, overlay: dict[str, bytes | None], whys: dict[str, str], name: str,
                  value: str | None, why: str) -> None:
    """Set CONFIG_<name> in .config and auto.conf wherever it is set to something else."""
    for rel, is_auto in ((AUTO_CONF, True), (DOT_CONFIG, False)):
        text = files.text(rel, overlay)
        if text is None:
            continue
        current = _config_value(text, name)
        if (value is None and current == "y") or (value is not None and _config_string(current or "") != value):
            overlay[rel] = _encode(_set_config_line(text, name, value, is_auto))
            whys[rel] = (whys[rel] + "; " if rel in whys else "") + why


def _uts_release(files: _Files) -> str | None:
    """UTS_RELEASE of the tree's generated headers, if it has any."""
    for rel in UTS_FILES + VERSION_FILES[1:]:
        text = files.text(rel)
        match = _UTS_RE.search(text) if text else None
        if match:
            return match.group(2)
    return None


def plan(path: str, release: str, mode: str = "auto") -> Plan:
    """What has to change in the tree at ``path`` so that it builds for ``release``."""
    if mode not in MODES:
        raise ReleaseError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    target = parse_release(release)
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(root):
        raise ReleaseError(f"{root} does not exist: give the top directory of a Linux source tree")
    if not os.path.isdir(root):
        raise ReleaseError(f"{root} is not a directory: give the top directory of a Linux source tree")
    files = _Files(root)
    slv = _setlocalversion(files.text(SETLOCALVERSION))
    state = _read_state(files, {}, None, False)
    git = None
    if slv.present:  # a tree without setlocalversion takes nothing from git
        # 6.3 on, the tag setlocalversion looks for is named after the tree's KERNELVERSION
        git = read_git(root, state.release.kernelversion, slv.modern)
        state = _read_state(files, {}, git, bool(git and git.dirty))
    before, makefile = state.release, state.makefile

    target_numbers = (target.version, target.patchlevel, target.sublevel)
    if mode == "auto":
        mode = "makefile" if kernelversion(*makefile.numbers, "") == target.numbers else "header"
    numbers = target_numbers if mode == "makefile" else makefile.numbers

    # localversion files and CONFIG_LOCALVERSION stay when the target ends with what they add
    traps = before.file_localversion + before.config_localversion
    keep = bool(traps) and target.text.endswith(traps) and len(target.text) - len(traps) >= len(target.numbers)
    base = target.text[:len(target.text) - len(traps)] if keep else target.text
    overlay: dict[str, bytes | None] = {}
    whys: dict[str, str] = {}
    if traps and not keep:
        for name in files.localversion_files():
            content = (files.text(name) or "").rstrip("\n")
            if content:
                overlay[name] = None
                whys[name] = f"adds {content!r} to the release"
        _config_edits(files, overlay, whys, "LOCALVERSION", "",
                      f"CONFIG_LOCALVERSION adds {before.config_localversion!r}")

    if mode == "makefile":
        values = dict(zip(FIELDS, target_numbers + (base[len(target.numbers):],)))
        override = None
    else:
        values = {}
        override = None if makefile.kernelversion == base else target.text

    def planned_makefile(localversion_set: bool) -> str:
        return _edit_makefile(makefile, values, override, base if override else None, localversion_set)

    def dirty_after(new_makefile: str) -> bool:
        if git is None:
            return False
        touched = {rel for rel in overlay if rel in git.tracked}
        if new_makefile != makefile.text and MAKEFILE in git.tracked:
            touched.add(MAKEFILE)
        return git.dirty or bool(touched)

    # and setlocalversion must add nothing once the edits are made (they may dirty a git tree)
    lv_set = bool(makefile.block and makefile.block.localversion_set)
    new_makefile = planned_makefile(lv_set)
    auto = before.localversion_auto
    scmversion = files.text(SCMVERSION)
    if auto and _scm_part(slv, git, scmversion, True, lv_set, dirty_after(new_makefile)):
        auto = False
        _config_edits(files, overlay, whys, "LOCALVERSION_AUTO", None,
                      "CONFIG_LOCALVERSION_AUTO adds the git description")
    if not auto and not lv_set and _scm_part(slv, git, scmversion, False, False, dirty_after(new_makefile)):
        lv_set = True
        new_makefile = planned_makefile(True)
    if new_makefile != makefile.text:
        overlay[MAKEFILE] = _encode(new_makefile)
        what = [f"{k} = {v}" for k, v in values.items() if makefile.fields[k].value != v]
        if override:
            what.append(f"override KERNELRELEASE = {override}")
        if lv_set and not (makefile.block and makefile.block.localversion_set):
            what.append("export LOCALVERSION ?= (no '+' from git)")
        whys[MAKEFILE] = f"{mode} mode: " + (", ".join(what) or "release block removed")

    after = _read_state(files, overlay, git, dirty_after(new_makefile)).release
    if after.release != target.text or after.make_release != target.text:
        raise ReleaseError(f"internal: planned edits give release {after.release!r} "
                           f"(make kernelrelease {after.make_release!r}), not {target.text!r}; "
                           "please report this with the tree's top Makefile")

    # write order: Makefile, localversion files, generated files, auto.conf, .config last (so that
    # .config stays newer than auto.conf and kbuild regenerates autoconf.h at the next prepare)
    first = sorted((rel for rel in overlay if rel not in (AUTO_CONF, DOT_CONFIG)),
                   key=lambda rel: (rel != MAKEFILE, rel))
    changes = [FileChange(rel, files.get(rel), overlay[rel], whys[rel]) for rel in first]
    changes += _generated_changes(files, target.text, numbers)
    changes += [FileChange(rel, files.get(rel), overlay[rel], whys[rel]) for rel in (AUTO_CONF, DOT_CONFIG)
                if rel in overlay]
    result = Plan(root, mode, before.release, after.release, _uts_release(files), before.version_code,
                  version_code(*numbers), changes)
    check_writable(result)
    return result


def check_writable(plan_: Plan) -> None:
    """Fail before any write when one of the planned writes cannot be made."""
    for change in plan_.changes:
        full = os.path.join(plan_.path, change.path)
        directory = os.path.dirname(full)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ReleaseError(f"cannot write in {directory} (read-only or no permission); nothing was "
                               f"changed: make the tree writable, or work on a copy of it")
        if change.before is not None and not os.access(full, os.W_OK):
            raise ReleaseError(f"cannot write {full} (read-only or no permission); nothing was changed")


def backup_name(path: str) -> str:
    """Ansible's backup_local name: ``<file>.<pid>.<YYYY-MM-DD@HH:MM:SS>~``.

    The ``~`` matters: kbuild ignores ``localversion*`` files with a ``~`` in their name.
    """
    return f"{path}.{os.getpid()}.{time.strftime('%Y-%m-%d@%H:%M:%S~')}"


def apply(plan_: Plan, backup: bool = False) -> list[str]:
    """Make the planned changes, each file atomically; return the backup copies made."""
    check_writable(plan_)
    backups: list[str] = []
    done: list[str] = []
    for change in plan_.changes:
        full = os.path.join(plan_.path, change.path)
        try:
            if backup and change.before is not None:
                copy = backup_name(full)
                shutil.copy2(full, copy)
                backups.append(copy)
            if change.after is None:
                os.unlink(full)
            else:
                write_atomic(full, change.after)
        except OSError as exc:
            raise ReleaseError(
                f"writing {full} failed: {exc.strerror or exc}; already written: {', '.join(done) or 'none'}"
                f"{'; backups: ' + ', '.join(backups) if backups else ''}. Free the space or fix the "
                "permission and run again: the remaining edits are planned anew") from None
        done.append(full)
    return backups


def align(path: str, release: str, mode: str = "auto", backup: bool = False,
          check_mode: bool = False, lock_timeout: float = 600.0) -> tuple[Plan, list[str]]:
    """Plan, and unless ``check_mode`` make the changes under the tree's lock (planned again there)."""
    first = plan(path, release, mode)
    if check_mode or not first.changed:
        return first, []
    with tree_lock(first.path, timeout=lock_timeout):
        final = plan(path, release, mode)
        return final, apply(final, backup)
