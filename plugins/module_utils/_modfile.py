# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read a kernel module file (``.ko``, ``.ko.gz``, ``.ko.xz``, ``.ko.zst``) the way kmod does.

``read_module(path)`` returns a ``ModuleFile`` with:

* ``fields``: every ``.modinfo`` key as kmod's ``modinfo -F KEY`` prints it, plus the signature
  keys kmod adds (``sig_id``, ``signer``, ``sig_key``, ``sig_hashalgo``, ``signature``). A value
  is a string, or a list of strings for the keys in ``LIST_KEYS`` (always lists, even with one
  entry) and for any other key the file repeats. ``parm`` is kmod's combination of the ``parm``
  and ``parmtype`` entries, ``"name:description (type)"``, in kmod's order; ``depends`` is one
  comma-separated string, as in the file.
* ``vermagic`` (the first ``vermagic=`` entry, byte for byte, as the kernel's ``get_modinfo()``
  finds it), ``name`` (from ``struct module`` in ``.gnu.linkonce.this_module``, else the
  ``name=`` entry), ``elf`` (class, machine, byte order), ``has_versions`` (a ``__versions``
  section exists, even empty: the kernel's ``has_crcs``), ``versions`` (its entries and those of
  the 6.15+ extended sections ``__version_ext_crcs``/``__version_ext_names``), ``signature``
  (the appended ``struct module_signature`` and, for PKCS#7, signer, serial and digest),
  ``build_id`` (the GNU build id in ``.note.gnu.build-id``, hex, found on first use: what
  ``/sys/module/<name>/notes/.note.gnu.build-id`` shows once the module is loaded) and
  ``imports`` (undefined symbols, computed on first use with pyelftools).

The hot path (header, section table, ``.modinfo``, trailer) is parsed with ``struct`` over a
memory map so that a scan of a whole ``/lib/modules`` stays close to kmod's speed; pyelftools
reads the symbol table for ``imports`` and names the machine. Anything malformed raises
``ModuleFileError`` whose message names the file and the problem.
"""

from __future__ import annotations

import os
import struct
import traceback
from dataclasses import dataclass
from io import BytesIO
from typing import Any, NamedTuple, Union

try:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE
except ImportError:  # modules check HAS_ELFTOOLS and fail with Ansible's missing-library message
    HAS_ELFTOOLS = False
    ELFTOOLS_IMPORT_ERROR: str | None = traceback.format_exc()
    ELFError = Exception  # type: ignore[misc,assignment]  # noqa: N816
    ELFFile = None  # type: ignore[misc,assignment]
    ENUM_E_MACHINE = {"EM_386": 3, "EM_X86_64": 62}
    ENUM_E_TYPE = {"ET_NONE": 0, "ET_REL": 1, "ET_EXEC": 2, "ET_DYN": 3, "ET_CORE": 4}
else:
    HAS_ELFTOOLS = True
    ELFTOOLS_IMPORT_ERROR = None

from ._decompress import DecompressError, compression_of, decompress
from ._modversions import VersionEntry, parse_versions
from ._pkcs7 import Pkcs7Error, parse_signer_info

ELF_MAGIC = b"\x7fELF"
SIG_MAGIC = b"~Module signature appended~\n"
SIG_STRUCT = struct.Struct(">BBBBB3xI")  # struct module_signature (include/linux/module_signature.h)

# The tables kmod and the kernel use for struct module_signature's enums.
PKEY_ALGO = ("DSA", "RSA")
PKEY_HASH = ("md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "sm3")
PKEY_ID_TYPE = ("PGP", "X509", "PKCS#7")
PKEY_ID_PKCS7 = 2

# .modinfo keys that are always lists in ``fields`` (the kernel allows them more than once).
LIST_KEYS = frozenset(("alias", "author", "firmware", "import_ns", "parm", "parmtype",
                       "softdep", "weakdep"))

SECTIONS = (".modinfo", "__versions", ".gnu.linkonce.this_module", "__version_ext_crcs",
            "__version_ext_names")

NEEDLES = tuple((name, name.encode() + b"\0") for name in SECTIONS)

SHT_NOTE = 7
SHT_NOBITS = 8
NT_GNU_BUILD_ID = 3
BUILD_ID_SECTION = b".note.gnu.build-id\0"
SHN_XINDEX = 0xFFFF
ET_REL = 1
MACHINE_NAMES = {value: name for name, value in ENUM_E_MACHINE.items() if isinstance(value, int)}
TYPE_NAMES = {value: name for name, value in ENUM_E_TYPE.items() if isinstance(value, int)}
NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

FieldValue = Union[str, list]
HEAD = 1 << 14  # read at once: all of a small module, the ELF header of the others


class _cached:  # noqa: N801  (functools.cached_property without its per-access lock, < 3.12)
    """A lazily computed attribute, stored in the instance on first use."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


class _View:
    """Parts of a module held in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


class _FileView(_View):
    """Parts of an open file: its first 16 KiB at once, anything else by ``pread``."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.data = os.pread(fd, min(size, HEAD), 0)

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if end <= len(self.data):
            return self.data[offset:end]
        if offset >= self.size or length <= 0:
            return b""
        return os.pread(self.fd, min(length, self.size - offset), offset)


class ModuleFileError(Exception):
    """Not a readable kernel module; the message names the file, the problem and what to do."""


@dataclass(frozen=True)
class ElfInfo:
    elf_class: int          # 32 or 64
    byte_order: str         # "little" or "big"
    machine: str            # pyelftools' e_machine name, e.g. "EM_X86_64"
    machine_code: int       # e_machine as a number
    type: str               # "ET_REL" for a module

    def as_dict(self) -> dict[str, Any]:
        return {"class": self.elf_class, "byte_order": self.byte_order,
                "machine": self.machine, "machine_code": self.machine_code, "type": self.type}

    # Read-only mapping access with the result keys (``elf["class"]``, ``elf.get("machine")``).
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)


