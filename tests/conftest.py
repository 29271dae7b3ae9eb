from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _loopsvc_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="loopsvc")


pytest_plugins = ["pytester"]
