"""Exemplar retrieval: a TF-IDF index over training (customer message -> agent reply) pairs.

At generation time the replies of the ``k`` training messages most similar to the user's message
go into the prompt as ``exemplar:`` lines; training uses the same index and the same ``top_k``
(excluding the example's own reply), so the model learns to use exemplars the way it sees them at
serving time. Works offline (scikit-learn), builds in well under a second for a few thousand pairs.

Saved as plain JSON (``exemplars/index.json``: messages, replies, intents, settings); the
vectoriser is refitted on load, which is deterministic, so nothing is unpickled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence

INDEX_FILE = "index.json"
FORMAT_VERSION = 1
DEFAULT_K = 2
# Word uni/bi-grams with sublinear tf: robust to Bitext's paraphrase-style variation.
NGRAM_RANGE = (1, 2)


class ExemplarIndex:
    """TF-IDF nearest neighbours over training messages, returning their replies."""

    def __init__(self, queries: Sequence[str], replies: Sequence[str], intents: Optional[Sequence[Optional[str]]] = None):
        if len(queries) != len(replies):
            raise ValueError(f"{len(queries)} queries but {len(replies)} replies")
        if intents is not None and len(intents) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(intents)} intents")
        if not queries:
            raise ValueError("an exemplar index needs at least one (query, reply) pair")
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.queries: List[str] = [str(q) for q in queries]
        self.replies: List[str] = [str(r) for r in replies]
        self.intents: List[Optional[str]] = list(intents) if intents is not None else [None] * len(self.queries)
        self._vectorizer = TfidfVectorizer(ngram_range=NGRAM_RANGE, sublinear_tf=True, lowercase=True)
        self._matrix = self._vectorizer.fit_transform(self.queries)

    @classmethod
    def build(
        cls, queries: Sequence[str], replies: Sequence[str], intents: Optional[Sequence[Optional[str]]] = None
    ) -> "ExemplarIndex":
        return cls(queries, replies, intents)

    def __len__(self) -> int:
        return len(self.queries)

    def scores(self, query: str):
        """Cosine similarity of ``query`` to every indexed message (a dense numpy array)."""
        vector = self._vectorizer.transform([query or ""])
        return (self._matrix @ vector.T).toarray().ravel()

    def top_k(
        self,
        query: str,
        k: int = DEFAULT_K,
        intent: Optional[str] = None,
        exclude: Sequence[str] = (),
    ) -> List[str]:
        """Replies of the ``k`` most similar messages, best first, without repeated replies.

        With ``intent``, only pairs of that intent are considered (all pairs when the intent is
        unknown to the index). Replies in ``exclude`` are skipped (training excludes the example's
        own reply). Ties keep index order, so results are deterministic.
        """
        if k <= 0:
            return []
        scores = self.scores(query)
        candidates = range(len(self.queries))
        if intent is not None and intent in self.intents:
            candidates = [i for i in candidates if self.intents[i] == intent]
        ranked = sorted(candidates, key=lambda i: (-scores[i], i))
        excluded = set(exclude)
        result: List[str] = []
        for i in ranked:
            reply = self.replies[i]
            if reply in excluded or reply in result:
                continue
            result.append(reply)
            if len(result) == k:
                break
        return result

    def save(self, directory: Path | str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / INDEX_FILE
        payload = {
            "format": FORMAT_VERSION,
            "kind": "tfidf",
            "ngram_range": list(NGRAM_RANGE),
            "queries": self.queries,
            "replies": self.replies,
            "intents": self.intents,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: Path | str) -> "ExemplarIndex":
        path = Path(directory) / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no exemplar index at {path}")
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported exemplar index format {payload.get('format')!r}")
        return cls(payload["queries"], payload["replies"], payload.get("intents"))
