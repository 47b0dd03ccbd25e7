"""``nebras data prepare`` end to end on small fixtures (no Bitext copy: hand-written rows)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from nebras_bot.cli import main
from nebras_bot.data import pii
from nebras_bot.data.prepare import CSV_COLUMNS, prepare
from nebras_bot.data.records import read_jsonl
from nebras_bot.data.settings import DataSettings
from nebras_bot.data.sources import story_dialogues

FIXTURES = Path(__file__).parent / "fixtures"
RASA = FIXTURES / "rasa"


@pytest.fixture()
def bitext_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bitext"
    directory.mkdir()
    (directory / "responses.csv").write_text((FIXTURES / "bitext_small.csv").read_text())
    return directory


def test_story_dialogues_use_domain_responses_and_nlu_examples() -> None:
    dialogues = list(story_dialogues(RASA / "domain.yml", [RASA / "data"], seed=1))
    assert len(dialogues) == 1  # the custom-action-only story has no text exchange; rules are skipped
    turns = dialogues[0].turns
    assert [t.role for t in turns] == ["user", "agent", "user", "agent"]
    assert turns[0].text in ("hi", "hello there")
    assert turns[1].text == "Hello! How can I help?"
    assert turns[2].text == "where is order 777" and turns[2].entities == {"order_id": "777"}
    assert turns[3].text == "Order {order_id} is on its way."
    assert dialogues[0].slots == {"order_id": "777"}


def test_prepare_writes_a_versioned_clean_dataset(bitext_dir: Path, tmp_path: Path) -> None:
    settings = DataSettings(validation_fraction=0.2, test_fraction=0.2)
    out = tmp_path / "datasets"
    dataset = prepare(bitext_dir, out, settings, domain=RASA / "domain.yml", stories=[RASA / "data"])
    directory = dataset.directory
    assert directory == out / dataset.version
    for name in ("train", "validation", "test"):
        assert (directory / f"{name}.jsonl").is_file() and (directory / f"{name}.csv").is_file()
    card = json.loads((directory / "data_card.json").read_text())
    assert card["removed"] == {"exact_duplicate": 2, "reply_too_short": 1}
    assert card["raw_dialogues_per_source"] == {"bitext": 18, "rasa_stories": 1}
    assert sum(card["dialogues_per_split"].values()) == 16
    assert set(card["per_intent"]) == {"track_order", "get_refund", "switch_account", "greet"}
    assert "CDLA-Sharing-1.0" in (directory / "data_card.md").read_text()

    everything = ""
    for name in ("train", "validation", "test"):
        text = (directory / f"{name}.jsonl").read_text()
        everything += text
        for dialogue in read_jsonl(text.splitlines()):
            for turn in dialogue.turns:
                assert not pii.contains_pii(turn.text), turn.text
                assert "{{" not in turn.text and "}}" not in turn.text
    assert "jane.doe@example.com" not in everything and "[EMAIL]" in everything
    assert "{order_id}" in everything and "{account_type}" in everything

    rows = [row for name in ("train", "validation", "test") for row in csv.DictReader((directory / f"{name}.csv").open())]
    assert rows and list(rows[0].keys()) == list(CSV_COLUMNS)
    for row in rows:  # references read like real replies: the message's values filled in
        assert not re.search(r"\{[a-z_]+\}", row["response"]), row["response"]
        if row["entity_value"]:
            start, end = int(row["start_offset"]), int(row["end_offset"])
            assert row["instruction"][start:end] == row["entity_value"]

    again = prepare(bitext_dir, out, settings, domain=RASA / "domain.yml", stories=[RASA / "data"])
    assert again.version == dataset.version  # content hash: same inputs, same version
    other = prepare(bitext_dir, out, DataSettings(validation_fraction=0.2, test_fraction=0.2, seed=99),
                    domain=RASA / "domain.yml", stories=[RASA / "data"])
    assert other.version != dataset.version


def test_prepare_cli_and_clear_errors(bitext_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "prepare", "--bitext", str(bitext_dir), "--out", str(tmp_path / "d"), "--no-stories"]) == 0
    assert "dataset " in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare(tmp_path / "missing", tmp_path / "d")
    with pytest.raises(ValueError, match="no dialogues"):
        prepare(None, tmp_path / "d", DataSettings(include_stories=False))
