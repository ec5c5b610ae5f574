# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Insert, replace (with rollback) and remove a kernel module on a host that cannot be rebooted.

``run(request, host)`` does the whole operation and returns the result dictionary of
``vermagic.kmod.modload``; a refusal or a failure raises ``ModloadError`` carrying the message
and the partial result (what was done, what the kernel said). The order is the safety:

1. read the module file once (refused if anyone but root could have written it or a directory
   above it), and what the kernel has loaded under that name (``/sys/module/<name>``);
2. decide: nothing to do, insert, or replace (only with ``replace``), comparing srcversion, the
   GNU build id and the parameters;
3. preflight: the verdict against the running kernel; a refusal stops here (``force`` is the
   only way past it, and says what it bypasses);
4. for a replace: the old module must be unused and a file of exactly the loaded build must be
   at hand to roll back to (our own copy, or one under ``/lib/modules/<release>``);
5. under an exclusive lock, with the kernel log being read: copy the module into the state
   directory (root only) and insert that copy, so that what was checked is what is loaded;
   for a replace unload the old one first and, if the new one is refused, load the old one
   again with its old parameters;
6. persistence files, ``depmod`` when the module file there changed.

Everything the host provides (commands, paths, the kernel facts) comes from ``Host``, so tests
drive the error paths with fakes.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from . import _kernel_facts, _persist, _preflight
from . import _modparams as mp
from ._files import write_atomic
from ._kmsg import KernelLog
from ._lock import LockTimeout, exclusive_lock
from ._modfile import ModuleFileError, read_module_bytes
from ._safepath import untrusted_reasons
from ._sysfs import LoadedModule, module_name, read_loaded
from ._taint import read_taint
from ._verdict import identity_matches

Runner = Callable[[list], "tuple[int, str, str]"]

ACTIONS = ("none", "inserted", "replaced", "removed", "rolled_back")
KEEP_COPIES = 3


class ModloadError(Exception):
    """A refusal or a failure: ``msg`` says what and what to do, ``result`` what happened."""

    def __init__(self, msg: str, result: dict | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result or {}


@dataclass
class Request:
    path: str | None = None
    name: str | None = None
    params: Any = None
    state: str = "present"
    replace: bool = False
    persistent: bool = False
    force: tuple = ()
    allow_unsafe_path: bool = False
    replace_without_rollback: bool = False
    symvers: str | None = None
    check_mode: bool = False


def _default_facts() -> dict:
    facts, _warnings = _kernel_facts.gather("/")
    return facts


@dataclass
class Host:
    """The machine: commands (argv lists through ``run``), paths, and the kernel's facts."""

    run: Runner
    release: str = field(default_factory=lambda: os.uname().release)
    tools: dict = field(default_factory=lambda: {
        "insmod": "insmod", "rmmod": "rmmod", "modprobe": "modprobe", "depmod": "depmod",
        "modinfo": "modinfo", "dmesg": "dmesg"})
    sys_module: str = "/sys/module"
    kmsg: str = "/dev/kmsg"
    tainted: str = "/proc/sys/kernel/tainted"
    state_dir: str = "/var/lib/vermagic-kmod"
    lock_path: str = "/run/vermagic-kmod/modload.lock"
    lock_timeout: float = 600.0
    lib_modules: str = "/lib/modules"
    modules_load_d: str = "/etc/modules-load.d"
    modprobe_d: str = "/etc/modprobe.d"
    kernel_facts: Callable[[], dict] = _default_facts
    lstat: Callable[[str], os.stat_result] = os.lstat
    warn: Callable[[str], None] = lambda _msg: None

    def layout(self) -> _persist.Layout:
        return _persist.Layout(self.release, self.lib_modules, self.modules_load_d,
                               self.modprobe_d, os.path.join(self.state_dir, "persist"))


@dataclass
class Candidate:
    """The module file asked for, read once."""

    path: str
    data: bytes
    info: Any  # _modfile.ModuleFile

    @property
    def build_id(self) -> str | None:
        return self.info.build_id

    @property
    def name(self) -> str:
        return module_name(self.info.name or "")

    @property
    def srcversion(self) -> str | None:
        value = self.info.fields.get("srcversion")
        return value if isinstance(value, str) and value else None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def param_types(self) -> dict[str, str]:
        types: dict[str, str] = {}
        for entry in self.info.fields.get("parmtype") or []:
            pname, _sep, ptype = entry.partition(":")
            types[pname] = ptype
        return types

    def as_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "srcversion": self.srcversion,
                "build_id": self.build_id, "vermagic": self.info.vermagic,
                "sha256": self.sha256, "size": len(self.data)}


