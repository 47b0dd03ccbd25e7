"""Batched greedy decoding: many prompts through one model, rows joining and leaving between steps.

:class:`GreedyEngine` decodes several prompts at once: :meth:`GreedyEngine.open` left-pads prompts
into one batch and runs the prompt pass (prefill, logits of the last position only); every
:meth:`GreedyEngine.step` feeds one new token per row through the KV cache. Each row stops on its
own (end marker, eos, its token limit or its deadline) and a stopped row leaves the batch and the
cache at once and is handed back, so a short reply neither waits for nor pays for a long one.
:meth:`GreedyEngine.join` adds newly prefilled rows to a batch that is already decoding
(continuous batching): the shorter cache is left-padded and the padding masked, and positions are
explicit per row. Decoding follows :class:`nebras_bot.generation.decoding.Decoder`
(``model.generate``) exactly: the same repetition penalty and no-repeat n-gram rule, both over the
*generated* tokens only (the prompt may be copied freely), the same stop markers and the same
``stopped_by`` labels. In fp32 the engine gives ``model.generate``'s tokens, and a prompt decoded
in a left-padded batch, or joining one mid-way, gives the reply it gives alone, for GPT-2 and
Llama-style (RoPE) models (``tests/performance/test_batching.py``,
``tests/performance/test_llama_exactness.py``). Only greedy decoding is batched across requests;
the candidates of consensus reranking are sampled with this loop (``step``'s ``pick``,
:class:`nebras_bot.generation.rerank.Sampler`); beam search stays with ``Decoder``. The thread that feeds requests to the engine is
:class:`nebras_bot.generation.worker.BatchingWorker`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from nebras_bot.generation.constraints import PlaceholderBan
from nebras_bot.generation.decoding import (  # noqa: F401 - the stop reasons are part of this module's API
    STOP_EOS,
    STOP_LENGTH,
    STOP_MARKER,
    STOP_TIME,
    STOP_WINDOW_TOKENS,
    Completion,
)
from nebras_bot.generation.device import attention_kernels, model_device
from nebras_bot.generation.prompt import ROLE_MARKERS, cut_at_end
from nebras_bot.generation.settings import GenerationSettings

# Every role marker ends with this character: a marker can only complete on a token containing it.
MARKER_LAST_CHAR = ">"


@dataclass
class DecodeRequest:
    """One prompt to decode: token ids, its token limit and an absolute deadline (perf_counter)."""

    input_ids: List[int]
    max_new_tokens: int
    deadline: Optional[float] = None
    force_length: bool = False  # benchmarks: ignore stop markers and eos, always write max_new_tokens
    ban: Optional[PlaceholderBan] = None  # tokens that may not open a {placeholder} (constraints.py)


@dataclass
class Row:
    """One prompt being decoded: its request, the tokens so far and why it stopped."""

    request: DecodeRequest
    generated: List[int] = field(default_factory=list)
    stopped_by: Optional[str] = None


class GreedyEngine:
    """Greedy decoding of a batch of prompts with one model (not thread-safe: one caller at a time)."""

    def __init__(self, model: Any, tokenizer: Any, settings: Optional[GenerationSettings] = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or GenerationSettings()
        self.eos_id: Optional[int] = tokenizer.eos_token_id
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos_id or 0)
        self.max_positions = _max_positions(model)
        self.device = model_device(model)  # where every input tensor is put
        self._gt_tokens: Dict[int, bool] = {}

    # ------------------------------------------------------------------ helpers

    def encode(self, prompt: str) -> List[int]:
        return list(self.tokenizer(prompt, add_special_tokens=False).input_ids)

    def fit_prompt(self, ids: Sequence[int], max_new_tokens: int) -> List[int]:
        """The prompt's tail that leaves room for ``max_new_tokens`` (as ``Decoder.complete`` does)."""
        room = self.max_positions - max_new_tokens
        if room < 8:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for a prompt in {self.max_positions} positions"
            )
        return list(ids[-room:]) if len(ids) > room else list(ids)

    def _may_end_marker(self, token: int) -> bool:
        known = self._gt_tokens.get(token)
        if known is None:
            known = MARKER_LAST_CHAR in self.tokenizer.decode([token], skip_special_tokens=False)
            self._gt_tokens[token] = known
        return known

    def _hit_marker(self, generated: List[int]) -> bool:
        if not self._may_end_marker(generated[-1]):
            return False
        tail = self.tokenizer.decode(generated[-STOP_WINDOW_TOKENS:], skip_special_tokens=False)
        return any(marker in tail for marker in ROLE_MARKERS)

    def _banned_ngram_tokens(self, generated: List[int]) -> List[int]:
        size = self.settings.no_repeat_ngram_size
        if size <= 0 or len(generated) < size:
            return []
        prefix = tuple(generated[-(size - 1) :]) if size > 1 else ()
        return sorted(
            {
                generated[i + size - 1]
                for i in range(len(generated) - size + 1)
                if tuple(generated[i : i + size - 1]) == prefix
            }
        )

    def _process(self, scores: torch.Tensor, seen: Optional[torch.Tensor], rows: List[Row]) -> torch.Tensor:
        """Repetition penalty, the no-repeat n-gram ban (both over the generated tokens only) and the
        row's placeholder ban, if it has one.

        ``seen`` holds the tokens generated so far, one row per row of ``scores``, all of the same
        length (it has no columns before the first token); ``None`` takes them from ``rows``,
        which may have generated different numbers of tokens. This is
        ``RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt length)``, as
        ``Decoder`` passes it to ``model.generate``.
        """
        valid = None
        if seen is None:
            seen, valid = _generated_tokens(rows, scores.device)
        penalty = self.settings.repetition_penalty
        if penalty != 1.0 and seen.shape[1] > 0:
            picked = torch.gather(scores, 1, seen)
            penalised = torch.where(picked < 0, picked * penalty, picked / penalty)
            if valid is not None:  # rows with nothing generated yet keep their scores
                penalised = torch.where(valid, penalised, picked)
            scores = scores.scatter(1, seen, penalised)
        for index, row in enumerate(rows):
            banned = self._banned_ngram_tokens(row.generated)
            if banned:
                scores[index, banned] = -float("inf")
            if row.request.ban is not None:
                banned = row.request.ban.banned(row.generated)
                if banned:
                    scores[index, banned] = -float("inf")
        return scores

    def placeholder_ban(self, ban: Optional[str]) -> Optional[PlaceholderBan]:
        """The rule for a request's ``placeholder_ban`` (``constraints.BAN_ALL``/``BAN_FIRST``; None: none)."""
        return PlaceholderBan(self.tokenizer, ban) if ban is not None else None

    # ------------------------------------------------------------------ for other decoding loops

    def process(self, scores: torch.Tensor, generated: torch.Tensor, rows: List[Row]) -> torch.Tensor:
        """The decoding rules on next-token ``scores`` (``rows`` x vocab), given the tokens generated so far."""
        return self._process(scores, generated, rows)

    def stop_reason(self, row: Row, token: int, now: float) -> Optional[str]:
        """Why ``row`` stops after its latest ``token`` (None: it goes on)."""
        return self._stop_reason(row, token, now)

    def completion(self, row: Row, prompt_tokens: int, seconds: float) -> Completion:
        return self._completion(row, prompt_tokens, seconds)

    # ------------------------------------------------------------------ decoding

    def _stop_reason(self, row: Row, token: int, now: float) -> Optional[str]:
        request = row.request
        if not request.force_length:
            if self._hit_marker(row.generated):
                return STOP_MARKER
            if self.eos_id is not None and token == self.eos_id:
                return STOP_EOS
        if len(row.generated) >= request.max_new_tokens:
            return STOP_LENGTH
        if request.deadline is not None and now > request.deadline:
            return STOP_TIME
        return None

    def prefill(self, prompts: List[List[int]], cache: Any = None, past_length: int = 0):
        """Run the prompt pass; returns ``(last logits, cache, attention mask, next positions)``."""
        from transformers import DynamicCache

        width = max(len(ids) for ids in prompts)
        batch = len(prompts)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((batch, past_length + width), dtype=torch.long)
        mask[:, :past_length] = 1
        for index, ids in enumerate(prompts):
            if ids:
                input_ids[index, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[index, past_length + width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past_length:]
        input_ids, mask, positions = input_ids.to(self.device), mask.to(self.device), positions.to(self.device)
        cache = cache if cache is not None else DynamicCache()
        output = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        )
        return output.logits[:, -1, :], output.past_key_values, mask, positions[:, -1] + 1

    def open(self, requests: Sequence[DecodeRequest], tags: Optional[Sequence[Any]] = None,
             started: Optional[float] = None) -> "LiveBatch":
        """Prefill ``requests`` together: a :class:`LiveBatch` ready for :meth:`step`.

        ``tags`` are the caller's handles for the rows (default: their indexes), returned with
        each finished row's completion.
        """
        started = started if started is not None else time.perf_counter()
        prompts = [self.fit_prompt(r.input_ids, r.max_new_tokens) for r in requests]
        if not prompts or not all(prompts):
            raise ValueError("empty prompt")
        with torch.inference_mode(), attention_kernels(self.device):
            logits, cache, mask, positions = self.prefill(prompts)
        return LiveBatch(
            rows=[Row(request) for request in requests],
            tags=list(tags) if tags is not None else list(range(len(requests))),
            prompt_tokens=[len(ids) for ids in prompts], started=[started] * len(prompts),
            logits=logits, cache=cache, mask=mask, positions=positions,
        )

    @staticmethod
    def can_join(batch: "LiveBatch") -> bool:
        """Whether rows can join ``batch`` mid-decoding (plain per-layer KV caches only)."""
        from transformers.cache_utils import DynamicLayer

        layers = getattr(batch.cache, "layers", None)
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    @staticmethod
    @torch.inference_mode()
    def join(batch: "LiveBatch", other: "LiveBatch") -> None:
        """Move ``other``'s rows into ``batch``: the shorter cache is left-padded, the padding masked.

        Positions are per row and explicit, so a row decodes as it would alone (continuous batching).
        """
        width = max(batch.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(batch.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_kv(mine.keys, width), _pad_kv(theirs.keys, width)])
            mine.values = torch.cat([_pad_kv(mine.values, width), _pad_kv(theirs.values, width)])
        batch.mask = torch.cat([_pad_mask(batch.mask, width), _pad_mask(other.mask, width)])
        batch.positions = torch.cat([batch.positions, other.positions])
        batch.logits = torch.cat([batch.logits, other.logits.to(batch.logits.dtype)])
        batch.rows += other.rows
        batch.tags += other.tags
        batch.prompt_tokens += other.prompt_tokens
        batch.started += other.started

    @torch.inference_mode()
    def step(self, batch: "LiveBatch", pick: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> List[Tuple[Any, Completion]]:
        """One greedy token for every row of ``batch``; returns ``(tag, completion)`` of the rows that stopped.

        Stopped rows leave the batch and its cache; the others are fed their token, so the batch
        then holds the next logits (or is empty). ``pick`` replaces the greedy choice (processed
        scores, rows x vocab -> one token id per row; the sampler of ``rerank.py``).
        """
        scores = self._process(batch.logits.float(), None, batch.rows)
        tokens = pick(scores) if pick is not None else torch.argmax(scores, dim=-1)
        now = time.perf_counter()
        keep: List[int] = []
        finished: List[Tuple[Any, Completion]] = []
        for position, row in enumerate(batch.rows):
            token = int(tokens[position])
            row.generated.append(token)
            row.stopped_by = self._stop_reason(row, token, now)
            if row.stopped_by is None:
                keep.append(position)
            else:
                seconds = now - batch.started[position]
                finished.append((batch.tags[position], self._completion(row, batch.prompt_tokens[position], seconds)))
        if not keep:
            batch.rows, batch.tags, batch.prompt_tokens, batch.started = [], [], [], []
            return finished
        if finished:
            batch.select(keep)
            tokens = tokens[torch.tensor(keep, dtype=torch.long, device=tokens.device)]
        step = tokens.unsqueeze(-1)
        batch.mask = torch.cat([batch.mask, torch.ones_like(step)], dim=1)
        with attention_kernels(self.device):
            output = self.model(
                input_ids=step, attention_mask=batch.mask, position_ids=batch.positions.unsqueeze(-1),
                past_key_values=batch.cache, use_cache=True,
            )
        batch.cache, batch.logits, batch.positions = output.past_key_values, output.logits[:, -1, :], batch.positions + 1
        return finished

    def decode(self, requests: Sequence[DecodeRequest], started: Optional[float] = None) -> List[Completion]:
        """Greedy completions for ``requests`` (one batch), in the same order."""
        if not requests:
            return []
        return self.finish(self.open(requests, started=started), len(requests))

    def decode_rows(self, rows, prompts, logits, cache, mask, positions, started) -> List[Completion]:
        """Greedy steps after a prefill (``prefill``) until every row has stopped.

        The cache then holds each prompt and every generated token but the last one.
        """
        batch = LiveBatch(
            rows=list(rows), tags=list(range(len(rows))), prompt_tokens=[len(ids) for ids in prompts],
            started=[started] * len(rows), logits=logits, cache=cache, mask=mask, positions=positions,
        )
        return self.finish(batch, len(rows))

    def finish(self, batch: "LiveBatch", count: int,
               pick: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> List[Completion]:
        """:meth:`step` until every row of ``batch`` (tags ``0..count-1``) has stopped; the
        completions in tag order. ``pick``: as for :meth:`step`."""
        results: List[Optional[Completion]] = [None] * count
        while batch.rows:
            for tag, completion in self.step(batch, pick=pick):
                results[tag] = completion
        return results  # type: ignore[return-value]

    def _completion(self, row: Row, prompt_tokens: int, seconds: float) -> Completion:
        raw = self.tokenizer.decode(row.generated, skip_special_tokens=False)
        text = raw
        if self.tokenizer.eos_token:
            text = text.split(self.tokenizer.eos_token, 1)[0]
        return Completion(
            text=cut_at_end(text), raw=raw, new_tokens=len(row.generated), prompt_tokens=prompt_tokens,
            seconds=seconds, stopped_by=row.stopped_by or STOP_LENGTH,
        )


@dataclass
class LiveBatch:
    """Rows decoded together: per row (same index in every field) its request and tokens, the
    caller's tag, prompt length and start time; for the batch the KV cache, the attention mask
    (0 on left padding), each row's next position and next-token logits."""

    rows: List[Row]
    tags: List[Any]
    prompt_tokens: List[int]
    started: List[float]
    logits: torch.Tensor
    cache: Any
    mask: torch.Tensor
    positions: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows)

    @torch.inference_mode()
    def repeat(self, requests: Sequence[DecodeRequest]) -> None:
        """This one-row batch, after its prompt pass, as ``len(requests)`` rows sharing that prompt
        (tags ``0..n-1``): the cache, mask, positions and logits repeated, no second prompt pass."""
        if len(self.rows) != 1:
            raise ValueError(f"only a one-row batch can be repeated, not {len(self.rows)} rows")
        n = len(requests)
        self.cache.batch_repeat_interleave(n)
        self.logits, self.mask, self.positions = (t.repeat_interleave(n, dim=0) for t in (self.logits, self.mask, self.positions))
        self.rows = [Row(request) for request in requests]
        self.tags = list(range(n))
        self.prompt_tokens, self.started = self.prompt_tokens * n, self.started * n

    def select(self, keep: List[int]) -> None:
        """Keep only the rows at ``keep``; drop cache columns that are padding for every kept row."""
        selector = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(selector)
        self.mask, self.positions, self.logits = self.mask[selector], self.positions[selector], self.logits[selector]
        self.rows = [self.rows[i] for i in keep]
        self.tags = [self.tags[i] for i in keep]
        self.prompt_tokens = [self.prompt_tokens[i] for i in keep]
        self.started = [self.started[i] for i in keep]
        first = int(self.mask.any(dim=0).to(torch.int8).argmax())
        if first > 0 and hasattr(self.cache, "layers"):
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
            self.mask = self.mask[:, first:]


def _generated_tokens(rows: Sequence[Row], device: torch.device):
    """The rows' generated tokens as one ``rows x longest`` tensor and which rows have any.

    A shorter row is padded with its own first token (penalised once either way); a row with no
    token yet is padded with token 0 and marked invalid.
    """
    width = max((len(row.generated) for row in rows), default=0)
    ids = [row.generated + [row.generated[0] if row.generated else 0] * (width - len(row.generated)) for row in rows]
    seen = torch.tensor(ids, dtype=torch.long, device=device).reshape(len(rows), width)
    valid = torch.tensor([[bool(row.generated)] for row in rows], dtype=torch.bool, device=device).reshape(len(rows), 1)
    return seen, valid


def _pad_kv(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pad a ``batch x heads x length x dim`` key/value tensor with zeros to ``width`` positions."""
    return torch.nn.functional.pad(tensor, (0, 0, width - tensor.shape[-2], 0))


def _pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (width - mask.shape[1], 0))


def _max_positions(model: Any) -> int:
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024
