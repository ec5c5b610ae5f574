"""Boot a stock Debian kernel under qemu and reach it over SSH on 127.0.0.1.

::

    from tests.vm import VM

    with VM.boot(release=None, profile="base") as vm:     # None: the current stock kernel
        print(vm.ssh(["uname", "-r"]).stdout)             # CompletedProcess, text
        vm.copy_to(Path("hello.ko"), "/root/hello.ko")
        print(vm.boot_id(), vm.inventory_path, vm.console_log)

Each VM gets a copy-on-write qcow2 overlay over the cached base image (``image.py``), so it
starts from the same clean state; its own SSH key pair (the public half reaches the guest on the
kernel command line, the initramfs installs it); a free port on 127.0.0.1 forwarded to the
guest's port 22 by qemu's user network. qemu is stopped by its pid (checked against the run
directory in its command line) from ``stop()``, the context manager, a finalizer at exit, and
``PR_SET_PDEATHSIG`` when the Python process dies first; never by name.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tests.support.debian import DebianKernel, fetch, locked
from tests.vm.image import Image, ensure_image, say, vm_cache

ACCEL_ENV = "VERMAGIC_KMOD_VM_ACCEL"  # tcg | kvm | auto (default: auto = kvm if it boots a kernel)
KEEP_ENV = "VERMAGIC_KMOD_VM_KEEP"  # keep run directories (overlay, console log) after stop
BOOT_TIMEOUT = float(os.environ.get("VERMAGIC_KMOD_VM_BOOT_TIMEOUT", "420"))
GUEST_PYTHON = "/usr/bin/python3"
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=8")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


class VMError(RuntimeError):
    """The VM could not be built, booted or reached."""


def runs_dir() -> Path:
    return vm_cache() / "runs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_is_ours(pid: int, run_dir: Path) -> bool:
    """True when ``pid`` is a live qemu whose command line names ``run_dir``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (bool(cmdline) and b"qemu-system" in cmdline[0]
            and any(str(run_dir).encode() in arg for arg in cmdline))


def _terminate(pid: int, run_dir: Path, keep: bool) -> None:
    """Stop qemu ``pid`` (only if it is the one of ``run_dir``) and clean ``run_dir`` up."""
    control = run_dir / "cm"
    if control.exists():
        subprocess.run(["ssh", "-o", f"ControlPath={control}", "-O", "exit", "vm"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False)
    if _pid_is_ours(pid, run_dir):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _pid_is_ours(pid, run_dir) and time.monotonic() < deadline:
            try:  # reap it when it is our child; otherwise just wait for it to go
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if _pid_is_ours(pid, run_dir):
            os.kill(pid, signal.SIGKILL)
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)