def read_candidate(path: str, data: bytes | None = None) -> Candidate:
    if data is None:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ModloadError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = read_module_bytes(data, path)
    except ModuleFileError as exc:  # its message says what is wrong
        raise ModloadError(f"{path}: {exc}") from None
    if not info.name:
        raise ModloadError(f"{path}: the module's name cannot be read (no struct module name and "
                           "no name= in .modinfo)")
    return Candidate(path, data, info)


def _words(rc: int, out: str, err: str) -> str:
    text = "\n".join(part.strip() for part in (err, out) if part and part.strip())
    return text or f"exit status {rc}"


class _Operation:
    def __init__(self, request: Request, host: Host) -> None:
        self.req = request
        self.host = host
        self.result: dict = {
            "changed": False, "action": "none", "loaded": None, "previous": None,
            "kernel_log": [], "taint_before": None, "taint_after": None, "verdict": None,
            "forced": [], "module": None, "persistence": None, "diff": [],
        }
        self.klog: KernelLog | None = None
        self.notes: list[str] = []

    # ---- failing -----------------------------------------------------------------------

    def fail(self, msg: str) -> ModloadError:
        if self.klog is not None:
            self.klog.drain()
            self.result["kernel_log"] = list(self.klog.lines)
            self.result["taint_after"] = read_taint(self.host.tainted)
        if self.notes:
            self.result["notes"] = list(self.notes)
        return ModloadError(msg, self.result)

    def run_cmd(self, argv: list) -> tuple[int, str, str]:
        return self.host.run([str(a) for a in argv])

    # ---- the module asked for -----------------------------------------------------------

    def candidate(self) -> Candidate | None:
        req = self.req
        if req.path:
            if not req.allow_unsafe_path and req.state == "present":
                reasons = untrusted_reasons(req.path, self.host.lstat)
                if reasons:
                    raise self.fail(
                        f"refusing to load {req.path}: users other than root could have written "
                        f"it, and loading it would hand them the kernel: {'; '.join(reasons)}. "
                        "Move it under a root-owned directory (e.g. /usr/local/lib/modules) and "
                        "make it root:root 0644, or set allow_unsafe_path: true")
            cand = self.read(req.path)
            if req.name and module_name(req.name) != cand.name:
                raise self.fail(f"{req.path} is the module {cand.name}, not {req.name}: leave name "
                                "out, or give the right file")
            return cand
        if req.state == "absent":
            return None
        path = self.resolve_name(req.name or "")
        if path is None:
            return None
        if not req.allow_unsafe_path:
            reasons = untrusted_reasons(path, self.host.lstat)
            if reasons:
                raise self.fail(f"refusing to load {path} (found for {req.name}): {'; '.join(reasons)}")
        return self.read(path)

    def read(self, path: str) -> Candidate:
        try:
            return read_candidate(path)
        except ModloadError as exc:
            raise self.fail(exc.msg) from None

    def resolve_name(self, name: str) -> str | None:
        """The file ``modprobe <name>`` would load, or None for a built-in module."""
        rc, out, err = self.run_cmd([self.host.tools["modinfo"], "-k", self.host.release, "-n",
                                     name])
        if rc != 0:
            raise self.fail(f"no module {name} for kernel {self.host.release}: "
                            f"{_words(rc, out, err)}. Install it (or give path), and run depmod")
        files = [line.strip() for line in out.splitlines() if line.strip()]
        if files and all(f == "(builtin)" for f in files):
            return None
        files = [f for f in files if f != "(builtin)"]
        if len(files) != 1:
            raise self.fail(f"{name} names several modules ({', '.join(files)}): give the "
                            "module's own name, or path")
        return files[0]

    # ---- parameters ----------------------------------------------------------------------

    def check_param_names(self, cand: Candidate, pairs: list) -> None:
        types = cand.param_types()
        unknown = [pname for pname, _v in pairs if pname not in types]
        if unknown:
            have = ", ".join(f"{k} ({v})" for k, v in sorted(types.items())) or "none"
            raise self.fail(f"{cand.name} has no parameter {', '.join(unknown)} (the kernel would "
                            f"ignore it with 'unknown parameter'); its parameters: {have}")

    def param_changes(self, cand: Candidate, pairs: list, loaded: LoadedModule,
                      record: dict | None) -> tuple[list[str], list[str]]:
        """``(differing, unverified)`` parameter names between what is asked and what is loaded."""
        types = cand.param_types()
        recorded = dict((n, v) for n, v in (record or {}).get("params", []))
        differing, unverified = [], []
        for pname, value in pairs:
            shown = loaded.params.get(pname)
            if shown is not None:
                if not mp.values_equal(value, shown, types.get(pname)):
                    differing.append(pname)
            elif record is not None and pname in recorded:
                if recorded[pname] != value:
                    differing.append(pname)
            else:
                unverified.append(pname)
        asked = {pname for pname, _v in pairs}
        differing.extend(sorted(set(recorded) - asked))  # set last time, now back to the default
        return differing, unverified

    # ---- state directory: our copies and the record of what we loaded ---------------------

    def module_dir(self, name: str) -> str:
        return os.path.join(self.host.state_dir, "modules", name)

    def read_record(self, name: str, loaded: LoadedModule | None) -> dict | None:
        """What we passed when we loaded the build that is loaded now (None if not ours)."""
        if loaded is None:
            return None
        try:
            with open(os.path.join(self.module_dir(name), "record.json"), encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        same = identity_matches(record.get("srcversion"), record.get("build_id"),
                                loaded.srcversion, loaded.build_id)
        return record if same else None

    def ensure_state_dir(self, path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        reasons = untrusted_reasons(path, self.host.lstat)
        if reasons:
            raise self.fail(f"the state directory {path} is not root's alone, so a module "
                            f"copied there could be swapped: {'; '.join(reasons)}")

    def stash(self, cand: Candidate) -> str:
        """Copy the module into the state directory (what we insert, and can roll back to)."""
        directory = self.module_dir(cand.name)
        self.ensure_state_dir(directory)
        key = cand.srcversion or "nosrcversion"
        tail = (cand.build_id or cand.sha256)[:16]
        path = os.path.join(directory, f"{key}-{tail}.ko")
        write_atomic(path, cand.data, 0o600)
        os.utime(path)
        return path

    def write_record(self, cand: Candidate, stashed: str, pairs: list) -> None:
        record = {"srcversion": cand.srcversion, "build_id": cand.build_id, "file": stashed,
                  "sha256": cand.sha256, "params": [list(p) for p in pairs],
                  "source": cand.path}
        write_atomic(os.path.join(self.module_dir(cand.name), "record.json"),
                     (json.dumps(record, indent=1, sort_keys=True) + "\n").encode(), 0o600)
        self.prune(cand.name, keep={stashed})

    def prune(self, name: str, keep: set) -> None:
        directory = self.module_dir(name)
        try:
            copies = [os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".ko")]
        except OSError:
            return
        copies.sort(key=lambda p: os.stat(p).st_mtime, reverse=True)
        for path in copies[KEEP_COPIES:]:
            if path not in keep:
                os.unlink(path)

    def forget(self, name: str) -> None:
        directory = self.module_dir(name)
        if not os.path.isdir(directory):
            return
        for entry in os.listdir(directory):
            os.unlink(os.path.join(directory, entry))
        os.rmdir(directory)

    # ---- rollback: a file of exactly the loaded build -------------------------------------

    def rollback_source(self, loaded: LoadedModule, record: dict | None) -> tuple[str | None, str]:
        """``(path, how it was found)`` of a file whose build is the loaded one, or ``(None, why)``."""
        tried: list[str] = []

        def matches(path: str) -> bool:
            try:
                cand = read_candidate(path)
            except ModloadError as exc:
                tried.append(str(exc))
                return False
            return bool(identity_matches(cand.srcversion, cand.build_id,
                                         loaded.srcversion, loaded.build_id))

        if loaded.srcversion is None and loaded.build_id is None:
            return None, (f"the loaded {loaded.name} has neither a srcversion nor a build id in "
                          "sysfs: no file can be proven to be it")
        if record and record.get("file") and matches(record["file"]):
            return record["file"], "the copy kept when vermagic.kmod loaded it"
        directory = self.module_dir(loaded.name)
        if os.path.isdir(directory):
            for entry in sorted(os.listdir(directory)):
                path = os.path.join(directory, entry)
                if entry.endswith(".ko") and matches(path):
                    return path, "a copy kept by vermagic.kmod"
        names = {f"{loaded.name}{suffix}" for suffix in (".ko", ".ko.gz", ".ko.xz", ".ko.zst")}
        names |= {n.replace("_", "-") for n in names}
        top = os.path.join(self.host.lib_modules, self.host.release)
        for dirpath, _dirs, files in os.walk(top):
            for entry in sorted(files):
                if entry in names and matches(os.path.join(dirpath, entry)):
                    return os.path.join(dirpath, entry), f"found under {top}"
        return None, (f"no file of the loaded build of {loaded.name} (srcversion "
                      f"{loaded.srcversion or 'none'}, build id {loaded.build_id or 'none'}) in "
                      f"{directory} or under {top}" + (f" ({'; '.join(tried)})" if tried else ""))

    def rollback_params(self, loaded: LoadedModule, record: dict | None) -> list:
        if record is not None:
            return [tuple(pair) for pair in record.get("params", [])]
        pairs = []
        for pname, value in sorted(loaded.params.items()):
            if value is None or value == "(null)" or '"' in value or "\n" in value:
                continue
            pairs.append((pname, value))
        return pairs

    # ---- kernel commands ------------------------------------------------------------------

    def force_args(self, by_path: bool, forced: set) -> list[str]:
        wanted = forced & {"vermagic", "modversion"}
        if not wanted:
            return []
        flags = [f"--force-{w}" for w in sorted(wanted)]
        if not by_path:
            return flags
        if wanted == {"vermagic", "modversion"}:
            return ["-f"]
        rc, out, err = self.run_cmd([self.host.tools["insmod"], "--help"])
        if f"--force-{next(iter(wanted))}" in out + err:
            return flags
        raise self.fail(f"this host's insmod forces only both checks at once (-f); kmod's "
                        f"--force-{next(iter(wanted))} alone needs kmod 31 or later. Give force: "
                        "[vermagic, modversion] to use insmod -f")

    def insert(self, path: str | None, name: str, pairs: list, force: list[str]
               ) -> tuple[bool, str]:
        if path is not None:
            argv = [self.host.tools["insmod"], *force, path, *mp.to_argv(pairs)]
        else:
            argv = [self.host.tools["modprobe"], *force, name, *mp.to_argv(pairs)]
        rc, out, err = self.run_cmd(argv)
        return rc == 0, _words(rc, out, err)

    def unload(self, name: str) -> tuple[bool, str]:
        rc, out, err = self.run_cmd([self.host.tools["rmmod"], name])  # never -f
        return rc == 0, _words(rc, out, err)

    def loaded_now(self, name: str) -> LoadedModule | None:
        return read_loaded(name, self.host.sys_module)

    # ---- the operation ------------------------------------------------------------------

    def execute(self) -> dict:
        req, host = self.req, self.host
        if req.state not in ("present", "absent"):
            raise self.fail(f"state must be present or absent, not {req.state!r}")
        unknown = set(req.force) - set(_preflight.FORCE_CHOICES)
        if unknown:
            raise self.fail(f"force: unknown {sorted(unknown)}; choose from "
                            f"{', '.join(_preflight.FORCE_CHOICES)}")
        if not req.path and not req.name:
            raise self.fail("give path (a .ko file) or name (a module of the kernel's tree)")
        try:
            pairs = mp.parse_params(req.params)
        except mp.ParamsError as exc:
            raise self.fail(f"params: {exc}") from None
        self.pairs = pairs

        with ExitStack() as stack:
            if not req.check_mode:
                try:
                    stack.enter_context(exclusive_lock(host.lock_path, timeout=host.lock_timeout))
                except LockTimeout as exc:
                    raise self.fail(str(exc)) from None
            if req.state == "absent":
                self.absent()
            else:
                self.present()
        return self.result

    def start_kernel_log(self) -> None:
        self.result["taint_before"] = read_taint(self.host.tainted)
        self.klog = KernelLog(self.host.kmsg, self.host.run, self.host.tools.get("dmesg"))
        self.klog.start()

    def finish_kernel_log(self) -> None:
        if self.klog is not None:
            self.klog.drain()
            self.result["kernel_log"] = list(self.klog.lines)
            if self.klog.source is None:
                self.notes.append(f"the kernel log could not be read ({self.klog.reason})")
            self.klog.close()
        self.result["taint_after"] = read_taint(self.host.tainted)

    def absent(self) -> None:
        req, res = self.req, self.result
        cand = self.candidate()
        name = cand.name if cand is not None else module_name(req.name or "")
        loaded = self.loaded_now(name)
        res["previous"] = loaded.as_dict() if loaded else None
        res["loaded"] = None
        if loaded is not None:
            busy = loaded.in_use()
            if busy:
                raise self.fail(f"not unloading {name}: {busy}")
            res["action"] = "removed"
            res["changed"] = True
            res["diff"].append(self.kernel_diff(loaded, None))
            if not req.check_mode:
                self.start_kernel_log()
                ok, words = self.unload(name)
                if not ok:
                    res["action"], res["changed"] = "none", False
                    res["loaded"] = res["previous"]
                    raise self.fail(f"rmmod {name} failed: {words}; {name} stays loaded")
                if self.loaded_now(name) is not None:
                    raise self.fail(f"rmmod {name} returned success but /sys/module/{name} is "
                                    "still there")
                self.forget(name)
        if req.persistent:
            self.persistence(name, None, present=False)
        if self.klog is not None:
            self.finish_kernel_log()
        elif not req.check_mode:
            self.result["taint_before"] = self.result["taint_after"] = read_taint(self.host.tainted)

    def present(self) -> None:
        req, host, res = self.req, self.host, self.result
        cand = self.candidate()
        pairs = self.pairs
        if cand is None:  # built into the kernel
            name = module_name(req.name or "")
            loaded = self.loaded_now(name)
            shown = loaded.as_dict() if loaded else {"name": name, "state": "builtin"}
            res["loaded"] = res["previous"] = shown
            if pairs:
                raise self.fail(f"{name} is built into kernel {host.release}: its parameters are "
                                f"set on the kernel command line ({name}.<param>=…), not here")
            self.notes.append(f"{name} is built into the kernel: nothing to load")
            return
        res["module"] = cand.as_dict()
        name = cand.name
        self.check_param_names(cand, pairs)
        loaded = self.loaded_now(name)
        res["previous"] = loaded.as_dict() if loaded else None
        record = self.read_record(name, loaded)

        action = "inserted"
        reasons: list[str] = []
        if loaded is not None:
            if loaded.builtin:
                raise self.fail(f"{name} is built into kernel {host.release}; a module of that "
                                "name cannot be loaded (the kernel answers 'File exists')")
            same = identity_matches(cand.srcversion, cand.build_id,
                                    loaded.srcversion, loaded.build_id)
            differing, unverified = self.param_changes(cand, pairs, loaded, record)
            if unverified:
                self.notes.append(f"parameters {', '.join(unverified)} of {name} cannot be read "
                                  "back (not in /sys/module/*/parameters): taken as set")
            if same is True and not differing:
                action = "none"
            else:
                if same is False:
                    reasons.append(f"the loaded build differs (srcversion "
                                   f"{loaded.srcversion or 'none'}, build id "
                                   f"{loaded.build_id or 'none'}; this file: srcversion "
                                   f"{cand.srcversion or 'none'}, build id {cand.build_id or 'none'})")
                elif same is None:
                    reasons.append("neither a srcversion nor a build id can be compared")
                if differing:
                    reasons.append(f"parameters {', '.join(differing)} differ")
                action = "replaced"
                if loaded.state != "live":
                    raise self.fail(f"{name} is {loaded.state} right now; run again when it is not")
                if not req.replace:
                    res["loaded"] = loaded.as_dict()
                    raise self.fail(f"{name} is loaded and is not what is asked: "
                                    f"{'; '.join(reasons)}. Set replace: true to swap it (the "
                                    "old one is put back if the new one fails)")

        # preflight: the verdict against the running kernel
        try:
            kernel = host.kernel_facts()
        except Exception as exc:  # the facts module's errors say what is wrong
            raise self.fail(f"the running kernel's facts cannot be gathered: {exc}") from None
        try:
            table, symvers_path, symvers_notes = _preflight.load_symvers(
                kernel, _preflight.wanted_symbols(cand.info), req.symvers)
        except Exception as exc:
            raise self.fail(f"symvers: {exc}") from None
        self.notes.extend(symvers_notes)
        verdict = _preflight.verdict(cand.info, kernel, table, loaded, symvers_path)
        res["verdict"] = verdict
        if action == "none":
            res["loaded"] = loaded.as_dict() if loaded else None
            res["taint_before"] = res["taint_after"] = read_taint(host.tainted)
            if req.persistent:
                self.persistence(name, cand, present=True)
            return

        decision = _preflight.apply_force(verdict, req.force, kernel, cand.info)
        verdict["waived"] = decision["waived"]
        verdict["overridden"] = decision["overridden"]
        if decision["refused"]:
            lines = [f"{p['msg']} (fix: {p['fix']})" for p in decision["refused"]]
            res["loaded"] = loaded.as_dict() if loaded else None
            raise self.fail(f"preflight refuses {cand.path} for kernel {host.release}, nothing "
                            f"was touched: {'; '.join(lines)}"
                            + ("" if req.force else ". force: [preflight] would let the kernel "
                               "decide" + (" (the old module is put back if it refuses)"
                                           if action == "replaced" else "")))
        forced = sorted(set(req.force))
        res["forced"] = forced
        for note in decision["notes"]:
            host.warn(note)
        if decision["overridden"]:
            host.warn(f"FORCED past preflight: {'; '.join(p['msg'] for p in decision['overridden'])}")
        kernel_force = self.force_args(req.path is not None, set(forced))

        rollback_file = None
        old_pairs: list = []
        if action == "replaced":
            busy = loaded.in_use()
            if busy:
                res["loaded"] = loaded.as_dict()
                raise self.fail(f"not replacing {name}: {busy}")
            rollback_file, how = self.rollback_source(loaded, record)
            if rollback_file is None and not req.replace_without_rollback:
                res["loaded"] = loaded.as_dict()
                raise self.fail(f"not replacing {name}: there would be no way back if the new one "
                                f"fails: {how}. Set replace_without_rollback: true to replace it "
                                "anyway")
            old_pairs = self.rollback_params(loaded, record)
            res["rollback"] = {"file": rollback_file, "found": how,
                               "params": mp.to_line(old_pairs), "attempted": False}

        res["action"], res["changed"] = action, True
        res["diff"].append(self.kernel_diff(loaded, cand, pairs))
        if req.check_mode:
            res["loaded"] = loaded.as_dict() if loaded else None
            if req.persistent:
                self.persistence(name, cand, present=True)
            return

        stashed = self.stash(cand)
        self.start_kernel_log()
        if action == "replaced":
            ok, words = self.unload(name)
            if not ok:
                res["action"], res["changed"] = "none", False
                res["loaded"] = loaded.as_dict()
                raise self.fail(f"rmmod {name} failed, nothing changed: {words}")
        insert_path = stashed if req.path else None
        ok, words = self.insert(insert_path, name, pairs, kernel_force)
        story = self.klog.drain() if self.klog else []
        if not ok:
            new_story = f"inserting {cand.path} failed: {words}" + (
                f"; the kernel said: {' | '.join(story)}" if story else "")
            if action != "replaced":
                res["action"], res["changed"] = "none", False
                raise self.fail(new_story)
            self.roll_back(name, rollback_file, old_pairs, loaded, new_story)
        now = self.loaded_now(name)
        if now is None:
            raise self.fail(f"{' '.join(['insmod' if req.path else 'modprobe', name])} returned "
                            f"success but /sys/module/{name} does not exist")
        if identity_matches(cand.srcversion, cand.build_id, now.srcversion,
                            now.build_id) is False:
            raise self.fail(f"after loading, /sys/module/{name} is another build (srcversion "
                            f"{now.srcversion}, build id {now.build_id}) than {cand.path}")
        res["loaded"] = now.as_dict()
        self.write_record(cand, stashed, pairs)
        if req.persistent:
            self.persistence(name, cand, present=True)
        self.finish_kernel_log()

    def roll_back(self, name: str, rollback_file: str | None, old_pairs: list,
                  loaded: LoadedModule, new_story: str) -> None:
        res = self.result
        res["rollback"]["attempted"] = True
        if rollback_file is None:
            res["action"], res["loaded"] = "removed", None
            raise self.fail(f"{new_story}. No rollback: replace_without_rollback was set and no "
                            f"file of the old build exists; {name} is NOT loaded now")
        ok, words = self.insert(rollback_file, name, old_pairs, [])
        back_story = self.klog.drain() if self.klog else []
        now = self.loaded_now(name)
        back = ok and now is not None and identity_matches(
            loaded.srcversion, loaded.build_id, now.srcversion, now.build_id) is not False
        res["rollback"]["ok"] = back
        res["rollback"]["kernel_log"] = back_story
        if back:
            res["action"], res["loaded"] = "rolled_back", now.as_dict()
            raise self.fail(f"{new_story}. Rolled back: the old {name} (srcversion "
                            f"{now.srcversion or 'none'}) is loaded again from {rollback_file}"
                            + (f" with {mp.to_line(old_pairs)}" if old_pairs else ""))
        res["action"], res["loaded"] = "removed", now.as_dict() if now else None
        raise self.fail(f"{new_story}. ROLLBACK FAILED: reinserting {rollback_file} gave: {words}"
                        + (f"; the kernel said: {' | '.join(back_story)}" if back_story else "")
                        + f". {name} is NOT loaded now; load a working build by hand")

    def kernel_diff(self, loaded: LoadedModule | None, cand: Candidate | None,
                    pairs: list | None = None) -> dict:
        def text(name: str | None, srcversion: str | None, build_id: str | None,
                 params: dict) -> str:
            if name is None:
                return ""
            lines = [f"module {name}", f"srcversion {srcversion or '-'}",
                     f"build_id {build_id or '-'}"]
            lines += [f"param {k}={v}" for k, v in sorted(params.items())]
            return "\n".join(lines) + "\n"

        before = text(loaded.name, loaded.srcversion, loaded.build_id,
                      {k: v for k, v in loaded.params.items() if v is not None}) if loaded else ""
        after = text(cand.name, cand.srcversion, cand.build_id,
                     {k: ("" if v is None else v) for k, v in (pairs or [])}) if cand else ""
        name = (cand or loaded).name if (cand or loaded) else "?"
        return {"before_header": f"/sys/module/{name} (loaded)",
                "after_header": f"/sys/module/{name} (asked)", "before": before, "after": after}

    def persistence(self, name: str, cand: Candidate | None, present: bool) -> None:
        layout = self.host.layout()
        try:
            if present:
                ko = cand.data if (cand is not None and self.req.path) else None
                plan = _persist.plan_present(layout, name, mp.to_line(self.pairs), ko)
            else:
                plan = _persist.plan_absent(layout, name)
        except _persist.PersistError as exc:
            raise self.fail(f"persistent: {exc}") from None
        self.result["persistence"] = plan.as_dict()
        self.result["diff"].extend(plan.diffs())
        if plan.changed:
            self.result["changed"] = True
        if self.req.check_mode or not plan.changed:
            return
        try:
            _persist.apply(layout, plan)
        except _persist.PersistError as exc:
            raise self.fail(f"persistent: {exc}") from None
        if plan.needs_depmod:
            rc, out, err = self.run_cmd([self.host.tools["depmod"], "-a", self.host.release])
            if rc != 0:
                raise self.fail(f"depmod -a {self.host.release} failed: {_words(rc, out, err)}")


def run(request: Request, host: Host) -> dict:
    """Carry out ``request``; the result dictionary, or ``ModloadError`` (with the result)."""
    op = _Operation(request, host)
    result = op.execute()
    if op.notes:
        result["notes"] = op.notes
    return result
