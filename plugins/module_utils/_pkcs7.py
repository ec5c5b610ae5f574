# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Just enough DER to read who signed a kernel module: the first SignerInfo of a PKCS#7 blob.

``scripts/sign-file`` appends a PKCS#7 (CMS) ``SignedData`` with detached content::

    ContentInfo ::= SEQUENCE { contentType OID (signedData), [0] EXPLICIT SignedData }
    SignedData  ::= SEQUENCE { version, digestAlgorithms SET, contentInfo,
                               [0] certificates OPTIONAL, [1] crls OPTIONAL, signerInfos SET }
    SignerInfo  ::= SEQUENCE { version, sid, digestAlgorithm AlgorithmIdentifier,
                               [0] signedAttrs OPTIONAL, signatureAlgorithm, signature OCTET STRING, … }
    sid         ::= IssuerAndSerialNumber SEQUENCE { issuer Name, serialNumber INTEGER }
                  | [0] SubjectKeyIdentifier (CMS only; ``sign-file -k``)

kmod's ``modinfo`` (with OpenSSL) reports the issuer's commonName as ``signer``, the serial number
(big-endian magnitude, no leading zero bytes) as ``sig_key`` and the digest algorithm's name as
``sig_hashalgo``; this module computes the same values without OpenSSL.
"""

from __future__ import annotations

from dataclasses import dataclass

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_COMMON_NAME = "2.5.4.3"

# OpenSSL's names for digest OIDs, as OBJ_obj2txt() prints them (kmod's sig_hashalgo).
DIGEST_NAMES = {
    "1.2.840.113549.2.4": "md4",
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "1.3.36.3.2.1": "ripemd160",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.5": "sha512-224",
    "2.16.840.1.101.3.4.2.6": "sha512-256",
    "2.16.840.1.101.3.4.2.7": "sha3-224",
    "2.16.840.1.101.3.4.2.8": "sha3-256",
    "2.16.840.1.101.3.4.2.9": "sha3-384",
    "2.16.840.1.101.3.4.2.10": "sha3-512",
    "1.2.156.10197.1.401": "sm3",
}

# Universal tags.
INTEGER, OCTET_STRING, OID, SEQUENCE, SET = 0x02, 0x04, 0x06, 0x30, 0x31
CONTEXT_0, CONTEXT_1, CONTEXT_0_PRIMITIVE = 0xA0, 0xA1, 0x80
STRING_TAGS = {0x0C, 0x12, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E}  # UTF8, Numeric, Printable, T61, IA5, Visible, Universal, BMP


class Pkcs7Error(Exception):
    """Malformed DER / not a PKCS#7 SignedData; the message says where."""


@dataclass(frozen=True)
class SignerInfo:
    signer: str | None          # issuer commonName (kmod: the last RDN's value if there is no CN)
    serial: bytes | None        # issuer-and-serial signer id: the serial's magnitude, big-endian
    key_identifier: bytes | None  # subjectKeyIdentifier signer id (CMS ``sign-file -k``)
    digest_oid: str
    signature: bytes

    @property
    def hash_algo(self) -> str:
        return DIGEST_NAMES.get(self.digest_oid, self.digest_oid)


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the element at ``pos``."""
    if pos + 2 > end:
        raise Pkcs7Error(f"DER element at byte {pos} runs past the end")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise Pkcs7Error(f"DER element at byte {pos} uses a multi-byte tag (not in PKCS#7)")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise Pkcs7Error(f"DER element at byte {pos - 2} has an unsupported length form")
        if pos + count > end:
            raise Pkcs7Error(f"DER length at byte {pos - 2} runs past the end")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > end:
        raise Pkcs7Error(f"DER element at byte {pos} claims {length} bytes, "
                         f"only {end - pos} are left")
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    got, start, stop = _header(data, pos, end)
    if got != tag:
        raise Pkcs7Error(f"expected {what} (tag {tag:#04x}) at byte {pos}, found tag {got:#04x}")
    return start, stop


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, contents start, contents end) of each element in [start, end)."""
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend = _header(data, pos, end)
        out.append((tag, pos, cstart, cend))
        pos = cend
    return out


_OID_CACHE: dict[bytes, str] = {}


def decode_oid(raw: bytes) -> str:
    """Dotted text of a DER OBJECT IDENTIFIER's contents (memoised: modules repeat a few OIDs)."""
    text = _OID_CACHE.get(raw)
    if text is None:
        if len(_OID_CACHE) > 256:
            _OID_CACHE.clear()
        text = _OID_CACHE[raw] = _decode_oid(raw)
    return text


def _decode_oid(raw: bytes) -> str:
    if not raw:
        raise Pkcs7Error("empty OBJECT IDENTIFIER")
    numbers: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    first = numbers[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(n) for n in head + numbers[1:])


_SIGNER_CACHE: dict[bytes, str | None] = {}


