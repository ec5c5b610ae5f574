"""modload's decisions and error paths, against a fake kernel (a /sys/module tree, a kmsg file and
kmod commands that act on them). The real kernel proof is tests/vm/test_modload.py."""

from __future__ import annotations

import os
import shutil
import threading

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import read_module_bytes
from ansible_collections.vermagic.kmod.plugins.module_utils._modload import (
    Host, ModloadError, Request, run)
from ansible_collections.vermagic.kmod.plugins.module_utils._modparams import parse_params
from ansible_collections.vermagic.kmod.plugins.module_utils._lock import exclusive_lock
from tests.support.fake_ko import build_id_note, make_ko

RELEASE = "6.1.0-56-amd64"
MAGIC = f"{RELEASE} SMP preempt mod_unload modversions "
GOOD = {"module_layout": 0x0CE1AB5C, "_printk": 0x92997ED8}
SYMVERS = ("0x0ce1ab5c\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
           "0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n")
PARAMS = {"greeting": "charp", "repeat": "int"}
DEFAULTS = {"greeting": "hello", "repeat": "1"}


def hello(version: str = "1", **kw) -> bytes:
    kw.setdefault("versions", dict(GOOD))
    kw.setdefault("imports", ["_printk"])
    kw.setdefault("params", PARAMS)
    return make_ko("hello", srcversion=f"SRC{version}".ljust(23, "0"),
                   build_id=(version * 20).encode()[:20], **kw)


class FakeKernel:
    """insmod/rmmod/modprobe/modinfo/depmod acting on a fake /sys/module and kmsg."""

    def __init__(self, root):
        self.root = root
        self.sys = root / "sys/module"
        self.sys.mkdir(parents=True)
        self.kmsg = root / "kmsg"
        self.kmsg.write_bytes(b"6,1,0,-;booted long ago\n")
        self.tainted = root / "tainted"
        self.tainted.write_text("0\n")
        self.calls: list[list[str]] = []
        self.refuse: dict[str, str] = {}  # srcversion -> kernel message
        self.seq = 10
        self.names: dict[str, str] = {}  # modinfo -n answers
        self.insmod_help = "Usage:\n\tinsmod [options] filename [args]\n"

    def log(self, text: str) -> None:
        self.seq += 1
        with open(self.kmsg, "ab") as handle:
            handle.write(f"6,{self.seq},{self.seq * 1000},-;{text}\n".encode())

    def load(self, data: bytes, args: list[str], forced: bool = False) -> tuple[int, str, str]:
        info = read_module_bytes(data, "x")
        name = info.name
        srcversion = info.fields.get("srcversion")
        if (self.sys / name / "initstate").exists():
            return 1, "", "insmod: ERROR: could not insert module: File exists"
        if srcversion in self.refuse and not forced:
            self.log(f"{name}: {self.refuse[srcversion]}")
            return 1, "", "insmod: ERROR: could not insert module: Invalid module format"
        base = self.sys / name
        (base / "holders").mkdir(parents=True)
        (base / "parameters").mkdir()
        (base / "notes").mkdir()
        (base / "initstate").write_text("live\n")
        (base / "refcnt").write_text("0\n")
        (base / "taint").write_text("OE\n")
        if srcversion:
            (base / "srcversion").write_text(srcversion + "\n")
        build_id = info.build_id
        if build_id is not None:
            (base / "notes/.note.gnu.build-id").write_bytes(build_id_note(bytes.fromhex(build_id)))
        values = dict(DEFAULTS)
        for pname, value in parse_params(" ".join(args)):
            values[pname] = value
        for pname, value in values.items():
            (base / "parameters" / pname).write_text(f"{value}\n")
        self.log(f"{name}: hello from {srcversion} {' '.join(args)}".strip())
        if forced:
            self.tainted.write_text("2\n")
        return 0, "", ""

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        tool, rest = os.path.basename(argv[0]), argv[1:]
        if tool == "insmod":
            if rest == ["--help"]:
                return 0, self.insmod_help, ""
            forced = "-f" in rest or any(a.startswith("--force") for a in rest)
            rest = [a for a in rest if not a.startswith("-")]
            with open(rest[0], "rb") as handle:
                return self.load(handle.read(), rest[1:], forced)
        if tool == "modprobe":
            forced = any(a.startswith("--force") for a in rest)
            rest = [a for a in rest if not a.startswith("-")]
            with open(self.names[rest[0]], "rb") as handle:
                return self.load(handle.read(), rest[1:], forced)
        if tool == "rmmod":
            assert "-f" not in rest and "--force" not in rest, "rmmod must never be forced"
            base = self.sys / rest[0]
            if not base.exists():
                return 1, "", f"rmmod: ERROR: Module {rest[0]} is not currently loaded"
            if (base / "refcnt").read_text().strip() != "0" or os.listdir(base / "holders"):
                return 1, "", f"rmmod: ERROR: Module {rest[0]} is in use"
            shutil.rmtree(base)
            self.log(f"{rest[0]}: goodbye")
            return 0, "", ""
        if tool == "modinfo":
            name = rest[-1]
            if name not in self.names:
                return 1, "", f"modinfo: ERROR: Module {name} not found."
            return 0, self.names[name] + "\n", ""
        if tool == "depmod":
            return 0, "", ""
        raise AssertionError(f"unexpected command {argv}")

    def kernel_calls(self) -> list[list[str]]:
        return [c for c in self.calls if os.path.basename(c[0]) in ("insmod", "rmmod", "modprobe")
                and c[1:] != ["--help"]]


