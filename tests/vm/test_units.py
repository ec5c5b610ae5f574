"""The harness's pure parts, without a VM: apt sources, module order, initramfs, chroot paths."""

from __future__ import annotations

import gzip
import os
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.debian import DebianKernel
from tests.vm import sources
from tests.vm.machine import VM, VMError, runs_dir
from tests.vm.image import (_building, _inside, _put, build_initramfs, module_load_order,
                            mounts_under, remove_tree)

DEB822 = """\
Types: deb deb-src
# a comment
URIs: http://mirror.example/debian
 http://other.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://vendor.example/apt
Suites: nodistro
Components: main
"""


@pytest.fixture
def etc_apt(tmp_path: Path) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm main # tail\n"
        "deb-src http://one.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "vendor.list").write_text(
        "deb https://vendor.example/x cloud-sdk-bookworm main\n")
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text(
        "deb http://never.example/debian bookworm main\n")
    return tmp_path


def test_reads_one_line_and_deb822_sources(etc_apt: Path) -> None:
    found = sources.read_sources(etc_apt)
    uris = [s.uri for s in found]
    assert uris == ["http://one.example/debian", "http://one.example/debian",
                    "http://mirror.example/debian", "http://other.example/debian",
                    "http://mirror.example/debian-security", "http://vendor.example/apt",
                    "https://vendor.example/x"]
    assert found[0].options == {"arch": "amd64", "signed-by": "/k.gpg"}
    assert found[2].types == ("deb", "deb-src")
    assert found[2].suites == ("bookworm", "bookworm-updates")
    assert found[2].signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_picks_the_distribution_and_its_mirror(etc_apt: Path) -> None:
    found = sources.read_sources(etc_apt)
    dist = sources.distribution_sources(found, "bookworm")
    assert [s.uri for s in dist] == ["http://one.example/debian", "http://mirror.example/debian",
                                     "http://other.example/debian",
                                     "http://mirror.example/debian-security"]
    assert sources.debootstrap_mirror(found, "bookworm").uri == "http://one.example/debian"
    with pytest.raises(sources.SourcesError, match="no apt source serves 'trixie main'"):
        sources.debootstrap_mirror(found, "trixie")


def test_renders_deb822_for_the_guest(etc_apt: Path) -> None:
    dist = sources.distribution_sources(sources.read_sources(etc_apt), "bookworm")
    text = sources.render_deb822(dist, lambda keyring: keyring != "/k.gpg")
    paras = text.split("\n\n")
    assert paras[0] == ("Types: deb\nURIs: http://one.example/debian\nSuites: bookworm\n"
                        "Components: main")  # its keyring is not in the guest: dropped
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in paras[1]
    assert len(paras) == 4


def test_host_codename(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('NAME="Debian"\nVERSION_CODENAME=bookworm\n')
    assert sources.host_codename(tmp_path / "os-release") == "bookworm"
    (tmp_path / "os-release").write_text('NAME="Debian"\n')
    with pytest.raises(sources.SourcesError):
        sources.host_codename(tmp_path / "os-release")


def test_module_order_puts_dependencies_first(kernel: DebianKernel) -> None:
    order = [p.name for p in module_load_order(kernel.modules_dir, ("virtio_blk", "ext4"))]
    assert order.index("virtio.ko") < order.index("virtio_blk.ko")
    assert order.index("jbd2.ko") < order.index("ext4.ko")
    assert order.index("mbcache.ko") < order.index("ext4.ko")
    assert len(order) == len(set(order))


def test_initramfs_unpacks_with_cpio(kernel: DebianKernel, tmp_path: Path) -> None:
    image = tmp_path / "initrd.img"
    loads = build_initramfs(kernel.modules_dir, image)
    listing = subprocess.run(["cpio", "-itv"], input=gzip.decompress(image.read_bytes()),
                             capture_output=True, check=True).stdout.decode()
    names = {line.split()[-1] for line in listing.splitlines()}
    assert {"init", "bin/busybox", "dev/console", "modules.load"} <= names
    assert {f"modules/{name}" for name in loads} <= names
    assert loads[-1] == "ext4.ko"
    console = next(line for line in listing.splitlines() if line.endswith("dev/console"))
    assert console.startswith("crw-------") and "5,   1" in console


def test_paths_inside_the_guest_tree_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "etc").mkdir()
    (root / "etc" / "resolv.conf").symlink_to("/etc/host-owned-file")  # absolute: the host's
    (root / "etc" / "up").symlink_to("../../..")
    assert _inside(root, "lib/modules/x") == root / "usr" / "lib" / "modules" / "x"
    assert _inside(root, "etc/up/etc") == root / "etc"
    _put(root, "etc/resolv.conf", "nameserver 10.0.2.3\n")
    assert not (root / "etc" / "resolv.conf").is_symlink()
    assert (root / "etc" / "resolv.conf").read_text() == "nameserver 10.0.2.3\n"
    assert not os.path.exists("/etc/host-owned-file")


def test_cache_entries_are_built_once_and_atomically(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError), _building(final, "done") as work:
        assert work is not None
        (work / "half").write_text("x")
        raise RuntimeError("build failed")
    assert not final.exists() and list(tmp_path.glob(".entry.*")) == []

    built: list[str] = []
    gate = threading.Event()

    def build(tag: str) -> None:
        with _building(final, "done") as work:
            if work is None:
                return
            gate.wait(5)
            (work / "done").write_text(tag)
            built.append(tag)

    threads = [threading.Thread(target=build, args=(tag,)) for tag in ("one", "two")]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and (final / "done").read_text() == built[0]


def test_remove_tree_never_deletes_through_a_mount(tmp_path: Path) -> None:
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    tree = tmp_path / "tree" / "root" / "proc"
    tree.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(victim), str(tree)], check=True)
    try:
        assert mounts_under(tmp_path / "tree") == [str(tree)]
        remove_tree(tmp_path / "tree")
    finally:
        subprocess.run(["umount", str(tree)], check=False, capture_output=True)
    assert not (tmp_path / "tree").exists()
    assert (victim / "keep").read_text() == "precious"


def test_a_qemu_that_cannot_start_is_reported_and_cleaned_up(kernel: DebianKernel) -> None:
    before = set(runs_dir().iterdir()) if runs_dir().is_dir() else set()
    with pytest.raises(VMError, match="qemu exited at once") as failed:
        VM.boot(kernel=kernel, memory=-5)
    assert "-5" in str(failed.value)  # qemu's own words about the bad size
    after = set(runs_dir().iterdir())
    assert not {p for p in after - before if p.name.startswith(f"{os.getpid()}.")}
