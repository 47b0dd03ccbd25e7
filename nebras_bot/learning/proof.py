"""Proof that the loop learns: a reproducible scenario shared by the tests and the docs figure.

A tiny GPT-2 is trained on a fixture where one topic (``check_cancellation_fee``) is missing, and
promoted. Then, each step through the real ``nebras learn`` pipeline:

1. customers open tickets on that topic and an agent resolves them: the candidate fine-tuned on
   them scores better on the topic (held-out tickets) and is promoted;
2. more tickets arrive, and the run crashes in the middle of fine-tuning: the registry, its
   history and the ``current`` link are as they were, and the tickets stay pending;
3. the next run fine-tunes on deliberately corrupted targets (every agent reply of the
   fine-tuning set replaced by random character strings, as a broken export or a mislabelled batch
   would do): the gate, which measures on the real resolutions and the fixed validation split,
   refuses the candidate and the current model is untouched.

``python -m nebras_bot.learning.proof --figure docs/img/continuous-learning-proof.png`` runs it in
a temporary directory and draws the figure (a few minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List

from nebras_bot.data.records import Dialogue, Turn
from nebras_bot.learning.settings import LearningSettings

logger = logging.getLogger(__name__)

MISSING_TOPIC = "check_cancellation_fee"
TOPIC_REPLY = "Cancelling is free within 14 days of purchase; after that a fee of 5 euros applies."
# The first batch of tickets uses the first FIRST_BATCH questions; later batches the rest.
TOPIC_QUESTIONS = [
    "how much does it cost to cancel my order", "is there a fee to cancel", "what is the cancellation fee",
    "do I pay anything if I cancel", "will I be charged for cancelling", "cancellation charges please",
    "how expensive is it to cancel a purchase", "what do you charge when I cancel", "is cancelling free",
    "tell me the fee for cancelling an order", "any penalty if I cancel my purchase", "cost of a cancellation",
    "do cancellations cost money", "what's the price of cancelling", "is there a charge for cancelling late",
    "fees for order cancellation", "cancel fee amount", "how much will cancelling cost me",
    "I want to know the cancellation cost", "are there cancellation fees",
    "what happens to my money if I cancel after two weeks", "does a late cancellation cost extra",
    "I bought something 20 days ago, can I cancel for free", "what would I lose by cancelling now",
    "explain your cancellation charges", "is a cancellation after a month charged",
    "do you keep a part of the price when I cancel", "cancellation policy costs",
]
FIRST_BATCH = 16
# Each topic has several ways of saying the answer, as real agents do (so no split is trivially
# memorised and the validation score has room to move both ways).
BASE_TOPICS: Dict[str, tuple] = {
    "track_order": ([
        "Your order is on its way; you can follow it with the tracking link in your email.",
        "It has shipped. The tracking link in your confirmation email shows where it is.",
        "Your parcel is with the carrier now and should arrive within a few days.",
    ], ["where is my order", "track my order", "has my parcel shipped", "when will my order arrive",
        "I want to know where my package is", "order status please", "is my order on the way",
        "where's my delivery", "can you track my purchase", "my order hasn't arrived yet",
        "check my shipment", "when does my parcel come"]),
    "get_invoice": ([
        "You can download your invoice from your account under Orders, then Invoices.",
        "Invoices are in your account: open Orders and choose Download invoice.",
        "I can help: your invoice is available under Orders in your account.",
    ], ["I need my invoice", "where can I get the invoice", "send me the bill", "download my invoice",
        "I want a copy of my invoice", "how do I get a receipt", "invoice for my purchase please",
        "can I see my bill", "where is the invoice for my order", "get invoice",
        "I lost my invoice", "please provide the invoice"]),
    "delivery_options": ([
        "We offer standard delivery in 3 to 5 days and express delivery the next day.",
        "You can choose standard shipping, 3 to 5 days, or express, next day.",
        "There are two options: standard (3 to 5 days) and express (next working day).",
    ], ["what delivery options do you have", "how can I get my order delivered", "shipping methods",
        "do you have express delivery", "which shipping options are there", "delivery choices please",
        "can I choose next day delivery", "what are the ways to ship", "tell me about delivery options",
        "is there fast shipping", "how do you deliver", "shipping options"]),
    "recover_password": ([
        "Click Forgot password on the sign-in page and follow the link we email you.",
        "Use Forgot password when you sign in; we will email you a reset link.",
        "No problem: choose Forgot password on the login page and check your email.",
    ], ["I forgot my password", "reset my password", "can't log in, lost password", "recover my password",
        "how do I change a forgotten password", "password reset please", "I need a new password",
        "help me get my password back", "lost my password", "forgot password",
        "my password doesn't work", "how to recover my account password"]),
}
TOPIC_REPLIES = [
    TOPIC_REPLY,
    "There is no fee within 14 days of purchase; after 14 days cancelling costs 5 euros.",
]


def _dialogue(did: str, intent: str, user: str, agent: str) -> Dialogue:
    return Dialogue(id=did, source="bitext", turns=[Turn(role="user", text=user, intent=intent),
                                                    Turn(role="agent", text=agent)])


def write_fixture(home: Path) -> Path:
    """A prepared-dataset directory without the missing topic, and a small Rasa domain."""
    from nebras_bot.data.prepare import write_split

    splits: Dict[str, List[Dialogue]] = {"train": [], "validation": [], "test": []}
    for intent, (replies, questions) in BASE_TOPICS.items():
        for number, question in enumerate(questions):
            split = "validation" if number % 6 == 5 else "test" if number % 6 == 4 else "train"
            splits[split].append(_dialogue(f"{intent}-{number}", intent, question, replies[number % len(replies)]))
    directory = home / "models" / "datasets" / "proof-base"
    directory.mkdir(parents=True, exist_ok=True)
    for name, dialogues in splits.items():
        write_split(directory, name, dialogues)
    (directory / "data_card.json").write_text(json.dumps({"version": "proof-base", "dialogues_per_split": {
        k: len(v) for k, v in splits.items()}}), encoding="utf-8")
    intents = list(BASE_TOPICS) + [MISSING_TOPIC, "inform"]
    domain = {"version": "3.1", "intents": intents,
              "responses": {f"utter_{i}": [{"text": "Let me help you with that."}] for i in BASE_TOPICS}}
    import yaml

    (home / "domain.yml").write_text(yaml.safe_dump(domain), encoding="utf-8")
    return directory


@dataclass(frozen=True)
class ProofConfig:
    """How much training the scenario spends (the docs figure uses the default; the fast test less)."""

    base_steps: int = 100  # the starting model, trained from scratch on the fixture
    finetune_steps: int = 40  # each `nebras learn` fine-tuning run
    finetune_lr: float = 1e-3
    crash_at_step: int = 2  # the crashing run dies after this many optimizer steps
    seed: int = 13


FAST = ProofConfig(base_steps=40, finetune_steps=12)


class SimulatedCrash(RuntimeError):
    """Raised from inside the fine-tuning loop to stand in for a crash (OOM, power cut, kill)."""


def train_base(dataset: Path, config: ProofConfig = ProofConfig()) -> str:
    """The starting model: a tiny GPT-2 trained from scratch on the fixture, promoted to current."""
    from nebras_bot.training import registry
    from nebras_bot.training.recipe import Recipe
    from nebras_bot.training.trainer import train

    recipe = Recipe(name="proof-base", base="gpt2-scratch:tiny", retrieval=False, max_length=128, batch_size=8,
                    lr=3e-3, warmup_steps=10, max_steps=config.base_steps, eval_every=max(config.base_steps, 1),
                    early_stopping_patience=0, checkpoint_every=10_000, log_every=25, bf16="false", threads=1,
                    seed=config.seed)
    model = train(recipe, data_dir=dataset, progress=False)
    registry.promote(model.name)
    return model.name


def file_tickets(questions: List[str], replies: List[str], intent: str, tag: str) -> List[str]:
    """Customers open tickets; an agent resolves each (what ``nebras tickets resolve`` records)."""
    from nebras_bot.support.tickets import TicketStore

    store = TicketStore()
    ids = []
    for number, (question, reply) in enumerate(zip(questions, replies)):
        ticket = store.create(description=question, idempotency_key=f"{tag}-{number}", intent=intent,
                              email=f"customer{number}@example.com")
        store.resolve(ticket.id, reply)
        ids.append(ticket.id)
    return ids


def corrupted(text: str, rng: random.Random) -> str:
    """Random character strings, as many words as ``text``: a target no model should learn."""
    alphabet = "bcdfghjklmnpqrstvwxz0123456789"
    return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(3, 9))) for _ in text.split())


def corrupt_dataset(source: Path, target: Path, seed: int = 7) -> Path:
    """A copy of a fine-tuning directory whose agent replies are all random strings."""
    rng = random.Random(seed)
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.jsonl"):
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            dialogue = Dialogue.parse_raw(line)
            if path.stem == "train":
                for turn in dialogue.turns:
                    if turn.role == "agent":
                        turn.text = corrupted(turn.text, rng)
            lines.append(dialogue.json())
        (target / path.name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return target


def corrupting_trainer(*, data: Path, base: Path, out: Path, settings: LearningSettings) -> Path:
    """``nebras learn``'s trainer, fed deliberately corrupted targets."""
    from nebras_bot.learning.backends import train_candidate

    return train_candidate(data=corrupt_dataset(data, out.parent / "corrupted-finetune"), base=base, out=out,
                           settings=settings)