@pytest.fixture
def fk(tmp_path):
    return FakeKernel(tmp_path)


@pytest.fixture
def host(fk, tmp_path):
    symvers = tmp_path / "Module.symvers"
    symvers.write_text(SYMVERS)
    facts = {"release": RELEASE, "vermagic": MAGIC, "modversions": True, "elf_class": 64,
             "elf_machine": "EM_X86_64", "sig_enforce": False, "lockdown": "none",
             "config": {"options": {"MODULE_FORCE_LOAD": "y", "MODULE_SIG": "y"}},
             "symvers": [{"source": "headers", "path": str(symvers)}]}
    warnings: list[str] = []
    h = Host(run=fk, release=RELEASE, sys_module=str(fk.sys), kmsg=str(fk.kmsg),
             tainted=str(fk.tainted), state_dir=str(tmp_path / "state"),
             lock_path=str(tmp_path / "run/modload.lock"), lock_timeout=1.0,
             lib_modules=str(tmp_path / "lib/modules"),
             modules_load_d=str(tmp_path / "etc/modules-load.d"),
             modprobe_d=str(tmp_path / "etc/modprobe.d"), kernel_facts=lambda: facts,
             warn=warnings.append)
    h.warnings = warnings  # type: ignore[attr-defined]
    h.facts = facts  # type: ignore[attr-defined]
    return h


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "modules"
    d.mkdir(mode=0o755)

    def put(name: str, data: bytes) -> str:
        path = d / name
        path.write_bytes(data)
        os.chmod(path, 0o644)
        return str(path)
    return put


