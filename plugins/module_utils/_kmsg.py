# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The kernel log lines written while an operation runs.

``/dev/kmsg`` (Documentation/ABI/testing/dev-kmsg): opened for reading, ``lseek(SEEK_END)`` puts
the reader after the newest record, and each ``read()`` then returns one record,
``"<prefix>,<seq>,<usec>,<flags>[,…];<text>\\n"`` followed by continuation lines that start with a
space (``" SUBSYSTEM=…"``). Non-printable bytes in the text are escaped as ``\\xNN``. With
O_NONBLOCK a read at the end fails with EAGAIN; EPIPE means records were overwritten before they
were read (the reader then continues with the oldest record still there).

Where ``/dev/kmsg`` cannot be read (a container, a restricted host), ``dmesg`` is run before and
after and the new lines are the difference.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Callable

KMSG = "/dev/kmsg"
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")

Runner = Callable[[list], "tuple[int, str, str]"]


@dataclass(frozen=True)
class Record:
    level: int
    seq: int
    usec: int
    text: str


def unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def parse_records(data: bytes) -> list[Record]:
    """Records in ``data`` (one ``read()`` of /dev/kmsg, or several records in a row)."""
    records: list[Record] = []
    for line in data.decode("utf-8", "replace").split("\n"):
        if not line or line.startswith(" "):
            continue  # continuation (dictionary) lines
        prefix, sep, text = line.partition(";")
        if not sep:
            continue
        fields = prefix.split(",")
        try:
            level = int(fields[0]) & 7
            seq = int(fields[1]) if len(fields) > 1 else 0
            usec = int(fields[2]) if len(fields) > 2 else 0
        except ValueError:
            continue
        records.append(Record(level, seq, usec, unescape(text)))
    return records


class KernelLog:
    """Collects the kernel log lines written after ``start()``; ``drain()`` returns the new ones.

    ``source`` tells how: ``kmsg``, ``dmesg``, or None when neither could be read (``reason``
    then says why).
    """

    def __init__(self, kmsg: str = KMSG, run: Runner | None = None, dmesg: str | None = "dmesg"):
        self.kmsg = kmsg
        self.run = run
        self.dmesg = dmesg
        self.fd: int | None = None
        self.source: str | None = None
        self.reason: str | None = None
        self._baseline: list[str] = []
        self.lines: list[str] = []

    def start(self) -> "KernelLog":
        try:
            self.fd = os.open(self.kmsg, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
            self.source = "kmsg"
            return self
        except OSError as exc:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            self.reason = f"{self.kmsg}: {exc.strerror}"
        baseline = self._dmesg()
        if baseline is not None:
            self._baseline = baseline
            self.source = "dmesg"
        return self

    def _dmesg(self) -> list[str] | None:
        if self.run is None or not self.dmesg:
            return None
        rc, out, err = self.run([self.dmesg])
        if rc != 0:
            self.reason = f"{self.reason}; dmesg: {err.strip() or f'exit {rc}'}"
            return None
        return out.splitlines()

    def drain(self) -> list[str]:
        """The lines written since the last drain (or start), oldest first."""
        new: list[str] = []
        if self.source == "kmsg" and self.fd is not None:
            while True:
                try:
                    data = os.read(self.fd, 16384)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        new.append("(kernel log records were overwritten before they were read)")
                        continue
                    if exc.errno == errno.EAGAIN:
                        break
                    raise
                if not data:
                    break
                new.extend(record.text for record in parse_records(data))
        elif self.source == "dmesg":
            after = self._dmesg()
            if after is not None:
                new = diff_lines(self._baseline, after)
                self._baseline = after
        self.lines.extend(new)
        return new

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "KernelLog":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def diff_lines(before: list[str], after: list[str]) -> list[str]:
    """The lines of ``after`` that follow what ``before`` ended with (the ring buffer may rotate)."""
    if not before:
        return list(after)
    if after[:len(before)] == before:
        return after[len(before):]
    last = before[-1]
    for index in range(len(after) - 1, -1, -1):
        if after[index] == last:
            return after[index + 1:]
    seen = set(before)
    return [line for line in after if line not in seen]
