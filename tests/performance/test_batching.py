"""The batched greedy engine and the micro-batching worker give the replies one-at-a-time decoding gives."""
from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest
import torch

from nebras_bot.generation.batching import DecodeRequest, GreedyEngine
from nebras_bot.generation.worker import BatchingWorker
from nebras_bot.generation.decoding import Decoder


def _requests(engine, prompts, max_new=20, **kwargs):
    return [DecodeRequest(engine.encode(p), max_new, **kwargs) for p in prompts]


def test_single_prompt_engine_equals_model_generate(prompts, tiny, settings):
    decoder = Decoder(tiny.model, tiny.tokenizer, settings)
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    for prompt in prompts:
        expected = decoder.complete(prompt)
        got = engine.decode(_requests(engine, [prompt]))[0]
        assert (got.raw, got.text, got.new_tokens, got.prompt_tokens, got.stopped_by) == (
            expected.raw, expected.text, expected.new_tokens, expected.prompt_tokens, expected.stopped_by,
        )


def test_batch_equals_one_at_a_time(prompts, tiny, settings):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    alone = [engine.decode(_requests(engine, [p]))[0].raw for p in prompts]
    together = [c.raw for c in engine.decode(_requests(engine, prompts))]
    assert together == alone
    assert len(set(alone)) > 1  # the prompts really lead to different replies


def test_rows_with_different_limits_stop_on_their_own(prompts, tiny, settings):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    requests = [DecodeRequest(engine.encode(p), limit) for p, limit in zip(prompts, (3, 20, 7, 1, 12))]
    together = engine.decode(requests)
    assert [c.new_tokens for c in together] == [3, 20, 7, 1, 12]
    for request, completion in zip(requests, together):
        alone = engine.decode([DecodeRequest(request.input_ids, request.max_new_tokens)])[0]
        assert completion.raw == alone.raw
        assert completion.stopped_by == "length"


