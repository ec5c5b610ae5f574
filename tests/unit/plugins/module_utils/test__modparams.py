from __future__ import annotations

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._modparams import (
    ParamsError, kernel_int, kstrtobool, parse_params, split_kernel_args, to_argv, to_line,
    values_equal)


def test_dict_values_become_kernel_syntax():
    pairs = parse_params({"greeting": "hello world", "repeat": 2, "debug": True, "quiet": False,
                          "ids": [1, 2, 3], "empty": ""})
    assert pairs == [("greeting", "hello world"), ("repeat", "2"), ("debug", "1"),
                     ("quiet", "0"), ("ids", "1,2,3"), ("empty", "")]
    assert to_argv(pairs) == ['greeting="hello world"', "repeat=2", "debug=1", "quiet=0",
                              "ids=1,2,3", 'empty=""']
    assert to_line(pairs) == 'greeting="hello world" repeat=2 debug=1 quiet=0 ids=1,2,3 empty=""'


def test_string_is_split_like_the_kernel_next_arg():
    assert split_kernel_args(' a=1  b="x y"\tc "d=e f" ') == ["a=1", 'b="x y"', "c", '"d=e f"']
    assert parse_params('greeting="hello world" repeat=3 flag "name=a b"') == [
        ("greeting", "hello world"), ("repeat", "3"), ("flag", None), ("name", "a b")]
    assert parse_params("x=1 y z=") == [("x", "1"), ("y", None), ("z", "")]
    # round trip: what we hand to insmod parses back to the same pairs
    pairs = parse_params({"greeting": "a b  c", "repeat": 1})
    assert parse_params(to_line(pairs)) == pairs


def test_nothing_is_no_params():
    assert parse_params(None) == [] and parse_params("") == [] and parse_params({}) == []


@pytest.mark.parametrize("params, words", [
    ({"bad-name": 1}, "letters, digits and underscores"),
    ({"a.b": 1}, "letters, digits and underscores"),
    ({"greeting": "two\nlines"}, "newline"),
    ("greeting=a\nrepeat=2", "newline"),
    ({"greeting": 'say "hi"'}, "double quote"),
    ('greeting="unbalanced', "unbalanced"),
    ({"ratio": 1.5}, "float"),
    ({"greeting": None}, "no value"),
    ({"ids": []}, "empty list"),
    ({"greeting": {"a": 1}}, "type dict"),
    (["greeting=1"], "dictionary or a string"),
    ("repeat=1 repeat=2", "given twice"),
    ({"nul": "a\0b"}, "NUL"),
])
def test_bad_params_say_what_is_wrong(params, words):
    with pytest.raises(ParamsError, match=words):
        parse_params(params)


def test_kstrtobool_and_kernel_int_follow_the_kernel():
    assert [kstrtobool(s) for s in ("Y", "yes", "1", "on", "N", "0", "off", "f", "", "x", "o")] \
        == [True, True, True, True, False, False, False, False, None, None, None]
    assert [kernel_int(s) for s in ("10", "0x10", "010", "-5", "+7", "0", "zz", "")] \
        == [10, 16, 8, -5, 7, 0, None, None]


@pytest.mark.parametrize("asked, shown, ptype, equal", [
    ("1", "Y", "bool", True), ("true", "Y", "bool", True), ("0", "N", "bool", True),
    ("1", "N", "bool", False), (None, "Y", "bool", True), ("y", "Y", "invbool", True),
    ("0x10", "16", "int", True), ("010", "8", "uint", True), ("17", "16", "int", False),
    ("255", "255", "byte", True), ("-1", "255", "byte", True),
    ("16", "0x00000010", "hexint", True),
    ("hi", "hi", "charp", True), ("hi", "hello", "charp", False), ("1", "01", "charp", False),
    ("1,2,3", "1,2,3", "array of int", True), ("1,0x2", "1,2", "array of int", True),
    ("1,2", "1,2,3", "array of int", False), ("1,N", "Y,N", "array of bool", True),
    ("1", "Y", None, True), ("5", "5", None, True), ("0x5", "5", None, True),
    ("abc", "abd", None, False), ("x", "y", "custom", False),
])
def test_values_compare_by_type(asked, shown, ptype, equal):
    assert values_equal(asked, shown, ptype) is equal
