from __future__ import annotations

import os

from ansible_collections.vermagic.kmod.plugins.module_utils._kmsg import (
    KernelLog, diff_lines, parse_records, unescape)


def record(seq: int, text: str, level: int = 6) -> bytes:
    return f"{level},{seq},{seq * 1000},-;{text}\n SUBSYSTEM=module\n DEVICE=+module:hello\n".encode()


def test_records_are_parsed_and_continuations_dropped():
    data = record(1, "hello: loading out-of-tree module taints kernel.", 4) + \
        record(2, r"hello: tab\x09and backslash\x5c")
    got = parse_records(data)
    assert [(r.level, r.seq, r.text) for r in got] == [
        (4, 1, "hello: loading out-of-tree module taints kernel."),
        (6, 2, "hello: tab\tand backslash\\")]
    assert parse_records(b"garbage without separator\n") == []
    assert parse_records(b"x,y,z;text\n") == []
    assert unescape(r"\x41\x42") == "AB"


def test_only_records_after_start_are_returned(tmp_path):
    # a regular file behaves like /dev/kmsg for SEEK_END and appended records
    kmsg = tmp_path / "kmsg"
    kmsg.write_bytes(record(1, "old news"))
    log = KernelLog(str(kmsg)).start()
    assert log.source == "kmsg"
    with open(kmsg, "ab") as handle:
        handle.write(record(2, "hello: first"))
    assert log.drain() == ["hello: first"]
    with open(kmsg, "ab") as handle:
        handle.write(record(3, "hello: second") + record(4, "hello: third"))
    assert log.drain() == ["hello: second", "hello: third"]
    assert log.drain() == []
    assert log.lines == ["hello: first", "hello: second", "hello: third"]
    log.close()


def test_the_real_dev_kmsg_starts_at_the_end():
    if not os.access("/dev/kmsg", os.R_OK):
        return
    with KernelLog() as log:
        assert log.source == "kmsg"
        assert isinstance(log.drain(), list)  # EAGAIN at the end: no old records come back


def test_dmesg_is_the_fallback(tmp_path):
    outputs = iter([(0, "[1.0] a\n[2.0] b\n", ""), (0, "[1.0] a\n[2.0] b\n[3.0] c\n", ""),
                    (0, "[2.0] b\n[3.0] c\n[4.0] d\n", "")])
    calls = []

    def run(argv):
        calls.append(argv)
        return next(outputs)

    log = KernelLog(str(tmp_path / "no-kmsg"), run=run).start()
    assert log.source == "dmesg" and "no-kmsg" in log.reason
    assert log.drain() == ["[3.0] c"]
    assert log.drain() == ["[4.0] d"]  # the ring buffer dropped "a": still only the new line
    assert calls == [["dmesg"]] * 3


def test_nothing_readable_says_why(tmp_path):
    def refused(argv):
        return 1, "", "dmesg: read kernel buffer failed: Operation not permitted"

    log = KernelLog(str(tmp_path / "no-kmsg"), run=refused).start()
    assert log.source is None
    assert "Operation not permitted" in log.reason
    assert log.drain() == []


def test_diff_lines():
    assert diff_lines([], ["a"]) == ["a"]
    assert diff_lines(["a", "b"], ["a", "b", "c"]) == ["c"]
    assert diff_lines(["a", "b"], ["b", "c"]) == ["c"]
    assert diff_lines(["a", "b"], ["x", "y"]) == ["x", "y"]
