from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The action server imports ``actions`` from the project root (``rasa run actions``); so do the tests.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from nebras_bot.support import db
from nebras_bot.support.service import SupportService, reset_services
from nebras_bot.support.settings import SupportSettings


@pytest.fixture
def settings(tmp_path, monkeypatch) -> SupportSettings:
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    monkeypatch.setenv("NEBRAS_DB_URL", f"sqlite:///{tmp_path / 'support.db'}")
    monkeypatch.setenv("NEBRAS_DB_RETRY_SECONDS", "2")
    reset_services()
    yield SupportSettings()
    reset_services()


@pytest.fixture
def engine(settings):
    return db.connect(settings=settings)


@pytest.fixture
def support(engine, settings) -> SupportService:
    return SupportService(engine, settings)
