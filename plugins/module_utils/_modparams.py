# Copyright (c) vermagic.kmod contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Module parameters: from what a user writes to the kernel's syntax, and back from sysfs.

The kernel parses a module's argument string with ``parse_args()``/``next_arg()``
(kernel/params.c): words are split on white space outside double quotes, ``name=value`` or a
bare ``name`` (a bool set to true), and the quotes around a value are removed. There is no escape
for a double quote inside a value. kmod's ``insmod`` joins its arguments with single spaces and
adds no quotes, so each argument handed to it must already be in that syntax.

What sysfs shows under ``/sys/module/<name>/parameters/`` is the parameter's ``get`` function's
output: ``Y``/``N`` for bool, decimal for the integer types, ``0x%08x`` for hexint, a
comma-separated list for arrays, the text for charp/string. ``values_equal`` compares a requested
value with such a text by the parameter's type (the ``parmtype`` modinfo field).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

PARAM_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
INTEGER_TYPES = ("byte", "short", "ushort", "int", "uint", "long", "ulong", "ullong", "hexint")


class ParamsError(ValueError):
    """Parameters that cannot be handed to the kernel; the message says which and why."""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not PARAM_NAME.match(name):
        raise ParamsError(f"parameter name {name!r} is not valid: a module parameter name is made "
                          "of letters, digits and underscores only")


def _check_value(name: str, value: str) -> None:
    for bad, words in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL byte")):
        if bad in value:
            raise ParamsError(f"the value of parameter {name} contains {words}: the kernel's "
                              "argument string cannot carry it")
    if '"' in value:
        raise ParamsError(f"the value of parameter {name} contains a double quote: the kernel's "
                          "argument parser has no escape for it (kernel/params.c next_arg)")


