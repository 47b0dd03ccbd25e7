"""``nebras learn``'s decision gate and its safety: what a promoted, refused, failed, killed or
overlapping run does to the registry, the ``current`` link, the run history and the watermark.

Training and evaluation are replaced by small fakes here (the real ones run in test_proof.py), so
each property is checked in milliseconds and for every failure point.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nebras_bot.learning import pipeline
from nebras_bot.learning.lock import LockHeld, RunLock
from nebras_bot.learning.pipeline import FAILED, NOTHING_NEW, PROMOTED, REFUSED, decide, learn, run_history
from nebras_bot.learning.settings import LearningSettings
from nebras_bot.learning.store import HarvestStore
from nebras_bot.support.tickets import TicketStore
from nebras_bot.training import registry

BASE_VERSION = "v0"


def make_version(directory: Path, version: str, dataset: str = "base000000") -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    (directory / "nebras.json").write_text(json.dumps({"version": version, "dataset_version": dataset}))
    (directory / "model.safetensors").write_bytes(os.urandom(64))
    return directory


@pytest.fixture
def current(home, base_dataset) -> Path:
    path = make_version(home / "models" / "nlg" / BASE_VERSION, BASE_VERSION)
    registry.promote(BASE_VERSION)
    return path


QUESTIONS = ["how much does it cost to cancel", "is there a cancellation fee", "do I pay to cancel late",
             "cancelling after a month, what happens to my money", "what are your cancellation charges",
             "will you keep part of the price if I cancel", "is cancelling free of charge",
             "tell me the penalty for a late cancellation"]
ANSWERS = ["Cancelling is free within 14 days of purchase.", "After 14 days a cancellation costs 5 euros.",
           "There is no fee in the first two weeks; later it is 5 euros.", "We refund everything but 5 euros after day 14."]


def resolved_tickets(count: int, tag: str = "t") -> None:
    """Tickets resolved the way an agent does it: ``nebras tickets resolve TCK-... --reply "..."``."""
    from nebras_bot.cli import main as nebras

    store = TicketStore()
    for n in range(count):
        ticket = store.create(description=QUESTIONS[n % len(QUESTIONS)], idempotency_key=f"{tag}-{n}",
                              intent="check_cancellation_fee", email=f"c{n}@example.com")
        assert nebras(["tickets", "resolve", ticket.id, "--reply", ANSWERS[n % len(ANSWERS)]]) == 0


class FakeTrainer:
    def __init__(self, fail: BaseException | None = None):
        self.calls, self.fail = [], fail

    def __call__(self, *, data: Path, base: Path, out: Path, settings: LearningSettings) -> Path:
        self.calls.append({"data": data, "base": base, "train_rows": len((data / "train.jsonl").read_text().splitlines())})
        (out / "partial").mkdir(parents=True)
        if self.fail is not None:
            raise self.fail
        return make_version(out / f"cand-{len(self.calls)}", f"cand-{len(self.calls)}")


def evaluator(scores):
    """``scores[(model is current, split)]`` -> bits per byte (lower is better)."""
    def evaluate(*, model: Path, data: Path, train: Path, out: Path, settings: LearningSettings):
        label = "current" if model.name == BASE_VERSION else "candidate"
        return {"n": 3, "bits_per_byte": scores[label, data.stem]}
    return evaluate


BETTER = evaluator({("current", "validation"): 1.0, ("candidate", "validation"): 1.01,
                    ("current", "new"): 3.0, ("candidate", "new"): 2.0})
WORSE_ON_NEW = evaluator({("current", "validation"): 1.0, ("candidate", "validation"): 0.9,
                          ("current", "new"): 3.0, ("candidate", "new"): 3.2})
WORSE_ON_VALIDATION = evaluator({("current", "validation"): 1.0, ("candidate", "validation"): 1.2,
                                 ("current", "new"): 3.0, ("candidate", "new"): 1.0})


def state(home: Path):
    root = home / "models" / "nlg"
    return {"versions": [v["version"] for v in registry.list_versions()], "current": registry.current_version(),
            "history": registry.history(), "weights": (root / BASE_VERSION / "model.safetensors").read_bytes(),
            "hidden": sorted(p.name for p in root.glob(".*"))}


def settings(**overrides) -> LearningSettings:
    return LearningSettings(**{"validation_tolerance": 0.02, "min_new_gain": 0.0, **overrides})


@pytest.mark.parametrize("scores, tolerance, gain, expected", [
    ({"validation": (1.0, 1.01), "new": (3.0, 2.0)}, 0.02, 0.0, []),
    ({"validation": (1.0, 1.05), "new": (3.0, 2.0)}, 0.02, 0.0, ["validation"]),
    ({"validation": (1.0, 1.05), "new": (3.0, 2.0)}, 0.10, 0.0, []),
    ({"validation": (1.0, 0.9), "new": (3.0, 3.0)}, 0.02, 0.0, ["new-data"]),
    ({"validation": (1.0, 0.9), "new": (3.0, 2.9)}, 0.02, 0.05, ["new-data"]),
    ({"validation": (1.0, 1.5), "new": (3.0, 3.5)}, 0.02, 0.0, ["validation", "new-data"]),
])
def test_decision_gate(scores, tolerance, gain, expected):
    metrics = {model: {split: {"bits_per_byte": values[i]} for split, values in scores.items()}
               for i, model in enumerate(("current", "candidate"))}
    reasons = decide(metrics, settings(validation_tolerance=tolerance, min_new_gain=gain))
    assert [r.split()[0] for r in reasons] == expected


def test_decision_gate_for_a_higher_is_better_metric_and_missing_values():
    metrics = {"current": {"validation": {"bleu": 20.0}, "new": {"bleu": 5.0}},
               "candidate": {"validation": {"bleu": 19.9}, "new": {"bleu": 9.0}}}
    assert decide(metrics, settings(score_metric="bleu")) == []
    metrics["candidate"]["new"]["bleu"] = 4.0
    assert decide(metrics, settings(score_metric="bleu"))[0].startswith("new-data bleu did not improve")
    del metrics["candidate"]["validation"]["bleu"]
    assert "could not be computed for candidate/validation" in decide(metrics, settings(score_metric="bleu"))[0]


def test_promoted_run_enters_the_registry_and_rollback_undoes_it(home, current):
    resolved_tickets(8)
    trainer = FakeTrainer()
    record = learn(settings(), trainer=trainer, evaluator=BETTER)
    assert record.decision == PROMOTED and record.promoted_version == "cand-1", record.reasons
    assert registry.current_version() == "cand-1" and trainer.calls[0]["base"] == current.resolve()
    # fine-tuned on the new training examples (repeated) plus a replay of the base data
    assert trainer.calls[0]["train_rows"] > 6
    meta = json.loads((home / "models" / "nlg" / "cand-1" / "nebras.json").read_text())
    assert meta["learning_run"]["parent"] == BASE_VERSION and meta["dataset_version"] == record.inputs["dataset_version"]
    assert [r["decision"] for r in run_history()] == [PROMOTED]
    assert not list((home / "models" / "nlg").glob(".candidate-*"))
    # the next run has nothing new: no training at all
    again = learn(settings(), trainer=trainer, evaluator=BETTER)
    assert again.decision == NOTHING_NEW and len(trainer.calls) == 1
    assert registry.rollback() == BASE_VERSION and registry.current_version() == BASE_VERSION


@pytest.mark.parametrize("scores, reason", [(WORSE_ON_NEW, "new-data"), (WORSE_ON_VALIDATION, "validation")])
def test_refused_run_leaves_the_current_model_untouched(home, current, scores, reason):
    resolved_tickets(8)
    before = state(home)
    record = learn(settings(), trainer=FakeTrainer(), evaluator=scores)
    assert record.decision == REFUSED and record.reasons[0].startswith(reason)
    assert state(home) == before
    assert run_history()[-1]["reasons"] == record.reasons and run_history()[-1]["metrics"] == record.metrics
    # the refused material is consumed: the next run does not retrain on it
    assert learn(settings(), trainer=FakeTrainer(), evaluator=scores).decision == NOTHING_NEW


@pytest.mark.parametrize("where", ["train", "evaluate", "promote"])
def test_a_crash_anywhere_leaves_registry_current_and_watermark_as_they_were(home, current, where):
    resolved_tickets(8)
    before, store = state(home), HarvestStore()
    mark = store.watermark(pipeline.RUN_WATERMARK)
    trainer = FakeTrainer(fail=MemoryError("out of memory") if where == "train" else None)
    evaluate = BETTER
    if where == "evaluate":
        def evaluate(**kwargs):
            raise RuntimeError("evaluation died")

    class BrokenRegistry:
        def current(self):
            return registry.registry_dir() / BASE_VERSION

        def promote(self, version):
            raise OSError("disk full")

    with pytest.raises((MemoryError, RuntimeError, OSError)):
        learn(settings(), trainer=trainer, evaluator=evaluate,
              registry=BrokenRegistry() if where == "promote" else None)
    assert state(home) == before
    assert store.watermark(pipeline.RUN_WATERMARK) == mark
    assert run_history()[-1]["decision"] == FAILED
    # the same tickets are learnt by the next run
    record = learn(settings(), trainer=FakeTrainer(), evaluator=BETTER)
    assert record.decision == PROMOTED and record.inputs["learning"]["new_dialogues"] == 8


KILLED_RUN = """
import os, signal
from pathlib import Path
from nebras_bot.learning.pipeline import learn
from nebras_bot.learning.settings import LearningSettings

