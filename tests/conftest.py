"""Fixtures for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.metrics import MetricsProbe


@pytest.fixture
def recorded() -> MetricsProbe:
    """The metrics this test records (a fresh registry, bound for the test)."""
    return MetricsProbe()


@pytest.fixture
def settings_env_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the process environment and ./.env: start from neither, with the data
    directory under the test's tmp_path."""
    for name in list(os.environ):
        if name.startswith("WHATSRAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHATSRAY_DATA_DIR", str(tmp_path / "data"))