class ImportedSymbol(NamedTuple):
    name: str
    weak: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weak": self.weak}


@dataclass(frozen=True)
class Signature:
    """The appended module signature (``struct module_signature`` + what precedes it)."""

    algo: int
    hash: int
    id_type: int
    signer_len: int
    key_id_len: int
    sig_len: int
    signer: str | None          # kmod's ``signer``
    key_id: bytes | None        # kmod's ``sig_key`` (PKCS#7: the issuer serial number)
    hash_algo: str | None       # kmod's ``sig_hashalgo``
    key_identifier: bytes | None = None  # PKCS#7 signed by subjectKeyIdentifier (sign-file -k)
    signature: bytes = b""
    error: str | None = None    # why the PKCS#7 blob could not be read, if it could not

    @property
    def sig_id(self) -> str:
        return PKEY_ID_TYPE[self.id_type]

    @property
    def kmod_visible(self) -> bool:
        """Whether kmod's modinfo prints the sig_* keys for this signature (it needs them all)."""
        return self.error is None and (self.id_type != PKEY_ID_PKCS7 or self.key_id is not None)

    @property
    def sig_key(self) -> str:
        return kmod_hex(self.key_id or self.key_identifier or b"")

    def as_dict(self) -> dict[str, Any]:
        return {
            "sig_id": self.sig_id,
            "signer": self.signer,
            "sig_key": self.sig_key,
            "sig_hashalgo": self.hash_algo,
            "key_id_source": ("serial" if self.key_id is not None and self.id_type == PKEY_ID_PKCS7
                              else "subject_key_identifier" if self.key_identifier is not None
                              else "module_signature"),
            "algo": None if self.id_type == PKEY_ID_PKCS7 else PKEY_ALGO[self.algo],
            "signature_length": len(self.signature),
            "module_signature": {"algo": self.algo, "hash": self.hash, "id_type": self.id_type,
                                 "signer_len": self.signer_len, "key_id_len": self.key_id_len,
                                 "sig_len": self.sig_len},
            "error": self.error,
        }


# (EI_CLASS, EI_DATA) -> (ELF header after e_ident, section header)
LAYOUTS = {
    (cls, enc): (struct.Struct(("<" if enc == 1 else ">") + ("HHIQQQIHHHHHH" if cls == 2
                                                             else "HHIIIIIHHHHHH")),
                 struct.Struct(("<" if enc == 1 else ">") + ("IIQQQQIIQQ" if cls == 2
                                                             else "IIIIIIIIII")))
    for cls in (1, 2) for enc in (1, 2)
}
_ELF_INFOS: dict[tuple[int, int, int, int], ElfInfo] = {}
_NAMES_FORMATS: dict[tuple[str, bool, int], str] = {}