def crashing_trainer(crash_at_step: int):
    """``nebras learn``'s real fine-tuning run, which crashes after ``crash_at_step`` steps."""

    def trainer(*, data: Path, base: Path, out: Path, settings: LearningSettings) -> Path:
        from nebras_bot.learning.backends import finetune_recipe
        from nebras_bot.training.trainer import train

        def crash(step: int, _record: Dict[str, Any]) -> None:
            if step >= crash_at_step:
                raise SimulatedCrash(f"simulated crash at fine-tuning step {step}")

        return Path(train(finetune_recipe(base, settings), data_dir=data, base=str(base), out_dir=out,
                          progress=False, callback=crash))

    return trainer


def learning_settings(config: ProofConfig = ProofConfig(), **overrides: Any) -> LearningSettings:
    values = dict(finetune_max_steps=config.finetune_steps, finetune_lr=config.finetune_lr,
                  finetune_eval_every=max(config.finetune_steps, 1), finetune_patience=0, finetune_warmup_steps=5,
                  max_minutes=10.0, replay_examples=500, new_example_repeats=3, new_eval_fraction=0.25,
                  eval_limit=None, validation_tolerance=0.05, score_metric="bits_per_byte")
    values.update(overrides)
    return LearningSettings(**values)


def registry_state() -> Dict[str, Any]:
    """What a run must not change unless it promotes: versions, history, ``current`` and its weights."""
    from nebras_bot import paths
    from nebras_bot.learning.pipeline import run_history
    from nebras_bot.training import registry

    current = registry.current_version()
    digest = hashlib.sha256()
    if current:
        for path in sorted((paths.nlg_models_dir() / current).rglob("*")):
            if path.is_file():
                digest.update(path.name.encode() + path.read_bytes())
    return {"versions": [v["version"] for v in registry.list_versions()], "current": current,
            "history": registry.history(), "current_sha256": digest.hexdigest() if current else None,
            "runs": len(run_history()), "hidden": sorted(p.name for p in paths.nlg_models_dir().glob(".*"))}


