"""Unit tests for the Bitext training-data importer (tiny CSVs written by the tests)."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Dict, List

import pytest

from nebras_bot.data import bitext
from nebras_bot.data.importer import (
    BitextImporter,
    locate_entity,
    row_to_message,
    split_rows,
)
from nebras_bot.paths import ENV_BITEXT_DIR

COLUMNS = [
    "context", "role", "instruction", "intent", "entity_type", "entity_value",
    "start_offset", "end_offset", "category", "tags", "response",
]


def write_csv(directory: Path, rows: List[Dict[str, object]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / bitext.INTENTS_FILE
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in COLUMNS})
    return path


def row(instruction: str, intent: str, entity_type: str = "", value: str = "", start=None, end=None):
    return {
        "instruction": instruction, "intent": intent, "entity_type": entity_type,
        "entity_value": value, "start_offset": "" if start is None else start,
        "end_offset": "" if end is None else end, "response": "a reply",
    }


def bitext_row(instruction, intent="cancel_order", entity_type="", value="", start=None, end=None):
    return bitext.BitextRow(
        instruction=instruction, intent=intent, entity_type=entity_type, entity_value=value,
        start_offset=start, end_offset=end,
    )


def entities_of(message) -> List[Dict[str, object]]:
    return [
        {key: entity[key] for key in ("start", "end", "value", "entity")}
        for entity in message.get("entities", [])
    ]


@pytest.fixture(autouse=True)
def no_env_bitext(monkeypatch):
    """Each test decides itself whether NEBRAS_BITEXT_DIR is set."""
    monkeypatch.delenv(ENV_BITEXT_DIR, raising=False)


def test_correct_offsets_are_used_as_given():
    span = locate_entity(bitext_row("cancel order 732201349959 now", "cancel_order", "order_id", "732201349959", 13, 25))
    assert (span.start, span.end, span.value, span.entity, span.how) == (13, 25, "732201349959", "order_id", "offsets")


def test_offsets_over_leading_zeros_keep_the_literal_id():
    text = "need to cancel order 00004587345"
    span = locate_entity(bitext_row(text, "cancel_order", "order_id", "4587345", 21, 32))
    assert text[span.start:span.end] == "00004587345"
    assert span.value == "00004587345" and span.how == "offsets_normalised"


def test_offsets_with_other_case_keep_the_canonical_value_as_synonym():
    message = row_to_message(bitext_row("new platinum account", "create_account", "account_type", "Platinum", 4, 12))
    assert entities_of(message) == [{"start": 4, "end": 12, "value": "Platinum", "entity": "account_type"}]


def test_wrong_offsets_fall_back_to_searching_the_value():
    text = "where is order 123842 please"
    span = locate_entity(bitext_row(text, "track_order", "order_id", "123842", 2, 9))
    assert (span.start, span.end, span.how) == (15, 21, "search")
    assert text[span.start:span.end] == "123842"


def test_value_absent_from_text_drops_only_the_entity():
    message = row_to_message(bitext_row("where is my order", "track_order", "order_id", "999999", 50, 56))
    assert message.get("intent") == "track_order"
    assert entities_of(message) == []


def test_bitext_entity_types_are_mapped_and_unknown_types_dropped():
    assert locate_entity(bitext_row("bill #12588", "get_invoice", "invoice_number", "#12588", 5, 11)).entity == "invoice_id"
    assert locate_entity(bitext_row("bill for Mars", "get_invoice", "planet", "Mars", 9, 13)) is None


def test_split_is_deterministic_disjoint_and_capped():
    rows = [bitext_row(f"cancel my order number {i}", "cancel_order") for i in range(200)]
    rows += [bitext_row(f"track my order number {i}", "track_order") for i in range(200)]
    first = split_rows(rows, holdout_fraction=0.25, seed=3, max_examples_per_intent=50)
    again = split_rows(list(reversed(rows)), holdout_fraction=0.25, seed=3, max_examples_per_intent=50)
    assert {r.instruction for r in first.train} == {r.instruction for r in again.train}
    assert {r.instruction for r in first.holdout} == {r.instruction for r in again.holdout}
    assert not {r.instruction for r in first.train} & {r.instruction for r in first.holdout}
    assert 60 <= len(first.holdout) <= 140  # about a quarter of 400
    per_intent = {intent: sum(r.intent == intent for r in first.train) for intent in ("cancel_order", "track_order")}
    assert per_intent == {"cancel_order": 50, "track_order": 50}
    # The cap never moves a held-out row into training, whatever its size.
    uncapped = split_rows(rows, holdout_fraction=0.25, seed=3)
    assert {r.instruction for r in uncapped.holdout} == {r.instruction for r in first.holdout}
    assert len(uncapped.train) + len(uncapped.holdout) == 400
    other_seed = split_rows(rows, holdout_fraction=0.25, seed=4)
    assert {r.instruction for r in other_seed.holdout} != {r.instruction for r in first.holdout}


def test_duplicate_messages_land_on_the_same_side():
    rows = [bitext_row(f"message {i % 20}", "cancel_order") for i in range(100)]
    split = split_rows(rows, holdout_fraction=0.5, seed=1)
    assert not {r.instruction for r in split.train} & {r.instruction for r in split.holdout}


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_bad_holdout_fraction_is_a_clear_error(fraction):
    with pytest.raises(ValueError, match="holdout_fraction"):
        split_rows([], holdout_fraction=fraction)


def test_importer_reads_the_configured_directory(tmp_path):
    write_csv(tmp_path / "bitext", [
        row("how can I cancel purchase 113542617735902?", "cancel_order", "order_id", "113542617735902", 26, 41),
        row("assistance cancelling purchase 00123842", "cancel_order", "order_id", "123842", 31, 39),
        row("edit info on gold account", "edit_account", "account_type", "Gold", 13, 17),
        row("where is my parcel", "track_order"),
    ])
    importer = BitextImporter(directory=str(tmp_path / "bitext"))
    data = importer.get_nlu_data()
    examples = {m.get("text"): m for m in data.training_examples}
    assert set(examples) == {
        "how can I cancel purchase 113542617735902?", "assistance cancelling purchase 00123842",
        "edit info on gold account", "where is my parcel",
    }
    assert data.intents == {"cancel_order", "edit_account", "track_order"}
    assert entities_of(examples["assistance cancelling purchase 00123842"]) == [
        {"start": 31, "end": 39, "value": "00123842", "entity": "order_id"}
    ]
    assert entities_of(examples["edit info on gold account"])[0]["value"] == "Gold"
    assert importer.stats.entities["offsets"] == 1 and importer.stats.entities["offsets_normalised"] == 2
    # NLU only: nothing else comes from this importer.
    assert importer.get_domain().is_empty()
    assert importer.get_stories().story_steps == []
    assert importer.get_config() == {}


def test_importer_relative_directory_is_resolved_against_the_config_file(tmp_path):
    write_csv(tmp_path / "project" / "bitext", [row("where is my parcel", "track_order")])
    (tmp_path / "project" / "config.yml").write_text("language: en\n")
    importer = BitextImporter(config_file=str(tmp_path / "project" / "config.yml"), directory="bitext")
    assert len(importer.get_nlu_data().training_examples) == 1


def test_importer_uses_the_environment_variable(tmp_path, monkeypatch):
    write_csv(tmp_path, [row("where is my parcel", "track_order"), row("cancel it", "cancel_order")])
    monkeypatch.setenv(ENV_BITEXT_DIR, str(tmp_path))
    assert len(BitextImporter().get_nlu_data().training_examples) == 2


def test_importer_holds_rows_out_and_caps_per_intent(tmp_path):
    rows = [row(f"please cancel order {100000 + i}", "cancel_order") for i in range(60)]
    rows += [row(f"where is order {200000 + i}", "track_order") for i in range(60)]
    write_csv(tmp_path, rows)
    importer = BitextImporter(directory=str(tmp_path), holdout_fraction=0.3, seed=5, max_examples_per_intent=20)
    trained = {m.get("text") for m in importer.get_nlu_data().training_examples}
    held_out = {r.instruction for r in importer.load_split().holdout}
    assert len(trained) == 40
    assert held_out and not trained & held_out


def test_missing_directory_logs_and_adds_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="nebras_bot.data.importer")
    data = BitextImporter(directory=str(tmp_path / "nowhere")).get_nlu_data()
    assert data.training_examples == []
    assert "not found" in caplog.text and "hand-written" in caplog.text


def test_unconfigured_importer_logs_and_adds_nothing(caplog):
    caplog.set_level(logging.WARNING, logger="nebras_bot.data.importer")
    data = BitextImporter().get_nlu_data()
    assert data.training_examples == []
    assert ENV_BITEXT_DIR in caplog.text


def test_csv_without_required_columns_is_a_clear_error(tmp_path):
    (tmp_path / bitext.INTENTS_FILE).write_text("text,label\nhello,greet\n")
    with pytest.raises(ValueError, match="missing column"):
        BitextImporter(directory=str(tmp_path)).get_nlu_data()


def test_importer_is_loaded_from_config(tmp_path):
    """The `importers:` entry in a config file builds our importer with its options."""
    from rasa.shared.importers.importer import TrainingDataImporter

    write_csv(tmp_path / "bitext", [row("where is my parcel", "track_order"), row("cancel it", "cancel_order")])
    config = tmp_path / "config.yml"
    config.write_text(
        "language: en\nimporters:\n"
        f"  - name: nebras_bot.data.importer.BitextImporter\n    directory: {tmp_path / 'bitext'}\n"
        "    holdout_fraction: 0.0\n"
    )
    importer = TrainingDataImporter.load_from_config(str(config))
    texts = {m.get("text") for m in importer.get_nlu_data().training_examples}
    assert {"where is my parcel", "cancel it"} <= texts
