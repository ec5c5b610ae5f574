"""Build (once) and cache what a test VM boots: root filesystem, disk image, initramfs.

Two cached stages under ``<cache>/vm/`` (``~/.cache/vermagic-kmod/vm``):

``rootfs/<key>/rootfs.tar``
    ``debootstrap --variant=minbase`` of this machine's distribution from this machine's mirror,
    with the profile's packages. Keyed by suite, mirror, package list and ``ROOTFS_VERSION``.
``images/<key>/{disk.img,initrd.img,vmlinuz,image.json}``
    the rootfs plus the stock kernel's ``/lib/modules/<release>`` and ``/boot`` files, guest
    configuration (network, sshd, apt sources, masked slow units), made into an ext4 image with
    ``mkfs.ext4 -d`` (no loop mount), and a busybox initramfs that loads virtio and ext4 from
    the kernel's own modules. Keyed by the rootfs key, kernel release + package version,
    profile and ``HARNESS_VERSION``.

Keys change with their inputs (``ROOTFS_VERSION``/``HARNESS_VERSION`` stand for the code that
builds a stage), so a changed input builds a new entry; ``python3 -m tests.vm prune`` removes
entries the current inputs no longer name.

Every stage is built in a temporary directory next to its final place, moved there in one
``rename``, and guarded by an ``fcntl`` lock, so concurrent runs build it once.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.support.collection import cache_dir
from tests.support.debian import DebianKernel, locked
from tests.vm import sources

# Bump when the way a stage is built changes: that stage (and what is built on it) is rebuilt.
ROOTFS_VERSION = 1
HARNESS_VERSION = 2

BASE_PACKAGES = ("python3", "openssh-server", "openssh-sftp-server", "kmod", "iproute2",
                 "systemd-sysv", "udev", "dbus")
BUILD_PACKAGES = ("gcc-12", "make", "libc6-dev", "bc", "flex", "bison", "libelf-dev",
                  "python3-pyelftools")


@dataclass(frozen=True)
class Profile:
    """What goes into the guest beyond the base packages."""

    name: str
    packages: tuple[str, ...] = ()
    headers: bool = False  # install the kernel's own linux-headers packages into the image
    description: str = ""


PROFILES = {
    "base": Profile("base", (), False, "the lean image: python3, sshd, kmod, systemd"),
    "build": Profile("build", BUILD_PACKAGES, False,
                     "base + a kernel module toolchain (gcc-12, make, libelf-dev, ...)"),
    "headers": Profile("headers", BUILD_PACKAGES, True,
                       "build + the running kernel's linux-headers installed"),
}

# The stock kernel has virtio and ext4 as modules; the initramfs loads these (and what they
# depend on) with insmod before mounting the root filesystem. crc32c_generic backs the
# 'crypto-crc32c' softdep of ext4/jbd2 (metadata checksums), which no modprobe can resolve there.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")

# Units that cost boot time and do nothing for a throwaway test VM.
MASKED_UNITS = ("e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer",
                "apt-daily-upgrade.timer", "fstrim.timer", "systemd-networkd-wait-online.service",
                "getty@tty1.service", "systemd-timesyncd.service")

DISK_SIZE = 8 << 30  # virtual size; the file is sparse and VMs write to their own overlays
GUEST_ADDRESS = "10.0.2.15/24"
GUEST_GATEWAY = "10.0.2.2"
GUEST_DNS = "10.0.2.3"

_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[vm {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def vm_cache() -> Path:
    return cache_dir() / "vm"


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first (from /proc/self/mountinfo)."""
    top = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == top or point.startswith(top + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """``rm -rf path``, but never through a mount point: an interrupted debootstrap can leave
    the target's /proc, /sys (or bound /dev nodes) mounted. Those are unmounted first."""
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"{path} still has mounts ({', '.join(left)}): not removing it; "
                           f"unmount them and remove it by hand")
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _building(final: Path, marker: str) -> Iterator[Path | None]:
    """Build a cache entry atomically, once: under ``final``'s lock, yields ``None`` when
    ``final/marker`` exists (another run built it), else a new directory beside ``final`` to
    fill; on success it becomes ``final`` in one rename, on failure it is removed."""
    with locked(final.parent / f"{final.name}.lock"):
        if (final / marker).is_file():
            yield None
            return
        if final.exists():  # left half-made by code older than this
            remove_tree(final)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            yield work
            work.chmod(0o755)
            os.rename(work, final)
        finally:
            if work.exists():
                remove_tree(work)


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def run_logged(argv: list[str], label: str, log: Path, *, every: float = 5.0,
               env: dict[str, str] | None = None) -> None:
    """Run ``argv``; all output to ``log``; a progress line at most every ``every`` seconds."""
    start = time.monotonic()
    last_print = start
    lines = 0
    tail: list[str] = []
    with open(log, "a") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace", env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            lines += 1
            tail = (tail + [line.rstrip()])[-40:]
            now = time.monotonic()
            if now - last_print >= every:
                last_print = now
                say(f"{label}: {now - start:.0f} s, {lines} lines, {line.strip()[:90]}")
        rc = proc.wait()
    if rc:
        joined = "\n".join(tail)
        raise RuntimeError(f"{label} failed (exit {rc}; whole log: {log}):\n{joined}")