def _name_signer(data: bytes, start: int, end: int) -> str | None:
    """kmod's x509_name_to_str(): the commonName, else the value of the last attribute.

    Memoised by the Name's bytes: the modules of a kernel share one signing key.
    """
    raw = data[start:end]
    if raw not in _SIGNER_CACHE:
        if len(_SIGNER_CACHE) > 64:
            _SIGNER_CACHE.clear()
        _SIGNER_CACHE[raw] = _read_name(data, start, end)
    return _SIGNER_CACHE[raw]


def _read_name(data: bytes, start: int, end: int) -> str | None:
    value = None
    for rdn_tag, _p, rdn_start, rdn_end in _children(data, start, end):
        if rdn_tag != SET:
            raise Pkcs7Error("a Name's RelativeDistinguishedName is not a SET")
        for atv_tag, _q, atv_start, atv_end in _children(data, rdn_start, rdn_end):
            if atv_tag != SEQUENCE:
                raise Pkcs7Error("a Name's AttributeTypeAndValue is not a SEQUENCE")
            parts = _children(data, atv_start, atv_end)
            if len(parts) != 2 or parts[0][0] != OID:
                raise Pkcs7Error("malformed AttributeTypeAndValue in the signer's Name")
            oid = decode_oid(data[parts[0][2]:parts[0][3]])
            vtag, _v, vstart, vend = parts[1]
            raw = data[vstart:vend]
            if vtag == 0x1E:
                value = raw.decode("utf-16-be", "replace")
            else:
                value = raw.decode("utf-8", "replace")
            if oid == OID_COMMON_NAME:
                return value
    return value


def parse_signer_info(blob: bytes) -> SignerInfo:
    """The first SignerInfo of a DER PKCS#7 SignedData (as in a module signature)."""
    data = bytes(blob)
    end = len(data)
    start, stop = _expect(data, 0, end, SEQUENCE, "ContentInfo SEQUENCE")
    content = _children(data, start, stop)
    if len(content) < 2 or content[0][0] != OID or content[1][0] != CONTEXT_0:
        raise Pkcs7Error("not a PKCS#7 ContentInfo (OID + [0] content)")
    oid = decode_oid(data[content[0][2]:content[0][3]])
    if oid != OID_SIGNED_DATA:
        raise Pkcs7Error(f"PKCS#7 content type is {oid}, not signedData ({OID_SIGNED_DATA})")
    sd_start, sd_stop = _expect(data, content[1][2], content[1][3], SEQUENCE, "SignedData")
    signed = _children(data, sd_start, sd_stop)
    if not signed or signed[-1][0] != SET:
        raise Pkcs7Error("SignedData has no signerInfos SET")
    infos = _children(data, signed[-1][2], signed[-1][3])
    if not infos:
        raise Pkcs7Error("SignedData has no SignerInfo")
    tag, _p, si_start, si_end = infos[0]
    if tag != SEQUENCE:
        raise Pkcs7Error("SignerInfo is not a SEQUENCE")
    parts = _children(data, si_start, si_end)
    if len(parts) < 5 or parts[0][0] != INTEGER:
        raise Pkcs7Error("SignerInfo is too short")
    sid_tag, _s, sid_start, sid_end = parts[1]
    signer = serial = key_identifier = None
    if sid_tag == SEQUENCE:  # IssuerAndSerialNumber
        ias = _children(data, sid_start, sid_end)
        if len(ias) != 2 or ias[0][0] != SEQUENCE or ias[1][0] != INTEGER:
            raise Pkcs7Error("malformed IssuerAndSerialNumber")
        signer = _name_signer(data, ias[0][2], ias[0][3])
        serial = data[ias[1][2]:ias[1][3]].lstrip(b"\0")
    elif sid_tag in (CONTEXT_0_PRIMITIVE, CONTEXT_0):
        key_identifier = data[sid_start:sid_end]
    else:
        raise Pkcs7Error(f"unknown signer identifier (tag {sid_tag:#04x})")
    dtag, _d, d_start, d_end = parts[2]
    if dtag != SEQUENCE:
        raise Pkcs7Error("SignerInfo digestAlgorithm is not a SEQUENCE")
    alg = _children(data, d_start, d_end)
    if not alg or alg[0][0] != OID:
        raise Pkcs7Error("SignerInfo digestAlgorithm has no OID")
    digest_oid = decode_oid(data[alg[0][2]:alg[0][3]])
    signature = b""
    rest = parts[3:]
    if rest and rest[0][0] == CONTEXT_0:  # signed attributes
        rest = rest[1:]
    if len(rest) >= 2 and rest[1][0] == OCTET_STRING:
        signature = data[rest[1][2]:rest[1][3]]
    else:
        raise Pkcs7Error("SignerInfo has no signature OCTET STRING")
    return SignerInfo(signer, serial, key_identifier, digest_oid, signature)