def trainer(*, data, base, out, settings):
    (out / "half-written.partial").mkdir(parents=True)
    (out / "half-written.partial" / "weights.bin").write_bytes(b"0" * 1024)
    os.kill(os.getpid(), signal.SIGKILL)  # no finally, no atexit: like a power cut

learn(LearningSettings(), trainer=trainer)
"""


def test_a_killed_run_changes_nothing_and_the_next_run_recovers(home, current):
    resolved_tickets(8)
    before = state(home)
    result = subprocess.run([sys.executable, "-c", KILLED_RUN], env=dict(os.environ), cwd=home,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    after = state(home)
    assert after.pop("hidden") and {k: v for k, v in before.items() if k != "hidden"} == after  # debris only
    assert run_history() == []  # nothing was recorded as done
    with RunLock(LearningSettings().lock_path()):  # the kernel released the dead run's lock
        pass
    record = learn(settings(), trainer=FakeTrainer(), evaluator=BETTER)
    assert record.decision == PROMOTED and record.inputs["learning"]["new_dialogues"] == 8
    assert not list((home / "models" / "nlg").glob(".candidate-*"))  # the debris is cleaned up


def test_overlapping_runs_are_refused_clearly(home, current, capsys):
    from nebras_bot.cli import main as nebras

    resolved_tickets(2)
    with RunLock(LearningSettings().lock_path()):
        with pytest.raises(LockHeld, match="another `nebras learn` run holds"):
            learn(settings(), trainer=FakeTrainer(), evaluator=BETTER)
        assert nebras(["learn"]) == 3
    assert "another `nebras learn` run holds" in capsys.readouterr().err
    assert run_history() == [] and registry.current_version() == BASE_VERSION