class ScriptedEngine(GreedyEngine):
    """Forces the end marker onto rows whose prompt contains a trigger word, after a few tokens."""

    def __init__(self, *args, trigger: str, after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.script = self.encode(" fine<|end|>")
        self.trigger = trigger
        self.after = after
        self.prompt_rows = {}

    def _process(self, scores, seen, rows):
        scores = super()._process(scores, seen, rows)
        for index, row in enumerate(rows):
            text = self.tokenizer.decode(row.request.input_ids)
            step = len(row.generated) - self.after
            if self.trigger in text and 0 <= step < len(self.script):
                scores[index] = -1e9
                scores[index, self.script[step]] = 1e9
        return scores


def test_marker_stop_in_a_batch_matches_the_row_alone(prompts, tiny, settings):
    engine = ScriptedEngine(tiny.model, tiny.tokenizer, settings, trigger="order", after=2)
    together = engine.decode(_requests(engine, prompts))
    stopped = [c.stopped_by for c in together]
    assert "marker" in stopped and "length" in stopped  # some rows stop early, others keep going
    for prompt, completion in zip(prompts, together):
        alone = engine.decode(_requests(engine, [prompt]))[0]
        assert (completion.raw, completion.stopped_by) == (alone.raw, alone.stopped_by)
        if completion.stopped_by == "marker":
            assert completion.raw.endswith("<|end|>")
            assert completion.text.endswith("fine") and "<|" not in completion.text


def test_force_length_ignores_markers(prompts, tiny, settings):
    engine = ScriptedEngine(tiny.model, tiny.tokenizer, settings, trigger="order", after=0)
    forced = engine.decode(_requests(engine, prompts[:1], max_new=15, force_length=True))[0]
    assert forced.new_tokens == 15 and forced.stopped_by == "length"


def test_deadline_stops_a_row_with_time(prompts, tiny, settings):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    past = time.perf_counter() - 1
    completion = engine.decode([DecodeRequest(engine.encode(prompts[0]), 20, deadline=past)])[0]
    assert completion.stopped_by == "time" and completion.new_tokens == 1


def test_prompt_longer_than_the_context_keeps_its_end(tiny, settings):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    ids = engine.encode("word " * 600 + "<|user|> hi\n<|agent|>")
    completion = engine.decode([DecodeRequest(ids, 10)])[0]
    assert completion.prompt_tokens == engine.max_positions - 10
    with pytest.raises(ValueError, match="no room"):
        engine.decode([DecodeRequest(ids, engine.max_positions)])


def test_worker_batches_concurrent_requests_and_matches_single(prompts, tiny, settings):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    expected = [engine.decode(_requests(engine, [p]))[0].raw for p in prompts]
    worker = BatchingWorker(engine, max_batch_size=8, wait_ms=200)
    try:
        barrier = threading.Barrier(len(prompts))

        def ask(prompt):
            barrier.wait()
            return worker.complete(prompt)

        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
            got = [c.raw for c in pool.map(ask, prompts)]
        assert got == expected
        assert max(worker.batch_sizes) > 1
        assert sum(worker.batch_sizes) == len(prompts)
    finally:
        worker.close()


def test_worker_respects_max_batch_size(prompts, tiny, settings):
    worker = BatchingWorker(GreedyEngine(tiny.model, tiny.tokenizer, settings), max_batch_size=2, wait_ms=100)
    try:
        futures = [worker.submit(p, max_new_tokens=3) for p in prompts]
        assert all(f.result(timeout=60).new_tokens == 3 for f in futures)
        assert max(worker.batch_sizes) <= 2 and sum(worker.batch_sizes) == len(prompts)
    finally:
        worker.close()


class BrokenEngine(GreedyEngine):
    def step(self, batch):
        raise RuntimeError("model exploded")


class BrokenPrefillEngine(GreedyEngine):
    def open(self, requests, tags=None, started=None):
        raise RuntimeError("prompt pass exploded")


def test_worker_passes_a_decoding_error_to_every_caller_and_keeps_running(prompts, tiny, settings):
    worker = BatchingWorker(BrokenEngine(tiny.model, tiny.tokenizer, settings), max_batch_size=4, wait_ms=50)
    try:
        futures = [worker.submit(p) for p in prompts[:3]]
        for future in futures:
            with pytest.raises(RuntimeError, match="model exploded"):
                future.result(timeout=30)
        with pytest.raises(RuntimeError, match="model exploded"):
            worker.complete(prompts[0])  # still answering after a failure
    finally:
        worker.close()


def test_worker_passes_a_prompt_pass_error_to_its_callers(prompts, tiny, settings):
    worker = BatchingWorker(BrokenPrefillEngine(tiny.model, tiny.tokenizer, settings), max_batch_size=4, wait_ms=50)
    try:
        with pytest.raises(RuntimeError, match="prompt pass exploded"):
            worker.complete(prompts[0])
        with pytest.raises(RuntimeError, match="prompt pass exploded"):
            worker.complete(prompts[1])
    finally:
        worker.close()


def test_closed_worker_refuses_new_requests(prompts, tiny, settings):
    worker = BatchingWorker(GreedyEngine(tiny.model, tiny.tokenizer, settings))
    worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(prompts[0])


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"wait_ms": -1}])
def test_worker_rejects_bad_settings(tiny, settings, kwargs):
    with pytest.raises(ValueError):
        BatchingWorker(GreedyEngine(tiny.model, tiny.tokenizer, settings), **kwargs)


def test_repetition_penalty_matches_transformers(tiny, settings):
    """The penalty over the generated tokens equals transformers' processor with the prompt ignored."""
    from transformers import RepetitionPenaltyLogitsProcessor

    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    scores = torch.randn(2, tiny.model.config.vocab_size)
    prompts = [[11, 12, 13], [300, 5]]
    generated = torch.tensor([[5, 9, 9, 300], [7, 7, 7, 8]])
    processed = engine._process(scores.clone(), generated, [])
    for index, prompt in enumerate(prompts):
        reference = RepetitionPenaltyLogitsProcessor(settings.repetition_penalty, prompt_ignore_length=len(prompt))
        ids = torch.tensor([prompt + generated[index].tolist()])
        expected = reference(ids, scores[index : index + 1].clone())
        assert torch.equal(processed[index : index + 1], expected)
    assert not torch.equal(processed, scores)
    # Before the first generated token nothing is penalised (the prompt is exempt).
    assert torch.equal(engine._process(scores.clone(), torch.empty((2, 0), dtype=torch.long), []), scores)


