"""The model card (``README.md``) written next to every trained model."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from nebras_bot.data.bitext import ATTRIBUTION

CARD_FILE = "README.md"


def render_model_card(metadata: Dict[str, Any], recipe: Any) -> str:
    metrics = metadata.get("metrics", {})
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(metrics.items()))
    return f"""# Nebras response model {metadata['version']}

A causal language model that writes customer-support replies for the Nebras assistant (Rasa NLG
plug-in, `nebras_bot.generation`). Load it with `nebras_bot.generation.loader.load_causal_lm("models/nlg/{metadata['version']}")`
or through `models/nlg/current` once promoted (`nebras models promote {metadata['version']}`).

## Base model and training

- Base model: `{metadata['base_model']}` ({metadata.get('base_model_version', '')}); method: {metadata['method']} fine-tuning.
- Recipe: `{metadata['recipe']}` (full recipe in `recipe.json`); bf16 autocast: {metadata.get('bf16')}.
- Retrieval conditioning: {metadata['retrieval']} (exemplar index in `exemplars/` when true).
- Dataset version: `{metadata['dataset_version']}` (`nebras data prepare`; data card in that directory).
- Training log (step, loss, val_loss, lr, tokens/s): `{metadata.get('training_log', 'training_log.jsonl')}`.

## Data and licence

Trained on the Bitext customer-support data: {ATTRIBUTION}
(https://cdla.dev/sharing-1-0/). Derived data and this model's training data keep that
attribution. Also the assistant's own Rasa stories and domain responses, and, when present, logged
support conversations and tickets (PII-scrubbed).

## Metrics (validation split)

| metric | value |
| --- | --- |
{rows}

Text metrics (BLEU, ROUGE-L, entity recall) against baselines: `nebras evaluate --model <this dir> ...`
and `docs/training.md`.

## Intended use

Drafting replies inside the Nebras assistant, behind its output guard and template fallback:
the prompt carries the intent, entities, slots, the templated reply and exemplar replies, and the
model writes `{{order_id}}`-style placeholders that are filled from slots after generation.

## Limits

- Small model trained on a few thousand synthetic Bitext replies on a CPU budget: it imitates
  Bitext's style and can be generic, wrong about company-specific facts, or repetitive.
- It knows nothing about real orders; facts come from actions and slots, and replies that mention
  numbers, ids or contact details not present in the conversation are rejected by the guard.
- English only. Not for use without the guard and the templated fallback.
"""


def write_model_card(directory: Path, metadata: Dict[str, Any], recipe: Any) -> Path:
    path = Path(directory) / CARD_FILE
    path.write_text(render_model_card(metadata, recipe), encoding="utf-8")
    return path
