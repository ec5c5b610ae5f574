from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import subprocess
import sys

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils import _decompress
from ansible_collections.vermagic.kmod.plugins.module_utils._modfile import (
    ModuleFileError, build_id_from_notes, kmod_hex, read_module, read_module_bytes)
from tests.support.elf_fixture import (
    OID_O, OID_SHA512, STB_WEAK, Section, Spec, make_elf, make_module, pkcs7, sign,
    this_module_bytes)
from tests.support.fake_ko import SHT_NOTE, build_id_note

DEBIAN = "6.1.0-56-amd64 SMP preempt mod_unload modversions "


def write(tmp_path, data: bytes, name: str = "m.ko") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_reads_fields_name_elf_and_versions(tmp_path):
    module = read_module(write(tmp_path, make_module()))
    assert module.name == "fixture"
    assert module.vermagic == DEBIAN
    assert module.fields["license"] == "GPL"
    assert module.fields["depends"] == ""
    assert module.elf.as_dict() == {"class": 64, "byte_order": "little", "machine": "EM_X86_64",
                                    "machine_code": 62, "type": "ET_REL"}
    assert module.elf["class"] == 64 and module.elf.get("machine") == "EM_X86_64"
    assert module.has_versions
    assert [(v.symbol, v.crc) for v in module.versions] == [
        ("module_layout", 0x0B4C6AC4), ("_printk", 0x92997ED8)]
    assert module.signature is None
    assert "sig_id" not in module.fields
    assert module.compression == "none"
    assert module.as_dict()["versions"][0] == {"symbol": "module_layout", "crc": "0x0b4c6ac4",
                                               "extended": False}


def test_list_keys_are_lists_and_repeated_keys_become_lists():
    spec = Spec(modinfo=["alias=fs-x", "author=A", "author=B", "description=one",
                         "description=two", "depends=a,b", "vermagic=" + DEBIAN, "intree"])
    fields = read_module_bytes(make_module(spec)).fields
    assert fields["alias"] == ["fs-x"]
    assert fields["author"] == ["A", "B"]
    assert fields["description"] == ["one", "two"]
    assert fields["depends"] == "a,b"
    assert fields["intree"] == ""  # a key with no '=' has an empty value, as kmod prints it


def test_vermagic_is_the_first_entry_byte_for_byte():
    spec = Spec(modinfo=["vermagic=6.1.0 SMP  odd ", "vermagic=second"])
    module = read_module_bytes(make_module(spec))
    assert module.vermagic == "6.1.0 SMP  odd "
    assert module.fields["vermagic"] == ["6.1.0 SMP  odd ", "second"]


def test_parm_combines_parm_and_parmtype_in_kmod_order():
    spec = Spec(modinfo=["parmtype=greeting:charp", "parm=greeting:What to say",
                         "parm=repeat:How often", "parmtype=repeat:int", "parmtype=quiet:bool",
                         "parm=nodesc", "parm=doc:only a description", "vermagic=" + DEBIAN])
    module = read_module_bytes(make_module(spec))
    # kmod prepends each new parameter name to its list: the last one first
    assert module.fields["parm"] == ["doc:only a description", "quiet: (bool)",
                                     "repeat:How often (int)", "greeting:What to say (charp)"]
    assert module.fields["parmtype"] == ["greeting:charp", "repeat:int", "quiet:bool"]


def test_modinfo_padding_and_empty_strings_are_skipped():
    raw = b"\0\0license=GPL\0\0\0vermagic=" + DEBIAN.encode() + b"\0\0"
    data = make_module(Spec(modinfo=None, extra=[Section(".modinfo", raw)]))
    module = read_module_bytes(data)
    assert module.modinfo == [("license", "GPL"), ("vermagic", DEBIAN)]


def test_name_falls_back_to_the_modinfo_name_when_struct_module_is_empty():
    spec = Spec(this_module=False, extra=[Section(".gnu.linkonce.this_module", bytes(0x380))])
    assert read_module_bytes(make_module(spec)).name == "fixture"


