"""GPU check: Nebras's decoding and training paths on a CUDA device, with side-by-side timings.

    python scripts/gpu_check.py --out results/gpu-check [--device cuda] [--data models/datasets/<version>]
                                [--size smollm2|tiny]

For a machine with a GPU (docs/performance.md, "On a GPU"); ``--device cpu --size tiny`` runs the
same checks on the CPU in a minute (``tests/performance/test_gpu_check.py`` does, so the script
cannot rot unnoticed). No weights travel: every model is randomly initialised, with the real GPT-2
tokenizer. Exactness checks use tiny models whose greedy choices are well separated
(``initializer_range=0.3``, as the performance tests do); timings use a Llama of SmolLM2-135M's
shape (``--size smollm2``: 30 layers, 576 wide, grouped-query attention; GPT-2 vocabulary), so they
measure the shipped architecture's arithmetic, not its replies.

Checks (a row each; the exit status is 1 when one fails):

- ``decode-fp32``: greedy replies on the device through the fast path in fp32 (the lean Llama
  forward and prompt lookup for the Llama, Nebras's greedy loop for GPT-2) and through the batching
  worker equal ``model.generate``'s replies on the CPU, and the decoders put their tensors there;
- ``decode-auto``: ``fast_path: auto`` on the device resolves to bf16 there and writes replies
  (their agreement with fp32 is reported, not required: bf16 rounding may change a greedy choice);
- ``packing``: a packed row gives every example the logits it has alone, on the device;
- ``training``: ``nebras train`` (the default recipe: LoRA, packing, per-example attention,
  bf16 autocast where the device has it) runs on the device for ``--steps`` steps, its loss falls,
  and the saved model loads and decodes there.

Timings (written to ``gpu_check.json``): reply latency for 60 new tokens, ``model.generate`` in
fp32 versus the ``auto`` fast path; replies/s for ``--replies`` concurrent replies, the batching
worker versus one reply after another; training tokens/s, the default recipe's step versus the
naive fp32 padded loop of ``benchmarks/bench_training.py``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from nebras_bot.generation.decoding import Decoder  # noqa: E402
from nebras_bot.generation.device import model_device  # noqa: E402
from nebras_bot.generation.fastpath import build_decoder  # noqa: E402
from nebras_bot.generation.loader import LoadedModel, gpt2_tokenizer, tiny_gpt2  # noqa: E402
from nebras_bot.generation.settings import GenerationSettings  # noqa: E402

RESULT_FILE = "gpu_check.json"
NEW_TOKENS = 60
PROMPTS = [
    "<|system|>\nintent: track_order\nslots: order_id=12345\n<|user|> where is my order 12345?\n<|agent|>",
    "<|user|> hi\n<|agent|>",
    "<|system|>\nintent: cancel_order\ntemplate: I can cancel order {order_id} for you.\n"
    "<|user|> please cancel order 55512, I also want a refund\n<|agent|>",
    "<|system|>\nintent: get_refund\n<|user|> I returned the shoes two weeks ago and still have no refund\n<|agent|>",
    "<|user|> can I change the delivery address of order 777?\n<|agent|>",
    "<|system|>\nintent: complaint\n<|user|> your courier left the parcel in the rain, everything is wet\n<|agent|>",
]
# SmolLM2-135M-Instruct's shape (its config.json), with the GPT-2 tokenizer's vocabulary.
SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0,
                     tie_word_embeddings=True)
TINY_LLAMA_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=1024)


def random_llama(shape: Dict[str, Any], seed: int = 0, **overrides) -> LoadedModel:
    """A randomly initialised Llama of ``shape`` with the GPT-2 tokenizer (the loader's scratch models' tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = gpt2_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **{**shape, **overrides})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation("sdpa")
    return LoadedModel(model=model.eval(), tokenizer=tokenizer, source="random-llama", version="random-llama")


# --------------------------------------------------------------------------- checks


def _replies(decoder: Any, prompts: List[str], new_tokens: int = 24) -> List[tuple]:
    """(raw text, stop reason, new tokens) of each reply, as the exactness tests compare them."""
    try:
        return [_key(decoder.complete(p, max_new_tokens=new_tokens)) for p in prompts]
    finally:
        getattr(decoder, "close", lambda: None)()


def _key(completion: Any) -> tuple:
    return completion.raw, completion.stopped_by, completion.new_tokens