def test_insert_then_nothing_to_do(fk, host, files):
    v1 = files("hello.ko", hello("1"))
    res = run(Request(path=v1, params={"greeting": "hi", "repeat": 2}), host)
    assert res["action"] == "inserted" and res["changed"]
    assert res["loaded"]["srcversion"] == "SRC1".ljust(23, "0")
    assert res["loaded"]["params"] == {"greeting": "hi", "repeat": "2"}
    assert res["previous"] is None
    assert res["verdict"]["compatible"] and res["verdict"]["symvers"].endswith("Module.symvers")
    assert res["kernel_log"] == [f"hello: hello from {'SRC1'.ljust(23, '0')} greeting=hi repeat=2"]
    assert res["taint_before"]["value"] == 0 and res["forced"] == []
    stashed = [c for c in fk.kernel_calls() if "insmod" in c[0]][0][1]
    assert stashed.startswith(host.state_dir) and stashed != v1  # the checked copy is inserted
    assert oct(os.stat(os.path.dirname(stashed)).st_mode & 0o777) == "0o700"

    again = run(Request(path=v1, params="greeting=hi repeat=0x2"), host)
    assert again["action"] == "none" and not again["changed"]
    assert again["taint_before"] == again["taint_after"] == {"value": 0, "flags": "", "reasons": []}
    assert "already_loaded" in [w["code"] for w in again["verdict"]["warnings"]]
    assert len(fk.kernel_calls()) == 1


def test_other_build_or_params_need_replace_and_touch_nothing(fk, host, files):
    run(Request(path=files("v1.ko", hello("1"))), host)
    with pytest.raises(ModloadError, match="the loaded build differs.*Set replace: true") as info:
        run(Request(path=files("v2.ko", hello("2"))), host)
    assert info.value.result["loaded"]["srcversion"].startswith("SRC1")
    with pytest.raises(ModloadError, match="parameters repeat differ"):
        run(Request(path=files("v1b.ko", hello("1")), params={"repeat": 3}), host)
    assert len(fk.kernel_calls()) == 1


def test_param_set_last_time_and_now_left_out_is_a_change(fk, host, files):
    v1 = files("v1.ko", hello("1"))
    run(Request(path=v1, params={"repeat": 3}), host)
    with pytest.raises(ModloadError, match="parameters repeat differ"):
        run(Request(path=v1), host)
    res = run(Request(path=v1, replace=True), host)
    assert res["action"] == "replaced" and res["loaded"]["params"]["repeat"] == "1"


def test_replace_swaps_and_keeps_a_way_back(fk, host, files):
    run(Request(path=files("v1.ko", hello("1")), params={"repeat": 2}), host)
    res = run(Request(path=files("v2.ko", hello("2")), replace=True), host)
    assert res["action"] == "replaced"
    assert res["previous"]["srcversion"].startswith("SRC1")
    assert res["loaded"]["srcversion"].startswith("SRC2")
    assert res["rollback"]["found"] == "the copy kept when vermagic.kmod loaded it"
    assert res["rollback"]["params"] == "repeat=2" and res["rollback"]["attempted"] is False
    assert [os.path.basename(c[0]) for c in fk.kernel_calls()] == ["insmod", "rmmod", "insmod"]
    assert res["kernel_log"][0] == "hello: goodbye"


def test_refused_by_the_kernel_rolls_back_with_both_stories(fk, host, files):
    run(Request(path=files("v1.ko", hello("1")), params={"greeting": "old"}), host)
    bad = hello("3")
    fk.refuse["SRC3".ljust(23, "0")] = "disagrees about version of symbol _printk"
    with pytest.raises(ModloadError) as info:
        run(Request(path=files("v3.ko", bad), replace=True), host)
    res, msg = info.value.result, info.value.msg
    assert res["action"] == "rolled_back" and res["changed"]
    assert res["loaded"]["srcversion"].startswith("SRC1")
    assert res["loaded"]["params"]["greeting"] == "old"
    assert "Invalid module format" in msg and "disagrees about version of symbol _printk" in msg
    assert "Rolled back" in msg and "greeting=old" in msg
    assert res["rollback"]["ok"] is True and res["rollback"]["attempted"]
    assert "hello: disagrees about version of symbol _printk" in res["kernel_log"]


def test_rollback_failure_is_told_loudly(fk, host, files):
    run(Request(path=files("v1.ko", hello("1"))), host)
    fk.refuse["SRC3".ljust(23, "0")] = "refused"
    fk.refuse["SRC1".ljust(23, "0")] = "refused as well now"
    with pytest.raises(ModloadError, match="ROLLBACK FAILED.*NOT loaded now") as info:
        run(Request(path=files("v3.ko", hello("3")), replace=True), host)
    assert info.value.result["action"] == "removed" and info.value.result["loaded"] is None


