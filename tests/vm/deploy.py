"""Run ``playbooks/deploy.yml`` (``ansible-playbook vermagic.kmod.deploy``) against test VMs.

::

    from tests.vm.deploy import run_deploy

    run = run_deploy(vm.inventory_path, {"kmod_params": {"greeting": "hi"}})
    run.rc, run.seconds, run.recap["vm-…"]["changed"], run.summaries["vm-…"]["action"]

The playbook writes every host's summary to ``kmod_summary_file`` (a JSON file given here), and
the PLAY RECAP gives the counts per host. Output is streamed to stderr with the time since the
start (long runs under TCG print progress); the whole text is kept in ``run.output``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.collection import ROOT, ansible_env
from tests.vm.machine import VM

PLAYBOOK = "vermagic.kmod.deploy"
_RECAP = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.M)
_TASK = re.compile(r"^(TASK|PLAY) \[(.*?)\]")


@dataclass
class DeployRun:
    """What one ansible-playbook run did."""

    argv: list[str]
    rc: int
    output: str
    seconds: float
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counts by host (ok, changed, unreachable, failed, skipped, rescued, ignored)."""
        found: dict[str, dict[str, int]] = {}
        tail = self.output[self.output.rfind("PLAY RECAP"):]
        for host, counts in _RECAP.findall(tail):
            found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
        return found

    def changed_tasks(self, host: str) -> list[str]:
        """Names of the tasks that reported changed for ``host``."""
        names, current = [], None
        for line in self.output.splitlines():
            match = _TASK.match(line)
            if match:
                current = match.group(2)
            elif line.startswith(f"changed: [{host}]") and current:
                names.append(current)
        return names

    def explain(self) -> str:
        return f"{' '.join(self.argv)}\nexit {self.rc} after {self.seconds:.0f} s\n{self.output[-6000:]}"


def write_inventory(vms: list[VM], path: Path, host_vars: dict[str, dict[str, str]] | None = None
                    ) -> Path:
    """An INI inventory of ``vms`` (group ``vms``), with per-host string variables."""
    VM.write_inventory(vms, path)
    if host_vars:
        text = path.read_text()
        for name, values in host_vars.items():
            line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
            extra = " ".join(f"{key}={shlex.quote(value)}" for key, value in values.items())
            text = text.replace(line, f"{line} {extra}")
        path.write_text(text)
    return path


def run_deploy(inventory: Path, extra_vars: dict[str, Any] | None = None, *, check: bool = False,
               diff: bool = False, limit: str | None = None, label: str = "deploy",
               timeout: float = 7200) -> DeployRun:
    """``ansible-playbook vermagic.kmod.deploy -i inventory -e @vars.json`` from the checkout."""
    with tempfile.TemporaryDirectory(prefix="deploy-run.") as tmp:
        summary_file = Path(tmp) / "summaries.json"
        values = {"kmod_summary_file": str(summary_file), **(extra_vars or {})}
        vars_file = Path(tmp) / "vars.json"
        vars_file.write_text(json.dumps(values))
        argv = ["ansible-playbook", PLAYBOOK, "-i", str(inventory), "-e", f"@{vars_file}"]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        if limit:
            argv += ["--limit", limit]
        env = ansible_env(ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="False",
                          ANSIBLE_LOCAL_TEMP=str(Path(tmp) / "local"))
        start = time.monotonic()
        lines: list[str] = []
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if _TASK.match(line) or line.startswith(("changed:", "fatal:", "failed:")):
                print(f"[{label} {time.monotonic() - start:6.1f}s] {line.rstrip()[:150]}",
                      file=sys.stderr, flush=True)
            if time.monotonic() - start > timeout:
                proc.kill()
                break
        rc = proc.wait()
        seconds = time.monotonic() - start
        summaries = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    print(f"[{label}] exit {rc} after {seconds:.1f} s", file=sys.stderr, flush=True)
    return DeployRun(argv, rc, "".join(lines), seconds, summaries)


def guest_state(vm: VM) -> str:
    """What a run could change on the guest: loaded modules, packages, the role's files,
    /lib/modules, apt's lists and the kernel's taint (a text to compare before and after)."""
    script = ("cat /proc/sys/kernel/tainted; cut -d' ' -f1 /proc/modules | sort; "
              "dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\\n'; "
              "find /var/lib/vermagic-kmod /lib/modules /etc/modules-load.d /etc/modprobe.d "
              "/usr/src /var/lib/apt/lists -xdev -printf '%p %s %T@\\n' 2>/dev/null | sort")
    return vm.ssh(script, check=True, timeout=600).stdout