def _reference(loaded: LoadedModel, prompts: List[str], new_tokens: int = 24) -> List[tuple]:
    """``model.generate``'s greedy replies on the CPU in fp32 (the exactness reference)."""
    decoder = Decoder(copy.deepcopy(loaded.model).cpu().float(), loaded.tokenizer, GenerationSettings(device="cpu"))
    return [_key(decoder.complete(p, max_new_tokens=new_tokens)) for p in prompts]


def check_decoding(device: torch.device) -> Dict[str, Any]:
    """``decode-fp32`` and ``decode-auto`` for a tiny GPT-2 and a tiny Llama."""
    results: Dict[str, Any] = {}
    models = {"gpt2": tiny_gpt2(seed=2, initializer_range=0.3),
              "llama": random_llama(TINY_LLAMA_SHAPE, seed=2, initializer_range=0.3)}
    for name, loaded in models.items():
        reference = _reference(loaded, PROMPTS)
        runs = {}
        for label, options in (("fp32", {"fast_path": "fp32"}), ("batching", {"fast_path": "fp32", "batching": True}),
                               ("auto", {"fast_path": "auto"})):
            model = copy.deepcopy(loaded.model)
            decoder = build_decoder(model, loaded.tokenizer, GenerationSettings(device=str(device), **options))
            engine = getattr(decoder, "engine", None)
            runs[label] = {
                "device": str(model_device(engine.model if engine is not None else model)),
                "dtype": str(next(model.parameters()).dtype),
                "replies": _replies(decoder, PROMPTS),
            }
        same = {label: sum(a == b for a, b in zip(run["replies"], reference)) for label, run in runs.items()}
        results[name] = {"prompts": len(PROMPTS), "same_as_cpu_generate": same,
                         "devices": {label: run["device"] for label, run in runs.items()},
                         "auto_dtype": runs["auto"]["dtype"], "auto_written": all(r[2] > 0 for r in runs["auto"]["replies"])}
    on_device = all(d.startswith(device.type) for r in results.values() for d in r["devices"].values())
    exact = all(r["same_as_cpu_generate"][k] == r["prompts"] for r in results.values() for k in ("fp32", "batching"))
    expected_auto = "torch.bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    auto_ok = all(r["auto_written"] and (expected_auto is None or r["auto_dtype"] == expected_auto) for r in results.values())
    return {"decode-fp32": {"ok": on_device and exact, **results},
            "decode-auto": {"ok": auto_ok, "expected_dtype": expected_auto or "the CPU's choice"}}


def check_packing(device: torch.device) -> Dict[str, Any]:
    from nebras_bot.training import dataset as ds
    from nebras_bot.training import packing

    model = random_llama(TINY_LLAMA_SHAPE, seed=3).model.to(device)
    examples = [ds.Encoded([3 + i for i in range(n)], [3 + i for i in range(n)]) for n in (9, 31, 17, 40)]
    with torch.no_grad():
        alone = torch.cat([model(input_ids=torch.tensor([e.input_ids], device=device)).logits[0] for e in examples])
        batch = {k: v.to(device) for k, v in ds.collate(ds.pack(examples, 128), pad_id=0).items()}
        packing.use_segment_attention(model)
        packed = model(input_ids=batch["input_ids"], **packing.model_inputs(batch)).logits[0]
    error = float((packed - alone).abs().max())
    return {"packing": {"ok": error < 1e-3, "max_abs_difference": error, "tokens": int(batch["input_ids"].numel())}}


