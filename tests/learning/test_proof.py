"""Proof that the loop learns (issue: continuous learning), with real tiny GPT-2 training.

The scenario is ``nebras_bot.learning.proof``: a topic missing from the training data, tickets on it
resolved by an agent, ``nebras learn`` -> promoted; a run that crashes mid fine-tuning -> nothing
changed; a run fine-tuned on corrupted targets -> refused, current model untouched; then
``nebras models rollback`` returns to the starting model. The fast variant (default suite) trains
less; the ``slow`` one uses the budget of the docs figure.
"""
from __future__ import annotations

import json

import pytest

from nebras_bot.learning import proof
from nebras_bot.learning.pipeline import FAILED, PROMOTED, REFUSED, run_history


def unchanged_except_run_count(before, after):
    return {k: v for k, v in before.items() if k != "runs"} == {k: v for k, v in after.items() if k != "runs"}


def check_scenario(results, home):
    from nebras_bot.cli import main as nebras
    from nebras_bot.training import registry

    tolerance = proof.learning_settings().validation_tolerance
    base = results["base_version"]

    # 1. tickets on the missing topic -> the candidate scores better on the topic and is promoted
    learned = results["learned"]
    assert learned["decision"] == PROMOTED, learned["reasons"]
    assert learned["inputs"]["learning"]["diff"]["intents_added"] == [proof.MISSING_TOPIC]
    assert learned["inputs"]["harvest"]["tickets"] == results["tickets"]
    scores = proof.topic_scores(results)
    assert scores["topic_after"] < scores["topic_before"]  # bits per byte: lower is better
    assert scores["validation_after"] <= scores["validation_before"] * (1 + tolerance)
    promoted = learned["promoted_version"]
    assert learned["previous_version"] == base and promoted != base

    # 2. a crash in the middle of fine-tuning: registry, history, current (and its weights) as they were
    crash = results["crash"]
    assert crash["raised"] and "simulated crash" in crash["raised"]
    assert unchanged_except_run_count(crash["state_before"], crash["state_after"])
    assert crash["state_after"]["current"] == promoted and crash["state_after"]["hidden"] == []
    assert crash["watermark_after"] == crash["watermark_before"]  # its tickets are still pending
    assert crash["state_after"]["runs"] == crash["state_before"]["runs"] + 1  # recorded as failed

    # 3. corrupted targets -> refused with the reason, the current model untouched
    corrupted = results["corrupted"]
    assert corrupted["decision"] == REFUSED
    assert corrupted["inputs"]["learning"]["new_dialogues"] == results["later_tickets"]  # the crashed run's tickets
    assert any("new-data" in reason for reason in corrupted["reasons"]), corrupted["reasons"]
    assert unchanged_except_run_count(corrupted["state_before"], corrupted["state_after"])
    assert corrupted["candidate_version"] not in corrupted["state_after"]["versions"]
    candidate, current = corrupted["metrics"]["candidate"], corrupted["metrics"]["current"]
    assert candidate["new"]["bits_per_byte"] > current["new"]["bits_per_byte"]

    # every run is in the registry's run history, with its decision and metrics
    history = run_history()
    assert [r["decision"] for r in history] == [PROMOTED, FAILED, REFUSED]
    assert history[2]["metrics"] == corrupted["metrics"] and history[1]["reasons"] == [
        f"SimulatedCrash: {crash['raised']}"]

    # rollback returns to the starting model
    assert registry.current_version() == promoted
    assert nebras(["models", "rollback"]) == 0
    assert registry.current_version() == base
    assert json.loads((home / "models" / "nlg" / promoted / "nebras.json").read_text())["learning_run"]["parent"] == base


@pytest.mark.timeout(900)
def test_the_loop_learns_a_missing_topic_fast(tmp_path, monkeypatch):
    results = proof.run_in(tmp_path, proof.FAST)
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    check_scenario(results, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_loop_learns_a_missing_topic_docs_budget(tmp_path, monkeypatch):
    results = proof.run_in(tmp_path, proof.ProofConfig())
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    check_scenario(results, tmp_path)
