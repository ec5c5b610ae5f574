"""Where this checkout is visible as the collection ``vermagic.kmod``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The cache shared by the tools and tests (kernel packages, VM images, builds)."""
    base = os.environ.get("VERMAGIC_KMOD_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vermagic-kmod"


def collections_dir() -> Path:
    """A directory holding ``ansible_collections/vermagic/kmod`` -> this checkout.

    Each checkout gets its own directory, so several work trees can be used side by side.
    """
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    top = cache_dir() / "collections" / tag
    link = top / "ansible_collections" / "vermagic" / "kmod"
    if not (link.is_symlink() and link.resolve() == ROOT):
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".kmod.{os.getpid()}")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(ROOT)
        os.replace(tmp, link)
    return top


def ansible_env(**extra: str) -> dict[str, str]:
    """Environment for ansible-playbook/ansible-doc that sees this checkout and nothing else."""
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_dir())
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
    env.setdefault("ANSIBLE_PIPELINING", "True")
    env.update(extra)
    return env


if __name__ == "__main__":
    print(collections_dir())
