"""``nebras evaluate`` end to end through the serving path (B's ResponseGenerator) with a tiny GPT-2.

The tiny model is first trained (a few seconds) to answer every fixture prompt with
``Your order {order_id} is on its way.``: rows with an order id then get a generated, filled reply,
rows without one fall back to the template (steering keeps the brace out, the guard refuses the rest: ``placeholder_residue``) — both paths are measured.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nebras_bot.cli import main
from nebras_bot.evaluation import textmetrics
from nebras_bot.evaluation.evaluate import EvaluationInputError, first_turn_context, run_evaluation
from nebras_bot.evaluation.settings import METRICS_FILE, PREDICTIONS_FILE

from .conftest import DATA_ROWS, DOMAIN_YAML, TRAIN_ROWS, write_csv

MEMORISED = " Your order {order_id} is on its way.<|end|>"
PREDICTION_FIELDS = {"instruction", "intent", "reference", "prediction", "fallback", "latency_ms", "reason", "rejected"}
METRIC_FIELDS = {"n", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "perplexity", "bits_per_byte", "distinct_1",
                 "distinct_2", "entity_recall", "fallback_rate", "latency_ms_p50", "latency_ms_p95", "baselines"}
TEXT_FIELDS = {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "distinct_1", "distinct_2", "entity_recall"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("evaluate")
    (root / "domain.yml").write_text(DOMAIN_YAML)
    return {
        "root": root,
        "domain": root / "domain.yml",
        "data": write_csv(root / "data.csv", DATA_ROWS),
        "train": write_csv(root / "train.csv", TRAIN_ROWS),
    }


@pytest.fixture(scope="module")
def model_dir(files) -> Path:
    """A tiny GPT-2 with an exemplar index, trained to memorise one reply for the fixture prompts."""
    import torch

    from nebras_bot.evaluation.baselines import IntentTemplateBaseline
    from nebras_bot.generation.generator import ResponseGenerator
    from nebras_bot.generation.loader import tiny_gpt2
    from nebras_bot.generation.retrieval import ExemplarIndex

    torch.set_num_threads(1)
    directory = files["root"] / "model"
    loaded = tiny_gpt2(seed=0)
    ExemplarIndex.build([r["instruction"] for r in TRAIN_ROWS], [r["response"] for r in TRAIN_ROWS],
                        [r["intent"] for r in TRAIN_ROWS]).save(directory / "exemplars")
    generator = ResponseGenerator(loaded, exemplar_index=ExemplarIndex.load(directory / "exemplars"))
    templates = IntentTemplateBaseline.from_domain(files["domain"])
    sequences = []
    for row in DATA_ROWS:
        entities = {row["entity_type"]: row["entity_value"]} if row.get("entity_type") else {}
        context = first_turn_context(row["instruction"], row["intent"], entities, templates.template(row["intent"], entities))
        prompt_ids = loaded.tokenizer(generator.build_prompt(context), add_special_tokens=False).input_ids
        completion_ids = loaded.tokenizer(MEMORISED, add_special_tokens=False).input_ids
        sequences.append((prompt_ids + completion_ids, len(prompt_ids)))
    width = max(len(ids) for ids, _ in sequences)  # one right-padded batch; loss on completions only
    input_ids = torch.full((len(sequences), width), loaded.tokenizer.pad_token_id)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for row, (ids, start) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
    model = loaded.model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(80):  # usually done after ~20 steps
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses = [loss.item()]
        if loss.item() < 0.01:
            break
    print(f"memorised after {step + 1} steps, loss {loss.item():.4f}")
    assert max(losses) < 0.05, f"tiny model did not memorise the reply (losses {losses})"
    model.eval()
    model.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)
    (directory / "nebras.json").write_text(json.dumps({"version": "eval-test-1", "retrieval": True}))
    return directory


@pytest.fixture(scope="module")
def evaluated(files, model_dir) -> tuple[dict, list, Path]:
    out = files["root"] / "out"
    metrics = run_evaluation(model=model_dir, data=files["data"], train=files["train"], out=out,
                             domain=files["domain"], show_progress=False, timeout_s=30)
    predictions = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    return metrics, predictions, out


def test_outputs_have_the_contract_fields(evaluated):
    metrics, predictions, out = evaluated
    assert json.loads((out / METRICS_FILE).read_text()) == metrics
    assert METRIC_FIELDS <= set(metrics)
    assert set(metrics["baselines"]) == {"intent_template", "tfidf_retrieval"}
    for baseline in metrics["baselines"].values():
        assert TEXT_FIELDS <= set(baseline)
    assert metrics["n"] == len(predictions) == len(DATA_ROWS)
    for record in predictions:
        assert PREDICTION_FIELDS <= set(record)
    assert metrics["model_version"] == "eval-test-1"


def test_generated_and_fallback_rows_follow_the_serving_path(evaluated):
    metrics, predictions, _ = evaluated
    by_intent = {p["intent"]: p for p in predictions}
    # Generated, placeholder filled from the entity, accepted by the guard:
    assert by_intent["track_order"]["prediction"] == "Your order 98765 is on its way."
    assert by_intent["track_order"]["fallback"] is False
    assert by_intent["cancel_order"]["prediction"] == "Your order 4444 is on its way."
    # No order id: decoding may not open "{order_id}" (placeholder steering), the tiny model writes
    # what is left of it ("orderorder_idid"), the guard refuses that -> the domain template.
    assert by_intent["recover_password"]["fallback"] is True
    assert by_intent["recover_password"]["prediction"] == "Use the 'Forgot password' link on the sign-in page."
    assert by_intent["recover_password"]["reason"].startswith("placeholder_residue")
    # What the model wrote before the guard refused it is kept for analysis, never sent:
    assert "orderorder_idid" in by_intent["recover_password"]["rejected"]
    assert by_intent["recover_password"]["rejected"] != by_intent["recover_password"]["prediction"]
    assert by_intent["track_order"]["rejected"] is None
    assert by_intent["check_payment_methods"]["fallback"] is True
    assert metrics["fallback_rate"] == 0.5
    assert metrics["fallback_reasons"] == {"placeholder_residue": 2}
    # How much of its prompt's template each generated reply carries (fallbacks are their template).
    generated = [p for p in predictions if not p["fallback"]]
    assert all(p["prompt_template"] for p in generated)
    assert metrics["template_carry"] == pytest.approx(textmetrics.template_carry(
        [p["prediction"] for p in generated], [p["prompt_template"] for p in generated]))
    # References have the row's entity filled in.
    assert by_intent["cancel_order"]["reference"] == "Order 4444 is cancelled as you asked."


def test_metrics_are_the_text_metrics_of_the_written_predictions(evaluated):
    metrics, predictions, _ = evaluated
    refs = [p["reference"] for p in predictions]
    values = [p["entity_value"] or None for p in predictions]
    for key, column in (("model", "prediction"), ("intent_template", "baseline_intent_template"),
                        ("tfidf_retrieval", "baseline_tfidf_retrieval")):
        block = metrics if key == "model" else metrics["baselines"][key]
        expected = textmetrics.text_metrics([p[column] for p in predictions], refs, values)
        for name, value in expected.items():
            assert block[name] == pytest.approx(value), (key, name)
    assert metrics["entity_recall"] == 1.0
    latencies = [p["latency_ms"] for p in predictions]
    assert metrics["latency_ms_p50"] == pytest.approx(textmetrics.percentile(latencies, 50))
    assert 0 < metrics["latency_ms_p50"] <= metrics["latency_ms_p95"]
    assert set(metrics["per_intent"]) == {r["intent"] for r in DATA_ROWS}


def test_baselines_on_the_fixture(evaluated):
    _, predictions, _ = evaluated
    by_intent = {p["intent"]: p for p in predictions}
    assert by_intent["track_order"]["baseline_tfidf_retrieval"] == "Order 98765 ships tomorrow."
    assert by_intent["check_payment_methods"]["baseline_tfidf_retrieval"] == "We accept cards and PayPal."
    assert by_intent["track_order"]["baseline_intent_template"] == "Your order 98765 is on its way."
    assert by_intent["check_payment_methods"]["baseline_intent_template"] == "Sorry, I did not get that."


def test_perplexity_of_references_under_the_model(evaluated):
    metrics, _, _ = evaluated
    assert metrics["perplexity_tokens"] > 0
    assert 1.0 < metrics["perplexity"] < 60_000 and math.isfinite(metrics["perplexity"])
    assert metrics["bits_per_byte"] > 0


def test_limit_and_missing_columns(files, model_dir, tmp_path):
    metrics = run_evaluation(model=model_dir, data=files["data"], train=files["train"], out=tmp_path / "o",
                             domain=files["domain"], limit=1, show_progress=False, timeout_s=30)
    assert metrics["n"] == 1
    bad = write_csv(tmp_path / "bad.csv", [{"instruction": "hi", "intent": "greet"}], fields=["instruction", "intent"])
    with pytest.raises(EvaluationInputError, match="missing column\\(s\\) entity_type, entity_value, response"):
        run_evaluation(model=model_dir, data=bad, train=files["train"], out=tmp_path / "o2", domain=files["domain"])
    assert not (tmp_path / "o2").exists()  # nothing half-written


def test_cli_evaluate(files, model_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["evaluate", "--model", str(model_dir), "--data", str(files["data"]), "--train", str(files["train"]),
                 "--out", str(out), "--domain", str(files["domain"]), "--no-progress", "--limit", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "bleu" in printed and "tfidf" in printed
    assert json.loads((out / METRICS_FILE).read_text())["n"] == 2
    missing_model = main(["evaluate", "--model", str(tmp_path / "nope"), "--data", str(files["data"]),
                          "--train", str(files["train"]), "--out", str(out), "--domain", str(files["domain"])])
    assert missing_model == 2
    assert "could not load the response model" in capsys.readouterr().err


class RecordingReplier:
    """Answers every row with its latest message and keeps the contexts it was given."""

    def __init__(self) -> None:
        self.contexts = []

    def reply(self, context, template, values):
        from nebras_bot.generation.generator import GenerationResult

        self.contexts.append((context, dict(values)))
        return GenerationResult(text=f"About: {context.history[-1].text}", generated=True)


def test_prior_exchange_puts_another_subject_first(files, tmp_path):
    replier = RecordingReplier()
    metrics = run_evaluation(model="unused", data=files["data"], train=files["train"], out=tmp_path / "p",
                             domain=files["domain"], generator=replier, show_progress=False, prior_exchange=True)
    assert metrics["prior_exchange"] is True and metrics["n"] == len(DATA_ROWS)
    predictions = [json.loads(line) for line in (tmp_path / "p" / PREDICTIONS_FILE).read_text().splitlines()]
    by_instruction = {row["instruction"]: row for row in DATA_ROWS}
    for row, record, (context, values) in zip(DATA_ROWS, predictions, replier.contexts):
        user, agent, latest = context.history
        prior = by_instruction[user.text]
        assert (user.role, agent.role, latest.role) == ("user", "agent", "user")
        assert latest.text == row["instruction"] and record["prior_instruction"] == prior["instruction"]
        assert prior["intent"] != row["intent"]  # another subject
        assert agent.text == prior["response"].replace("{order_id}", prior.get("entity_value", ""))  # its reference
        if prior.get("entity_type"):  # the earlier message's entity is a slot, the latest one's wins
            expected = row["entity_value"] if row.get("entity_type") == prior["entity_type"] else prior["entity_value"]
            assert context.slots[prior["entity_type"]] == expected
        assert record["prediction"] == f"About: {row['instruction']}"
    again = RecordingReplier()
    run_evaluation(model="unused", data=files["data"], train=files["train"], out=tmp_path / "q",
                   domain=files["domain"], generator=again, show_progress=False, prior_exchange=True)
    assert [c.history[0].text for c, _ in again.contexts] == [c.history[0].text for c, _ in replier.contexts]
    plain = RecordingReplier()
    metrics = run_evaluation(model="unused", data=files["data"], train=files["train"], out=tmp_path / "r",
                             domain=files["domain"], generator=plain, show_progress=False)
    assert metrics["prior_exchange"] is False and all(len(c.history) == 1 for c, _ in plain.contexts)


def test_prior_exchange_needs_two_intents(files, tmp_path):
    one_intent = write_csv(tmp_path / "one.csv", [row for row in DATA_ROWS if row["intent"] == "track_order"])
    with pytest.raises(EvaluationInputError, match="at least two intents"):
        run_evaluation(model="unused", data=one_intent, train=files["train"], out=tmp_path / "o",
                       domain=files["domain"], generator=RecordingReplier(), prior_exchange=True)
    assert not (tmp_path / "o").exists()


def test_cli_evaluate_prior_exchange(files, model_dir, tmp_path):
    out = tmp_path / "cli-prior"
    code = main(["evaluate", "--model", str(model_dir), "--data", str(files["data"]), "--train", str(files["train"]),
                 "--out", str(out), "--domain", str(files["domain"]), "--no-progress", "--prior-exchange"])
    assert code == 0
    assert json.loads((out / METRICS_FILE).read_text())["prior_exchange"] is True
    records = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert all(r["prior_instruction"] and r["prediction"].strip() for r in records)