def check_training(device: torch.device, data: Path, work: Path, size: str, steps: int) -> Dict[str, Any]:
    """``nebras train`` with the default recipe on a random Llama saved as the base model."""
    from nebras_bot.generation.loader import load_causal_lm
    from nebras_bot.training.recipe import load_recipe
    from nebras_bot.training.trainer import train

    base = work / "base"
    loaded = random_llama(SMOLLM2_SHAPE if size == "smollm2" else TINY_LLAMA_SHAPE, seed=4)
    loaded.model.save_pretrained(base)
    loaded.tokenizer.save_pretrained(base)
    recipe = load_recipe("default").with_overrides(dict(
        max_steps=steps, max_minutes=6, eval_every=max(1, steps // 2), log_every=max(1, steps // 6), eval_batches=4,
        final_eval_batches=8,
        checkpoint_every=10 * steps, max_train_examples=40 * steps, early_stopping_patience=0, threads=None))
    started = time.perf_counter()
    # Without Rasa installed (a bare GPU machine), train without templates: a domain path that does not exist.
    domain = None if _has_rasa() else work / "no-domain.yml"
    out = train(recipe, data_dir=data, base=str(base), out_dir=work / "nlg", version="gpu-check", progress=False, domain=domain)
    seconds = time.perf_counter() - started
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in log if "loss" in r]
    metadata = json.loads((out / "nebras.json").read_text())
    trained = load_causal_lm(out)
    decoder = build_decoder(trained.model, trained.tokenizer, GenerationSettings(device=str(device), fast_path="auto"))
    reply = _replies(decoder, PROMPTS[:1], 8)[0]
    falls = len(losses) >= 2 and losses[-1] < losses[0]
    expected_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    ok = falls and math.isfinite(json.loads((out / "metrics.json").read_text())["val_loss"]) and reply[2] > 0 \
        and (metadata.get("bf16") == expected_bf16 or device.type == "cpu")
    return {"training": {"ok": ok, "seconds": round(seconds, 1), "bf16": metadata.get("bf16"), "losses": losses,
                         "tokens_per_s": [r.get("tokens_per_s") for r in log if "tokens_per_s" in r],
                         "trained_model_reply_on_device": reply}}


def _has_rasa() -> bool:
    try:
        import rasa.shared.core.domain  # noqa: F401 - the templates' domain loader
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- timings


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(function: Callable[[], Any], device: torch.device, repeats: int) -> List[float]:
    function()  # warm-up: kernel selection, first allocations
    seconds = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        function()
        _sync(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def time_generation(device: torch.device, size: str, repeats: int) -> Dict[str, Any]:
    loaded = random_llama(SMOLLM2_SHAPE if size == "smollm2" else TINY_LLAMA_SHAPE, seed=5)
    plain_model = copy.deepcopy(loaded.model).to(device)
    tokenizer = loaded.tokenizer
    fast = build_decoder(copy.deepcopy(loaded.model), tokenizer, GenerationSettings(device=str(device), fast_path="auto"))
    prompt = PROMPTS[0]
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(device)

    def plain() -> None:
        with torch.inference_mode():
            plain_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 min_new_tokens=NEW_TOKENS, do_sample=False, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id)

    def nebras() -> None:
        fast.complete(prompt, max_new_tokens=NEW_TOKENS, force_length=True)

    timings = {"plain_generate_fp32": _time(plain, device, repeats), "nebras_auto": _time(nebras, device, repeats)}
    p50 = {label: statistics.median(values) for label, values in timings.items()}
    return {"generation": {"new_tokens": NEW_TOKENS, "p50_s": p50, "seconds": timings,
                           "auto_dtype": str(next(fast.engine.model.parameters()).dtype),
                           "ratio": p50["plain_generate_fp32"] / p50["nebras_auto"]}}


def time_batching(device: torch.device, size: str, replies: int) -> Dict[str, Any]:
    """Replies/s for ``replies`` concurrent 60-token replies: the batching worker (``batching: true``,
    up to 16 rows per step) versus the single-reply fast path answering them one after another."""
    loaded = random_llama(SMOLLM2_SHAPE if size == "smollm2" else TINY_LLAMA_SHAPE, seed=7)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(replies)]
    single = build_decoder(copy.deepcopy(loaded.model), loaded.tokenizer, GenerationSettings(device=str(device), fast_path="auto"))
    worker = build_decoder(copy.deepcopy(loaded.model), loaded.tokenizer,
                           GenerationSettings(device=str(device), fast_path="auto", batching=True, batch_max_size=16))
    try:
        def one_by_one() -> None:
            for prompt in prompts:
                single.complete(prompt, max_new_tokens=NEW_TOKENS, force_length=True)

        def together() -> None:
            futures = [worker.submit(prompt, NEW_TOKENS, force_length=True) for prompt in prompts]
            assert all(f.result().new_tokens == NEW_TOKENS for f in futures)

        seconds = {"one_by_one": statistics.median(_time(one_by_one, device, 2)),
                   "batched": statistics.median(_time(together, device, 2))}
    finally:
        worker.close()
    per_s = {label: replies / value for label, value in seconds.items()}
    return {"batching": {"replies": replies, "seconds": seconds, "replies_per_s": per_s, "peak_rows": worker.peak_rows,
                         "ratio": per_s["batched"] / per_s["one_by_one"]}}


