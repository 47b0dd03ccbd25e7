"""Reply latency of plain ``model.generate`` (fp32) versus Nebras's serving path, and their quality.

``python -m benchmarks.bench_generation [--model DIR] [--prompts 12] [--bleu-rows 54]``

Latency: replies of exactly ``--new-tokens`` (60) new tokens for prompts built by the serving
prompt builder from validation rows. The plain approach is ``model.generate`` on the fp32 model
(greedy, KV cache: transformers' defaults); Nebras's path is the ``FastDecoder`` (own greedy loop,
prompt-line token cache, prefix KV reuse; LeanLlama for Llama-style models) on the model in each precision. All
variants run interleaved, prompt by prompt, in a rotating order, so machine noise hits them alike.
``ratio`` = p50 of plain / p50 of the serving variant (``--serving``; default ``auto``: what the
shipped ``fast_path: auto`` serves on this CPU: ``w8`` where bf16 is native, else ``fp32``, with
prompt lookup and corpus drafts from the model's training replies, ``+corpus``; ``+lookup`` for a
model without an exemplar index). ``--variants auto`` times fp32 and fp32+lookup, plus the shipped
path without drafts, with prompt lookup and with corpus drafts (emulated bf16 is several times
slower and is skipped).

Quality: BLEU and ROUGE-L against the references of ``--bleu-rows`` validation rows (stratified:
the first rows of every intent), for the plain ``Decoder`` (``model.generate`` with Nebras's
decoding rules, fp32) and the serving variant with the same rules. The fast path must stay within
0.5 BLEU of plain.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import defaultdict
from typing import Any, Dict, List

from benchmarks import common

NAME = "bench_generation"
TARGET = 3.0
BLEU_TOLERANCE = 0.5


def _validation_contexts(rows_wanted: int):
    """``[(context, template, values, reference)]`` from the newest validation split, stratified by intent."""
    from nebras_bot import paths
    from nebras_bot.evaluation.baselines import IntentTemplateBaseline
    from nebras_bot.evaluation.evaluate import (
        NON_EMPTY_DATA_COLUMNS, REQUIRED_DATA_COLUMNS, eval_rows, first_turn_context, read_rows,
    )
    from nebras_bot.evaluation.serving_path import reply_inputs

    dataset = common.latest_dataset()
    if dataset is None:
        raise SystemExit("no prepared dataset (models/datasets/<version>/validation.csv): run `nebras data prepare`")
    rows = eval_rows(read_rows(dataset / "validation.csv", REQUIRED_DATA_COLUMNS, NON_EMPTY_DATA_COLUMNS))
    by_intent: Dict[str, list] = defaultdict(list)
    for row in rows:
        by_intent[row.intent].append(row)
    picked, depth = [], 0
    while len(picked) < min(rows_wanted, len(rows)):  # round-robin over intents
        added = False
        for intent in sorted(by_intent):
            if depth < len(by_intent[intent]) and len(picked) < rows_wanted:
                picked.append(by_intent[intent][depth])
                added = True
        depth += 1
        if not added:
            break
    templates = IntentTemplateBaseline.from_domain(paths.home() / "domain.yml", paths.home() / "domain")
    items = []
    for row in picked:
        values = {row.entity_type: row.entity_value} if row.entity_value else {}
        prompt_template, template = reply_inputs(templates.template(row.intent, values), templates.generative, "rephrase")
        items.append((first_turn_context(row.instruction, row.intent, values, prompt_template), template, values,
                      row.reference))
    return dataset, items


def _plain_generate(model, tokenizer, prompt: str, new_tokens: int) -> int:
    import torch

    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(
            input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=tokenizer.pad_token_id,
        )
    return int(output.shape[1] - encoded.input_ids.shape[1])


def _common_prefix(left: List[int], right: List[int]) -> int:
    """How many leading tokens two sequences share."""
    count = 0
    for a, b in zip(left, right):
        if a != b:
            break
        count += 1
    return count


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model source (default: models/nlg/current, else GPT-2 small from config)")
    parser.add_argument("--prompts", type=int, default=12, help="prompts timed per variant")
    parser.add_argument("--bleu-rows", type=int, default=54, help="validation rows for BLEU/ROUGE-L (0: skip)")
    parser.add_argument("--new-tokens", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every variant")
    parser.add_argument("--variants", default="auto", help="Nebras paths to time: fp32|int8|bf16|w8|w4, "
                        "each optionally +lookup (prompt-lookup decoding) or +corpus (lookup and corpus drafts), e.g. w8,w8+corpus; auto: see above")
    parser.add_argument("--serving", default="auto", help="the variant that is Nebras's serving path (auto: see above)")
    parser.add_argument("--name", default=NAME, help="result name (results/<name>.json), for supplementary runs")
    args = parser.parse_args(argv)

    import torch
    from tqdm.auto import tqdm

    from nebras_bot.evaluation import textmetrics
    from nebras_bot.generation import placeholders
    from nebras_bot.generation.decoding import Decoder
    from nebras_bot.generation.fastpath import fast_decoder, prepare_model, resolve_fast_path
    from nebras_bot.generation.generator import ResponseGenerator
    from nebras_bot.generation.settings import GenerationSettings

    common.set_threads(args.threads)
    source, description = common.shipped_model_source(args.model)
    settings = GenerationSettings(max_new_tokens=args.new_tokens, timeout_s=600, torch_threads=args.threads)
    generator = ResponseGenerator.load(settings, source=source)  # fast_path off: the plain fp32 model
    if not generator.available:
        print(f"cannot load {source}: {generator.load_error}", file=sys.stderr)
        return 2
    common.set_threads(args.threads)
    model, tokenizer = generator.loaded.model, generator.loaded.tokenizer
    dataset, items = _validation_contexts(max(args.prompts, args.bleu_rows))
    prompts = [generator.build_prompt(context) for context, *_ in items]

    shipped = resolve_fast_path("auto")  # what the shipped endpoints.yml serves on this machine
    drafting = "corpus" if generator.exemplar_index is not None and settings.corpus_drafts else "lookup"
    if args.serving == "auto":
        args.serving = f"{shipped}+{drafting}"
    if args.variants == "auto":
        args.variants = ",".join(dict.fromkeys(["fp32", "fp32+lookup", shipped, f"{shipped}+lookup", f"{shipped}+{drafting}"]))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.serving not in variants:
        variants.append(args.serving)
    decoders, prepared_models = {}, {}
    corpus = generator.exemplar_index.replies if generator.exemplar_index is not None else None
    for variant in variants:  # "<precision>", "<precision>+lookup" (prompt lookup), "<precision>+corpus" (and corpus drafts)
        precision, _, option = variant.partition("+")
        if option not in ("", "lookup", "corpus"):
            raise SystemExit(f"unknown variant option {option!r} in {variant!r}: lookup or corpus")
        if option == "corpus" and corpus is None:
            raise SystemExit(f"{variant}: the model has no exemplar index (its training replies) for corpus drafts")
        if precision not in prepared_models:
            prepared_models[precision] = model if precision == "fp32" else prepare_model(copy.deepcopy(model), precision)
        decoders[variant] = fast_decoder(prepared_models[precision], tokenizer, settings, precision,
                                         lookup=option in ("lookup", "corpus"),
                                         corpus=corpus if option == "corpus" else None)

    def run(label: str, prompt: str) -> float:
        started = time.perf_counter()
        if label == "plain":
            produced = _plain_generate(model, tokenizer, prompt, args.new_tokens)
        else:
            produced = decoders[label].complete(prompt, max_new_tokens=args.new_tokens, force_length=True).new_tokens
        assert produced == args.new_tokens, (label, produced)
        return time.perf_counter() - started

    labels = ["plain", *variants]
    for label in labels:  # warm-up (first-call allocations, quantised kernels)
        run(label, prompts[0])
    latencies: Dict[str, List[float]] = {label: [] for label in labels}
    timed = prompts[: args.prompts]
    for index, prompt in enumerate(tqdm(timed, desc="latency (all variants interleaved)")):
        order = labels[index % len(labels):] + labels[: index % len(labels)]
        for label in order:
            latencies[label].append(run(label, prompt))
    stats = {label: common.summary(values) for label, values in latencies.items()}
    plain50, plain95 = stats["plain"]["p50"], stats["plain"]["p95"]
    speedups = {v: {"p50": plain50 / stats[v]["p50"], "p95": plain95 / stats[v]["p95"]} for v in variants}

    quality: Dict[str, Any] = {}
    if args.bleu_rows > 0:
        plain_decoder = Decoder(model, tokenizer, settings)
        refs, outputs = [], {"plain": [], args.serving: []}
        same = 0
        agreement = {"tokens_compared": 0, "tokens_identical_prefix": 0}
        for (context, template, values, reference), prompt in tqdm(
            list(zip(items, prompts))[: args.bleu_rows], desc=f"quality (plain vs {args.serving})"
        ):
            texts, token_ids = {}, {}
            for label in ("plain", args.serving):
                decoder = plain_decoder if label == "plain" else decoders[label]
                completion = decoder.complete(prompt)
                text = completion.text
                token_ids[label] = tokenizer(completion.raw, add_special_tokens=False).input_ids
                texts[label] = placeholders.fill(text, values) or text
                outputs[label].append(texts[label])
            agreement["tokens_compared"] += len(token_ids["plain"])
            agreement["tokens_identical_prefix"] += _common_prefix(token_ids["plain"], token_ids[args.serving])
            same += texts["plain"] == texts[args.serving]
            refs.append(reference)
        for label, predictions in outputs.items():
            quality[label] = {"bleu": textmetrics.bleu(predictions, refs),
                              "rougeL": textmetrics.rouge(predictions, refs)["rougeL"]}
        quality["rows"] = len(refs)
        quality["identical_replies"] = same
        # Token agreement: the share of plain's generated tokens that the serving path reproduces
        # before its first different token (1.0: every reply token for token).
        quality["token_agreement"] = agreement["tokens_identical_prefix"] / max(1, agreement["tokens_compared"])
        quality.update(agreement)
        quality["bleu_drop"] = quality["plain"]["bleu"] - quality[args.serving]["bleu"]
        quality["within_tolerance"] = quality["bleu_drop"] <= BLEU_TOLERANCE
        quality["examples"] = [{"plain": p, args.serving: s, "reference": r[:300]}
                               for p, s, r in list(zip(outputs["plain"], outputs[args.serving], refs))[:3]]

    ratio = speedups[args.serving]["p50"]
    raw = {
        "latency_s": {label: common.list_of(values) for label, values in latencies.items()},
        "latency_summary_s": stats,
        "speedup_vs_plain": speedups,
        "quality": quality,
        "prefix_tokens_reused": {v: d.reused_tokens for v, d in decoders.items()},
        "tokens_per_decoding_pass": {v: d.generated_tokens / max(1, d.decoding_passes) for v, d in decoders.items()},
    }
    path = common.write_result(
        args.name, ratio, TARGET, raw, model=description, model_source=source, dataset=str(dataset.name),
        serving_variant=args.serving, new_tokens=args.new_tokens, prompts_timed=len(timed),
        ratio_definition="p50 latency of plain fp32 model.generate / p50 of Nebras's serving path",
        bleu_within_0_5=quality.get("within_tolerance"),
    )
    common.print_table(
        f"Reply latency, {args.new_tokens} new tokens, {len(timed)} prompts, {torch.get_num_threads()} thread(s); model: {description}",
        ["path", "p50 s", "p95 s", "speed-up p50", "speed-up p95"],
        [["plain model.generate fp32", plain50, plain95, 1.0, 1.0]]
        + [[f"nebras {v}" + (" (serving)" if v == args.serving else ""), stats[v]["p50"], stats[v]["p95"],
            speedups[v]["p50"], speedups[v]["p95"]] for v in variants],
    )
    if quality:
        common.print_table(
            f"Quality on {quality['rows']} validation rows (identical replies: {quality['identical_replies']}, "
            f"token agreement {quality['token_agreement']:.3f})",
            ["path", "BLEU", "ROUGE-L"],
            [[label, quality[label]["bleu"], quality[label]["rougeL"]] for label in ("plain", args.serving)],
        )
        print(f"BLEU drop {quality['bleu_drop']:.3f} (tolerance {BLEU_TOLERANCE}): "
              f"{'OK' if quality['within_tolerance'] else 'TOO LARGE'}")
    print(common.verdict(args.name, ratio, TARGET))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