def test_name_found_at_another_aligned_offset():
    raw = bytearray(0x380)
    raw[0x40:0x44] = b"odd1"
    spec = Spec(this_module=False, extra=[Section(".gnu.linkonce.this_module", bytes(raw))])
    assert read_module_bytes(make_module(spec)).name == "odd1"


def test_32_bit_module_versions_use_u32_crcs():
    module = read_module_bytes(make_module(Spec(elf_class=32, machine=3)))
    assert module.elf.elf_class == 32 and module.elf.machine == "EM_386"
    assert module.name == "fixture"
    assert [(v.symbol, v.crc) for v in module.versions] == [
        ("module_layout", 0x0B4C6AC4), ("_printk", 0x92997ED8)]


def test_big_endian_module():
    module = read_module_bytes(make_module(Spec(little=False, machine=22)))
    assert module.elf.byte_order == "big" and module.elf.machine == "EM_S390"
    assert module.versions[1].crc == 0x92997ED8
    assert [s.name for s in module.imports] == ["_printk", "module_layout"]


def test_empty_versions_section_still_counts_as_having_versions():
    module = read_module_bytes(make_module(Spec(versions=[])))
    assert module.has_versions and module.versions == []
    module = read_module_bytes(make_module(Spec(versions=None)))
    assert not module.has_versions and module.versions == []


def test_extended_version_sections():
    long_name = "a_symbol_whose_name_is_much_longer_than_fifty_six_characters_x"
    crcs = struct.pack("<II", 0x11111111, 0x22222222)
    names = b"_printk\0" + long_name.encode() + b"\0\0"
    spec = Spec(versions=[(0x0B4C6AC4, "module_layout"), (0x11111111, "_printk")],
                extra=[Section("__version_ext_crcs", crcs), Section("__version_ext_names", names)])
    module = read_module_bytes(make_module(spec))
    assert [(v.symbol, v.crc, v.extended) for v in module.versions] == [
        ("module_layout", 0x0B4C6AC4, False), ("_printk", 0x11111111, False),
        (long_name, 0x22222222, True)]


def test_extended_versions_alone_count_as_crcs():
    spec = Spec(versions=None, extra=[Section("__version_ext_crcs", struct.pack("<I", 5)),
                                      Section("__version_ext_names", b"module_layout\0")])
    module = read_module_bytes(make_module(spec))
    assert module.has_versions
    assert [(v.symbol, v.crc) for v in module.versions] == [("module_layout", 5)]


def test_imports_are_undefined_symbols_with_weakness():
    spec = Spec(imports=[("_printk", 1), ("maybe_there", STB_WEAK)])
    imports = read_module_bytes(make_module(spec)).imports
    assert [(s.name, s.weak) for s in imports] == [("_printk", False), ("maybe_there", True)]


def test_imports_of_a_file_on_disk_are_read_lazily(tmp_path):
    path = write(tmp_path, sign(make_module()))
    module = read_module(path)
    assert [s.name for s in module.imports] == ["_printk", "module_layout"]


# ---- GNU build id --------------------------------------------------------------------------

BUILD_ID = bytes(range(1, 21))


def with_build_id(*, before=(), little=True, note=None, sh_type=SHT_NOTE) -> bytes:
    if note is None:
        note = build_id_note(BUILD_ID)
        if not little:  # the note's words in the ELF's byte order
            note = struct.pack(">III", *struct.unpack("<III", note[:12])) + note[12:]
    return make_module(Spec(little=little, machine=62 if little else 22, extra=[
        *before, Section(".note.gnu.build-id", note, sh_type)]))


def test_build_id_note_parsing():
    assert build_id_from_notes(build_id_note(b"\x01\x02\x03")) == "010203"
    assert build_id_from_notes(b"") is None
    assert build_id_from_notes(struct.pack("<III", 4, 2, 1) + b"GNU\0ab\0\0") is None  # type 1
    assert build_id_from_notes(struct.pack(">III", 4, 1, 3) + b"GNU\0\x07\0\0\0", ">") == "07"
    other = struct.pack("<III", 6, 4, 0x100) + b"Linux\0\0\0" + b"\0\0\0\0"  # another note first
    assert build_id_from_notes(other + build_id_note(b"\xab")) == "ab"
    assert build_id_from_notes(struct.pack("<III", 4, 40, 3) + b"GNU\0\x01") == "01"  # cut short


