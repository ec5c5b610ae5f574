from __future__ import annotations

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._pkcs7 import (
    Pkcs7Error, decode_oid, parse_signer_info)
from tests.support.elf_fixture import OID_CN, der, oid, pkcs7, seq


@pytest.mark.parametrize("text", ["1.2.840.113549.1.7.2", "2.5.4.3", "2.16.840.1.101.3.4.2.1",
                                  "1.2.156.10197.1.401", "2.999.1"])
def test_oid_round_trip(text):
    assert decode_oid(oid(text)[2:]) == text


def test_signer_info_fields():
    info = parse_signer_info(pkcs7(signer=((OID_CN, "Key"),), serial=b"\x00\x00\x7f",
                                   signature=b"\x01" * 300))
    assert (info.signer, info.serial, info.hash_algo) == ("Key", b"\x7f", "sha256")
    assert info.signature == b"\x01" * 300  # long-form lengths


def test_unknown_digest_is_printed_as_its_oid():
    assert parse_signer_info(pkcs7(digest="1.2.3.4")).hash_algo == "1.2.3.4"


@pytest.mark.parametrize("blob,needle", [
    (b"", "runs past the end"),
    (b"\x30\x05\x06\x01", "claims 5 bytes"),
    (seq(oid("1.2.840.113549.1.7.1"), der(0xA0, seq())), "not signedData"),
    (seq(oid("1.2.840.113549.1.7.2"), der(0xA0, seq(der(0x02, b"\x01")))), "no signerInfos"),
    (b"\x02\x01\x00", "expected ContentInfo SEQUENCE"),
    (b"\x30\x85\x00\x00\x00\x00\x01", "unsupported length form"),
])
def test_malformed_blobs_raise(blob, needle):
    with pytest.raises(Pkcs7Error, match=needle):
        parse_signer_info(blob)
