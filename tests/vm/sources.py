"""This machine's apt sources, read at run time: the mirror for debootstrap and the guest.

Nothing in the repository names a mirror: the VM's root filesystem comes from the mirror this
machine already uses, and the guest's apt is configured with the same entries, so that
``apt-get install linux-headers-<release>`` works inside the guest through qemu's user network.

Both formats are read: one-line ``sources.list`` files (``/etc/apt/sources.list`` and
``sources.list.d/*.list``) and deb822 ``sources.list.d/*.sources`` (with ``Enabled: no`` and
comments honoured).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class AptSource:
    """One ``Types``/``URIs``/``Suites``/``Components`` entry (one URI each)."""

    types: tuple[str, ...]
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    origin: str = field(default="", compare=False)

    @property
    def signed_by(self) -> str | None:
        return self.options.get("signed-by")


class SourcesError(Exception):
    """The apt sources do not say where to get the distribution from."""


def _one_line(text: str, origin: str) -> list[AptSource]:
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if not match:
            continue
        kind, opts, uri, suite, comps = match.groups()
        options = {}
        for item in (opts or "").split():
            key, _sep, value = item.partition("=")
            options[key.lower()] = value
        found.append(AptSource((kind,), uri.rstrip("/"), (suite,), tuple(comps.split()),
                               options, origin))
    return found


def _deb822(text: str, origin: str) -> list[AptSource]:
    found = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in para.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            key, _sep, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if not fields or fields.get("enabled", "yes").lower() == "no":
            continue
        types = tuple(fields.get("types", "").split())
        suites = tuple(fields.get("suites", "").split())
        comps = tuple(fields.get("components", "").split())
        options = {k: v for k, v in fields.items()
                   if k not in ("types", "uris", "suites", "components", "enabled")}
        for uri in fields.get("uris", "").split():
            found.append(AptSource(types, uri.rstrip("/"), suites, comps, options, origin))
    return found


def read_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled entry of ``etc_apt``'s sources, in apt's reading order."""
    found: list[AptSource] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        found += _one_line(main.read_text(), str(main))
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += _one_line(path.read_text(), str(path))
            elif path.suffix == ".sources":
                found += _deb822(path.read_text(), str(path))
    return found


def distribution_sources(sources: list[AptSource], codename: str) -> list[AptSource]:
    """The entries for ``codename`` and its companion suites (``-updates``, ``-security``)."""
    picked = []
    for src in sources:
        suites = tuple(s for s in src.suites if s == codename or s.startswith(codename + "-")
                       or s.startswith(codename + "/"))
        if suites and "deb" in src.types:
            picked.append(AptSource(src.types, src.uri, suites, src.components, src.options,
                                    src.origin))
    return picked


def debootstrap_mirror(sources: list[AptSource], codename: str) -> AptSource:
    """The entry that serves ``codename`` itself with ``main``: what debootstrap needs."""
    for src in distribution_sources(sources, codename):
        if codename in src.suites and "main" in src.components and "deb" in src.types:
            return src
    where = sorted({s.origin for s in sources}) or ["no apt sources at all"]
    raise SourcesError(
        f"no apt source serves '{codename} main' (read: {', '.join(where)}); add the "
        f"distribution's mirror to /etc/apt/sources.list.d/ and run apt-get update")


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """``VERSION_CODENAME`` of this machine (e.g. ``bookworm``)."""
    for line in os_release.read_text().splitlines():
        key, _sep, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise SourcesError(f"{os_release} names no VERSION_CODENAME")


def render_deb822(sources: list[AptSource],
                  keyring_exists: Callable[[str], bool] = lambda path: True) -> str:
    """The entries as one deb822 ``.sources`` file (for the guest).

    ``Signed-By`` is kept when it names a keyring file that ``keyring_exists`` (in the guest);
    otherwise apt's default keyrings apply (the distribution's archive keyring).
    """
    paras = []
    for src in sources:
        lines = [f"Types: {' '.join(src.types)}", f"URIs: {src.uri}",
                 f"Suites: {' '.join(src.suites)}", f"Components: {' '.join(src.components)}"]
        if src.signed_by and src.signed_by.startswith("/") and keyring_exists(src.signed_by):
            lines.append(f"Signed-By: {src.signed_by}")
        paras.append("\n".join(lines) + "\n")
    return "\n".join(paras)
