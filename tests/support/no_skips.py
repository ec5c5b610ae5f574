"""pytest plugin for the test stages (``-p tests.support.no_skips``): a skipped test fails the run.

A test that skips has proven nothing; in CI every test's preconditions are installed, so a skip
means something is missing that should not be.
"""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if not skipped or session.exitstatus != 0:
        return
    reporter.ensure_newline()
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reporter.write_line(f"SKIPPED, which fails this stage: {report.nodeid}: {reason}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
