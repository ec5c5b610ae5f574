"""vermagic.kmod.modinfo against kmod's ``modinfo`` on every in-tree module of Debian's kernel.

The reference is kmod itself, run over the same files (``modinfo -0``, a few processes with many
files each). The module runs in-process (``run_module``) exactly as Ansible runs it.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import kmod_hex, read_module
from ansible_collections.vermagic.kmod.plugins.modules import modinfo
from tests.support.debian import DebianKernel
from tests.support.kmod_modinfo import modinfo_field, modinfo_listing
from tests.support.module_runner import run_module

FIELDS = ("vermagic", "srcversion", "depends", "name", "license", "sig_id", "signer", "sig_key",
          "sig_hashalgo")
SAMPLE_EVERY = 100  # compressed copies: every 100th module (41 of 4,023)


def say(msg: str) -> None:
    print(f"[modinfo-vs-kmod] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def paths(kernel: DebianKernel) -> list[str]:
    found = [str(p) for p in kernel.modules()]
    assert len(found) > 3000, f"expected Debian's ~4,000 in-tree modules, found {len(found)}"
    return found


@pytest.fixture(scope="module")
def kmod(paths: list[str]) -> dict[str, list[tuple[str, str]]]:
    start = time.monotonic()
    listing = modinfo_listing(paths)
    say(f"kmod modinfo over {len(paths)} files: {time.monotonic() - start:.2f} s")
    return listing


def kmod_field(listing: list[tuple[str, str]], key: str) -> str:
    """What ``modinfo -F KEY`` prints for one file (values joined by newlines)."""
    return "\n".join(value for have, value in listing if have == key)


def ours_field(fields: dict, key: str) -> str:
    value = fields.get(key)
    if value is None:
        return ""
    return "\n".join(value) if isinstance(value, list) else value


def test_every_module_matches_kmod_on_the_acceptance_fields(paths, kmod):
    mismatches = []
    start = time.monotonic()
    for count, path in enumerate(paths, 1):
        result = run_module(modinfo.main, {"path": path})
        assert not result["failed"], f"{path}: {result['msg']}"
        for key in FIELDS:
            want, got = kmod_field(kmod[path], key), ours_field(result["fields"], key)
            if want != got:
                mismatches.append(f"{path}: {key}: kmod {want!r}, ours {got!r}")
        if result["name"] != result["fields"]["name"]:
            mismatches.append(f"{path}: struct module name {result['name']!r} != name field")
        if count % 1000 == 0:
            say(f"{count}/{len(paths)} modules compared ({time.monotonic() - start:.1f} s)")
    assert not mismatches, f"{len(mismatches)} mismatches, e.g.:\n" + "\n".join(mismatches[:20])
    assert all(kmod_field(kmod[p], "sig_id") == "PKCS#7" for p in paths)  # all signed: checked


def kmod_style_listing(path: str) -> list[tuple[str, str]]:
    """Our reader's data laid out as kmod's full ``modinfo -0`` listing (every key, in order)."""
    module = read_module(path)
    out = [(k, v) for k, v in module.modinfo if k not in ("parm", "parmtype")]
    for key in ("sig_id", "signer", "sig_key", "sig_hashalgo", "signature"):
        if key in module.fields:
            out.append((key, module.fields[key]))
    for parm in module.fields.get("parm", []):
        name, _sep, rest = parm.partition(":")
        if rest.startswith(" (") and rest.endswith(")"):  # full listing: "name:type"
            parm = f"{name}:{rest[2:-1]}"
        out.append(("parm", parm))
    return out


def test_every_key_of_every_module_matches_kmods_full_listing(paths, kmod):
    """Stronger than the acceptance fields: every key, every value, kmod's order, signatures."""
    mismatches = [p for p in paths if kmod_style_listing(p) != kmod[p]]
    assert not mismatches, f"{len(mismatches)} files differ, e.g. {mismatches[:5]}"


