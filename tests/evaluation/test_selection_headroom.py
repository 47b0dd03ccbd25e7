"""scripts/selection_headroom.py: what choosing one training reply scores, reference-free and oracle."""
from __future__ import annotations

import csv
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "selection_headroom.py"
headroom = runpy.run_path(str(SCRIPT))

FIELDS = ["instruction", "intent", "entity_type", "entity_value", "start_offset", "end_offset", "response"]
TYPICAL = "Refunds go back to your card within ten days after we receive the returned item."
# Training: the nearest message to "refund for my broken kettle" has a quirky reply; three others
# say the typical thing; one reply is word for word the validation reference.
TRAIN = [
    ("refund for my broken kettle", "refund", "Kettles are special, call the kettle desk on Tuesdays."),
    ("i want a refund", "refund", TYPICAL),
    ("how do refunds work", "refund", "Refunds go back to your card within ten days after we receive the item."),
    ("refund please", "refund", "A refund goes back to your card within ten days after we receive the returned item."),
    ("refund my kettle", "refund", "Your kettle refund is paid within ten days, once the kettle is back with us."),
    ("where is my parcel", "track", "Your parcel is on its way."),
]
REFERENCE = "Your kettle refund is paid within ten days, once the kettle is back with us."


def write(path: Path, rows) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for instruction, intent, response in rows:
            writer.writerow({"instruction": instruction, "intent": intent, "response": response,
                             "entity_type": "", "entity_value": "", "start_offset": "", "end_offset": ""})
    return path


def test_oracle_finds_the_reference_and_nothing_beats_it(tmp_path):
    write(tmp_path / "train.csv", TRAIN)
    write(tmp_path / "validation.csv", [("refund for my broken kettle please", "refund", REFERENCE)])
    out = tmp_path / "headroom.json"
    assert headroom["main"](["--data", str(tmp_path), "--k", "5", "--out", str(out), "--no-progress"]) == 0
    import json

    results = json.loads(out.read_text())
    assert results["oracle@5"]["rougeL"] == pytest.approx(100.0)
    assert results["oracle@5"]["rougeL"] >= results["central@5"]["rougeL"]
    assert results["oracle@5"]["rougeL"] >= results["tfidf"]["rougeL"]
    assert results["target"]["rougeL"] == pytest.approx(round(results["tfidf"]["rougeL"] * 1.25, 2))


def test_central_picks_the_typical_reply_over_the_nearest_quirky_one():
    rows = [{"instruction": i, "intent": n, "response": r, "entity_type": "", "entity_value": "",
             "start_offset": "", "end_offset": ""} for i, n, r in TRAIN]
    validation = [dict(rows[0], instruction="refund for my broken kettle", response=TYPICAL)]
    results = headroom["headroom"](rows, validation, ks=[4], show_progress=False)
    assert results["central@4"]["rougeL"] > results["tfidf"]["rougeL"]  # tfidf sends the quirky reply


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        headroom["main"](["--data", str(tmp_path / "nope")])
    assert "not found" in capsys.readouterr().err