def test_preflight_refusal_touches_nothing(fk, host, files):
    run(Request(path=files("v1.ko", hello("1"))), host)
    before = list(fk.kernel_calls())
    kmsg_before = fk.kmsg.read_bytes()
    for data, words in ((hello("b", versions={}), "no symbol version for module_layout"),
                        (hello("d", versions=dict(GOOD, _printk=0x92997ED9)),
                         "disagrees about version of symbol _printk"),
                        (hello("e", vermagic=MAGIC.replace("mod_unload", "MOD_UNLOAD")),
                         "version magic")):
        with pytest.raises(ModloadError, match=f"preflight refuses.*nothing was touched.*{words}"
                           ) as info:
            run(Request(path=files("bad.ko", data), replace=True), host)
        assert info.value.result["verdict"]["compatible"] is False
        assert info.value.result["loaded"]["srcversion"].startswith("SRC1")
    assert fk.kernel_calls() == before and fk.kmsg.read_bytes() == kmsg_before
    kept = os.listdir(os.path.join(host.state_dir, "modules/hello"))
    assert not any(n.startswith("SRCb") for n in kept)


def test_force_preflight_lets_the_kernel_decide(fk, host, files):
    run(Request(path=files("v2.ko", hello("2"))), host)
    bad = hello("d", versions=dict(GOOD, _printk=0x92997ED9))
    fk.refuse["SRCd".ljust(23, "0")] = "disagrees about version of symbol _printk"
    with pytest.raises(ModloadError, match="disagrees about version.*Rolled back") as info:
        run(Request(path=files("d.ko", bad), replace=True, force=("preflight",)), host)
    res = info.value.result
    assert res["action"] == "rolled_back" and res["forced"] == ["preflight"]
    assert res["loaded"]["srcversion"].startswith("SRC2")
    assert [p["code"] for p in res["verdict"]["overridden"]] == ["crc_mismatch"]
    assert any("FORCED past preflight" in w for w in host.warnings)
    inserts = [c for c in fk.kernel_calls() if "insmod" in c[0]]
    assert not any("-f" in c for c in inserts)  # preflight forcing never forces the kernel


def test_kernel_force_flags(fk, host, files):
    bad = hello("e", vermagic=MAGIC.replace("mod_unload", "MOD_UNLOAD"))
    path = files("e.ko", bad)
    with pytest.raises(ModloadError, match="forces only both checks"):
        run(Request(path=path, force=("vermagic",)), host)
    res = run(Request(path=path, force=("vermagic", "modversion")), host)
    assert res["action"] == "inserted" and res["forced"] == ["modversion", "vermagic"]
    assert [c for c in fk.kernel_calls() if "insmod" in c[0]][0][1] == "-f"
    assert res["taint_after"]["flags"] == "F"
    assert any("taints F" in w for w in host.warnings)
    run(Request(name="hello", state="absent"), host)
    fk.insmod_help += "\t--force-vermagic\n"
    res = run(Request(path=path, force=("vermagic",)), host)
    assert [c for c in fk.kernel_calls() if "insmod" in c[0]][-1][1] == "--force-vermagic"


def test_in_use_and_no_rollback_file_refuse_replace(fk, host, files, tmp_path):
    run(Request(path=files("v1.ko", hello("1"))), host)
    (fk.sys / "hello/holders/hello_user").mkdir()
    with pytest.raises(ModloadError, match="in use by hello_user"):
        run(Request(path=files("v2.ko", hello("2")), replace=True), host)
    with pytest.raises(ModloadError, match="in use by hello_user"):
        run(Request(name="hello", state="absent"), host)
    os.rmdir(fk.sys / "hello/holders/hello_user")
    shutil.rmtree(os.path.join(host.state_dir, "modules/hello"))
    with pytest.raises(ModloadError, match="no way back.*replace_without_rollback"):
        run(Request(path=files("v2.ko", hello("2")), replace=True), host)
    assert len(fk.kernel_calls()) == 1
    res = run(Request(path=files("v2.ko", hello("2")), replace=True,
                      replace_without_rollback=True), host)
    assert res["action"] == "replaced" and res["rollback"]["file"] is None


