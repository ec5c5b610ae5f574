"""Real Debian kernels for the tests: ``apt-get download`` + ``dpkg -x`` into a cache.

Nothing here installs a kernel on this machine. ``fetch()`` gives a ``DebianKernel`` whose
``root`` holds the unpacked image (``/boot``, ``/lib/modules``), the matching headers and
``linux-kbuild``, with the headers' Makefile pointed at the unpacked common headers so that
``make -C <headers> M=<module>`` works from the cache. The kernel source tarball of the
same package version is fetched on demand (``source_tarball()``).

Run as a script to fetch ahead of time:
``python3 -m tests.support.debian [--source] [--flavour cloud-amd64 --headers-only]``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.support.collection import cache_dir

DEFAULT_FLAVOUR = "amd64"
RELEASE_ENV = "VERMAGIC_KMOD_KERNEL"


def say(msg: str) -> None:
    print(f"[debian-kernel] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_release(flavour: str = DEFAULT_FLAVOUR) -> str:
    """The release of the current stock kernel, e.g. ``6.1.0-56-amd64`` (or $VERMAGIC_KMOD_KERNEL)."""
    pinned = os.environ.get(RELEASE_ENV)
    if pinned:
        return pinned
    out = run(["apt-cache", "depends", f"linux-image-{flavour}"]).stdout
    found = re.findall(r"Depends:\s+linux-image-(\S+)", out)
    if not found:
        raise RuntimeError(
            f"apt-cache knows no linux-image-{flavour}; run 'apt-get update' first"
        )
    return found[0]


def candidate_version(package: str) -> str:
    out = run(["apt-cache", "policy", package]).stdout
    match = re.search(r"Candidate:\s+(\S+)", out)
    if not match or match.group(1) == "(none)":
        raise RuntimeError(f"apt-cache has no candidate for {package}; run 'apt-get update' first")
    return match.group(1)


@dataclass(frozen=True)
class DebianKernel:
    release: str
    version: str
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def debs(self) -> Path:
        return self.base / "debs"

    @property
    def headers(self) -> Path:
        return self.root / "usr" / "src" / f"linux-headers-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def config(self) -> Path:
        return self.root / "boot" / f"config-{self.release}"

    def modules(self) -> list[Path]:
        return sorted(self.modules_dir.joinpath("kernel").rglob("*.ko"))

    def image_deb(self) -> Path:
        return next(self.debs.glob(f"linux-image-{self.release}_*.deb"))

    def source_tarball(self) -> Path:
        """``linux-source-X.Y.tar.xz`` of the same package version (fetched on first use)."""
        series = ".".join(self.version.split(".")[:2])
        target = self.base / "source" / f"linux-source-{series}.tar.xz"
        if target.exists():
            return target
        with locked(self.base / ".source.lock"):
            if target.exists():
                return target
            deb = _download(self.debs, [f"linux-source-{series}={self.version}"])[0]
            unpack = self.base / "source.tmp"
            shutil.rmtree(unpack, ignore_errors=True)
            say(f"unpacking {deb.name}")
            run(["dpkg", "-x", str(deb), str(unpack)])
            found = next(unpack.rglob(f"linux-source-{series}.tar.xz"))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(found, target)
            shutil.rmtree(unpack)
        return target


def _download(dest: Path, specs: list[str]) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    wanted = []
    for spec in specs:
        name, _sep, version = spec.partition("=")
        version = version or candidate_version(name)
        pattern = f"{name}_{version.split(':')[-1]}_*.deb"
        have = list(dest.glob(pattern))
        if have:
            wanted.append(have[0])
            continue
        say(f"downloading {name} {version}")
        start = time.monotonic()
        run(["apt-get", "download", f"{name}={version}"], cwd=dest)
        got = list(dest.glob(pattern))
        if not got:
            raise RuntimeError(f"apt-get download {name}={version} left no {pattern} in {dest}")
        size = got[0].stat().st_size / 1e6
        say(f"  {got[0].name}: {size:.1f} MB in {time.monotonic() - start:.1f} s")
        wanted.append(got[0])
    return wanted


def _headers_packages(release: str, version: str) -> list[str]:
    """The headers package of a flavour and what it needs: the common headers and kbuild."""
    out = run(["apt-cache", "show", f"linux-headers-{release}={version}"]).stdout
    depends = re.search(r"^Depends:(.*)$", out, re.M)
    names = [f"linux-headers-{release}"]
    for item in (depends.group(1) if depends else "").split(","):
        name = item.strip().split()[0] if item.strip() else ""
        if name.startswith(("linux-headers-", "linux-kbuild-")):
            names.append(name)
    return [f"{n}={version}" for n in names]


def _point_headers_at_root(kernel: DebianKernel) -> None:
    makefile = kernel.headers / "Makefile"
    text = makefile.read_text()
    fixed = re.sub(r"^include /usr/src/", f"include {kernel.root}/usr/src/", text, flags=re.M)
    if fixed != text:
        makefile.write_text(fixed)


def fetch(release: str | None = None, *, flavour: str = DEFAULT_FLAVOUR,
          image: bool = True) -> DebianKernel:
    """Download and unpack image + headers + kbuild of ``release`` (default: the current stock
    kernel of ``flavour``, e.g. ``amd64`` or ``cloud-amd64``). ``image=False`` fetches only the
    headers and kbuild (enough to build modules for that kernel, e.g. another flavour's)."""
    release = release or resolve_release(flavour)
    version = candidate_version(f"linux-headers-{release}" if not image
                                else f"linux-image-{release}")
    kernel = DebianKernel(release, version, cache_dir() / "debian" / release)
    stamp = kernel.base / ".complete"

    def ready() -> bool:
        if not stamp.exists():
            return False
        done = json.loads(stamp.read_text())
        return done.get("version") == version and (done.get("image", True) or not image)

    if ready():
        return kernel
    with locked(kernel.base / ".lock"):
        if ready():
            return kernel
        what = "kernel" if image else "headers of kernel"
        say(f"fetching Debian {what} {release} (package {version}) into {kernel.base}")
        specs = [f"linux-image-{release}={version}"] if image else []
        debs = _download(kernel.debs, specs + _headers_packages(release, version))
        shutil.rmtree(kernel.root, ignore_errors=True)
        for n, deb in enumerate(debs, 1):
            say(f"unpacking {n}/{len(debs)}: {deb.name}")
            run(["dpkg", "-x", str(deb), str(kernel.root)])
        _point_headers_at_root(kernel)
        stamp.write_text(json.dumps({"release": release, "version": version, "image": image}))
        if image:
            say(f"ready: {len(kernel.modules())} modules under {kernel.modules_dir}")
        else:
            say(f"ready: headers under {kernel.headers}")
    return kernel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="kernel release (default: the current stock one)")
    parser.add_argument("--flavour", default=DEFAULT_FLAVOUR,
                        help="kernel flavour when no release is given (default: %(default)s)")
    parser.add_argument("--headers-only", action="store_true",
                        help="fetch the headers and kbuild only, not the image")
    parser.add_argument("--source", action="store_true", help="also fetch the source tarball")
    args = parser.parse_args()
    kernel = fetch(args.release, flavour=args.flavour, image=not args.headers_only)
    if args.source:
        kernel.source_tarball()
    print(json.dumps({"release": kernel.release, "version": kernel.version,
                      "root": str(kernel.root), "headers": str(kernel.headers)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