def test_build_id_in_memory_in_the_first_read_and_after_it(tmp_path):
    assert read_module_bytes(with_build_id()).build_id == BUILD_ID.hex()
    assert read_module(write(tmp_path, sign(with_build_id()))).build_id == BUILD_ID.hex()
    far = with_build_id(before=[Section(".filler", bytes(100_000))])  # past the first 16 KiB
    module = read_module(write(tmp_path, far, "far.ko"))
    assert module.build_id == BUILD_ID.hex()
    assert module.as_dict()["build_id"] == BUILD_ID.hex()


def test_build_id_is_read_only_when_asked(tmp_path):
    path = write(tmp_path, with_build_id(before=[Section(".filler", bytes(100_000))]))
    module = read_module(path)
    assert "build_id" not in vars(module)  # the scan did not look for it
    os.unlink(path)  # a later read of a file that is gone is a clear error
    with pytest.raises(ModuleFileError, match="does not exist"):
        module.build_id  # noqa: B018


@pytest.mark.parametrize("kind,compress", [("gzip", gzip.compress), ("xz", lzma.compress)])
def test_build_id_of_a_compressed_module(tmp_path, kind, compress):
    module = read_module(write(tmp_path, compress(with_build_id()), "m.ko.x"))
    assert module.compression == kind and module.build_id == BUILD_ID.hex()


def test_build_id_big_endian_none_and_not_a_note():
    assert read_module_bytes(with_build_id(little=False)).build_id == BUILD_ID.hex()
    assert read_module_bytes(make_module()).build_id is None
    assert read_module_bytes(with_build_id(sh_type=1)).build_id is None  # PROGBITS: not a note
    assert read_module_bytes(with_build_id(note=b"\0" * 12)).build_id is None


# ---- signatures ------------------------------------------------------------------------------

def test_pkcs7_signature_as_kmod_prints_it():
    module = read_module_bytes(sign(make_module()))
    sig = module.signature
    assert sig.sig_id == "PKCS#7"
    assert sig.signer == "Fixture key"
    # the serial's leading zero byte is not part of the key id (BN_bn2bin)
    assert sig.sig_key == "A1:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:01:A2:B3"
    assert sig.hash_algo == "sha256"
    fields = module.fields
    assert (fields["sig_id"], fields["signer"], fields["sig_hashalgo"]) == (
        "PKCS#7", "Fixture key", "sha256")
    assert fields["signature"].startswith("5A:5A:") and "\n\t\t" in fields["signature"]
    assert sig.as_dict()["key_id_source"] == "serial"
    assert module.elf_length == len(make_module())


def test_signer_without_common_name_is_the_last_attribute_like_kmod():
    blob = pkcs7(signer=((OID_O, "First"), ("2.5.4.11", "Unit")), digest=OID_SHA512)
    sig = read_module_bytes(sign(make_module(), blob)).signature
    assert sig.signer == "Unit" and sig.hash_algo == "sha512"


def test_subject_key_identifier_signer_gives_key_id_but_no_kmod_fields():
    blob = pkcs7(key_identifier=bytes.fromhex("0102030405"))
    module = read_module_bytes(sign(make_module(), blob))
    assert module.signature.sig_key == "01:02:03:04:05"
    assert module.signature.as_dict()["key_id_source"] == "subject_key_identifier"
    assert "sig_id" not in module.fields  # kmod's PKCS7 parser needs issuer-and-serial


def test_old_style_x509_signature_uses_the_struct_fields():
    data = sign(make_module(), b"\x22" * 32, id_type=1, algo=1, hash_=2, signer=b"Old signer",
                key_id=b"\xab\xcd")
    sig = read_module_bytes(data).signature
    assert (sig.sig_id, sig.signer, sig.sig_key, sig.hash_algo) == ("X509", "Old signer",
                                                                    "AB:CD", "sha1")
    assert sig.as_dict()["algo"] == "RSA"