def readelf_build_ids(paths: list[str], batch: int = 1000) -> dict[str, str | None]:
    """binutils' ``readelf -n``: each file's GNU build id (None when it prints none)."""
    found: dict[str, str | None] = {}
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        text = subprocess.run(["readelf", "-n", "-W", *chunk], capture_output=True, text=True,
                              check=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout
        current = chunk[0] if len(chunk) == 1 else None  # "File: …" only with several files
        for line in text.splitlines():
            if line.startswith("File: "):
                current = line[len("File: "):]
                found[current] = None
            elif "Build ID:" in line:
                found[current] = line.split("Build ID:", 1)[1].strip()
    return found


def test_every_build_id_is_the_one_readelf_prints(paths):
    theirs = readelf_build_ids(paths)
    assert len(theirs) == len(paths)
    mismatches = [p for p in paths if read_module(p).build_id != theirs[p]]
    assert not mismatches, f"{len(mismatches)} build ids differ, e.g. {mismatches[:5]}"
    assert all(theirs.values())  # kbuild links every module with --build-id


def test_parm_as_modinfo_F_parm_prints_it(paths, kmod):
    with_params = [p for p in paths if any(k == "parm" for k, _v in kmod[p])]
    sample = with_params[::10]
    assert len(sample) > 50
    for path in sample:
        assert read_module(path).fields["parm"] == modinfo_field(path, "parm"), path


def _compressors() -> dict[str, list[str]]:
    found = {"xz": ["xz", "-c", "--check=crc32"], "gz": ["gzip", "-c", "-n"],
             "zst": ["zstd", "-c", "-q", "-19"]}
    return {suffix: argv for suffix, argv in found.items() if shutil.which(argv[0])}


def test_compressed_copies_read_the_same(paths, kmod, tmp_path):
    compressors = _compressors()
    assert set(compressors) == {"xz", "gz", "zst"}, f"missing compressors: {compressors}"
    sample = paths[::SAMPLE_EVERY]
    checked = 0
    for index, path in enumerate(sample):
        plain = run_module(modinfo.main, {"path": path})
        data = Path(path).read_bytes()
        for suffix, argv in compressors.items():
            copy = tmp_path / f"{index}-{Path(path).name}.{suffix}"
            copy.write_bytes(subprocess.run(argv, input=data, capture_output=True,
                                            check=True).stdout)
            result = run_module(modinfo.main, {"path": str(copy)})
            assert not result["failed"], f"{copy}: {result['msg']}"
            assert result["compression"] == {"xz": "xz", "gz": "gzip", "zst": "zstd"}[suffix]
            for key in ("fields", "versions", "elf", "signature", "vermagic", "name",
                        "has_versions", "build_id"):
                assert result[key] == plain[key], f"{copy}: {key} differs"
            checked += 1
        # kmod reads xz and zstd itself here (its build has no zlib): same answers
        for suffix in ("xz", "zst"):
            copy = tmp_path / f"{index}-{Path(path).name}.{suffix}"
            renamed = copy.with_name(f"{index}-{Path(path).stem}.ko.{suffix}")
            copy.rename(renamed)
            theirs = modinfo_listing([renamed])[str(renamed)]
            assert theirs == kmod[path], renamed
    say(f"{checked} compressed copies of {len(sample)} modules match")
    assert checked == 3 * len(sample)


def test_gzip_copy_of_a_signed_module_keeps_its_signature(paths, tmp_path):
    path = next(p for p in paths if p.endswith("/fat/vfat.ko"))
    copy = tmp_path / "vfat.ko.gz"
    copy.write_bytes(gzip.compress(Path(path).read_bytes()))
    module = read_module(str(copy))
    assert module.signature.signer == "Build time autogenerated kernel key"
    assert module.fields["signature"] == kmod_hex(module.signature.signature)


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl program to make a signing key")
    where = tmp_path_factory.mktemp("key")
    key, cert = where / "key.pem", where / "cert.der"
    subprocess.run(["openssl", "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "3650",
                    "-batch", "-x509", "-subj", "/O=vermagic.kmod tests/CN=vermagic test key",
                    "-newkey", "rsa:2048", "-keyout", str(key), "-outform", "DER",
                    "-out", str(cert)], check=True, capture_output=True)
    return key, cert


@pytest.mark.parametrize("hash_algo,by_key_id", [("sha256", False), ("sha512", False),
                                                 ("sha384", True)])
def test_module_signed_with_sign_file_matches_kmod(kernel, signing_key, tmp_path, hash_algo,
                                                   by_key_id):
    """Sign the sample module with the kernel's own scripts/sign-file, then compare with kmod.

    With ``-k`` the signer is named by subjectKeyIdentifier; kmod then prints no signature keys
    (its PKCS#7 reader wants issuer and serial), and neither do ``fields``; ``signature`` still
    reports the key id.
    """
    from tests.support.variants import build_hello

    sign_file = next(kernel.root.glob("usr/lib/linux-kbuild-*/scripts/sign-file"))
    ko = build_hello(kernel.headers, tmp_path)
    key, cert = signing_key
    subprocess.run([str(sign_file), *(["-k"] if by_key_id else []), hash_algo, str(key),
                    str(cert), str(ko)], check=True, capture_output=True)
    listing = modinfo_listing([ko])[str(ko)]
    assert kmod_style_listing(str(ko)) == listing
    result = run_module(modinfo.main, {"path": str(ko)})
    assert result["signature"]["sig_hashalgo"] == hash_algo
    if by_key_id:
        assert result["signature"]["key_id_source"] == "subject_key_identifier"
        assert "sig_id" not in result["fields"]
    else:
        assert result["fields"]["signer"] == "vermagic test key"
        assert result["fields"]["sig_key"] == kmod_field(listing, "sig_key")
