"""Fixtures for every test."""

from __future__ import annotations

import pytest

from tests.support.metrics import MetricsProbe


@pytest.fixture
def recorded() -> MetricsProbe:
    """The metrics this test records (a fresh registry, bound for the test)."""
    return MetricsProbe()