def test_rollback_file_found_under_lib_modules(fk, host, files, tmp_path):
    v1 = hello("1")
    run(Request(path=files("v1.ko", v1)), host)
    shutil.rmtree(os.path.join(host.state_dir, "modules/hello"))
    extra = tmp_path / "lib/modules" / RELEASE / "extra"
    extra.mkdir(parents=True)
    (extra / "hello.ko").write_bytes(v1)
    (extra / "other.ko").write_bytes(b"not even elf")
    res = run(Request(path=files("v2.ko", hello("2")), replace=True), host)
    assert res["rollback"]["file"] == str(extra / "hello.ko")
    assert res["rollback"]["params"] == "greeting=hello repeat=1"  # from sysfs: no record matched


def test_absent_unloads_and_forgets(fk, host, files):
    run(Request(path=files("v1.ko", hello("1"))), host)
    res = run(Request(name="hello", state="absent"), host)
    assert res["action"] == "removed" and res["loaded"] is None
    assert res["previous"]["srcversion"].startswith("SRC1")
    assert not (fk.sys / "hello").exists()
    assert not os.path.exists(os.path.join(host.state_dir, "modules/hello"))
    again = run(Request(name="hello", state="absent"), host)
    assert again["action"] == "none" and not again["changed"]


def test_check_mode_touches_nothing(fk, host, files, tmp_path):
    v1 = files("v1.ko", hello("1"))
    res = run(Request(path=v1, persistent=True, check_mode=True), host)
    assert res["action"] == "inserted" and res["changed"] and res["loaded"] is None
    assert res["persistence"]["changed"] and res["verdict"]["compatible"]
    assert fk.calls == [] and not os.path.exists(host.state_dir)
    assert not os.path.exists(os.path.dirname(host.lock_path))
    assert not (tmp_path / "etc").exists()
    run(Request(path=v1), host)
    calls = len(fk.calls)
    res = run(Request(path=files("v2.ko", hello("2")), replace=True, check_mode=True), host)
    assert res["action"] == "replaced" and res["loaded"]["srcversion"].startswith("SRC1")
    res = run(Request(name="hello", state="absent", check_mode=True), host)
    assert res["action"] == "removed"
    assert len(fk.calls) == calls and (fk.sys / "hello").exists()
    with pytest.raises(ModloadError, match="preflight refuses"):
        run(Request(path=files("b.ko", hello("b", versions={})), replace=True, check_mode=True),
            host)


def test_persistence_round_trip(fk, host, files, tmp_path):
    v1 = files("v1.ko", hello("1"))
    res = run(Request(path=v1, params={"repeat": 2}, persistent=True), host)
    assert res["persistence"]["changed"] and res["persistence"]["depmod"]
    assert ["depmod", "-a", RELEASE] in fk.calls
    updates = tmp_path / "lib/modules" / RELEASE / "updates/hello.ko"
    assert updates.read_bytes() == hello("1")
    assert "options hello repeat=2" in (tmp_path / "etc/modprobe.d/hello.conf").read_text()
    assert {d["before_header"] for d in res["diff"]} >= {str(updates) + " (absent)"}
    depmods = fk.calls.count(["depmod", "-a", RELEASE])
    again = run(Request(path=v1, params={"repeat": 2}, persistent=True), host)
    assert not again["changed"] and fk.calls.count(["depmod", "-a", RELEASE]) == depmods
    gone = run(Request(name="hello", state="absent", persistent=True), host)
    assert gone["action"] == "removed" and gone["persistence"]["depmod"]
    assert not updates.exists() and not (tmp_path / "etc/modprobe.d/hello.conf").exists()
    assert not (tmp_path / "etc/modules-load.d/hello.conf").exists()
    assert os.listdir(os.path.join(host.state_dir, "persist")) == []


