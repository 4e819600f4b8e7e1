"""Shared pytest configuration."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """Under CI, an engine test that skips has failed: CI must never pass without the engine."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and "tests/engine/" in item.nodeid:
        report.outcome = "failed"
        report.longrepr = f"engine test skipped under CI: {report.longrepr}"