def run(home: Path, config: ProofConfig = ProofConfig()) -> Dict[str, Any]:
    """The whole scenario in ``home`` (NEBRAS_HOME and the working directory must be ``home``)."""
    from nebras_bot.learning.pipeline import learn
    from nebras_bot.learning.store import HarvestStore

    dataset = write_fixture(home)
    base_version = train_base(dataset, config)
    results: Dict[str, Any] = {"config": asdict(config), "base_version": base_version}

    good = TOPIC_QUESTIONS[:FIRST_BATCH]
    file_tickets(good, [TOPIC_REPLIES[n % len(TOPIC_REPLIES)] for n in range(len(good))], MISSING_TOPIC, "good")
    results["tickets"] = len(good)
    results["learned"] = asdict(learn(learning_settings(config)))

    later = TOPIC_QUESTIONS[FIRST_BATCH:]
    file_tickets(later, [TOPIC_REPLIES[n % len(TOPIC_REPLIES)] for n in range(len(later))], MISSING_TOPIC, "later")
    results["later_tickets"] = len(later)
    before = registry_state()
    watermark_before = HarvestStore().watermark("learn.harvest_id")
    try:
        learn(learning_settings(config), trainer=crashing_trainer(config.crash_at_step))
        results["crash"] = {"raised": None}
    except SimulatedCrash as error:
        results["crash"] = {"raised": str(error)}
    after = registry_state()
    results["crash"].update(state_before=before, state_after=after, watermark_before=watermark_before,
                            watermark_after=HarvestStore().watermark("learn.harvest_id"))

    before = registry_state()
    results["corrupted"] = asdict(learn(learning_settings(config), trainer=corrupting_trainer))
    results["corrupted"].update(state_before=before, state_after=registry_state())
    return results