@pytest.mark.parametrize("kwargs", [{"id_type": 3}, {"hash_": 9}, {"algo": 2}])
def test_trailer_with_out_of_range_enums_is_ignored_like_kmod(kwargs):
    module = read_module_bytes(sign(make_module(), b"\x01" * 8, **kwargs))
    assert module.signature is None and "sig_id" not in module.fields


def test_damaged_pkcs7_is_reported_not_raised():
    module = read_module_bytes(sign(make_module(), b"\x30\x82\xff\xff garbage"))
    assert module.signature.error and "PKCS#7" in module.signature.error
    assert "sig_id" not in module.fields


def test_signature_longer_than_the_file_is_ignored():
    data = make_module() + struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, 10 ** 8) + \
        b"~Module signature appended~\n"
    assert read_module_bytes(data).signature is None


@pytest.mark.parametrize("size", [0, 1, 19, 20, 21, 40, 41])
def test_kmod_hex_wraps_every_20_bytes(size):
    raw = bytes(range(size))
    expected = []
    for i, byte in enumerate(raw):
        expected.append(f"{byte:02X}")
        if i < size - 1:
            expected.append(":")
            if (i + 1) % 20 == 0:
                expected.append("\n\t\t")
    assert kmod_hex(raw) == "".join(expected)


# ---- compression -----------------------------------------------------------------------------

def _zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("kind,compress", [("gzip", gzip.compress), ("xz", lzma.compress),
                                           ("zstd", _zstd)])
def test_compressed_modules_read_the_same(tmp_path, kind, compress):
    plain = sign(make_module())
    # the suffix does not matter: the magic bytes do
    module = read_module(write(tmp_path, compress(plain), "looks-plain.ko"))
    assert module.compression == kind
    assert module.fields == read_module_bytes(plain).fields
    assert module.file_size < module.size
    assert [s.name for s in module.imports] == ["_printk", "module_layout"]


@pytest.mark.parametrize("kind,compress", [("gzip", gzip.compress), ("xz", lzma.compress),
                                           ("zstd", _zstd)])
def test_compressed_files_larger_than_the_first_read(tmp_path, kind, compress):
    filler = os.urandom(200_000)  # incompressible: the compressed file is > 16 KiB too
    plain = sign(make_module(Spec(extra=[Section(".filler", filler)])))
    packed = compress(plain)
    assert len(packed) > 100_000
    module = read_module(write(tmp_path, packed))
    assert module.compression == kind and module.size == len(plain)
    assert module.fields == read_module_bytes(plain).fields


def test_plain_file_larger_than_the_first_read(tmp_path):
    plain = sign(make_module(Spec(extra=[Section(".filler", bytes(300_000))])))
    module = read_module(write(tmp_path, plain))
    assert module.signature.signer == "Fixture key"
    assert [v.symbol for v in module.versions] == ["module_layout", "_printk"]
    assert [s.name for s in module.imports] == ["_printk", "module_layout"]


@pytest.mark.parametrize("head,kind", [(b"\x1f\x8b\x08\x00", "gzip"),
                                       (b"\xfd7zXZ\x00\x00\x04", "xz"),
                                       (b"\x28\xb5\x2f\xfd\x00", "zstd")])
def test_compressed_garbage_is_a_clear_error(tmp_path, head, kind):
    path = write(tmp_path, head + os.urandom(200), "bad.ko." + kind)
    with pytest.raises(ModuleFileError, match=f"looks {kind}-compressed .* does not decompress"):
        read_module(path)