def _names_format(end: str, is64: bool, count: int) -> str:
    """struct format reading only sh_name of ``count`` section headers."""
    key = (end, is64, count)
    fmt = _NAMES_FORMATS.get(key)
    if fmt is None:
        fmt = _NAMES_FORMATS[key] = end + ("I60x" if is64 else "I36x") * count
    return fmt


def _elf_info(ei_class: int, ei_data: int, e_machine: int, e_type: int) -> ElfInfo:
    key = (ei_class, ei_data, e_machine, e_type)
    info = _ELF_INFOS.get(key)
    if info is None:
        info = _ELF_INFOS[key] = ElfInfo(
            64 if ei_class == 2 else 32, "little" if ei_data == 1 else "big",
            MACHINE_NAMES.get(e_machine, f"EM_{e_machine}"), e_machine,
            TYPE_NAMES.get(e_type, f"ET_{e_type}"))
    return info


def kmod_hex(raw: bytes, line_limit: int = 20) -> str:
    """kmod's kmod_module_hex_to_str(): ``XX:XX:…`` upper case, a newline and two tabs every 20."""
    text = raw.hex(":").upper()
    width = 3 * line_limit  # "XX:" per byte; a line ends with its colon
    if len(text) <= width:
        return text
    return "\n\t\t".join(text[i:i + width] for i in range(0, len(text), width))


def build_id_from_notes(data: bytes, byteorder: str = "<") -> str | None:
    """The GNU build id (hex) in a blob of ELF notes, or None.

    The blob is a note section's bytes (``.note.gnu.build-id`` of a module file, or
    ``/sys/module/<name>/notes/.note.gnu.build-id`` of a loaded one): notes of ``namesz``,
    ``descsz``, ``type`` (u32 each, in the ELF's byte order), the name and the descriptor, each
    padded to 4 bytes. The build id is the descriptor of the note named ``GNU`` of type
    ``NT_GNU_BUILD_ID``."""
    offset = 0
    while offset + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(byteorder + "III", data, offset)
        offset += 12
        name = data[offset:offset + namesz]
        offset += (namesz + 3) & ~3
        desc = data[offset:offset + descsz]
        offset += (descsz + 3) & ~3
        if ntype == NT_GNU_BUILD_ID and name.rstrip(b"\0") == b"GNU" and desc:
            return desc.hex()
    return None


def _describe_head(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data[:8])