def _join_after(engine, first, second, steps):
    """Decode ``first`` for ``steps`` steps, then let ``second`` join; completions by prompt."""
    batch = engine.open(first, tags=[("first", i) for i in range(len(first))])
    done = {}
    for _ in range(steps):
        done.update(dict(engine.step(batch)))
    assert engine.can_join(batch)
    engine.join(batch, engine.open(second, tags=[("second", i) for i in range(len(second))]))
    while len(batch):
        done.update(dict(engine.step(batch)))
    return done


@pytest.mark.parametrize("steps", [1, 6])
def test_rows_joining_a_running_batch_get_the_reply_they_get_alone(prompts, tiny, settings, steps):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    # The first batch holds a long and a short prompt; the joining rows are longer and shorter
    # than its cache, so both sides get left-padded.
    first = _requests(engine, [prompts[4], prompts[1]])
    second = _requests(engine, [prompts[2], prompts[3]], max_new=12)
    done = _join_after(engine, first, second, steps)
    for key, request in [(("first", 0), first[0]), (("first", 1), first[1]),
                         (("second", 0), second[0]), (("second", 1), second[1])]:
        alone = engine.decode([DecodeRequest(request.input_ids, request.max_new_tokens)])[0]
        assert (done[key].raw, done[key].new_tokens, done[key].stopped_by) == (
            alone.raw, alone.new_tokens, alone.stopped_by)


def test_a_finished_long_prompt_leaves_no_padding_behind(prompts, tiny, settings):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    requests = [DecodeRequest(engine.encode(prompts[4]), 2), DecodeRequest(engine.encode(prompts[1]), 10)]
    batch = engine.open(requests)
    width = batch.mask.shape[1]
    while len(batch) == 2:
        engine.step(batch)
    assert batch.mask.shape[1] == len(requests[1].input_ids) + 2 < width  # the short row's own tokens
    assert batch.cache.get_seq_length() == batch.mask.shape[1]


def test_penalty_over_rows_of_different_lengths_matches_transformers(tiny, settings):
    from transformers import RepetitionPenaltyLogitsProcessor

    from nebras_bot.generation.batching import Row

    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    scores = torch.randn(3, tiny.model.config.vocab_size)
    rows = [Row(DecodeRequest([1, 2], 10), generated=list(g)) for g in ([5, 9, 9, 300], [], [7, 8])]
    processed = engine._process(scores.clone(), None, rows)
    for index, row in enumerate(rows):
        reference = RepetitionPenaltyLogitsProcessor(settings.repetition_penalty, prompt_ignore_length=2)
        expected = reference(torch.tensor([[1, 2] + row.generated]), scores[index : index + 1].clone())
        assert torch.equal(processed[index : index + 1], expected)
    assert torch.equal(processed[1], scores[1])  # nothing generated yet: nothing penalised


def test_worker_lets_new_requests_join_and_returns_each_reply_when_it_is_done(prompts, tiny, settings):
    engine = GreedyEngine(tiny.model, tiny.tokenizer, settings)
    expected_short = engine.decode([DecodeRequest(engine.encode(prompts[1]), 3)])[0].raw
    long_request = DecodeRequest(engine.encode(prompts[0]), 400, force_length=True)
    worker = BatchingWorker(engine, max_batch_size=4, wait_ms=0)
    try:
        long_future = worker.submit(prompts[0], max_new_tokens=400, force_length=True)
        while worker.peak_rows < 1:  # the long reply is decoding
            time.sleep(0.005)
        short = worker.submit(prompts[1], max_new_tokens=3).result(timeout=60)
        assert not long_future.done()  # the short reply did not wait for the long one
        assert short.raw == expected_short
        long_reply = long_future.result(timeout=120)
        assert long_reply.new_tokens == long_request.max_new_tokens
        assert worker.peak_rows == 2 and list(worker.batch_sizes) == [1, 1] and worker.prompt_passes == 2
    finally:
        worker.close()
