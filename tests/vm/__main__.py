"""``python3 -m tests.vm``: a test VM for people, the demo and molecule.

    python3 -m tests.vm up [--name NAME] [--release R] [--profile base|build|headers] [--json]
    python3 -m tests.vm ssh [--name NAME] [-- COMMAND ...]
    python3 -m tests.vm inventory [--name NAME]      # prints the ansible inventory's path
    python3 -m tests.vm info [--name NAME]           # its details as JSON
    python3 -m tests.vm status                       # the VMs started with 'up'
    python3 -m tests.vm down [--name NAME]
    python3 -m tests.vm build [--release R] [--profile P]   # only build/cache the image
    python3 -m tests.vm prune                        # drop cache entries no longer used

``up`` leaves qemu running after it returns; ``down`` stops it by the pid recorded at ``up``
(checked against its command line), never by name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tests.support.debian import fetch
from tests.vm.image import PROFILES, ensure_image, prune
from tests.vm.machine import VM, VMError, runs_dir

DEFAULT_NAME = "default"


def _up(args: argparse.Namespace) -> int:
    vm = None
    if args.reuse:
        try:
            vm = VM.attach(args.name)
        except VMError:
            vm = None
        if vm is not None and not vm.running():
            vm = None
        elif vm is not None and (vm.image.profile != args.profile
                                 or (args.release and vm.release != args.release)):
            raise VMError(f"{args.name} is up with {vm.release} ({vm.image.profile}), not what "
                          f"was asked: 'python3 -m tests.vm down --name {args.name}' first")
    vm = vm or VM.boot(args.release, args.profile, name=args.name, memory=args.memory,
                       smp=args.smp, detach=True)
    info = vm.info()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{vm.name}: kernel {vm.release} ({info['profile']}), up in {vm.boot_seconds} s\n"
              f"  ssh:       python3 -m tests.vm ssh --name {vm.name}\n"
              f"  inventory: {vm.inventory_path}\n"
              f"  console:   {vm.console_log}\n"
              f"  stop:      python3 -m tests.vm down --name {vm.name}")
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        vm = VM.attach(args.name)
    except VMError:
        print(f"no VM named {args.name} is up", file=sys.stderr)
        return 0
    vm.stop()
    return 0


def _ssh(args: argparse.Namespace) -> int:
    vm = VM.attach(args.name)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        argv = vm.ssh_argv()
        argv[1:1] = ["-t"]
        os.execvp(argv[0], argv)
    proc = vm.ssh(" ".join(command), timeout=None)  # like ssh: the words make one command line
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def _inventory(args: argparse.Namespace) -> int:
    print(VM.attach(args.name).inventory_path)
    return 0


def _info(args: argparse.Namespace) -> int:
    vm = VM.attach(args.name)
    print(json.dumps({**vm.info(), "running": vm.running()}))
    return 0 if vm.running() else 1


def _status(_args: argparse.Namespace) -> int:
    found = 0
    for state in sorted(runs_dir().glob("*/state.json")) if runs_dir().is_dir() else []:
        try:
            vm = VM.attach(state.parent.name)
        except (VMError, ValueError, KeyError):
            continue
        found += 1
        alive = "up" if vm.running() else "gone"
        print(f"{vm.name}\t{alive}\t{vm.release}\t{vm.image.profile}\t127.0.0.1:{vm.port}"
              f"\tpid {vm.pid}")
    if not found:
        print("no VMs", file=sys.stderr)
    return 0


def _build(args: argparse.Namespace) -> int:
    image = ensure_image(fetch(args.release), args.profile)
    print(json.dumps({"image": str(image.path), **image.meta}))
    return 0


def _prune(_args: argparse.Namespace) -> int:
    in_use = set()
    for state in sorted(runs_dir().glob("*/state.json")) if runs_dir().is_dir() else []:
        vm = VM.attach(state.parent.name)
        if vm.running():
            in_use.add(vm.image.path)
    removed = prune(in_use)
    print(f"removed {len(removed)} cache entries", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.vm",
                                     description="stock Debian kernels under qemu for the tests")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def named(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--name", default=DEFAULT_NAME, help="which VM (default: %(default)s)")
        return p

    def kernel(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--release", help="kernel release, e.g. 6.1.0-56-cloud-amd64 "
                       "(default: $VERMAGIC_KMOD_KERNEL or the current stock amd64 kernel)")
        p.add_argument("--profile", default="base", choices=sorted(PROFILES),
                       help="image contents (default: %(default)s)")
        return p

    up = kernel(named(sub.add_parser("up", help="boot a VM and leave it running")))
    up.add_argument("--memory", type=int, default=1024, help="MB (default: %(default)s)")
    up.add_argument("--smp", type=int, default=2, help="CPUs (default: %(default)s)")
    up.add_argument("--json", action="store_true", help="print the VM's details as JSON")
    up.add_argument("--reuse", action="store_true",
                    help="if a VM of that name is up already, use it instead of failing")
    up.set_defaults(func=_up)
    named(sub.add_parser("down", help="stop a VM started with 'up'")).set_defaults(func=_down)
    ssh = named(sub.add_parser("ssh", help="a shell, or one command, in the VM"))
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    ssh.set_defaults(func=_ssh)
    named(sub.add_parser("inventory", help="print the path of the VM's ansible inventory")
          ).set_defaults(func=_inventory)
    named(sub.add_parser("info", help="the VM's details as JSON (exit 1 when it is not running)")
          ).set_defaults(func=_info)
    sub.add_parser("status", help="list VMs started with 'up'").set_defaults(func=_status)
    kernel(sub.add_parser("build", help="build (or find) the cached image only")
           ).set_defaults(func=_build)
    sub.add_parser("prune", help="remove cached images and root filesystems the current "
                   "code no longer uses").set_defaults(func=_prune)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
