"""Batched greedy decoding and the micro-batching generation worker.

:class:`GreedyEngine` decodes several prompts at once: prompts are left-padded into one batch,
the prompt pass (prefill) computes only the last position's logits, and every step feeds one new
token per row through the KV cache. Each row stops on its own (end marker, eos, its token limit or
its deadline) and finished rows are dropped from the batch and the cache, so a short reply does
not keep paying for a long one. Decoding follows :class:`nebras_bot.generation.decoding.Decoder`
(``model.generate``) exactly: the same repetition penalty and no-repeat n-gram rule, both over the
*generated* tokens only (the prompt may be copied freely), the same stop markers and the same
``stopped_by`` labels. In fp32 the engine gives ``model.generate``'s tokens, and a prompt decoded
in a left-padded batch gives the reply it gives alone, for GPT-2 and Llama-style (RoPE) models
(``tests/performance/test_batching.py``, ``tests/performance/test_llama_exactness.py``). Only
greedy decoding is batched; sampling and beam search stay with ``Decoder``.

:class:`BatchingWorker` owns one engine and one thread. Callers (any thread) ``submit`` a prompt
and get a ``Future``; the worker takes the first waiting request, waits at most ``wait_ms`` for
more (up to ``max_batch_size``), decodes them together and resolves the futures.
:meth:`BatchingWorker.complete` is the blocking ``Decoder.complete`` interface, so the response
generator can use the worker in place of a ``Decoder``.
"""
from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch

from nebras_bot.generation.decoding import STOP_WINDOW_TOKENS, Completion
from nebras_bot.generation.prompt import ROLE_MARKERS, cut_at_end
from nebras_bot.generation.settings import GenerationSettings

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_WAIT_MS = 10.0
STOP_MARKER = "marker"
STOP_EOS = "eos"
STOP_LENGTH = "length"
STOP_TIME = "time"
# Every role marker ends with this character: a marker can only complete on a token containing it.
MARKER_LAST_CHAR = ">"


@dataclass
class DecodeRequest:
    """One prompt to decode: token ids, its token limit and an absolute deadline (perf_counter)."""

    input_ids: List[int]
    max_new_tokens: int
    deadline: Optional[float] = None
    force_length: bool = False  # benchmarks: ignore stop markers and eos, always write max_new_tokens


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

    def _process(self, scores: torch.Tensor, seen: torch.Tensor, rows: List[Row]) -> torch.Tensor:
        """Repetition penalty then the no-repeat n-gram ban, both over the generated tokens only.

        ``seen`` holds the tokens generated so far, one row per live row (all live rows have made
        the same number of steps); it has no columns before the first token. This is
        ``RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt length)``, as
        ``Decoder`` passes it to ``model.generate``.
        """
        penalty = self.settings.repetition_penalty
        if penalty != 1.0 and seen.shape[1] > 0:
            picked = torch.gather(scores, 1, seen)
            picked = torch.where(picked < 0, picked * penalty, picked / penalty)
            scores = scores.scatter(1, seen, picked)
        for index, row in enumerate(rows):
            banned = self._banned_ngram_tokens(row.generated)
            if banned:
                scores[index, banned] = -float("inf")
        return scores

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
        cache = cache if cache is not None else DynamicCache()
        output = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        )
        return output.logits[:, -1, :], output.past_key_values, mask, positions[:, -1] + 1

    @torch.inference_mode()
    def decode(self, requests: Sequence[DecodeRequest], started: Optional[float] = None) -> List[Completion]:
        """Greedy completions for ``requests`` (one batch), in the same order."""
        if not requests:
            return []
        started = started if started is not None else time.perf_counter()
        prompts = [self.fit_prompt(r.input_ids, r.max_new_tokens) for r in requests]
        for ids in prompts:
            if not ids:
                raise ValueError("empty prompt")
        rows = [Row(request) for request in requests]
        logits, cache, mask, positions = self.prefill(prompts)
        return self.decode_rows(rows, prompts, logits, cache, mask, positions, started)

    def decode_rows(self, rows, prompts, logits, cache, mask, positions, started) -> List[Completion]:
        """Greedy steps after a prefill (``prefill``) until every row has stopped."""
        # Tokens for the repetition penalty: what each live row has generated (the prompt is exempt).
        seen = torch.empty((len(rows), 0), dtype=torch.long)
        active = list(range(len(rows)))
        while active:
            live = [rows[i] for i in active]
            scores = self._process(logits.float(), seen, live)
            tokens = torch.argmax(scores, dim=-1)
            now = time.perf_counter()
            keep: List[int] = []
            for position, index in enumerate(active):
                token = int(tokens[position])
                row = rows[index]
                row.generated.append(token)
                row.stopped_by = self._stop_reason(row, token, now)
                if row.stopped_by is None:
                    keep.append(position)
            if not keep:
                break
            if len(keep) < len(active):
                selector = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(selector)
                mask, positions, seen, tokens = mask[selector], positions[selector], seen[selector], tokens[selector]
                active = [active[p] for p in keep]
            step = tokens.unsqueeze(-1)
            seen = torch.cat([seen, step], dim=1)
            mask = torch.cat([mask, torch.ones_like(step)], dim=1)
            output = self.model(
                input_ids=step, attention_mask=mask, position_ids=positions.unsqueeze(-1),
                past_key_values=cache, use_cache=True,
            )
            cache, logits, positions = output.past_key_values, output.logits[:, -1, :], positions + 1
        seconds = time.perf_counter() - started
        return [self._completion(row, len(ids), seconds) for row, ids in zip(rows, prompts)]

    def _completion(self, row: Row, prompt_tokens: int, seconds: float) -> Completion:
        raw = self.tokenizer.decode(row.generated, skip_special_tokens=False)
        text = raw
        if self.tokenizer.eos_token:
            text = text.split(self.tokenizer.eos_token, 1)[0]
        return Completion(
            text=cut_at_end(text), raw=raw, new_tokens=len(row.generated), prompt_tokens=prompt_tokens,
            seconds=seconds, stopped_by=row.stopped_by or STOP_LENGTH,
        )


