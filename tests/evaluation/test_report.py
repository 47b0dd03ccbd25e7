"""``nebras report``: sections rendered from real inputs, missing inputs stated, slides, CLI."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from nebras_bot.cli import main
from nebras_bot.evaluation.report import SECTIONS, gather, render_report
from nebras_bot.evaluation.slides import render_slides

from .report_fixtures import build_home


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    build_home(tmp_path)
    return tmp_path


def _section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert match, f"section {key} missing"
    return match.group(1)


def test_every_section_is_rendered_from_its_inputs(home):
    page = render_report(gather())
    for key, _ in SECTIONS:
        assert 'class="missing"' not in _section(page, key), key
    summary = _section(page, "summary")
    assert "TF-IDF retrieval" in summary and "intent template" in summary and "v-test-1" in summary
    assert "data:image/png;base64," in summary
    assert "unknown_number" in _section(page, "fallbacks")
    assert "recover_password" in _section(page, "per-intent")
    training = _section(page, "training")
    assert training.count("data:image/png;base64,") >= 3  # loss curves, tokens/s, learning rate
    assert "gpt2-scratch:tiny" in training
    assert "near_duplicates" in _section(page, "data-card")
    rasa = _section(page, "rasa-test")
    assert "0.947" in rasa and "Failed test stories: 0" in rasa and "data:image/png;base64," in rasa
    assert rasa.count("data:image/png;base64,") == 2  # intent and action confusion matrices
    assert "context_retention" in _section(page, "dialogues")
    assert "Your order 123 is on its way." in _section(page, "examples")


def test_embedded_images_are_valid_pngs(home):
    page = render_report(gather())
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 8
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_inputs_are_stated_per_section(tmp_path, monkeypatch):
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    page = render_report(gather())
    for key, _ in SECTIONS:
        assert 'class="missing"' in _section(page, key), key
    assert "nebras evaluate" in _section(page, "summary")
    assert "nebras data prepare" in _section(page, "data-card")


def test_newest_evaluation_is_chosen(home):
    import json
    import os
    import time

    newer = home / "results" / "evaluation-2"
    newer.mkdir()
    metrics = json.loads((home / "results" / "evaluation" / "metrics.json").read_text())
    metrics["model_version"] = "v-newer"
    (newer / "metrics.json").write_text(json.dumps(metrics))
    later = time.time() + 5
    os.utime(newer / "metrics.json", (later, later))
    assert gather().evaluation.metrics["model_version"] == "v-newer"


def test_slides_have_the_headline_results(home):
    deck = render_slides(gather())
    assert deck.count('class="slide"') >= 5
    assert "Against TF-IDF retrieval: BLEU" in deck
    assert "conversation accuracy" in deck


def test_cli_writes_report_and_slides(home, capsys):
    out = home / "out"
    assert main(["report", "--out", str(out), "--slides"]) == 0
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "slides.html").is_file()
    assert "evaluation   found" in capsys.readouterr().out


def _version(home: Path, name: str, mtime_offset: float) -> Path:
    import json
    import os
    import time

    run = home / "models" / "nlg" / name
    run.mkdir(parents=True)
    (run / "nebras.json").write_text(json.dumps({"version": name}))
    (run / "training_log.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    stamp = time.time() + mtime_offset
    for path in (run, run / "training_log.jsonl"):
        os.utime(path, (stamp, stamp))
    return run


def test_training_run_is_the_evaluated_model_else_current_else_newest_finished(home):
    import json
    import os

    # A newer finished version and a newer run still in progress exist.
    _version(home, "v-newer", 10)
    _version(home, "v-running.partial", 20)
    # The evaluation scored models/nlg/current -> v-test-1 (relative path, resolved under NEBRAS_HOME).
    os.symlink("v-test-1", home / "models" / "nlg" / "current")
    assert gather().training.metadata["version"] == "v-test-1"
    # The evaluated model wins even over `current`.
    metrics_path = home / "results" / "evaluation" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["model"] = str(home / "models" / "nlg" / "v-newer")
    metrics_path.write_text(json.dumps(metrics))
    assert gather().training.metadata["version"] == "v-newer"
    # An evaluation of something that is not a trained directory: `current`.
    metrics["model"] = "gpt2-scratch:tiny"
    metrics_path.write_text(json.dumps(metrics))
    assert gather().training.metadata["version"] == "v-test-1"
    # Without `current`: the newest finished version, never the partial one.
    os.unlink(home / "models" / "nlg" / "current")
    assert gather().training.metadata["version"] == "v-newer"


def test_all_evaluation_runs_are_compared(home):
    import json
    import os
    import time

    metrics = json.loads((home / "results" / "evaluation" / "metrics.json").read_text())
    second = home / "results" / "recipes" / "smollm2"
    second.mkdir(parents=True)
    metrics.update(model_version="v-smollm2", bleu=41.5)
    (second / "metrics.json").write_text(json.dumps(metrics))
    later = time.time() + 5
    os.utime(second / "metrics.json", (later, later))
    (home / "results" / "not-an-evaluation").mkdir()
    (home / "results" / "not-an-evaluation" / "metrics.json").write_text(json.dumps({"val_loss": 1.0}))
    runs = _section(render_report(gather()), "runs")
    rows = re.findall(r"<tr>(.*?)</tr>", runs)
    assert len(rows) == 3  # header + two evaluations, the training metrics file is not one
    assert "evaluation" in rows[1] and "v-test-1" in rows[1]
    assert "recipes/smollm2" in rows[2] and "v-smollm2" in rows[2] and "41.50" in rows[2]
