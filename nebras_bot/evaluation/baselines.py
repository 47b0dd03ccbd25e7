"""The two baselines every model is measured against, computed in the same run.

- ``intent_template``: the assistant's own fixed reply for the intent, i.e. the Rasa domain's
  ``utter_<intent>`` response as Rasa renders it (conditional variants whose slot conditions hold
  first, ``{slot}`` placeholders filled from the message's entities; the same rendering as the
  training prompts' ``template:`` field). Intents without one get ``utter_default`` (or an empty
  reply when the domain has none); they are counted.
- ``tfidf_retrieval``: the reply of the most similar ``--train`` instruction by TF-IDF cosine
  similarity (word 1-2 grams, sublinear tf), placeholders filled the same way.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import yaml

logger = logging.getLogger(__name__)

DEFAULT_RESPONSE = "utter_default"
_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


def fill_known(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` placeholders that have a value; leave the others untouched."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if values.get(m.group(1)) else m.group(0), text)


def _domain_files(domain: Path) -> List[Path]:
    if domain.is_dir():
        return sorted(p for p in domain.rglob("*") if p.suffix in (".yml", ".yaml"))
    return [domain] if domain.is_file() else []


def load_domain_responses(*domains: Path) -> Dict[str, str]:
    """``{response name: text}`` from a domain file or directory (several are merged).

    Raises ``FileNotFoundError`` naming the paths when none of them exists.
    """
    files = [f for d in domains for f in _domain_files(Path(d))]
    if not files:
        raise FileNotFoundError(f"no Rasa domain found at {', '.join(str(d) for d in domains)}")
    responses: Dict[str, str] = {}
    for path in files:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(content, dict):
            continue
        for name, variations in (content.get("responses") or {}).items():
            text = _pick_variation(variations or [])
            if text is not None:
                responses.setdefault(name, text)
    return responses


def _pick_variation(variations: Sequence[dict]) -> Optional[str]:
    texts = [v for v in variations if isinstance(v, dict) and v.get("text")]
    plain = [v for v in texts if not v.get("condition") and not v.get("channel")]
    chosen = (plain or texts or [None])[0]
    return chosen["text"] if chosen else None


class IntentTemplateBaseline:
    """The domain's ``utter_<intent>`` reply for each message, as Rasa's templated NLG renders it.

    ``variants`` maps intents to their response variants (``serving_path.domain_templates``);
    ``default`` is sent for intents without one (``utter_default``), and such intents are counted.
    """

    name = "intent_template"

    def __init__(self, variants: Mapping[str, list], default: str = "", generative: Optional[str] = None) -> None:
        self.variants = dict(variants)
        self.default = default
        self.generative = generative  # ``utter_generative``'s text: serving's reply without a template
        self.missing: Dict[str, int] = {}

    @classmethod
    def from_domain(cls, *domains: Path) -> "IntentTemplateBaseline":
        """Load a domain file or directory (the first that exists); FileNotFoundError if none."""
        from nebras_bot.evaluation.serving_path import GENERATIVE_RESPONSE, domain_templates

        existing = [Path(d) for d in domains if Path(d).exists()]
        if not existing:
            raise FileNotFoundError(f"no Rasa domain found at {', '.join(str(d) for d in domains)}")
        responses = load_domain_responses(existing[0])
        return cls(domain_templates(existing[0]), responses.get(DEFAULT_RESPONSE, ""), responses.get(GENERATIVE_RESPONSE))

    def template(self, intent: Optional[str], values: Mapping[str, str]) -> Optional[str]:
        """The rendered ``utter_<intent>`` text, or None when the domain has none that fits."""
        from nebras_bot.evaluation.serving_path import render

        return render(self.variants, intent, values)

    def reply(self, intent: Optional[str], values: Mapping[str, str]) -> str:
        text = self.template(intent, values)
        if text is None:
            key = intent or "<none>"
            self.missing[key] = self.missing.get(key, 0) + 1
            return self.default
        return text


class TfidfRetrievalBaseline:
    """Nearest ``--train`` instruction by TF-IDF cosine similarity; its reply is the answer."""

    name = "tfidf_retrieval"

    def __init__(self, instructions: Sequence[str], replies: Sequence[str], ngram_max: int = 2) -> None:
        if len(instructions) != len(replies):
            raise ValueError("one reply per training instruction is required")
        if not instructions:
            raise ValueError("the TF-IDF baseline needs at least one training row")
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.replies = list(replies)
        self.vectorizer = TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True, lowercase=True)
        self.matrix = self.vectorizer.fit_transform(list(instructions))

    def nearest(self, queries: Iterable[str]) -> List[int]:
        """Index of the most similar training instruction for each query (ties: first row)."""
        queries = list(queries)
        if not queries:
            return []
        similarity = self.vectorizer.transform(queries) @ self.matrix.T  # rows are L2-normalised
        return [int(i) for i in similarity.toarray().argmax(axis=1)]

    def replies_for(self, queries: Sequence[str], values: Sequence[Mapping[str, str]]) -> List[str]:
        return [fill_known(self.replies[i], v) for i, v in zip(self.nearest(queries), values)]