# --------------------------------------------------------------------------- rootfs (stage 1)


@dataclass(frozen=True)
class RootfsSpec:
    suite: str
    mirror: str
    keyring: str | None
    packages: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.suite}-{_digest([ROOTFS_VERSION, self.suite, self.mirror, self.packages])}"


def rootfs_spec(profile: Profile, suite: str | None = None) -> RootfsSpec:
    suite = suite or sources.host_codename()
    mirror = sources.debootstrap_mirror(sources.read_sources(), suite)
    keyring = mirror.signed_by if mirror.signed_by and Path(mirror.signed_by).is_file() else None
    packages = tuple(sorted(set(BASE_PACKAGES) | set(profile.packages)))
    return RootfsSpec(suite, mirror.uri, keyring, packages)


def ensure_rootfs(spec: RootfsSpec) -> Path:
    """The cached ``rootfs.tar`` for ``spec`` (made by debootstrap when missing)."""
    final = vm_cache() / "rootfs" / spec.key
    tarball = final / "rootfs.tar"
    if tarball.is_file():
        return tarball
    with _building(final, "rootfs.tar") as work:
        if work is None:
            return tarball
        root = work / "root"
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(spec.packages)}",
                "--components=main"]
        if spec.keyring:
            argv.append(f"--keyring={spec.keyring}")
        argv += [spec.suite, str(root), spec.mirror]
        say(f"debootstrap {spec.suite} (minbase + {len(spec.packages)} packages) "
            f"from {spec.mirror}: about a minute")
        start = time.monotonic()
        run_logged(argv, "debootstrap", work / "debootstrap.log")
        took = time.monotonic() - start
        say(f"debootstrap done in {took:.1f} s; packing rootfs.tar")
        # Downloaded .debs are of no use in the image.
        for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            deb.unlink()
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
                        "-C", str(root), "-cf", str(work / "rootfs.tar"), "."], check=True)
        remove_tree(root)
        (work / "rootfs.json").write_text(json.dumps(
            {"suite": spec.suite, "mirror": spec.mirror, "packages": spec.packages,
             "rootfs_version": ROOTFS_VERSION, "debootstrap_seconds": round(took, 1)},
            indent=1))
    say(f"rootfs cached: {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
    return tarball


# --------------------------------------------------------------------------- initramfs


def _module_index(modules_dir: Path) -> dict[str, Path]:
    return {p.name.split(".ko")[0].replace("-", "_"): p
            for p in modules_dir.joinpath("kernel").rglob("*.ko*")}


def _depends(ko: Path) -> list[str]:
    data = ko.read_bytes()
    match = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    if not match or not match.group(1):
        return []
    return [d.replace("-", "_") for d in match.group(1).decode().split(",") if d]


def module_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """``wanted`` and their dependencies (``depends=`` of each .ko), dependencies first."""
    index = _module_index(modules_dir)
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            return  # built into this kernel: nothing to load
        for dep in _depends(index[name]):
            visit(dep)
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order


INIT_SCRIPT = r"""#!/bin/busybox sh
# vermagic.kmod test VM initramfs: load virtio + ext4 from the stock kernel's modules,
# mount the root filesystem, install the run's SSH key, hand over to systemd.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "initramfs: $*"; echo "initramfs: giving up"; sleep 1; reboot -f; }
for m in $(cat /modules.load); do
  insmod "/modules/$m" || echo "initramfs: insmod $m failed"
done
root=/dev/vda key= name=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=/dev/*) root="${arg#root=}" ;;
    vmkey=*) key="${arg#vmkey=}" ;;
    vmname=*) name="${arg#vmname=}" ;;
  esac
done
i=0
while [ ! -b "$root" ]; do
  i=$((i + 1)); [ "$i" -gt 600 ] && fail "no $root after 60 s"
  sleep 0.1
done
mount -t ext4 -o rw "$root" /newroot || fail "cannot mount $root"
if [ -n "$key" ]; then
  mkdir -p /newroot/root/.ssh
  chmod 700 /newroot/root/.ssh
  echo "${key%%:*} ${key#*:} vermagic-kmod-vm" > /newroot/root/.ssh/authorized_keys
  chmod 600 /newroot/root/.ssh/authorized_keys
fi
[ -n "$name" ] && echo "$name" > /newroot/etc/hostname
echo "initramfs: root $root mounted, switching to /sbin/init"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
"""


class _Cpio:
    """A tiny writer of the ``newc`` cpio format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name: str) -> None:
        self.add(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self.add(name, stat.S_IFREG | perm, data)

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def build_initramfs(modules_dir: Path, dest: Path, busybox: Path = Path("/bin/busybox")) -> list[str]:
    """Write a gzip'd initramfs to ``dest``; returns the module names it loads, in order."""
    if not busybox.is_file():
        raise RuntimeError(f"{busybox} is missing: apt-get install busybox-static")
    order = module_load_order(modules_dir, INITRAMFS_MODULES)
    cpio = _Cpio()
    for d in ("bin", "dev", "modules", "proc", "sys", "newroot"):
        cpio.dir(d)
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    for ko in order:
        cpio.file(f"modules/{ko.name}", ko.read_bytes())
    cpio.file("modules.load", "".join(f"{ko.name}\n" for ko in order).encode())
    dest.write_bytes(gzip.compress(cpio.finish(), compresslevel=6, mtime=0))
    return [ko.name for ko in order]


# --------------------------------------------------------------------------- image (stage 2)


@dataclass(frozen=True)
class Image:
    """A cached, bootable disk image for one kernel release and profile."""

    path: Path
    release: str
    profile: str

    @property
    def disk(self) -> Path:
        return self.path / "disk.img"

    @property
    def initrd(self) -> Path:
        return self.path / "initrd.img"

    @property
    def vmlinuz(self) -> Path:
        return self.path / "vmlinuz"

    @property
    def meta(self) -> dict:
        return json.loads((self.path / "image.json").read_text())


def _inside(root: Path, rel: str) -> Path:
    """``root/rel`` with every symbolic link resolved as if ``root`` were ``/`` (a chroot)."""
    current = root
    parts = [p for p in rel.strip("/").split("/") if p]
    hops = 0
    while parts:
        part = parts.pop(0)
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise RuntimeError(f"too many symbolic links under {root} for {rel}")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            current = root if target.startswith("/") else current
            continue
        if part == "..":
            current = current.parent if current != root else root
            continue
        current = candidate
    return current


def _put(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    """Write a file into the guest tree (never through a link out of it)."""
    parent = _inside(root, os.path.dirname(rel))
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / os.path.basename(rel)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _link(root: Path, rel: str, target: str) -> None:
    parent = _inside(root, os.path.dirname(rel))
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / os.path.basename(rel)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def configure_guest(root: Path, apt_sources: list[sources.AptSource]) -> None:
    """Network, sshd, apt, fstab and boot-time trimming of the guest tree at ``root``."""
    _put(root, "etc/hostname", "vm\n")
    _put(root, "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tvm\n::1\tlocalhost ip6-localhost\n")
    _put(root, "etc/fstab", "/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n")
    _put(root, "etc/resolv.conf", f"nameserver {GUEST_DNS}\n")
    _put(root, "etc/systemd/network/10-vm.network",
         f"[Match]\nName=eth* en*\n\n[Network]\nAddress={GUEST_ADDRESS}\n"
         f"Gateway={GUEST_GATEWAY}\nDNS={GUEST_DNS}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n")
    units = "/usr/lib/systemd/system"
    _link(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
          f"{units}/systemd-networkd.service")
    _link(root, "etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
          f"{units}/systemd-networkd.socket")
    _link(root, "etc/systemd/system/default.target", f"{units}/multi-user.target")
    for unit in MASKED_UNITS:
        _link(root, f"etc/systemd/system/{unit}", "/dev/null")
    _put(root, "etc/ssh/sshd_config.d/vermagic-kmod.conf",
         "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    _put(root, "root/.ssh/.keep", "")
    _inside(root, "root/.ssh").chmod(0o700)
    # apt: the same mirror as this machine, reached through qemu's user network.
    if _inside(root, "etc/apt/sources.list").exists():
        _inside(root, "etc/apt/sources.list").unlink()
    _put(root, "etc/apt/sources.list.d/distribution.sources", sources.render_deb822(
        apt_sources, lambda keyring: _inside(root, keyring).is_file()))
    _put(root, "etc/apt/apt.conf.d/90vermagic-kmod-vm", 'Acquire::Languages "none";\n')
    # An empty machine-id: each VM makes its own at boot (not a 'first boot').
    _put(root, "etc/machine-id", "")
    dbus_id = _inside(root, "var/lib/dbus/machine-id")
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()


def _install_kernel(root: Path, kernel: DebianKernel) -> None:
    dest = _inside(root, f"lib/modules/{kernel.release}")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(kernel.modules_dir, dest, symlinks=True)
    boot = _inside(root, "boot")
    boot.mkdir(exist_ok=True)
    for item in (kernel.root / "boot").iterdir():
        if item.is_file():
            shutil.copy2(item, boot / item.name)
    subprocess.run(["depmod", "-b", str(root), kernel.release], check=True)


def _headers_debs(kernel: DebianKernel, store: Path) -> list[Path]:
    """The kernel's own linux-headers .debs, plus the packages they name that the guest lacks."""
    local = [p for p in kernel.debs.glob("*.deb")
             if p.name.startswith(("linux-headers-", "linux-kbuild-"))]
    have = {p.name.split("_")[0] for p in local}
    extra = []
    for deb in local:
        depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], check=True,
                                 capture_output=True, text=True).stdout
        for item in depends.split(","):
            name = item.strip().split(" ")[0]
            if name.startswith("linux-") and name not in have:
                extra.append(name)
    store.mkdir(parents=True, exist_ok=True)
    got = []
    for name in sorted(set(extra)):
        found = sorted(store.glob(f"{name}_*.deb"))
        if not found:
            say(f"apt-get download {name} (needed by the kernel's headers)")
            subprocess.run(["apt-get", "download", "-q", name], cwd=store, check=True,
                           capture_output=True)
            found = sorted(store.glob(f"{name}_*.deb"))
        got.append(found[-1])
    return local + got


def _install_headers(root: Path, kernel: DebianKernel, log: Path) -> None:
    debs = _headers_debs(kernel, vm_cache() / "debs")
    drop = _inside(root, "tmp/vermagic-kmod-debs")
    drop.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        shutil.copy2(deb, drop / deb.name)
    say(f"installing {', '.join(d.name.split('_')[0] for d in debs)} into the image")
    inside = [f"/tmp/vermagic-kmod-debs/{d.name}" for d in debs]
    run_logged(["chroot", str(root), "dpkg", "-i", *inside], "dpkg -i headers", log)
    shutil.rmtree(drop)


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def make_disk(root: Path, disk: Path, log: Path) -> float:
    """An ext4 image of ``DISK_SIZE`` (sparse) holding the tree ``root``: ``mkfs.ext4 -d``, no
    mount. Inode tables and journal are written now, not lazily by each VM's first boot."""
    start = time.monotonic()
    with open(disk, "wb") as fh:
        fh.truncate(DISK_SIZE)
    run_logged(["mkfs.ext4", "-F", "-q", "-L", "vmroot", "-m", "0",
                "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", str(root), str(disk)],
               "mkfs.ext4", log)
    return time.monotonic() - start


def image_key(rootfs: RootfsSpec, kernel: DebianKernel, profile: Profile) -> str:
    return f"{kernel.release}-{profile.name}-" + _digest(
        [HARNESS_VERSION, rootfs.key, kernel.release, kernel.version, profile.name,
         profile.packages, profile.headers, INITRAMFS_MODULES, MASKED_UNITS, DISK_SIZE])


def ensure_image(kernel: DebianKernel, profile: str | Profile = "base",
                 suite: str | None = None) -> Image:
    """The cached bootable image for ``kernel`` and ``profile`` (built when missing)."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    spec = rootfs_spec(prof, suite)
    key = image_key(spec, kernel, prof)
    final = vm_cache() / "images" / key
    image = Image(final, kernel.release, prof.name)
    if (final / "image.json").is_file():
        return image
    tarball = ensure_rootfs(spec)
    with _building(final, "image.json") as work:
        if work is None:
            return image
        start = time.monotonic()
        root = work / "root"
        root.mkdir()
        say(f"image {key}: unpacking rootfs")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf",
                        str(tarball), "-C", str(root)], check=True)
        say(f"image {key}: adding /lib/modules/{kernel.release} "
            f"({len(kernel.modules())} modules) and /boot, depmod")
        _install_kernel(root, kernel)
        if prof.headers:
            _install_headers(root, kernel, work / "build.log")
        apt_sources = sources.distribution_sources(sources.read_sources(), spec.suite)
        configure_guest(root, apt_sources)
        say(f"image {key}: initramfs")
        loads = build_initramfs(kernel.modules_dir, work / "initrd.img")
        shutil.copy2(kernel.vmlinuz, work / "vmlinuz")
        used = _tree_bytes(root)
        say(f"image {key}: mkfs.ext4 -d ({used / 1e6:.0f} MB of files, "
            f"{DISK_SIZE >> 30} GiB sparse disk)")
        mkfs_s = make_disk(root, work / "disk.img", work / "build.log")
        (work / "disk.img").chmod(0o444)
        remove_tree(root)
        took = time.monotonic() - start
        (work / "image.json").write_text(json.dumps({
            "release": kernel.release, "package_version": kernel.version,
            "profile": prof.name, "packages": list(spec.packages),
            "headers_installed": prof.headers, "suite": spec.suite,
            "rootfs": spec.key, "initramfs_modules": loads,
            "harness_version": HARNESS_VERSION, "build_seconds": round(took, 1),
            "mkfs_seconds": round(mkfs_s, 1), "files_bytes": used}, indent=1))
        say(f"image {key}: ready in {took:.1f} s (mkfs {mkfs_s:.1f} s)")
    return image


def prune(in_use: set[Path]) -> list[Path]:
    """Remove cached stages the current code would not build: images of another
    ``HARNESS_VERSION``, root filesystems of another ``ROOTFS_VERSION`` or used by no image.
    ``in_use`` (images of running VMs) and entries being built (locked) are kept."""
    removed: list[Path] = []
    images = vm_cache() / "images"
    wanted_rootfs: set[str] = set()
    for meta_file in sorted(images.glob("*/image.json")) if images.is_dir() else []:
        meta = json.loads(meta_file.read_text())
        entry = meta_file.parent
        if meta.get("harness_version") == HARNESS_VERSION or entry in in_use:
            wanted_rootfs.add(meta.get("rootfs", ""))
            continue
        if _remove_unlocked(entry):
            removed.append(entry)
    rootfs = vm_cache() / "rootfs"
    for meta_file in sorted(rootfs.glob("*/rootfs.json")) if rootfs.is_dir() else []:
        meta = json.loads(meta_file.read_text())
        entry = meta_file.parent
        if meta.get("rootfs_version") == ROOTFS_VERSION and entry.name in wanted_rootfs:
            continue
        if _remove_unlocked(entry):
            removed.append(entry)
    return removed


def _remove_unlocked(entry: Path) -> bool:
    lock = entry.with_name(f"{entry.name}.lock")
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        remove_tree(entry)
        say(f"pruned {entry}")
    lock.unlink(missing_ok=True)
    return True
