"""The generation worker: one thread that decodes every caller's prompt in one continuous batch.

Callers (any thread) ``submit`` a prompt and get a ``Future``. When the worker is idle it takes
the first waiting request, waits at most ``wait_ms`` for more (up to ``max_batch_size``) and
prefills them together (:meth:`GreedyEngine.open`). While that batch decodes, requests that arrive
join it between two decoding steps (:meth:`GreedyEngine.join`, continuous batching) as long as it
has fewer than ``max_batch_size`` rows, and every row's future is resolved the moment the row
stops, not when the whole batch does. So under a steady stream of conversations the batch stays
full and a reply returns as soon as it is written.

:meth:`BatchingWorker.complete` is the blocking ``Decoder.complete`` interface, so the response
generator can use the worker in place of a ``Decoder``. A failed prompt pass fails only the
requests in it; a failed decoding step fails every row of the batch; the worker keeps serving.
"""
from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Deque, List, Optional

from nebras_bot.generation.batching import DecodeRequest, GreedyEngine, LiveBatch
from nebras_bot.generation.decoding import Completion

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_WAIT_MS = 10.0
BATCH_HISTORY = 1000  # prompt-pass sizes kept for observability (bounded: the worker runs for days)


@dataclass
class _Job:
    request: DecodeRequest
    future: "concurrent.futures.Future[Completion]"
    queued: float


class BatchingWorker:
    """Feeds concurrent requests into one :class:`GreedyEngine` batch from one thread."""

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
        # Rows of every prompt pass: a new batch, or requests joining a running one (latest BATCH_HISTORY).
        self.batch_sizes: Deque[int] = collections.deque(maxlen=BATCH_HISTORY)
        self.prompt_passes = 0  # prompt passes since start (batch_sizes keeps only the latest)
        self.peak_rows = 0  # most rows decoded together in one step
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
        placeholder_ban: Optional[str] = None,
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
            ban=self.engine.placeholder_ban(placeholder_ban),
        )
        future: "concurrent.futures.Future[Completion]" = concurrent.futures.Future()
        self._queue.put(_Job(request, future, now))
        return future

    def complete(
        self, prompt: str, max_new_tokens: Optional[int] = None, time_limit: Optional[float] = None,
        placeholder_ban: Optional[str] = None,
    ) -> Completion:
        """Blocking, like ``Decoder.complete``: queue the prompt and wait for its reply."""
        return self.submit(prompt, max_new_tokens, time_limit, placeholder_ban=placeholder_ban).result()

    # ------------------------------------------------------------------ the worker thread

    def _take(self, jobs: List[_Job], limit: int, wait_s: float) -> List[_Job]:
        """Add queued jobs to ``jobs`` until ``limit``, waiting at most ``wait_s`` for them."""
        window_end = time.perf_counter() + wait_s
        while len(jobs) < limit:
            remaining = window_end - time.perf_counter()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close(): finish what is queued before it, then stop
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _open(self, jobs: List[_Job]) -> Optional[LiveBatch]:
        """Prefill ``jobs`` (those not cancelled); a failure fails them alone."""
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return None
        self.batch_sizes.append(len(jobs))
        self.prompt_passes += 1
        try:
            return self.engine.open([job.request for job in jobs], tags=jobs)
        except Exception as error:  # noqa: BLE001 - every waiting caller gets the error
            logger.exception("the prompt pass of %d prompts failed", len(jobs))
            for job in jobs:
                job.future.set_exception(error)
            return None

    def _step(self, batch: LiveBatch) -> Optional[LiveBatch]:
        """One decoding step; resolves the rows that stopped. None when the batch is done or failed."""
        self.peak_rows = max(self.peak_rows, len(batch))
        try:
            finished = self.engine.step(batch)
        except Exception as error:  # noqa: BLE001 - every caller in the batch gets the error
            logger.exception("batched decoding of %d prompts failed", len(batch))
            for job in batch.tags:
                job.future.set_exception(error)
            return None
        now = time.perf_counter()
        for job, result in finished:
            result.seconds = now - job.queued  # what the caller waited
            job.future.set_result(result)
        return batch if len(batch) else None

    def _run(self) -> None:
        batch: Optional[LiveBatch] = None
        while True:
            if batch is None:
                first = self._queue.get()
                if first is None:
                    break
                batch = self._open(self._take([first], self.max_batch_size, self.wait_s))
            elif len(batch) < self.max_batch_size and self.engine.can_join(batch):
                waiting = self._take([], self.max_batch_size - len(batch), 0.0)
                joining = self._open(waiting) if waiting else None
                if joining is not None:
                    self.engine.join(batch, joining)
            if batch is not None:
                batch = self._step(batch)
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
        """Stop after the requests in progress; requests still queued fail with a clear error."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)
        self._thread.join(timeout)
