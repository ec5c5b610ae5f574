"""The log diagnosis on logs recorded from real kbuild runs (Debian 6.1 headers and source).

The logs in ``kbuild_logs/`` were made on this machine with Debian's linux-headers-6.1.0-56 and
linux-source-6.1 (paths shortened; LC_ALL=C LANG=C, as kbuild runs make, except
``missing_compiler.log``, made in C.UTF-8): make's own output, unedited otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.vermagic.kmod.plugins.module_utils._build_diagnosis import (
    ERROR,
    WARNING,
    diagnose,
    tail,
)

LOGS = Path(__file__).parent / "kbuild_logs"


def _codes(name: str, **kw):
    return [(f.code, f.severity) for f in diagnose((LOGS / name).read_text(), **kw)]


def test_a_clean_build_has_no_findings():
    assert _codes("headers_ok.log", modversions=True) == []


@pytest.mark.parametrize("log, code, severity, words, line", [
    ("missing_tree.log", "missing_tree", ERROR, "/nonexistent/build does not exist",
     "make: *** /nonexistent/build: No such file or directory.  Stop."),
    ("unprepared.log", "unprepared_tree", ERROR, "not prepared", "ERROR: Kernel configuration is invalid."),
    ("missing_compiler.log", "missing_compiler", ERROR, "'gcc-99'", "/bin/sh: 1: gcc-99: not found"),
    ("compile_error.log", "compile_error", ERROR, "/srv/hello/hello.c:41: expected",
     "/srv/hello/hello.c:41:17: error: expected ';' before '}' token"),
    ("no_license.log", "modpost_error", ERROR, "missing MODULE_LICENSE()",
     "ERROR: modpost: missing MODULE_LICENSE() in /srv/hello/hello.o"),
    ("undefined_symbol.log", "undefined_symbols", ERROR, "no_such_symbol",
     'ERROR: modpost: "no_such_symbol" [/srv/hello/hello.ko] undefined!'),
    ("no_kbuild.log", "no_kbuild_file", ERROR, "/srv/hello/Makefile does not exist",
     "/usr/src/linux-headers-6.1.0-56-common/scripts/Makefile.build:44: /srv/hello/Makefile: "
     "No such file or directory"),
])
def test_failures_are_explained_by_their_first_cause(log, code, severity, words, line):
    findings = diagnose((LOGS / log).read_text(), modversions=True, failed=True)
    assert findings, log
    first = findings[0]
    assert (first.code, first.severity) == (code, severity)
    assert words in first.msg
    assert first.line == line
    assert first.fix
    assert "make_error" not in [f.code for f in findings]  # a specific cause was found


def test_missing_symvers_is_a_warning_that_says_the_module_is_refused():
    findings = diagnose((LOGS / "missing_symvers.log").read_text(), modversions=True)
    assert [(f.code, f.severity) for f in findings] == [("missing_symvers", WARNING)]
    assert "refuses the module: 'no symbol version for module_layout'" in findings[0].msg
    assert "vermagic.kmod.symvers" in findings[0].fix
    assert findings[0].line == "WARNING: Module.symvers is missing."
    # the six "undefined!" warnings that follow are the same cause, not another finding
    unknown = diagnose((LOGS / "missing_symvers.log").read_text(), modversions=None)[0].msg
    assert "on a kernel with CONFIG_MODVERSIONS it is refused" in unknown
    plain = diagnose((LOGS / "missing_symvers.log").read_text(), modversions=False)[0].msg
    assert "not checked" in plain


@pytest.mark.parametrize("log", [
    # 2.6.x to 5.x
    "WARNING: Symbol version dump ./Module.symvers\n"
    "           is missing; modules will have no dependencies and modversions.\n",
    "WARNING: Symbol version dump /usr/src/linux/Module.symvers is missing; modules will have no "
    "dependencies and modversions.\n",
    # 5.x
    "WARNING: modpost: Symbol info of vmlinux is missing. Unresolved symbol check will be "
    "entirely skipped.\n",
])
def test_other_kernels_wordings_of_missing_symvers(log):
    assert [f.code for f in diagnose(log, modversions=True)] == ["missing_symvers"]


def test_undefined_symbols_warning_when_symvers_exists_but_lacks_them():
    log = 'WARNING: modpost: "foo_register" [/srv/x/x.ko] undefined!\n' \
          'WARNING: modpost: "foo_unregister" [/srv/x/x.ko] undefined!\n'
    (finding,) = diagnose(log, modversions=True)
    assert (finding.code, finding.severity) == ("undefined_symbols", WARNING)
    assert "foo_register, foo_unregister" in finding.msg and "Unknown symbol" in finding.msg
    assert "extra_symbols" in finding.fix


def test_compiler_named_differently_with_the_same_version_is_called_harmless():
    (finding,) = diagnose((LOGS / "compiler_mismatch.log").read_text())
    assert (finding.code, finding.severity) == ("compiler_mismatch", WARNING)
    assert "same version text" in finding.msg and "harmless" in finding.msg
    assert finding.fix == "give cc: gcc-12 to silence it"


def test_compiler_of_another_version_is_a_real_mismatch():
    log = ("warning: the compiler differs from the one used to build the kernel\n"
           "  The kernel was built by: gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\n"
           "  You are using:           gcc-11 (Debian 11.3.0-12) 11.3.0\n")
    (finding,) = diagnose(log)
    assert finding.msg == ("the compiler differs from the one that built the kernel: the kernel "
                           "was built by 'gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0', this build "
                           "uses 'gcc-11 (Debian 11.3.0-12) 11.3.0'")
    assert "gcc-12" in finding.fix


def test_unknown_option_from_an_older_compiler():
    log = "gcc-10: error: unrecognized command-line option '-mfunction-return=thunk-extern'\n"
    (finding,) = diagnose(log, failed=True)
    assert finding.code == "compile_error" and "CONFIG_CC_VERSION_TEXT" in finding.fix


def test_config_errors():
    log = '***\n*** Configuration file ".config" not found!\n***\n'
    assert [f.code for f in diagnose(log, failed=True)] == ["config_error"]


def test_unexplained_failure_gets_the_make_stop_line():
    log = "make: *** No rule to make target 'modules_prepare'.  Stop.\n"
    (finding,) = diagnose(log, failed=True)
    assert finding.code == "make_error"
    assert finding.line == "make: *** No rule to make target 'modules_prepare'.  Stop."
    assert diagnose(log, failed=False) == []


def test_tail():
    assert tail("a\nb\nc\n", 2) == ["b", "c"]
    assert tail("a\nb\n", 10) == ["a", "b"]
    assert tail("a\n", 0) == []
