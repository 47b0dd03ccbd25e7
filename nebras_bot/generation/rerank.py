"""Consensus reranking: several candidate replies, the most typical one is sent.

Greedy decoding sends the model's single most likely continuation, token by token. Support replies
are judged as whole texts, and the reply most likely to say what a good reply says is the one that
agrees most with the other plausible replies: minimum Bayes risk (MBR) decoding with a similarity
as the utility. Here the candidates are the greedy reply plus ``rerank_samples`` sampled ones, and
the "other plausible replies" are the other candidates *and* the retrieved exemplar replies of the
training set (same intent, nearest messages: what agents wrote for such a message).

Similarity: the cosine of binary word 1-2-gram vectors (the measure :mod:`retrieval`'s ``central``
order uses for exemplars). Every candidate is scored by its mean similarity to all the other texts;
ties go to the earlier candidate, so the greedy reply wins a tie.

Only candidates that pass the output guard and the topic check are compared
(:meth:`nebras_bot.generation.generator.ResponseGenerator.reply`); a sampled candidate can
therefore also replace a greedy reply the guard refused.

:class:`Sampler` writes the sampled candidates with Nebras's own decoding loop
(:class:`nebras_bot.generation.batching.GreedyEngine`): one prompt pass, its KV cache repeated
for the ``n`` rows, then one token per row per step with the same decoding rules (repetition
control, placeholder ban, stop markers, deadline) as a greedy reply, but the token drawn from the
model's distribution (temperature, top-k, top-p).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch

from nebras_bot.generation.batching import DecodeRequest, GreedyEngine
from nebras_bot.generation.decoding import Completion
from nebras_bot.generation.retrieval import NGRAM_RANGE


@dataclass
class Candidate:
    """One decoded reply and what became of it."""

    raw: str  # the model's text, placeholders unfilled (what is compared)
    text: Optional[str]  # filled and checked, ready to send (None when refused)
    reason: Optional[str]  # why it was refused (None when it may be sent)
    sampled: bool = False  # False for the greedy reply

    def as_dict(self) -> dict:
        return {"raw": self.raw, "text": self.text, "reason": self.reason, "sampled": self.sampled}


def typicality(candidates: Sequence[str], evidence: Sequence[str] = ()) -> List[float]:
    """Each candidate's mean cosine similarity to the other candidates and the evidence texts."""
    texts = list(candidates) + [e for e in evidence if e and e.strip()]
    if len(candidates) == 0:
        return []
    if len(texts) < 2:
        return [0.0] * len(candidates)
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vectors = TfidfVectorizer(ngram_range=NGRAM_RANGE, binary=True, use_idf=False, lowercase=True).fit_transform(texts)
    except ValueError:  # no word at all in any text (e.g. only punctuation)
        return [0.0] * len(candidates)
    similarity = (vectors[: len(candidates)] @ vectors.T).toarray()
    others = len(texts) - 1
    return [float((similarity[i].sum() - similarity[i, i]) / others) for i in range(len(candidates))]


def choose(candidates: Sequence[Candidate], evidence: Callable[[], Sequence[str]] = tuple) -> Optional[int]:
    """Index of the candidate to send: among those that passed, the most typical (None: none passed).
    ``evidence`` gives the texts they are also compared with; it is called only when two or more
    candidates passed (there is nothing to choose otherwise)."""
    passed = [i for i, candidate in enumerate(candidates) if candidate.text is not None]
    if len(passed) <= 1:
        return passed[0] if passed else None
    scores = typicality([candidates[i].raw for i in passed], evidence())
    best = max(range(len(passed)), key=lambda j: (scores[j], -j))
    return passed[best]


class Sampler:
    """``n`` sampled replies for one prompt, decoded together (one caller at a time: a lock)."""

    def __init__(self, engine: GreedyEngine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self._lock = threading.Lock()
        self._generator = torch.Generator(device=engine.device)

    def pick(self, scores: torch.Tensor) -> torch.Tensor:
        """One token per row of ``scores`` (rows x vocab), drawn after temperature, top-k and top-p."""
        s = self.settings
        scores = scores / s.temperature
        if 0 < s.top_k < scores.shape[-1]:
            kth = torch.topk(scores, s.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, -float("inf"))
        probs = torch.softmax(scores, dim=-1)
        if s.top_p < 1.0:  # keep the smallest set of tokens whose probability reaches top_p
            ordered, order = torch.sort(probs, dim=-1, descending=True)
            outside = ordered.cumsum(dim=-1) - ordered > s.top_p
            probs = probs.scatter(1, order, ordered.masked_fill(outside, 0.0))
        return torch.multinomial(probs, 1, generator=self._generator).squeeze(-1)

    def sample(self, prompt: str, n: int, max_new_tokens: Optional[int] = None, time_limit: Optional[float] = None,
               placeholder_ban: Optional[str] = None) -> List[Completion]:
        """``n`` replies for ``prompt``; seeded by ``settings.seed`` (the same prompt, the same replies)."""
        if n < 1:
            return []
        engine, started = self.engine, time.perf_counter()
        max_new = max_new_tokens or self.settings.max_new_tokens
        deadline = started + time_limit if time_limit is not None else None
        ids = engine.fit_prompt(engine.encode(prompt), max_new)
        requests = [DecodeRequest(ids, max_new, deadline, ban=engine.placeholder_ban(placeholder_ban)) for _ in range(n)]
        with self._lock:
            if self.settings.seed is not None:
                self._generator.manual_seed(self.settings.seed)
            else:
                self._generator.seed()
            batch = engine.open(requests[:1], started=started)
            batch.repeat(requests)
            return engine.finish(batch, n, pick=self.pick)