def test_by_name_uses_modprobe(fk, host, files, tmp_path):
    tree = tmp_path / "lib/modules" / RELEASE / "kernel/drivers"
    tree.mkdir(parents=True)
    (tree / "hello.ko").write_bytes(hello("1"))
    fk.names["hello"] = str(tree / "hello.ko")
    res = run(Request(name="hello", params={"repeat": 4}), host)
    assert res["action"] == "inserted"
    assert fk.kernel_calls()[-1][-2:] == ["hello", "repeat=4"]
    assert os.path.basename(fk.kernel_calls()[-1][0]) == "modprobe"
    assert not run(Request(name="hello", params={"repeat": 4}), host)["changed"]
    with pytest.raises(ModloadError, match="no module nope"):
        run(Request(name="nope"), host)


def test_builtin_by_name(fk, host):
    (fk.sys / "ext4/parameters").mkdir(parents=True)
    fk.names["ext4"] = "(builtin)"
    res = run(Request(name="ext4"), host)
    assert res["action"] == "none" and not res["changed"] and res["loaded"]["state"] == "builtin"
    with pytest.raises(ModloadError, match="kernel command line"):
        run(Request(name="ext4", params={"x": 1}), host)
    with pytest.raises(ModloadError, match="built into the kernel"):
        run(Request(name="ext4", state="absent"), host)


@pytest.mark.parametrize("request_kw, words", [
    ({}, "give path"),
    ({"path": "x", "state": "gone"}, "state must be"),
    ({"path": "x", "force": ("everything",)}, "force: unknown"),
    ({"path": "x", "params": {"greeting": "a\nb"}}, "params: .*newline"),
])
def test_bad_requests(host, request_kw, words):
    with pytest.raises(ModloadError, match=words):
        run(Request(**request_kw), host)


def test_bad_files_and_names(fk, host, files, tmp_path):
    with pytest.raises(ModloadError, match="not a kernel module") as info:
        run(Request(path=files("junk.ko", b"\x7fELF\x02\x01\x01" + b"\0" * 100)), host)
    assert info.value.result["action"] == "none" and info.value.result["loaded"] is None
    with pytest.raises(ModloadError, match="is the module hello, not other"):
        run(Request(path=files("v1.ko", hello("1")), name="other"), host)
    with pytest.raises(ModloadError, match="has no parameter colour.*greeting \\(charp\\)"):
        run(Request(path=files("v1.ko", hello("1")), params={"colour": "red"}), host)
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    os.chmod(unsafe, 0o777)
    (unsafe / "hello.ko").write_bytes(hello("1"))
    with pytest.raises(ModloadError, match="hand them the kernel.*without the sticky bit"):
        run(Request(path=str(unsafe / "hello.ko")), host)
    assert fk.calls == []
    res = run(Request(path=str(unsafe / "hello.ko"), allow_unsafe_path=True), host)
    assert res["action"] == "inserted"
    # unloading by that file only needs its name: nothing is loaded from it
    assert run(Request(path=str(unsafe / "hello.ko"), state="absent"), host)["action"] == "removed"


def test_concurrent_runs_wait_for_the_lock(fk, host, files):
    v1 = files("v1.ko", hello("1"))
    held = threading.Event()
    release = threading.Event()

    def holder():
        with exclusive_lock(host.lock_path):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(ModloadError, match="held by another run"):
            run(Request(path=v1), host)
        assert fk.calls == []
    finally:
        release.set()
        thread.join()
    assert run(Request(path=v1), host)["action"] == "inserted"