def _scalar(name: str, value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ParamsError(f"parameter {name} is a float ({value}): the kernel has no floating "
                          "point parameters; give an integer or a string")
    if isinstance(value, str):
        return value
    raise ParamsError(f"parameter {name} has a value of type {type(value).__name__}: give a "
                      "string, an integer, a boolean or a list of those")


def split_kernel_args(text: str) -> list[str]:
    """Split an argument string into words the way ``next_arg()`` does (quotes kept)."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        start, in_quote = i, False
        while i < n and (in_quote or not text[i].isspace()):
            if text[i] == '"':
                in_quote = not in_quote
            i += 1
        if in_quote:
            raise ParamsError(f"unbalanced double quote in parameters: {text[start:]!r}")
        words.append(text[start:i])
    return words


def _parse_word(word: str) -> tuple[str, str | None]:
    if word.startswith('"') and word.endswith('"') and len(word) >= 2 and word.count('"') == 2:
        word = word[1:-1]  # "name=value with spaces"
    name, sep, value = word.partition("=")
    if not sep:
        _check_name(name)
        return name, None
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    _check_name(name)
    _check_value(name, value)
    return name, value


def parse_params(params: Any) -> list[tuple[str, str | None]]:
    """Normalise ``params`` (a dict, a kernel-syntax string, or None) to ``[(name, value)]``.

    A value of None is a bare ``name`` (a bool parameter set to true). A dict's values may be
    strings, integers, booleans (``1``/``0``) or lists of those (comma-joined, as the kernel's
    array parameters take them). A name given twice is refused: the kernel would keep the last.
    """
    if params is None or params == "" or params == {}:
        return []
    pairs: list[tuple[str, str | None]] = []
    if isinstance(params, str):
        for bad, words in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL byte")):
            if bad in params:
                raise ParamsError(f"the parameter string contains {words}; give the parameters "
                                  "on one line, or as a dictionary")
        pairs = [_parse_word(word) for word in split_kernel_args(params)]
    elif isinstance(params, Mapping):
        for name, value in params.items():
            _check_name(name)
            if value is None:
                raise ParamsError(f"parameter {name} has no value; give true for a bare flag")
            if isinstance(value, (list, tuple)):
                if not value:
                    raise ParamsError(f"parameter {name} is an empty list: an array parameter "
                                      "needs at least one element (leave it out instead)")
                text = ",".join(_scalar(name, item) for item in value)
            else:
                text = _scalar(name, value)
            _check_value(name, text)
            pairs.append((name, text))
    else:
        raise ParamsError(f"params must be a dictionary or a string, not {type(params).__name__}")
    seen: set[str] = set()
    for name, _value in pairs:
        if name in seen:
            raise ParamsError(f"parameter {name} is given twice")
        seen.add(name)
    return pairs


def format_word(name: str, value: str | None) -> str:
    """One argument in kernel syntax: ``name``, ``name=value`` or ``name="value with spaces"``."""
    if value is None:
        return name
    if value == "" or any(ch.isspace() for ch in value):
        return f'{name}="{value}"'
    return f"{name}={value}"


def to_argv(pairs: list[tuple[str, str | None]]) -> list[str]:
    return [format_word(name, value) for name, value in pairs]


def to_line(pairs: list[tuple[str, str | None]]) -> str:
    """The argument string, as an ``options`` line of modprobe.d or the kernel receives it."""
    return " ".join(to_argv(pairs))


def as_dict(pairs: list[tuple[str, str | None]]) -> dict[str, str | None]:
    return dict(pairs)


def kstrtobool(text: str) -> bool | None:
    """The kernel's ``kstrtobool()`` (lib/kstrtox.c): None where it would return -EINVAL."""
    if not text:
        return None
    first = text[0]
    if first in "yYtT1":
        return True
    if first in "nNfF0":
        return False
    if first in "oO" and len(text) > 1:
        if text[1] in "nN":
            return True
        if text[1] in "fF":
            return False
    return None


def kernel_int(text: str) -> int | None:
    """An integer as ``kstrtol(s, 0, …)`` reads it (``0x`` hex, leading ``0`` octal), or None."""
    text = text.strip()
    sign = 1
    if text.startswith(("+", "-")):
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    try:
        if text[:2].lower() == "0x":
            return sign * int(text[2:], 16)
        if len(text) > 1 and text[0] == "0":
            return sign * int(text[1:], 8)
        return sign * int(text, 10)
    except ValueError:
        return None


def _scalar_equal(asked: str | None, shown: str, base_type: str) -> bool:
    if base_type in ("bool", "invbool") or (asked is None):
        want = True if asked is None else kstrtobool(asked)
        have = kstrtobool(shown)
        return want is not None and want == have
    if base_type in INTEGER_TYPES:
        want_int, have_int = kernel_int(asked), kernel_int(shown)
        if want_int is not None and have_int is not None:
            if base_type == "byte":  # param_get_byte prints an unsigned char
                return want_int % 256 == have_int
            return want_int == have_int
    return asked == shown


def values_equal(asked: str | None, shown: str, ptype: str | None) -> bool:
    """Whether the loaded value ``shown`` (sysfs text) is what ``asked`` would have set.

    ``ptype`` is the parameter's ``parmtype`` (``int``, ``charp``, ``array of int``, …) or None;
    a type this does not know is compared as text.
    """
    ptype = (ptype or "").strip()
    if ptype.startswith("array of "):
        base = ptype[len("array of "):]
        if asked is None:
            return False
        want, have = asked.split(","), shown.split(",")
        return len(want) == len(have) and all(
            _scalar_equal(w, h, base) for w, h in zip(want, have))
    if asked == shown:
        return True
    if not ptype:
        # no type known: a bool shows as Y/N, an integer as decimal
        if shown in ("Y", "N"):
            return _scalar_equal(asked, shown, "bool")
        if asked is not None and kernel_int(shown) is not None:
            return _scalar_equal(asked, shown, "long")
        return False
    return _scalar_equal(asked, shown, ptype)
