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
    assert card["raw_dialogues_per_source"] == {"bitext": 18, "rasa_rules": 3, "rasa_stories": 1}
    assert sum(card["dialogues_per_split"].values()) == 19
    assert set(card["per_intent"]) == {"track_order", "get_refund", "switch_account", "greet", "out_of_scope"}
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


def test_prepare_cli_and_clear_errors(bitext_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("NEBRAS_BITEXT_DIR", raising=False)  # no --bitext means no Bitext (CI sets it)
    assert main(["data", "prepare", "--bitext", str(bitext_dir), "--out", str(tmp_path / "d"), "--no-stories"]) == 0
    assert "dataset " in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare(tmp_path / "missing", tmp_path / "d")
    with pytest.raises(ValueError, match="no dialogues"):
        prepare(None, tmp_path / "d", DataSettings(include_stories=False))


def test_domain_response_dialogues_pair_nlu_examples_with_utter_intent() -> None:
    from collections import Counter

    from nebras_bot.data.sources import domain_response_dialogues

    stats: Counter = Counter()
    dialogues = list(domain_response_dialogues(RASA / "domain.yml", [RASA / "data"], stats))
    pairs = sorted((d.turns[0].text, d.turns[0].intent, d.turns[1].text) for d in dialogues)
    assert pairs == [
        ("hello there", "greet", "Hello! How can I help?"),
        ("hi", "greet", "Hello! How can I help?"),
        ("where is order 12345", "track_order", "Order {order_id} is on its way."),
    ]
    assert {d.source for d in dialogues} == {"rasa_domain"}
    assert [d.slots for d in dialogues if d.turns[0].intent == "track_order"] == [{"order_id": "12345"}]
    # "where is my order" has no order id for the reply's {order_id}; inform and out_of_scope have
    # no utter_<intent>.
    assert stats == Counter(domain_response_missing_slot=1, domain_intent_without_response=2)


def test_rule_response_dialogues_teach_the_out_of_scope_reply() -> None:
    from collections import Counter

    from nebras_bot.data.sources import rule_response_dialogues

    stats: Counter = Counter()
    dialogues = list(rule_response_dialogues(RASA / "domain.yml", [RASA / "data"], ["utter_generative"], stats))
    pairs = [(d.turns[0].text, d.turns[0].intent, d.turns[1].text) for d in dialogues]
    # the variants in turn; the greet rule sends utter_greet, which is not asked for
    assert pairs == [
        ("tell me a joke", "out_of_scope", "Sorry, I can only help with orders."),
        ("what's the weather", "out_of_scope", "That is not something I can do; ask me about an order."),
        ("write me a poem", "out_of_scope", "Sorry, I can only help with orders."),
    ]
    assert {d.source for d in dialogues} == {"rasa_rules"}
    assert {d.meta["response"] for d in dialogues} == {"utter_generative"}
    assert len({d.id for d in dialogues}) == 3 and not stats
    assert list(rule_response_dialogues(RASA / "domain.yml", [RASA / "data"], ["utter_goodbye"])) == []
    greet = list(rule_response_dialogues(RASA / "domain.yml", [RASA / "data"], ["utter_greet"]))
    assert sorted(d.turns[0].text for d in greet) == ["hello there", "hi"]


@pytest.mark.parametrize("responses, expected", [(("utter_generative",), 3), ((), 0)])
def test_rule_responses_reach_training_but_not_the_scored_csvs(
    responses: tuple, expected: int, bitext_dir: Path, tmp_path: Path
) -> None:
    settings = DataSettings(validation_fraction=0.2, test_fraction=0.2, rule_responses=responses)
    dataset = prepare(bitext_dir, tmp_path / "d", settings, domain=RASA / "domain.yml", stories=[RASA / "data"],
                      progress=False)
    assert dataset.card["raw_dialogues_per_source"].get("rasa_rules", 0) == expected
    kept = [d for split in dataset.splits.values() for d in split if d.source == "rasa_rules"]
    assert len(kept) == expected
    # `nebras evaluate` scores Bitext-format rows only: a template reply is no reference
    for name in ("train", "validation", "test"):
        with (dataset.directory / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
            assert all(row["intent"] != "out_of_scope" for row in csv.DictReader(handle))


@pytest.mark.parametrize("mode, with_bitext, expected_domain", [
    ("auto", False, 3), ("auto", True, 0), ("always", True, 3), ("never", False, 0),
])
def test_domain_responses_are_added_without_bitext(
    mode: str, with_bitext: bool, expected_domain: int, bitext_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("NEBRAS_BITEXT_DIR", raising=False)  # without Bitext means none from the environment
    settings = DataSettings(validation_fraction=0.2, test_fraction=0.2, domain_responses=mode)
    dataset = prepare(bitext_dir if with_bitext else None, tmp_path / "d", settings,
                      domain=RASA / "domain.yml", stories=[RASA / "data"], progress=False)
    assert dataset.card["raw_dialogues_per_source"].get("rasa_domain", 0) == expected_domain


def test_bad_domain_responses_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="domain_responses"):
        DataSettings(domain_responses="sometimes")


def test_ensure_dataset_prepares_one_on_a_fresh_machine(tmp_path: Path, monkeypatch) -> None:
    """No prepared dataset and no Bitext: the stories and domain responses of the project."""
    import shutil

    from nebras_bot.data.prepare import ensure_dataset

    project = tmp_path / "project"
    shutil.copytree(RASA, project)
    monkeypatch.setenv("NEBRAS_HOME", str(project))
    monkeypatch.delenv("NEBRAS_BITEXT_DIR", raising=False)
    first = ensure_dataset(progress=False)
    assert first.parent == project / "models" / "datasets"
    card = json.loads((first / "data_card.json").read_text())
    assert card["raw_dialogues_per_source"] == {"rasa_domain": 3, "rasa_rules": 3, "rasa_stories": 1}
    rows = [row for name in ("train", "validation", "test") for row in csv.DictReader((first / f"{name}.csv").open())]
    assert len(rows) == 3  # the single exchanges are evaluable too
    assert ensure_dataset(progress=False) == first  # reused, not prepared again