def sweep_stale_runs() -> list[Path]:
    """Remove run directories whose qemu is gone (a killed test run leaves its overlay)."""
    removed: list[Path] = []
    if os.environ.get(KEEP_ENV):
        return removed  # kept on purpose, for a look at them
    for state in sorted(runs_dir().glob("*/state.json")) if runs_dir().is_dir() else []:
        try:
            pid = json.loads(state.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            continue
        if not _pid_is_ours(pid, state.parent):
            shutil.rmtree(state.parent, ignore_errors=True)
            removed.append(state.parent)
    return removed


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def kvm_usable(image: Image) -> bool:
    """Can qemu boot a stock kernel with KVM here? Proven by booting one, cached per host boot.

    The probe boots the kernel without a root filesystem: a working KVM reaches the kernel's
    "Unable to mount root fs" panic in a second or two. Nested or broken backends hang or crash.
    """
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError:
        return False
    host_boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = vm_cache() / "kvm-probe.json"
    key = host_boot
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if key in known:
        return bool(known[key])
    say("checking whether KVM boots a stock kernel here (once per host boot, up to 12 s)")
    with tempfile.TemporaryDirectory(prefix="kvm-probe.") as tmp:
        log = Path(tmp) / "console.log"
        proc = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults",
             "-display", "none", "-no-reboot", "-kernel", str(image.vmlinuz),
             "-append", "console=ttyS0 panic=-1", "-serial", f"file:{log}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_set_pdeathsig)
        try:
            proc.wait(12)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        text = log.read_text(errors="replace") if log.exists() else ""
    works = "Unable to mount root fs" in text
    say(f"KVM {'works' if works else 'does not boot a stock kernel here: using TCG'}")
    with locked(vm_cache() / "kvm-probe.lock"):
        known = json.loads(cache.read_text()) if cache.is_file() else {}
        known[key] = works
        tmp_file = cache.with_suffix(f".{os.getpid()}")
        tmp_file.write_text(json.dumps(known))
        os.replace(tmp_file, cache)
    return works


def choose_accel(image: Image) -> str:
    wanted = os.environ.get(ACCEL_ENV, "auto")
    if wanted not in ("auto", "kvm", "tcg"):
        raise VMError(f"{ACCEL_ENV}={wanted!r}: use auto, kvm or tcg")
    if wanted == "auto":
        return "kvm" if kvm_usable(image) else "tcg"
    return wanted


@dataclass
class _Spec:
    memory: int = 1024
    smp: int = 2
    cmdline: tuple[str, ...] = ()


class VM:
    """A running test VM. Make one with ``VM.boot(...)``; stop it with ``stop()`` or ``with``."""

    def __init__(self, *, name: str, image: Image, run_dir: Path, port: int, pid: int,
                 accel: str, boot_seconds: float, detached: bool) -> None:
        self.name = name
        self.image = image
        self.run_dir = run_dir
        self.port = port
        self.pid = pid
        self.accel = accel
        self.boot_seconds = boot_seconds
        self.detached = detached
        self.first_boot_id = ""  # the guest's boot id when it came up: proof nothing rebooted
        self._proc: subprocess.Popen | None = None
        keep = bool(os.environ.get(KEEP_ENV))
        self._finalizer = None if detached else weakref.finalize(
            self, _terminate, pid, run_dir, keep)

    # ------------------------------------------------------------------ paths
    @property
    def release(self) -> str:
        return self.image.release

    @property
    def key(self) -> Path:
        return self.run_dir / "id_ed25519"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def inventory_path(self) -> Path:
        return self.run_dir / "inventory.ini"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    # ------------------------------------------------------------------ life cycle
    @classmethod
    def boot(cls, release: str | None = None, profile: str = "base", *,
             kernel: DebianKernel | None = None, name: str | None = None, memory: int = 1024,
             smp: int = 2, cmdline: Sequence[str] = (), timeout: float = BOOT_TIMEOUT,
             detach: bool = False) -> VM:
        """Build (or reuse) the image for ``release``/``profile`` and boot a fresh VM on it.

        ``release`` None means the current stock kernel (or ``$VERMAGIC_KMOD_KERNEL``).
        ``detach`` leaves qemu running after this process exits (the CLI's ``up``).
        """
        kernel = kernel or fetch(release)
        image = ensure_image(kernel, profile)
        runs_dir().mkdir(parents=True, exist_ok=True)
        for stale in sweep_stale_runs():
            say(f"removed {stale} (its qemu is gone)")
        if name:
            run_dir = runs_dir() / name
            with locked(runs_dir() / f"{name}.lock"):
                state = run_dir / "state.json"
                if state.is_file():
                    old = json.loads(state.read_text())
                    if _pid_is_ours(old["pid"], run_dir):
                        raise VMError(f"a VM named {name} is running already (pid {old['pid']}, "
                                      f"port {old['port']}): 'python3 -m tests.vm down "
                                      f"--name {name}' first")
                shutil.rmtree(run_dir, ignore_errors=True)
                run_dir.mkdir()
        else:
            run_dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}.", dir=runs_dir()))
            name = f"vm-{run_dir.name.replace('.', '-')}"
        try:
            return cls._start(name, image, run_dir, _Spec(memory, smp, tuple(cmdline)), timeout,
                              detach)
        except BaseException:
            if not os.environ.get(KEEP_ENV):
                shutil.rmtree(run_dir, ignore_errors=True)
            raise

    @classmethod
    def _start(cls, name: str, image: Image, run_dir: Path, spec: _Spec, timeout: float,
               detach: bool) -> VM:
        accel = choose_accel(image)
        key = run_dir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"vm-{name}",
                        "-f", str(key)], check=True, stdin=subprocess.DEVNULL)
        kind, blob = (key.with_suffix(".pub").read_text().split() + ["", ""])[:2]
        overlay = run_dir / "overlay.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", str(image.disk), str(overlay)], check=True)
        append = ["console=ttyS0,115200", "root=/dev/vda", "rw", "panic=-1", "fsck.mode=skip",
                  "net.ifnames=0", "mitigations=off", f"vmkey={kind}:{blob}",
                  f"vmname={name}", *spec.cmdline]
        accel_args = (["-accel", "kvm", "-cpu", "host"] if accel == "kvm"
                      else ["-accel", "tcg,thread=multi", "-cpu", "max"])
        say(f"booting {name}: kernel {image.release}, profile {image.profile}, {accel}, "
            f"{spec.smp} CPUs, {spec.memory} MB")
        start = time.monotonic()
        proc = port = None
        for _attempt in range(5):
            port = free_port()
            argv = ["qemu-system-x86_64", "-name", f"vermagic-kmod-{name}", *accel_args,
                    "-smp", str(spec.smp), "-m", str(spec.memory), "-nodefaults",
                    "-display", "none", "-no-reboot",
                    "-kernel", str(image.vmlinuz), "-initrd", str(image.initrd),
                    "-append", " ".join(append),
                    "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
                    "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22",
                    "-device", "virtio-net-pci,netdev=net0",
                    "-device", "virtio-rng-pci",
                    "-serial", f"file:{run_dir / 'console.log'}"]
            (run_dir / "qemu.argv").write_text(shlex.join(argv) + "\n")
            with open(run_dir / "qemu.log", "ab") as qlog:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qlog,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=None if detach else _set_pdeathsig)
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                break  # running: the port was ours
            qlog_text = (run_dir / "qemu.log").read_text(errors="replace")
            if "host forwarding" not in qlog_text:
                raise VMError(f"qemu exited at once (exit {proc.returncode}):\n{qlog_text}")
            say(f"port {port} was taken meanwhile; trying another")
        assert proc is not None and port is not None
        vm = cls(name=name, image=image, run_dir=run_dir, port=port, pid=proc.pid,
                 accel=accel, boot_seconds=0.0, detached=detach)
        vm._proc = proc
        vm._write_state()
        try:
            vm._wait_for_ssh(proc, start, timeout)
        except BaseException:
            vm.stop()
            raise
        vm.boot_seconds = round(time.monotonic() - start, 1)
        vm._start_master()
        vm.first_boot_id = vm.boot_id()
        vm.write_inventory([vm], vm.inventory_path)
        vm._write_state()
        say(f"{name} is up: ssh on 127.0.0.1:{port} after {vm.boot_seconds} s "
            f"(pid {proc.pid})")
        return vm

    @classmethod
    def attach(cls, name: str) -> VM:
        """The detached VM ``name`` started by ``python3 -m tests.vm up``."""
        run_dir = runs_dir() / name
        state_file = run_dir / "state.json"
        if not state_file.is_file():
            raise VMError(f"no VM named {name} (no {state_file}): "
                          f"'python3 -m tests.vm up --name {name}' starts one")
        state = json.loads(state_file.read_text())
        image = Image(Path(state["image"]), state["release"], state["profile"])
        vm = cls(name=name, image=image, run_dir=run_dir, port=state["port"],
                 pid=state["pid"], accel=state["accel"], boot_seconds=state["boot_seconds"],
                 detached=True)
        vm.first_boot_id = state.get("first_boot_id", "")
        return vm

    def running(self) -> bool:
        return _pid_is_ours(self.pid, self.run_dir)

    def stop(self, keep: bool | None = None) -> None:
        """Stop qemu (by its pid) and remove the run directory (overlay, key, logs)."""
        keep = bool(os.environ.get(KEEP_ENV)) if keep is None else keep
        if self._finalizer is not None:
            self._finalizer.detach()
        _terminate(self.pid, self.run_dir, keep)
        if self._proc is not None:
            self._proc.poll()  # reaped already: records it, so no "still running" warning
        say(f"{self.name} stopped")

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ access
    def ssh_argv(self, *, master: bool = True) -> list[str]:
        argv = ["ssh", *SSH_OPTIONS, "-i", str(self.key), "-p", str(self.port)]
        if master:
            argv += ["-o", f"ControlPath={self.run_dir / 'cm'}", "-o", "ControlMaster=no"]
        return argv + ["root@127.0.0.1"]

    def ssh(self, command: Sequence[str] | str, *, check: bool = False,
            input: str | bytes | None = None, timeout: float | None = 600,
            text: bool = True) -> subprocess.CompletedProcess:
        """Run ``command`` in the guest as root: an argv list (quoted for the remote shell) or
        a shell command line string. Returns the CompletedProcess (stdout/stderr captured)."""
        remote = command if isinstance(command, str) else shlex.join(command)
        if isinstance(input, str) and not text:
            input = input.encode()
        proc = subprocess.run([*self.ssh_argv(), remote], input=input, capture_output=True,
                              text=text, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL if input is None else None)
        if check and proc.returncode:
            raise VMError(f"{self.name}: {remote!r} exited {proc.returncode}:\n"
                          f"{proc.stdout}\n{proc.stderr}")
        return proc

    def copy_to(self, src: Path | str, dest: str) -> str:
        """Copy a local file to the guest path ``dest``, or a directory's contents into the
        guest directory ``dest`` (created). Returns ``dest``."""
        src = Path(src)
        if src.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for item in sorted(src.iterdir()):
                    tar.add(item, arcname=item.name)
            script = f"mkdir -p {shlex.quote(dest)} && tar -C {shlex.quote(dest)} -xf -"
            self.ssh(script, input=buf.getvalue(), text=False, check=True)
        else:
            parent = os.path.dirname(dest) or "."
            script = (f"mkdir -p {shlex.quote(parent)} && cat > {shlex.quote(dest)} && "
                      f"chmod {src.stat().st_mode & 0o777:o} {shlex.quote(dest)}")
            self.ssh(script, input=src.read_bytes(), text=False, check=True)
        return dest

    def copy_from(self, src: str, dest: Path) -> Path:
        """Copy the guest file ``src`` to the local path ``dest``."""
        proc = self.ssh(["cat", src], text=False, check=True)
        dest.write_bytes(proc.stdout)
        return dest

    def boot_id(self) -> str:
        return self.ssh(["cat", "/proc/sys/kernel/random/boot_id"], check=True).stdout.strip()

    def uname_r(self) -> str:
        return self.ssh(["uname", "-r"], check=True).stdout.strip()

    def dmesg(self) -> str:
        return self.ssh(["dmesg"], check=True).stdout

    def log_mark(self) -> str:
        """Write a unique line to the guest's kernel log; ``dmesg_since(mark)`` reads after it."""
        mark = f"vermagic-kmod-mark-{time.time_ns()}"
        self.ssh(f"echo {mark} > /dev/kmsg", check=True)
        return mark

    def dmesg_since(self, mark: str) -> list[str]:
        """The kernel log lines after ``mark`` (timestamps stripped)."""
        lines = self.ssh(["dmesg", "--notime"], check=True).stdout.splitlines()
        at = max((i for i, line in enumerate(lines) if mark in line), default=None)
        if at is None:
            raise VMError(f"{self.name}: kernel log mark {mark} is gone (log overwritten?)")
        return lines[at + 1:]

    def inventory_line(self) -> str:
        return (f"{self.name} ansible_host=127.0.0.1 ansible_port={self.port} ansible_user=root "
                f"ansible_ssh_private_key_file={self.key} "
                f"ansible_python_interpreter={GUEST_PYTHON} ansible_pipelining=true "
                "ansible_ssh_timeout=60 "
                "ansible_ssh_common_args='-o StrictHostKeyChecking=no "
                "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'")

    @staticmethod
    def write_inventory(vms: Sequence[VM], path: Path, group: str = "vms") -> Path:
        """An INI inventory for ansible with every VM of ``vms`` in ``group``."""
        text = f"[{group}]\n" + "".join(vm.inventory_line() + "\n" for vm in vms)
        text += f"\n[{group}:vars]\nansible_host_key_checking=false\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def info(self) -> dict:
        return {"name": self.name, "release": self.release, "profile": self.image.profile,
                "host": "127.0.0.1", "port": self.port, "user": "root", "key": str(self.key),
                "pid": self.pid, "accel": self.accel, "inventory": str(self.inventory_path),
                "console_log": str(self.console_log), "run_dir": str(self.run_dir),
                "image": str(self.image.path), "boot_seconds": self.boot_seconds,
                "first_boot_id": self.first_boot_id,
                "ssh": shlex.join(self.ssh_argv(master=False))}

    # ------------------------------------------------------------------ internals
    def _write_state(self) -> None:
        state = self.info()
        tmp = self.run_dir / ".state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.run_dir / "state.json")

    def console_tail(self, lines: int = 25) -> str:
        if not self.console_log.exists():
            return "(no console output)"
        text = _ANSI.sub("", self.console_log.read_text(errors="replace"))
        return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])

    def _wait_for_ssh(self, proc: subprocess.Popen, start: float, timeout: float) -> None:
        last_print = start
        probe = [*self.ssh_argv(master=False)[:-1], "-o", "ConnectTimeout=20",
                 "root@127.0.0.1", "true"]
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                raise VMError(f"{self.name}: qemu exited ({proc.returncode}) before SSH came up;"
                              f" console:\n{self.console_tail()}\nqemu: "
                              f"{(self.run_dir / 'qemu.log').read_text(errors='replace')}")
            if now - start > timeout:
                raise VMError(f"{self.name}: no SSH after {timeout:.0f} s; console:\n"
                              f"{self.console_tail()}")
            if now - last_print >= 5:
                last_print = now
                tail = self.console_tail(1).strip()
                say(f"{self.name}: booting, {now - start:.0f} s: {tail[-100:]}")
            if self._banner():
                try:
                    done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True,
                                          timeout=30, check=False)
                    if done.returncode == 0:
                        return
                except subprocess.TimeoutExpired:
                    pass
            time.sleep(0.5)

    def _banner(self) -> bool:
        """Does sshd answer yet? (qemu accepts the TCP connection long before the guest does.)"""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.settimeout(2)
                return sock.recv(4) == b"SSH-"
        except OSError:
            return False

    def _start_master(self) -> None:
        """One SSH connection kept open for the run's commands (ansible keeps its own)."""
        argv = self.ssh_argv(master=False)
        argv[-1:-1] = ["-o", f"ControlPath={self.run_dir / 'cm'}", "-o", "ControlMaster=yes",
                       "-o", "ControlPersist=yes", "-N", "-f"]
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False)


def run_ansible(argv: Sequence[str], env: dict[str, str], cwd: Path | None = None,
                timeout: float = 900) -> subprocess.CompletedProcess:
    """Run an ansible command line (env from ``tests.support.collection.ansible_env()``);
    its output is printed, so pytest shows it when a test fails."""
    proc = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    print(f"$ {shlex.join(argv)}\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}")
    return proc