def test_truncated_compressed_stream_is_an_error(tmp_path):
    data = gzip.compress(make_module())
    with pytest.raises(ModuleFileError, match="gzip-compressed"):
        read_module(write(tmp_path, data[:len(data) // 2], "cut.ko.gz"))


def test_zstd_without_the_package_uses_the_program(tmp_path, monkeypatch):
    if shutil.which("zstd") is None:
        pytest.skip("no zstd program")
    path = write(tmp_path, _zstd(make_module()), "m.ko.zst")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    assert read_module(path).name == "fixture"
    garbage = write(tmp_path, b"\x28\xb5\x2f\xfd" + b"\x00" * 40, "bad.ko.zst")
    with pytest.raises(ModuleFileError, match="zstd-compressed .* does not decompress"):
        read_module(garbage)


def test_zstd_without_package_or_program_says_what_to_install(tmp_path, monkeypatch):
    path = write(tmp_path, _zstd(make_module()), "m.ko.zst")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setattr(_decompress.shutil, "which", lambda _name: None)
    with pytest.raises(ModuleFileError, match="neither the Python zstandard package nor the "
                                              "zstd program"):
        read_module(path)


def test_xz_program_fallback_matches(tmp_path, monkeypatch):
    if shutil.which("xz") is None:
        pytest.skip("no xz program")
    monkeypatch.setitem(sys.modules, "lzma", None)
    path = write(tmp_path, subprocess.run(["xz", "-c"], input=make_module(), capture_output=True,
                                          check=True).stdout, "m.ko.xz")
    assert read_module(path).name == "fixture"


# ---- bad input -------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(ModuleFileError, match="does not exist"):
        read_module(str(tmp_path / "nope.ko"))


def test_directory(tmp_path):
    with pytest.raises(ModuleFileError, match="is a directory"):
        read_module(str(tmp_path))


def test_not_a_regular_file():
    with pytest.raises(ModuleFileError, match="not a regular file"):
        read_module("/dev/null")


def test_empty_file(tmp_path):
    with pytest.raises(ModuleFileError, match=r"is empty \(0 bytes\)"):
        read_module(write(tmp_path, b""))


def test_random_bytes(tmp_path):
    with pytest.raises(ModuleFileError, match="does not start with the ELF magic"):
        read_module(write(tmp_path, b"\x00\x01random" + os.urandom(300)))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 0.9, 0.99])
def test_truncated_elf(tmp_path, fraction):
    data = make_module()
    with pytest.raises(ModuleFileError, match="truncated"):
        read_module(write(tmp_path, data[:max(20, int(len(data) * fraction))]))


def test_truncated_in_the_section_table(tmp_path):
    data = make_module()
    with pytest.raises(ModuleFileError, match="section header table .* ends at byte"):
        read_module(write(tmp_path, data[:-10]))


def test_corrupt_elf_class(tmp_path):
    data = bytearray(make_module())
    data[4] = 7
    with pytest.raises(ModuleFileError, match="corrupt ELF header"):
        read_module(write(tmp_path, bytes(data)))


def test_elf_that_is_not_a_module_shared_object(tmp_path):
    data = make_module(Spec(e_type=3))
    with pytest.raises(ModuleFileError, match=r"shared object \(ET_DYN\), not a kernel module"):
        read_module(write(tmp_path, data))


def test_relocatable_object_without_this_module(tmp_path):
    data = make_module(Spec(this_module=False))
    with pytest.raises(ModuleFileError, match="no .gnu.linkonce.this_module section"):
        read_module(write(tmp_path, data))


def test_module_without_modinfo(tmp_path):
    data = make_module(Spec(modinfo=None))
    with pytest.raises(ModuleFileError, match="no .modinfo section"):
        read_module(write(tmp_path, data))


def test_modinfo_without_vermagic_reads_with_vermagic_none():
    module = read_module_bytes(make_module(Spec(modinfo=["license=GPL"])))
    assert module.vermagic is None


def test_section_running_past_the_end(tmp_path):
    sections = [Section(".modinfo", b"vermagic=x\0"),
                Section(".gnu.linkonce.this_module", this_module_bytes("x"))]
    data = bytearray(make_elf(sections))
    # point .modinfo (section 1) far beyond the end of the file
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<Q", data, shoff + 64 + 24, 10 ** 6)
    with pytest.raises(ModuleFileError, match="section .modinfo ends at byte"):
        read_module(write(tmp_path, bytes(data)))


def test_bytes_api_rejects_empty_and_garbage():
    with pytest.raises(ModuleFileError, match="empty"):
        read_module_bytes(b"")
    with pytest.raises(ModuleFileError, match="does not decompress"):
        read_module_bytes(b"\x1f\x8b" + b"\xff" * 30)
