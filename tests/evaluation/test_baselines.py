"""The intent-template and TF-IDF retrieval baselines on a fixture."""
from __future__ import annotations

from pathlib import Path

import pytest

from nebras_bot.evaluation.baselines import (
    IntentTemplateBaseline,
    TfidfRetrievalBaseline,
    fill_known,
    load_domain_responses,
)

from .conftest import DATA_ROWS, TRAIN_ROWS


def test_domain_responses_take_the_unconditional_variation(domain_file):
    responses = load_domain_responses(domain_file)
    assert responses["utter_track_order"] == "Your order {order_id} is on its way."
    assert responses["utter_cancel_order"] == "I have started the cancellation of order {order_id}."


def test_domain_directory_is_merged(tmp_path: Path):
    (tmp_path / "domain").mkdir()
    (tmp_path / "domain" / "a.yml").write_text("responses:\n  utter_greet:\n    - text: Hi!\n")
    (tmp_path / "domain" / "b.yml").write_text("responses:\n  utter_goodbye:\n    - text: Bye!\n")
    assert load_domain_responses(tmp_path / "domain") == {"utter_greet": "Hi!", "utter_goodbye": "Bye!"}


def test_missing_domain_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no Rasa domain"):
        load_domain_responses(tmp_path / "nope.yml")


def test_intent_template_renders_like_rasa_and_counts_missing_intents(domain_file):
    baseline = IntentTemplateBaseline.from_domain(domain_file)
    assert baseline.reply("track_order", {"order_id": "98765"}) == "Your order 98765 is on its way."
    # The conditional variant applies when its slot condition holds (order_id empty) ...
    assert baseline.reply("cancel_order", {}) == "Which order should I cancel?"
    # ... and not otherwise.
    assert baseline.reply("cancel_order", {"order_id": "12"}) == "I have started the cancellation of order 12."
    assert baseline.reply("check_payment_methods", {}) == "Sorry, I did not get that."
    assert baseline.reply(None, {}) == "Sorry, I did not get that."
    assert baseline.missing == {"check_payment_methods": 1, "<none>": 1}
    # A template whose placeholder has no value is not sent (Rasa would print 'None').
    assert baseline.template("track_order", {}) is None


def test_missing_domain_for_the_baseline_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no Rasa domain"):
        IntentTemplateBaseline.from_domain(tmp_path / "domain.yml", tmp_path / "domain")


def test_fill_known_leaves_unknown_placeholders():
    assert fill_known("{order_id} / {email}", {"order_id": "7", "email": ""}) == "7 / {email}"


def test_tfidf_retrieval_returns_the_reply_of_the_nearest_training_instruction():
    baseline = TfidfRetrievalBaseline(
        [r["instruction"] for r in TRAIN_ROWS], [r["response"] for r in TRAIN_ROWS]
    )
    queries = [r["instruction"] for r in DATA_ROWS]
    assert baseline.nearest(queries) == [0, 1, 2, 3]
    values = [{"order_id": "98765"}, {}, {"order_id": "4444"}, {}]
    replies = baseline.replies_for(queries, values)
    assert replies[0] == "Order 98765 ships tomorrow."
    assert replies[2] == "Order 4444 is cancelled."
    assert replies[3] == "We accept cards and PayPal."


def test_tfidf_needs_training_rows():
    with pytest.raises(ValueError):
        TfidfRetrievalBaseline([], [])