def time_training(device: torch.device, data: Path, size: str, examples: int) -> Dict[str, Any]:
    """bench_training's two passes (the default recipe's step versus the naive loop) on ``device``,
    for the default recipe's model (``trainer.build_model``: LoRA, per-example attention) on a
    random Llama saved as its base."""
    from benchmarks import bench_training
    from nebras_bot.data.prepare import load_split
    from nebras_bot.training.recipe import load_recipe
    from nebras_bot.training.dataset import encode_split
    from nebras_bot.training.trainer import bf16_supported, build_model

    recipe = load_recipe("default")
    loaded = random_llama(SMOLLM2_SHAPE if size == "smollm2" else TINY_LLAMA_SHAPE, seed=6)
    with tempfile.TemporaryDirectory() as base:
        loaded.model.save_pretrained(base)
        loaded.tokenizer.save_pretrained(base)
        model, tokenizer, _ = build_model(recipe, base)
    model.to(device)
    _, encoded = encode_split(load_split(data, "train"), tokenizer, recipe, {}, None, examples)
    use_bf16 = bf16_supported()
    pad_id = tokenizer.pad_token_id
    runs = {"nebras": bench_training._nebras_pass(copy.deepcopy(model), encoded, recipe, pad_id, use_bf16),
            "naive": bench_training._naive_pass(copy.deepcopy(model), encoded, recipe, pad_id)}
    return {"training_speed": {"examples": len(encoded), "bf16": use_bf16, "runs": runs,
                               "ratio": runs["nebras"]["tokens_per_s"] / runs["naive"]["tokens_per_s"]}}


# --------------------------------------------------------------------------- main


def environment(device: torch.device) -> Dict[str, Any]:
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "device": str(device), "cuda": torch.version.cuda}
    if device.type == "cuda":
        info.update(name=torch.cuda.get_device_name(device), bf16=torch.cuda.is_bf16_supported(),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return info


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {RESULT_FILE}")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--data", type=Path, default=None, help="a prepared dataset (default: the newest one)")
    parser.add_argument("--size", choices=("smollm2", "tiny"), default="smollm2", help="model shape for training and timings")
    parser.add_argument("--steps", type=int, default=30, help="training steps of the training check")
    parser.add_argument("--repeats", type=int, default=5, help="timed replies per decoder")
    parser.add_argument("--examples", type=int, default=64, help="training examples per timed pass")
    parser.add_argument("--replies", type=int, default=32, help="concurrent replies of the batching timing")
    args = parser.parse_args(argv)

    from nebras_bot.generation.device import resolve_device

    device = resolve_device(args.device)
    data = args.data or common.latest_dataset()
    if data is None:
        raise SystemExit("no prepared dataset: run `nebras data prepare` or pass --data")
    args.out.mkdir(parents=True, exist_ok=True)
    report: Dict[str, Any] = {"environment": environment(device)}
    print(json.dumps(report["environment"]), flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        steps = [("decoding", lambda: check_decoding(device)), ("packing", lambda: check_packing(device)),
                 ("training", lambda: check_training(device, data, Path(scratch), args.size, args.steps)),
                 ("generation timing", lambda: time_generation(device, args.size, args.repeats)),
                 ("batching timing", lambda: time_batching(device, args.size, args.replies)),
                 ("training timing", lambda: time_training(device, data, args.size, args.examples))]
        for label, step in steps:
            started = time.perf_counter()
            try:
                report.update(step())
            except Exception as error:  # noqa: BLE001 - one failing step must not hide the others
                report[label] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            print(f"[{label}] {time.perf_counter() - started:.1f} s", flush=True)
            (args.out / RESULT_FILE).write_text(json.dumps(report, indent=2, default=str) + "\n")
    checks = {name: value["ok"] for name, value in report.items() if isinstance(value, dict) and "ok" in value}
    print("\n| check | result |\n| --- | --- |")
    for name, ok in checks.items():
        print(f"| {name} | {'ok' if ok else 'FAILED'} |")
    for name in ("generation", "batching", "training_speed"):
        if name in report:
            print(f"| {name} ratio | {report[name]['ratio']:.2f}x |")
    return 0 if checks and all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
