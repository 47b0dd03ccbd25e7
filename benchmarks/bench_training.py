"""Training tokens/s: the default recipe's training step versus a naive loop, on the same data.

``python -m benchmarks.bench_training [--examples 96] [--rounds 2]``

Both loops train the default recipe's model (same initial weights) for one pass over the same
``--examples`` training examples of the newest prepared dataset (prompt + reply, loss on the reply
only, as ``nebras train`` encodes them):

- Nebras (what ``nebras train`` does): examples packed into rows of ``max_length`` tokens, bf16
  autocast through ``accelerate`` where the CPU supports it, the output layer computed only at
  scored positions (``training.loss.scored_loss(fast=True)``), AdamW;
- naive: one example per row, padded to the longest in the batch, fp32, ``model(..., labels=...)``
  (logits over the full 50k vocabulary at every position), AdamW.

tokens/s counts real (non-padding) tokens, which are the same for both. Rounds alternate
(N B B N ...). ``ratio`` = Nebras tokens/s / naive tokens/s (medians over rounds).

Every pass trains its own copy of the untouched initial model: ``accelerator.prepare`` wraps the
model's ``forward`` in bf16 autocast for good, so a naive pass on a model a Nebras pass had
prepared would silently run in bf16 (it did until 2026-11-26: naive rounds after a Nebras round
were 30-40 % faster than before one). The first step of every pass is not timed (first-call
allocations and kernel set-up, which fell on whichever pass ran first).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from typing import Any, Dict, List

from benchmarks import common

NAME = "bench_training"
TARGET = 1.5


def _prepare(recipe, examples: int):
    from nebras_bot.data.prepare import load_split
    from nebras_bot.data.templates import intent_templates
    from nebras_bot.training import dataset as ds
    from nebras_bot.training.trainer import build_model, encode_split

    data_dir = common.latest_dataset()
    if data_dir is None:
        raise SystemExit("no prepared dataset: run `nebras data prepare`")
    model, tokenizer, version = build_model(recipe, recipe.base)
    dialogues = load_split(data_dir, "train")
    templates = intent_templates(None)
    index = None
    if recipe.retrieval:
        from nebras_bot.generation.retrieval import ExemplarIndex

        every = ds.exchanges(dialogues, templates)
        index = ExemplarIndex.build([e.query for e in every], [e.reply for e in every], [e.intent for e in every])
    _, encoded = encode_split(dialogues, tokenizer, recipe, templates, index, examples)
    return model, tokenizer, version, encoded, data_dir


def _nebras_pass(model, encoded, recipe, pad_id, use_bf16: bool) -> Dict[str, Any]:
    import torch

    from nebras_bot.training import dataset as ds
    from nebras_bot.training.loss import batch_loss
    from nebras_bot.training.trainer import fresh_accelerator

    rows = ds.pack([ds.Encoded(list(e.input_ids), list(e.labels)) for e in encoded], recipe.max_length)
    accelerator = fresh_accelerator(mixed_precision="bf16" if use_bf16 else "no", grad_accum=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    tokens, losses = 0, []
    started = time.perf_counter()
    for number, batch in enumerate(ds.batches(rows, recipe.batch_size, recipe.seed, 0, shuffle=False)):
        if number == 1:  # the first step is a warm-up (see the module docstring)
            tokens, started = 0, time.perf_counter()
        loss, _, tensors = batch_loss(model, batch, pad_id, accelerator, True)
        accelerator.backward(loss)
        if recipe.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(tensors["attention_mask"].sum())
        losses.append(loss.item())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tokens": tokens, "rows": len(rows), "tokens_per_s": tokens / seconds,
            "first_loss": losses[0], "last_loss": losses[-1]}


def _naive_pass(model, encoded, recipe, pad_id) -> Dict[str, Any]:
    import torch

    from nebras_bot.generation.device import model_device
    from nebras_bot.training import dataset as ds
    from nebras_bot.training import packing

    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    model.train()
    device = model_device(model)
    tokens, losses = 0, []
    started = time.perf_counter()
    for start in range(0, len(encoded), recipe.batch_size):
        if start == recipe.batch_size:  # the first step is a warm-up (see the module docstring)
            tokens, started = 0, time.perf_counter()
        # padded, one example per row
        tensors = packing.to_device(ds.collate(encoded[start : start + recipe.batch_size], pad_id), device)
        loss = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"],
                     labels=tensors["labels"]).loss
        loss.backward()
        if recipe.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(tensors["attention_mask"].sum())
        losses.append(loss.item())
    seconds = time.perf_counter() - started
    padded = len(range(0, len(encoded), recipe.batch_size))
    return {"seconds": seconds, "tokens": tokens, "rows": len(encoded), "batches": padded,
            "tokens_per_s": tokens / seconds, "first_loss": losses[0], "last_loss": losses[-1]}


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from nebras_bot.training.recipe import load_recipe
    from nebras_bot.training.trainer import bf16_supported

    common.set_threads(args.threads)
    recipe = load_recipe(args.recipe)
    use_bf16 = recipe.bf16 == "true" or (recipe.bf16 == "auto" and bf16_supported())
    model, tokenizer, version, encoded, data_dir = _prepare(recipe, args.examples)
    common.set_threads(args.threads)
    pad_id = tokenizer.pad_token_id
    runs: Dict[str, List[Dict[str, Any]]] = {"nebras": [], "naive": []}
    for index in range(args.rounds):
        order = ("naive", "nebras") if index % 2 == 0 else ("nebras", "naive")
        for label in order:
            fresh = copy.deepcopy(model)  # never the model a previous pass prepared (see the docstring)
            if label == "nebras":
                result = _nebras_pass(fresh, encoded, recipe, pad_id, use_bf16)
            else:
                result = _naive_pass(fresh, encoded, recipe, pad_id)
            del fresh
            print(f"  {label}: {result['tokens']} tokens in {result['seconds']:.1f} s "
                  f"({result['tokens_per_s']:.0f} tokens/s)", flush=True)
            runs[label].append(result)
    median = {label: statistics.median(r["tokens_per_s"] for r in results) for label, results in runs.items()}
    ratio = median["nebras"] / median["naive"]
    padded_tokens = sum(max(len(e) for e in encoded[i : i + recipe.batch_size]) * len(encoded[i : i + recipe.batch_size])
                        for i in range(0, len(encoded), recipe.batch_size))
    raw = {"runs": runs, "median_tokens_per_s": median, "real_tokens": sum(len(e) for e in encoded),
           "naive_padded_tokens": padded_tokens, "bf16": use_bf16}
    path = common.write_result(
        NAME, ratio, TARGET, raw, recipe=recipe.name, model=version, dataset=data_dir.name, examples=len(encoded),
        ratio_definition="real tokens/s of the default recipe's step / real tokens/s of a naive fp32 padded unpacked loop",
    )
    common.print_table(
        f"Training throughput, {len(encoded)} examples, recipe {recipe.name} ({version}), bf16={use_bf16}",
        ["loop", "median tokens/s", "rows", "last loss"],
        [["nebras (packed, bf16 autocast, scored-only logits)", median["nebras"], runs["nebras"][0]["rows"],
          runs["nebras"][-1]["last_loss"]],
         ["naive (fp32, padded, unpacked, full logits)", median["naive"], runs["naive"][0]["rows"],
          runs["naive"][-1]["last_loss"]]],
    )
    print(common.verdict(NAME, ratio, TARGET))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
