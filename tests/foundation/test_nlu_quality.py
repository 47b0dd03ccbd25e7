"""NLU quality: weighted intent F1 >= 0.95 on Bitext rows held out from training.

The shipped config's BitextImporter holds out a seeded 20% of intents.csv that `rasa train`
never sees; `scripts/nlu_eval.py` parses exactly those rows with the trained model and prints the
weighted intent F1 (nlu_fallback counts as a wrong answer).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys


def test_weighted_intent_f1_on_held_out_bitext_rows(trained_rasa_model, bitext_dir, repo_root, rasa_env, tmp_path):
    out = tmp_path / "nlu_eval"
    result = subprocess.run(
        [sys.executable, "scripts/nlu_eval.py", "--model", str(trained_rasa_model), "--bitext", str(bitext_dir),
         "--out", str(out), "--min-f1", "0.95"],
        cwd=repo_root, env=rasa_env, capture_output=True, text=True, timeout=600,
    )
    print(result.stdout[-2000:])
    match = re.search(r"weighted intent F1: ([0-9.]+)", result.stdout)
    assert match, (result.stdout + result.stderr)[-4000:]
    metrics = json.loads((out / "nlu_eval.json").read_text())
    assert metrics["weighted_f1"] == float(match.group(1)) or abs(metrics["weighted_f1"] - float(match.group(1))) < 1e-4
    assert metrics["examples"] >= 500  # a real hold-out, not a handful of rows
    assert metrics["weighted_f1"] >= 0.95, metrics["top_confusions"]
    assert result.returncode == 0
