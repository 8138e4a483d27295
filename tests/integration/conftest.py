"""Fixtures the integration tests share beyond those of tests/conftest.py."""

from __future__ import annotations

import pytest

from engine.runtime.settings import Settings

# The real-browser fixtures, for every test here that drives chromium.
from tests.integration.browser import browser, page  # noqa: F401
from tests.integration.workers import apply_topics


@pytest.fixture
def intake_settings(kafka_settings: Settings, redis_url: str) -> Settings:
    """Kafka and Redis of the session, with the real topics under this test's prefix."""
    settings = kafka_settings.with_(redis_url=redis_url)
    apply_topics(settings)
    return settings