class ModuleFile:
    """One kernel module file, parsed. Use ``read_module(path)`` to make one."""

    def __init__(self, path: str, data: bytes | _View, compression: str = "none",
                 file_size: int | None = None) -> None:
        view = data if isinstance(data, _View) else _View(bytes(data))
        self.path = path
        self.compression = compression
        self.size = view.size
        self.file_size = self.size if file_size is None else file_size
        self._parse_elf(view)
        self._split_signature(view)
        self._parse_modinfo()
        # the whole module for ``imports`` when it is in memory anyway; a file is read again
        self._data = None if isinstance(view, _FileView) else view.data
        self._head = view.data  # a file's first 16 KiB (all of it when in memory)

    # ---- fast path: ELF header, section table, .modinfo, trailer -------------------------

    def _parse_elf(self, view: _View) -> None:
        path, size = self.path, view.size
        data = view.read(0, 64)
        if size < 16 or data[:4] != ELF_MAGIC:
            raise ModuleFileError(f"{path} is not a kernel module: it does not start with the ELF "
                                  f"magic 7f 45 4c 46 (first bytes: {_describe_head(data)})")
        ei_class, ei_data = data[4], data[5]
        if ei_class not in (1, 2) or ei_data not in (1, 2):
            raise ModuleFileError(f"{path} has a corrupt ELF header: class {ei_class} and data "
                                  f"encoding {ei_data} (expected 1 or 2 each)")
        is64 = ei_class == 2
        end = "<" if ei_data == 1 else ">"
        self._end = end
        header, shdr = LAYOUTS[ei_class, ei_data]
        if size < 16 + header.size:
            raise ModuleFileError(f"{path} is truncated: {size} bytes, less than an ELF header")
        (e_type, e_machine, _version, _entry, _phoff, e_shoff, _flags, _ehsize, _phentsize,
         _phnum, e_shentsize, e_shnum, e_shstrndx) = header.unpack_from(data, 16)
        self.elf = _elf_info(ei_class, ei_data, e_machine, e_type)
        if e_type != ET_REL:
            kind = {2: "an executable", 3: "a shared object", 4: "a core dump"}.get(e_type, "an ELF file")
            raise ModuleFileError(f"{path} is {kind} ({self.elf.type}), not a kernel module "
                                  f"(modules are relocatable objects, ET_REL)")
        want_entsize = 64 if is64 else 40
        if e_shoff == 0 or e_shentsize != want_entsize:
            raise ModuleFileError(f"{path} has no usable section header table (e_shoff "
                                  f"{e_shoff}, e_shentsize {e_shentsize}): not a kernel module")
        if e_shoff + want_entsize > size:
            raise ModuleFileError(f"{path} is truncated: its section header table starts at byte "
                                  f"{e_shoff}, the file has {size} bytes")
        if e_shnum == 0 or e_shstrndx == SHN_XINDEX:  # extended numbering: the counts are in section 0
            first = view.read(e_shoff, want_entsize)
            _n, _t, _f, _a, _o, first_size, first_link, *_rest = shdr.unpack(first)
            e_shnum = e_shnum or first_size
            if e_shstrndx == SHN_XINDEX:
                e_shstrndx = first_link
        table_end = e_shoff + e_shnum * want_entsize
        if table_end > size:
            raise ModuleFileError(f"{path} is truncated: its section header table ({e_shnum} "
                                  f"entries at byte {e_shoff}) ends at byte {table_end}, the file "
                                  f"has {size} bytes")
        if not 0 < e_shstrndx < e_shnum:
            raise ModuleFileError(f"{path} has a corrupt ELF header: section name table index "
                                  f"{e_shstrndx} of {e_shnum} sections")
        table = view.read(e_shoff, e_shnum * want_entsize)
        # only sh_name of every section (the rest skipped as pad bytes); full headers below for
        # the name table and the few sections wanted
        names = struct.unpack(_names_format(end, is64, e_shnum), table)
        self._shnum = e_shnum

        def header(index: int) -> tuple[int, int, int]:
            fields_ = shdr.unpack_from(table, index * want_entsize)
            return fields_[1], fields_[4], fields_[5]  # sh_type, sh_offset, sh_size

        self._header = header  # for sections looked up later (build_id)

        _type, str_off, str_size = header(e_shstrndx)
        if str_off + str_size > size:
            raise ModuleFileError(f"{path} is truncated: the section name table ends at byte "
                                  f"{str_off + str_size}, the file has {size} bytes")
        strtab = view.read(str_off, str_size)
        # name offset -> section index; the first section of a name wins, as in kmod
        by_name_offset = dict(zip(names[:0:-1], range(e_shnum - 1, 0, -1)))
        self._strtab, self._by_name_offset = strtab, by_name_offset
        found: dict[str, tuple[int, int]] = {}
        for wanted, needle in NEEDLES:
            best = _section_index(strtab, by_name_offset, needle)
            if best is None:
                continue
            sh_type, offset, length = header(best)
            if sh_type == SHT_NOBITS:
                length = 0
            elif offset + length > size:
                raise ModuleFileError(f"{path} is truncated: section {wanted} ends at byte "
                                      f"{offset + length}, the file has {size} bytes")
            found[wanted] = (offset, length)
        self._sections = found
        self._raw = {name: view.read(offset, length) for name, (offset, length) in found.items()}
        if ".gnu.linkonce.this_module" not in found:
            raise ModuleFileError(
                f"{path} is an ELF object but not a kernel module: it has no "
                f".gnu.linkonce.this_module section (a .o that modpost has not turned into a .ko?)")
        if ".modinfo" not in found:
            raise ModuleFileError(f"{path} is not a complete kernel module: it has no .modinfo "
                                  f"section")

    def _read_at(self, offset: int, length: int) -> bytes:
        """Bytes of the (decompressed) module: from memory, the head read at first, or the file."""
        end = offset + length
        if self._data is not None:
            return self._data[offset:end]
        if end <= len(self._head):
            return self._head[offset:end]
        fd, _size = _open(self.path)
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise ModuleFileError(f"cannot read {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def _split_signature(self, view: _View) -> None:
        size = view.size
        self._sig = None
        magic = len(SIG_MAGIC)
        if size < magic + SIG_STRUCT.size:
            return
        tail = view.read(size - magic - SIG_STRUCT.size, magic + SIG_STRUCT.size)
        if tail[SIG_STRUCT.size:] != SIG_MAGIC:
            return
        at = size - magic - SIG_STRUCT.size
        self._sig = (at,) + SIG_STRUCT.unpack_from(tail, 0)
        _a, _h, _i, signer_len, key_id_len, sig_len = self._sig[1:]
        start = max(0, at - sig_len - signer_len - key_id_len)
        self._sig_area = view.read(start, at - start)  # signer name, key id, signature

    def _section(self, name: str) -> bytes | None:
        return self._raw.get(name)

    def _parse_modinfo(self) -> None:
        raw = self._raw[".modinfo"]
        # "key=value" strings between runs of NULs; (key, value) from partition's 3-tuple
        self.modinfo: list[tuple[str, str]] = [
            item.partition("=")[::2] for item in raw.decode("utf-8", "replace").split("\0") if item]

    # ---- public attributes -----------------------------------------------------------------

    @_cached
    def fields(self) -> dict[str, FieldValue]:
        """Every key as kmod's ``modinfo -F KEY`` prints it (see the module docstring)."""
        fields: dict[str, FieldValue] = {}
        for key, value in self.modinfo:
            if key == "parm":
                continue
            have = fields.get(key)
            if have is None:
                fields[key] = [value] if key in LIST_KEYS else value
            elif isinstance(have, list):
                have.append(value)
            else:
                fields[key] = [have, value]
        params = self.parameters()
        if params or "parmtype" in fields:
            fields["parm"] = params
        sig = self.signature
        if sig is not None and sig.kmod_visible:
            fields["sig_id"] = sig.sig_id
            fields["signer"] = sig.signer or ""
            fields["sig_key"] = sig.sig_key
            fields["sig_hashalgo"] = sig.hash_algo or ""
            fields["signature"] = kmod_hex(sig.signature)
        return fields

    def parameters(self) -> list[str]:
        """kmod's ``modinfo -F parm``: ``name:description (type)``, newest-first as kmod lists them."""
        order: list[str] = []
        desc: dict[str, str] = {}
        kind: dict[str, str] = {}
        for key, value in self.modinfo:
            if key not in ("parm", "parmtype"):
                continue
            name, colon, rest = value.partition(":")
            if not colon:
                continue  # kmod: 'Found invalid "parm=…": missing ':'' and skips it
            if name not in desc and name not in kind:
                order.append(name)
            (desc if key == "parm" else kind)[name] = rest
        out = []
        for name in reversed(order):
            if name not in desc:
                out.append(f"{name}: ({kind[name]})")
            elif name in kind:
                out.append(f"{name}:{desc[name]} ({kind[name]})")
            else:
                out.append(f"{name}:{desc[name]}")
        return out

    @_cached
    def vermagic(self) -> str | None:
        for key, value in self.modinfo:
            if key == "vermagic":
                return value
        return None

    @_cached
    def name(self) -> str | None:
        """The name in ``struct module`` (what the kernel calls the module), else ``name=``."""
        return self._this_module_name() or self._modinfo_value("name")

    def _modinfo_value(self, key: str) -> str | None:
        for have, value in self.modinfo:
            if have == key:
                return value
        return None

    def _this_module_name(self) -> str | None:
        # struct module starts { enum module_state state; struct list_head list; char name[]; }
        # so name sits after three pointer-sized slots: 24 on 64-bit, 12 on 32-bit. It has been
        # there since 2.6; if an unusual layout puts something else there, look for the first
        # NUL-terminated identifier at a pointer-aligned offset instead.
        raw = self._section(".gnu.linkonce.this_module") or b""
        word = 8 if self.elf.elf_class == 64 else 4
        limit = 64 - word  # MODULE_NAME_LEN
        candidates = [3 * word] + [off for off in range(0, min(len(raw), 512), word)
                                   if off != 3 * word]
        for offset in candidates:
            chunk = raw[offset:offset + limit]
            text, nul, _rest = chunk.partition(b"\0")
            if text and nul and all(ch in NAME_CHARS for ch in text) and \
                    (offset == 0 or raw[offset - 1] == 0):
                return text.decode("ascii")
        return None

    @property
    def has_versions(self) -> bool:
        """A ``__versions`` (or extended CRC) section exists, even empty: the kernel's has_crcs."""
        return "__versions" in self._sections or "__version_ext_crcs" in self._sections

    @_cached
    def versions(self) -> list[VersionEntry]:
        return parse_versions(self._section("__versions") or b"",
                              self._section("__version_ext_crcs"),
                              self._section("__version_ext_names"), self.elf.elf_class, self._end)

    @_cached
    def signature(self) -> Signature | None:
        """The appended signature, or None when the file carries none (kmod's rules)."""
        if self._sig is None:
            return None
        at, algo, hash_, id_type, signer_len, key_id_len, sig_len = self._sig
        if algo >= len(PKEY_ALGO) or hash_ >= len(PKEY_HASH) or id_type >= len(PKEY_ID_TYPE):
            return None  # kmod ignores a trailer with out-of-range enums
        if sig_len == 0 or at < sig_len + signer_len + key_id_len:
            return None
        area = self._sig_area  # [signer][key id][signature], the bytes before the struct
        blob = area[len(area) - sig_len:]
        if id_type != PKEY_ID_PKCS7:
            signer = area[:signer_len].decode("utf-8", "replace")
            key_id = area[signer_len:signer_len + key_id_len]
            return Signature(algo, hash_, id_type, signer_len, key_id_len, sig_len, signer,
                             key_id, PKEY_HASH[hash_], signature=blob)
        try:
            info = parse_signer_info(blob)
        except Pkcs7Error as exc:
            return Signature(algo, hash_, id_type, signer_len, key_id_len, sig_len, None, None,
                             None, error=f"the PKCS#7 signature cannot be read: {exc}")
        return Signature(algo, hash_, id_type, signer_len, key_id_len, sig_len, info.signer,
                         info.serial, info.hash_algo, info.key_identifier, info.signature)

    @_cached
    def build_id(self) -> str | None:
        """The GNU build id (hex) of ``.note.gnu.build-id``, or None when there is none.

        kbuild links every module with ``--build-id=sha1``; the section usually sits in the
        first bytes of the file, so finding it costs no further read (else one ``pread``)."""
        index = _section_index(self._strtab, self._by_name_offset, BUILD_ID_SECTION)
        if index is None:
            return None
        sh_type, offset, length = self._header(index)
        if sh_type != SHT_NOTE or length == 0 or offset + length > self.size:
            return None
        return build_id_from_notes(self._read_at(offset, length), self._end)

    @_cached
    def elf_length(self) -> int:
        """Bytes of ELF object before the signature (what the kernel loads)."""
        if self.signature is None or self._sig is None:
            return self.size
        at, _a, _h, _i, signer_len, key_id_len, sig_len = self._sig
        return at - sig_len - signer_len - key_id_len

    @_cached
    def imports(self) -> list[ImportedSymbol]:
        """Undefined symbols the module needs from the kernel or other modules (pyelftools).

        Computed on first use: the file is read again (a bulk scan never pays for this).
        """
        if not HAS_ELFTOOLS:
            raise ModuleFileError("reading a module's symbol table needs pyelftools "
                                  "(Debian: python3-pyelftools; pip: pyelftools)")
        data = self._data
        if data is None:
            data = _load_whole(self.path)[0]
        try:
            elf = ELFFile(BytesIO(data[:self.elf_length]))
            symtab = elf.get_section_by_name(".symtab")
            if symtab is None:
                return []
            out = []
            for sym in symtab.iter_symbols():
                if sym["st_shndx"] != "SHN_UNDEF" or not sym.name:
                    continue
                out.append(ImportedSymbol(sym.name, sym["st_info"]["bind"] == "STB_WEAK"))
            return out
        except (ELFError, struct.error, ValueError) as exc:
            raise ModuleFileError(f"{self.path}: cannot read the symbol table: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        """The shape ``vermagic.kmod.modinfo`` returns (without the verdict)."""
        sig = self.signature
        return {
            "path": self.path,
            "name": self.name,
            "compression": self.compression,
            "fields": self.fields,
            "vermagic": self.vermagic,
            "has_versions": self.has_versions,
            "versions": [v.as_dict() for v in self.versions],
            "elf": self.elf.as_dict(),
            "signature": sig.as_dict() if sig is not None else None,
            "build_id": self.build_id,
        }


def _section_index(strtab: bytes, by_name_offset: dict[int, int], needle: bytes) -> int | None:
    """The index of the first section named ``needle`` (with its NUL), as kmod picks it."""
    pos = strtab.find(needle)
    best = None
    while pos >= 0:
        index = by_name_offset.get(pos)
        if index is not None and (best is None or index < best):
            best = index
        pos = strtab.find(needle, pos + 1)
    return best


def _open(path: str) -> tuple[int, int]:
    """An open descriptor of a regular, non-empty file and its size; errors in words."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ModuleFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ModuleFileError(f"{path} is a directory, not a kernel module file") from None
    except OSError as exc:
        raise ModuleFileError(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not os.path.stat.S_ISREG(st.st_mode):
            kind = "a directory" if os.path.stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ModuleFileError(f"{path} is {kind}, not a kernel module file")
        if st.st_size == 0:
            raise ModuleFileError(f"{path} is empty (0 bytes): not a kernel module")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _read_all(fd: int, path: str) -> bytes:
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError as exc:
        raise ModuleFileError(f"cannot read {path}: {exc.strerror}") from None


def _expand(raw: bytes, path: str) -> tuple[bytes, str]:
    """Decompress ``raw`` when its magic bytes say it is compressed."""
    kind = compression_of(raw[:8])
    if kind == "none":
        return raw, kind
    try:
        data = decompress(raw, kind, path)
    except DecompressError as exc:
        raise ModuleFileError(str(exc)) from None
    if not data:
        raise ModuleFileError(f"{path} decompresses to nothing ({kind}): not a kernel module")
    return data, kind


def _load_whole(path: str) -> tuple[bytes, str, int]:
    """The whole module (decompressed), its compression and the file's size on disk."""
    fd, size = _open(path)
    try:
        raw = _read_all(fd, path)
    finally:
        os.close(fd)
    data, kind = _expand(raw, path)
    return data, kind, size


def read_module(path: str) -> ModuleFile:
    """Parse the module file at ``path`` (plain or gzip/xz/zstd-compressed, found by magic).

    A plain file is not read whole: its first 16 KiB, then the section table, the few sections
    wanted and the signature trailer by ``pread``.
    """
    path = os.fspath(path)
    fd, size = _open(path)
    try:
        try:
            view = _FileView(fd, size)
        except OSError as exc:
            raise ModuleFileError(f"cannot read {path}: {exc.strerror}") from None
        kind = compression_of(view.data[:8])
        if kind == "none":
            try:
                return ModuleFile(path, view, kind, size)
            except OSError as exc:
                raise ModuleFileError(f"cannot read {path}: {exc.strerror}") from None
        if len(view.data) < size:  # pread left the file offset at 0: go on after the head
            os.lseek(fd, len(view.data), os.SEEK_SET)
            raw = view.data + _read_all(fd, path)
        else:
            raw = view.data
    finally:
        os.close(fd)
    data, kind = _expand(raw, path)
    return ModuleFile(path, data, kind, size)


def read_module_bytes(data: bytes, path: str = "<bytes>") -> ModuleFile:
    """Parse a module already in memory (plain or compressed)."""
    if not data:
        raise ModuleFileError(f"{path} is empty (0 bytes): not a kernel module")
    data, kind = _expand(bytes(data), path)
    return ModuleFile(path, data, kind, len(data))