def _max_positions(model: Any) -> int:
    config = model.config
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


@dataclass
class _Job:
    request: DecodeRequest
    future: "concurrent.futures.Future[Completion]"
    queued: float


class BatchingWorker:
    """Collects concurrent requests into micro-batches for one :class:`GreedyEngine` thread."""

    def __init__(
        self,
        engine: GreedyEngine,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        wait_ms: float = DEFAULT_WAIT_MS,
        name: str = "nebras-batch",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if wait_ms < 0:
            raise ValueError("wait_ms must not be negative")
        self.engine = engine
        self.settings = engine.settings
        self.tokenizer = engine.tokenizer
        self.max_positions = engine.max_positions
        self.max_batch_size = max_batch_size
        self.wait_s = wait_ms / 1000.0
        self.batch_sizes: List[int] = []  # size of every batch decoded (observability and tests)
        self._queue: "queue.Queue[Optional[_Job]]" = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ Decoder interface

    def count_tokens(self, text: str) -> int:
        return len(self.engine.encode(text))

    def submit(
        self,
        prompt: str,
        max_new_tokens: Optional[int] = None,
        time_limit: Optional[float] = None,
        force_length: bool = False,
    ) -> "concurrent.futures.Future[Completion]":
        """Queue ``prompt``; the future resolves to its :class:`Completion` (or the decoding error)."""
        if self._closed.is_set():
            raise RuntimeError("the batching worker is closed")
        now = time.perf_counter()
        request = DecodeRequest(
            input_ids=self.engine.encode(prompt),
            max_new_tokens=max_new_tokens or self.settings.max_new_tokens,
            deadline=now + time_limit if time_limit is not None else None,
            force_length=force_length,
        )
        future: "concurrent.futures.Future[Completion]" = concurrent.futures.Future()
        self._queue.put(_Job(request, future, now))
        return future

    def complete(
        self, prompt: str, max_new_tokens: Optional[int] = None, time_limit: Optional[float] = None
    ) -> Completion:
        """Blocking, like ``Decoder.complete``: queue the prompt and wait for its batch."""
        return self.submit(prompt, max_new_tokens, time_limit).result()

    # ------------------------------------------------------------------ the worker thread

    def _collect(self, first: _Job) -> List[_Job]:
        jobs = [first]
        window_end = time.perf_counter() + self.wait_s
        while len(jobs) < self.max_batch_size:
            remaining = window_end - time.perf_counter()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close() while collecting: finish this batch, then stop
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            jobs = [job for job in self._collect(first) if job.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            self.batch_sizes.append(len(jobs))
            try:
                results = self.engine.decode([job.request for job in jobs])
            except Exception as error:  # noqa: BLE001 - every waiting caller gets the error
                logger.exception("batched decoding of %d prompts failed", len(jobs))
                for job in jobs:
                    job.future.set_exception(error)
                continue
            for job, result in zip(jobs, results):
                result.seconds = time.perf_counter() - job.queued  # what the caller waited
                job.future.set_result(result)
        self._fail_pending(RuntimeError("the batching worker was closed"))

    def _fail_pending(self, error: Exception) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(error)

    def close(self, timeout: Optional[float] = 5.0) -> None:
        """Stop after the batch in progress; requests still queued fail with a clear error."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)
        self._thread.join(timeout)
