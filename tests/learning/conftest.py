from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest

from nebras_bot.data.prepare import write_split
from nebras_bot.data.records import Dialogue, Turn
from nebras_bot.support import db
from nebras_bot.support.service import SupportService, reset_services



@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    monkeypatch.setenv("NEBRAS_DB_URL", f"sqlite:///{tmp_path / 'support.db'}")
    monkeypatch.delenv("NEBRAS_LEARN_TRACKER_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    reset_services()
    yield tmp_path
    reset_services()


@pytest.fixture
def support(home) -> SupportService:
    return SupportService(db.connect())


def exchange(did: str, intent: str, user: str, agent: str, source: str = "bitext") -> Dialogue:
    return Dialogue(id=did, source=source, turns=[Turn(role="user", text=user, intent=intent),
                                                  Turn(role="agent", text=agent)])


def write_dataset(directory: Path, splits: Dict[str, List[Dialogue]]) -> Path:
    """A dataset directory shaped like ``nebras data prepare`` output."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, dialogues in splits.items():
        write_split(directory, name, dialogues)
    (directory / "data_card.json").write_text(json.dumps({"version": directory.name, "dialogues_per_split": {
        k: len(v) for k, v in splits.items()}}), encoding="utf-8")
    (directory / "data_card.md").write_text(f"# Data card: dataset {directory.name}\n", encoding="utf-8")
    return directory


@pytest.fixture
def base_dataset(home) -> Path:
    train = [exchange(f"b{i}", "track_order", f"where is my order number {i}?", "Your order {order_id} is on its way.")
             for i in range(6)]
    train += [exchange("c1", "cancel_order", "cancel my order", "I can cancel it for you; which order is it?")]
    validation = [exchange("v1", "track_order", "where is my parcel", "Your order {order_id} is on its way.")]
    test = [exchange("t1", "cancel_order", "please cancel it", "I can cancel it for you; which order is it?")]
    return write_dataset(home / "models" / "datasets" / "base000000", {"train": train, "validation": validation,
                                                                    "test": test})
