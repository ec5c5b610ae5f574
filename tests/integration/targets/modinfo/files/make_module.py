"""Write a minimal module-shaped ELF file (x86_64 ET_REL with .modinfo, __versions and
.gnu.linkonce.this_module) for the modinfo target, when no real kernel module is cached.

    make_module.py DEST [VERMAGIC]
"""

import struct
import sys

dest = sys.argv[1]
vermagic = sys.argv[2] if len(sys.argv) > 2 else "6.1.0-56-amd64 SMP preempt mod_unload modversions "
modinfo = b"".join(s.encode() + b"\0" for s in (
    "license=GPL", "description=integration target fixture", "alias=fixture-alias",
    "srcversion=0123456789ABCDEF0123456", "depends=", "name=fixture", "vermagic=" + vermagic))
versions = b"".join(struct.pack("<Q", crc) + name.ljust(56, b"\0")
                    for crc, name in ((0x0B4C6AC4, b"module_layout"), (0x92997ED8, b"_printk")))
this_module = bytearray(0x380)
this_module[24:31] = b"fixture"
sections = [(b".modinfo", modinfo), (b"__versions", versions),
            (b".gnu.linkonce.this_module", bytes(this_module))]
names = b"\0" + b"".join(name + b"\0" for name, _data in sections) + b".shstrtab\0"
body, headers, name_at = b"", [], 1
for name, data in sections + [(b".shstrtab", names)]:
    headers.append((name_at, 64 + len(body), len(data)))
    name_at += len(name) + 1
    body += data
shoff = 64 + len(body)
elf = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
       + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                     len(headers) + 1, len(headers))
       + body + b"\0" * 64
       + b"".join(struct.pack("<IIQQQQIIQQ", n, 3 if i == len(headers) - 1 else 1, 0, 0, off,
                              size, 0, 0, 1, 0)
                  for i, (n, off, size) in enumerate(headers)))
with open(dest, "wb") as handle:
    handle.write(elf)
