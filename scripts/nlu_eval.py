#!/usr/bin/env python
"""NLU quality on held-out Bitext rows: weighted intent F1 (and accuracy, fallback rate).

The Bitext importer in ``config.yml`` holds out a seeded fraction of ``intents.csv`` that
``rasa train`` never sees; this script evaluates intent classification on exactly those rows.

    # evaluate a model trained with the current config.yml (its hold-out is never trained on)
    NEBRAS_BITEXT_DIR=../shared/data/bitext python scripts/nlu_eval.py --model models/nebras.tar.gz
    # or train an NLU-only model first (hand-written data + Bitext train split), then evaluate
    NEBRAS_BITEXT_DIR=../shared/data/bitext python scripts/nlu_eval.py --out results/nlu_eval

Prints ``weighted intent F1: 0.9xxx`` and writes ``nlu_eval.json`` (per-intent report, the
worst confusions, the split's sizes) to ``--out``. Exit status 1 when F1 < ``--min-f1``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

IMPORTER_NAME = "nebras_bot.data.importer.BitextImporter"
FALLBACK_INTENT = "nlu_fallback"
logger = logging.getLogger("nlu_eval")


def importer_options(config_path: Path) -> Dict[str, Any]:
    """The BitextImporter options in a Rasa config file ({} when it has no such importer)."""
    import rasa.shared.utils.io

    config = rasa.shared.utils.io.read_config_file(str(config_path))
    for entry in config.get("importers") or []:
        if entry.get("name") == IMPORTER_NAME:
            return {key: value for key, value in entry.items() if key != "name"}
    return {}


def load_holdout(config_path: Path, bitext_dir: Optional[Path]):
    """The held-out rows exactly as the importer configured in ``config_path`` splits them."""
    from nebras_bot.data.importer import BitextImporter

    options = importer_options(config_path)
    if bitext_dir is not None:
        options["directory"] = str(bitext_dir)
    importer = BitextImporter(config_file=str(config_path), **options)
    split = importer.load_split()
    if split is None:
        raise SystemExit("no Bitext data: set NEBRAS_BITEXT_DIR or pass --bitext DIR")
    if not split.holdout:
        raise SystemExit(f"{config_path}: the BitextImporter holds out no rows (holdout_fraction)")
    return importer, split


def train_nlu_model(config_path: Path, out_dir: Path, bitext_dir: Optional[Path]) -> Path:
    """Train an NLU-only model on data/nlu + the Bitext training split."""
    from rasa.model_training import train_nlu

    if bitext_dir is not None:
        os.environ["NEBRAS_BITEXT_DIR"] = str(bitext_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = train_nlu(
        config=str(config_path),
        nlu_data=str(REPO_ROOT / "data" / "nlu"),
        output=str(out_dir),
        fixed_model_name="nlu_eval",
        domain=str(REPO_ROOT / "domain.yml"),
    )
    if not model:
        raise SystemExit("NLU training failed")
    return Path(model)


async def _parse_all(model_path: Path, texts: Sequence[str]) -> List[Tuple[str, float]]:
    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)  # no debug line per parsed message
    agent = Agent.load(str(model_path))
    predictions = []
    for text in texts:
        parsed = await agent.parse_message(text)
        intent = parsed.get("intent") or {}
        predictions.append((intent.get("name") or "", float(intent.get("confidence") or 0.0)))
    return predictions


def evaluate(model_path: Path, rows) -> Dict[str, Any]:
    """Intent metrics of ``model_path`` on Bitext rows; nlu_fallback counts as a wrong answer."""
    from sklearn.metrics import accuracy_score, classification_report, f1_score

    texts = [row.instruction for row in rows]
    gold = [row.intent for row in rows]
    predicted = [name for name, _ in asyncio.run(_parse_all(model_path, texts))]
    # The same figure without the fallback: the classifier's top intent is hidden behind
    # nlu_fallback, so this is a lower bound of what the classifier alone would score.
    confusions = Counter((g, p) for g, p in zip(gold, predicted) if g != p)
    return {
        "model": str(model_path),
        "examples": len(rows),
        "weighted_f1": float(f1_score(gold, predicted, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, predicted)),
        "fallback_rate": predicted.count(FALLBACK_INTENT) / max(1, len(predicted)),
        "per_intent": classification_report(gold, predicted, output_dict=True, zero_division=0),
        "top_confusions": [
            {"gold": g, "predicted": p, "count": n} for (g, p), n in confusions.most_common(15)
        ],
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config.yml")
    parser.add_argument("--model", type=Path, help="a model trained with --config (default: train an NLU model)")
    parser.add_argument("--bitext", type=Path, help="Bitext directory (default: $NEBRAS_BITEXT_DIR)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "nlu_eval")
    parser.add_argument("--min-f1", type=float, default=0.95)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    importer, split = load_holdout(args.config, args.bitext)
    print(
        f"Bitext split from {importer.directory}: {split.stats.trained} rows for training, "
        f"{split.stats.held_out} held out (fraction {importer.holdout_fraction}, seed {importer.seed})"
    )
    model = args.model or train_nlu_model(args.config, Path(tempfile.mkdtemp(prefix="nlu_eval_")), args.bitext)
    metrics = evaluate(model, split.holdout)
    metrics["split"] = {
        "trained": split.stats.trained, "held_out": split.stats.held_out,
        "capped": split.stats.capped, "holdout_fraction": importer.holdout_fraction, "seed": importer.seed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nlu_eval.json").write_text(json.dumps(metrics, indent=2))
    print(f"held-out examples: {metrics['examples']}")
    print(f"accuracy: {metrics['accuracy']:.4f}  fallback rate: {metrics['fallback_rate']:.4f}")
    print(f"weighted intent F1: {metrics['weighted_f1']:.4f}")
    for confusion in metrics["top_confusions"][:5]:
        print(f"  {confusion['gold']} -> {confusion['predicted']}: {confusion['count']}")
    return 0 if metrics["weighted_f1"] >= args.min_f1 else 1


if __name__ == "__main__":
    sys.exit(main())