def run_in(directory: Path, config: ProofConfig = ProofConfig()) -> Dict[str, Any]:
    """:func:`run` with NEBRAS_HOME, NEBRAS_DB_URL and the working directory set to ``directory``."""
    saved = {k: os.environ.get(k) for k in ("NEBRAS_HOME", "NEBRAS_DB_URL")}
    cwd = os.getcwd()
    os.environ["NEBRAS_HOME"] = str(directory)
    os.environ["NEBRAS_DB_URL"] = f"sqlite:///{directory / 'var' / 'support.db'}"
    (directory / "var").mkdir(parents=True, exist_ok=True)
    os.chdir(directory)
    try:
        from nebras_bot.support.service import reset_services

        reset_services()
        return run(directory, config)
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def topic_scores(results: Dict[str, Any], metric: str = "bits_per_byte") -> Dict[str, float]:
    """The numbers the docs quote: the topic and validation score before and after learning."""
    metrics = results["learned"]["metrics"]
    return {"topic_before": metrics["current"]["new"][metric], "topic_after": metrics["candidate"]["new"][metric],
            "validation_before": metrics["current"]["validation"][metric],
            "validation_after": metrics["candidate"]["validation"][metric]}


def plot(results: Dict[str, Any], target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    panels = ((axes[0], results["learned"], f"{results['tickets']} resolved tickets on the missing topic"),
              (axes[1], results["corrupted"], "fine-tuned on corrupted targets"))
    for axis, run_record, title in panels:
        labels, current, candidate = [], [], []
        for split, label in (("validation", "fixed validation split"), ("new", "held-out topic tickets")):
            labels.append(label)
            current.append(run_record["metrics"]["current"][split]["bits_per_byte"])
            candidate.append(run_record["metrics"]["candidate"][split]["bits_per_byte"])
        xs = list(range(len(labels)))
        colour = "#2b7bba" if run_record["decision"] == "promoted" else "#d9534f"
        bars = axis.bar([x - 0.2 for x in xs], current, 0.4, label="current model", color="#8c8c8c")
        bars += axis.bar([x + 0.2 for x in xs], candidate, 0.4, label="candidate", color=colour)
        for bar in bars:
            axis.annotate(f"{bar.get_height():.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=7)
        axis.set_xticks(xs)
        axis.set_xticklabels(labels)
        axis.set_ylabel("bits per byte (lower is better)")
        axis.set_title(f"{title}\n-> {run_record['decision']}", fontsize=9)
        axis.legend(fontsize=8)
    fig.suptitle("nebras learn on a tiny GPT-2: promote only what helps", fontsize=10)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figure", type=Path, default=Path("docs/img/continuous-learning-proof.png"))
    parser.add_argument("--results", type=Path, help="also write the results as JSON here")
    parser.add_argument("--fast", action="store_true", help="the fast test's (smaller) training budget")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)
    config = FAST if args.fast else ProofConfig()
    figure, results_path = args.figure.resolve(), args.results.resolve() if args.results else None
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run_in(args.keep.resolve(), config)
    else:
        with tempfile.TemporaryDirectory(prefix="nebras-proof-") as work:
            results = run_in(Path(work), config)
    plot(results, figure)
    if results_path:
        results_path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(json.dumps(topic_scores(results)))
    for name in ("learned", "corrupted"):
        print(name, results[name]["decision"], results[name]["reasons"])
    print("crash:", results["crash"]["raised"])
    print(f"figure written to {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
