"""The two baselines every model is measured against, computed in the same run.

- ``intent_template``: the assistant's own fixed reply for the intent, i.e. the Rasa domain's
  ``utter_<intent>`` response (first text variation without a condition or channel), with ``{slot}``
  placeholders filled from the message's entities. Intents without such a response get
  ``utter_default`` (or an empty reply when the domain has none); they are counted.
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
    """The domain's ``utter_<intent>`` reply for each message."""

    name = "intent_template"

    def __init__(self, responses: Mapping[str, str]) -> None:
        self.responses = dict(responses)
        self.missing: Dict[str, int] = {}

    def template(self, intent: str) -> Optional[str]:
        """The raw ``utter_<intent>`` text, or None when the domain has none."""
        return self.responses.get(f"utter_{intent}")

    def reply(self, intent: str, values: Mapping[str, str]) -> str:
        text = self.template(intent)
        if text is None:
            self.missing[intent] = self.missing.get(intent, 0) + 1
            text = self.responses.get(DEFAULT_RESPONSE, "")
        return fill_known(text, values)


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
