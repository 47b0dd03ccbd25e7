"""``nebras evaluate --nlu``: intent and entities come from a trained Rasa model's parse.

Uses the mini fixture bot (``tests/fixtures/mini_bot``, trained once and cached) and a tiny
untrained GPT-2: the point here is where intent/entities/templates come from, not reply quality.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nebras_bot.cli import main
from nebras_bot.evaluation.evaluate import run_evaluation
from nebras_bot.evaluation.nlu import RasaNLU
from nebras_bot.evaluation.settings import METRICS_FILE, PREDICTIONS_FILE

from .conftest import write_csv

# The CSV deliberately carries no entities and one wrong intent: with --nlu both come from Rasa.
ROWS = [
    {"instruction": "where is order 33210", "intent": "track_order",
     "response": "Order 33210 is on its way."},
    {"instruction": "hello bot", "intent": "greet", "response": "Hi! How can I help?"},
    {"instruction": "are you a bot", "intent": "greet",  # wrong label on purpose
     "response": "Yes, I am a virtual assistant."},
    {"instruction": "where is my invoice", "intent": "check_invoice", "response": "Your invoice is in your account."},
]
TRAIN = [{"instruction": "track order 12345", "response": "Order {order_id} is being prepared."},
         {"instruction": "hi", "response": "Hello!"}]


@pytest.fixture(scope="module")
def nlu_run(tmp_path_factory, mini_nlu, mini_bot_domain, untrained_model_dir):
    root = tmp_path_factory.mktemp("nlu")
    data = write_csv(root / "data.csv", ROWS)
    train = write_csv(root / "train.csv", TRAIN)
    out = root / "out"
    # mini_nlu is RasaNLU(<archive>), exactly what --nlu <archive> builds, loaded once per session.
    metrics = run_evaluation(model=untrained_model_dir, data=data, train=train, out=out, nlu=mini_nlu,
                             domain=mini_bot_domain, show_progress=False, timeout_s=30)
    predictions = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    return metrics, predictions, {"data": data, "train": train, "root": root}


def test_nlu_parse_gives_intent_and_entities(mini_nlu, mini_bot_archive):
    parsed = mini_nlu.parse("where is order 33210")
    assert parsed.intent == "track_order"
    assert parsed.entities == {"order_id": "33210"}
    assert 0.0 < parsed.confidence <= 1.0
    assert mini_nlu.path == mini_bot_archive


def test_unloadable_nlu_model_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not a rasa model")
    with pytest.raises(RuntimeError, match="could not load the Rasa model"):
        RasaNLU(broken)


def test_evaluate_takes_intent_and_entities_from_the_rasa_model(nlu_run):
    metrics, predictions, _ = nlu_run
    assert metrics["intent_source"] == "nlu" and metrics["n"] == len(ROWS)
    assert metrics["nlu_model"].endswith(".tar.gz")
    by_text = {p["instruction"]: p for p in predictions}
    track = by_text["where is order 33210"]
    # The entity comes from the Rasa model's regex extractor (the CSV has none) ...
    assert track["predicted_intent"] == "track_order" and track["entities"] == {"order_id": "33210"}
    # ... so the template baseline renders the order variant with it, as Rasa would.
    assert track["baseline_intent_template"] == "Order 33210 is being prepared."
    # The CSV's wrong label is kept as the row's intent; the parse decides the reply.
    challenge = by_text["are you a bot"]
    assert challenge["intent"] == "greet" and challenge["predicted_intent"] == "bot_challenge"
    assert challenge["baseline_intent_template"] == "I am a bot."
    assert metrics["nlu_intent_accuracy"] == pytest.approx(3 / 4)
    for record in predictions:
        assert record["prediction"].strip(), record  # never an empty reply
        assert 0.0 < record["nlu_confidence"] <= 1.0


def test_evaluate_without_nlu_uses_the_csv(nlu_run, untrained_model_dir, mini_bot_domain):
    _, _, files = nlu_run
    metrics = run_evaluation(model=untrained_model_dir, data=files["data"], train=files["train"],
                             out=files["root"] / "csv", domain=mini_bot_domain, show_progress=False, timeout_s=30)
    assert metrics["intent_source"] == "csv" and metrics["nlu_intent_accuracy"] is None
    records = [json.loads(x) for x in (files["root"] / "csv" / PREDICTIONS_FILE).read_text().splitlines()]
    assert {r["predicted_intent"] for r in records} == {r["intent"] for r in ROWS}
    track = next(r for r in records if r["intent"] == "track_order")
    assert track["entities"] == {}  # no entity in the CSV: the template asks which order
    assert track["baseline_intent_template"] == "Which order is it about?"


def test_cli_with_a_missing_nlu_model_is_a_clear_error(nlu_run, untrained_model_dir, mini_bot_domain, capsys):
    _, _, files = nlu_run
    out = files["root"] / "missing"
    code = main(["evaluate", "--model", str(untrained_model_dir), "--data", str(files["data"]),
                 "--train", str(files["train"]), "--out", str(out), "--domain", str(mini_bot_domain),
                 "--nlu", str(files["root"] / "nope.tar.gz"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Rasa model" in err and "not found" in err
    assert not (out / METRICS_FILE).exists()
