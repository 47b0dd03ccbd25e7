"""Fixtures for the security tests: the serving tests' tiny trained Rasa bot (``serving_bot_model``)."""
from __future__ import annotations

from serving.conftest import serving_bot_model  # noqa: F401 - fixture
