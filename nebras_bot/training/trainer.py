"""``nebras train``: fine-tune a causal LM on a prepared dataset (a plain, nanoGPT-style loop).

Read top to bottom: load recipe and data -> build the model (loader; LoRA when asked) -> encode
and pack examples -> loop: forward under bf16 autocast, backward, gradient accumulation, clip,
AdamW step, warm-up + cosine learning rate; every ``eval_every`` steps the validation loss (early
stopping keeps the best weights), every ``checkpoint_every`` steps a checkpoint; a ``--max-minutes``
budget ends the loop cleanly -> save the best model, tokenizer, recipe, metrics, exemplar index,
``nebras.json`` and a model card into ``models/nlg/<version>/``.

The model trains in ``models/nlg/<version>.partial/`` (checkpoints in ``checkpoint/``), which is
renamed to ``<version>`` only when everything is written: a crash never leaves a half model that
looks finished. ``resume=<partial dir>`` continues from the last checkpoint with the same step,
data order, optimizer state and random state. Multi-device runs go through
``accelerate launch -m nebras_bot.cli train ...`` unchanged (``accelerate.Accelerator``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from nebras_bot import paths
from nebras_bot.data.prepare import CARD_JSON, ensure_dataset, load_split
from nebras_bot.data.split import TRAIN, VALIDATION
from nebras_bot.data.templates import intent_templates
from nebras_bot.training import dataset as ds
from nebras_bot.training.dataset import encode_split
from nebras_bot.training import packing
from nebras_bot.training.checkpoint import load_rng, save_rng
from nebras_bot.training.loss import batch_loss, evaluate_loss
from nebras_bot.training.model_card import write_model_card
from nebras_bot.training.recipe import METHOD_LORA, Recipe, load_recipe
from nebras_bot.training.registry import METADATA_FILE, PARTIAL_SUFFIX

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
RNG_FILE = "rng_state_{rank}.pt"  # one per process
LOG_FILE = "training_log.jsonl"
RECIPE_FILE = "recipe.json"
METRICS_FILE = "metrics.json"
EXEMPLARS_DIR = "exemplars"
# Below this share of retrieved exemplars reaching the training prompts, the run warns.
MIN_EXEMPLARS_KEPT = 0.9


# --------------------------------------------------------------------------- helpers


def bf16_supported() -> bool:
    """True when bf16 is native here (one check for training and serving: the generation fast path's)."""
    from nebras_bot.generation.fastpath import bf16_supported as native_bf16

    return native_bf16()


def learning_rate(step: int, recipe: Recipe, total_steps: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio``.

    The decay ends at ``total_steps`` or, with a time budget, when the budget is spent, whichever
    comes first (``time_fraction`` = share of the budget used), so a budget-limited run still
    finishes its schedule.
    """
    if recipe.warmup_steps and step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    span = max(1, total_steps - recipe.warmup_steps)
    progress = min(1.0, max((step - recipe.warmup_steps) / span, time_fraction))
    floor = recipe.lr * recipe.min_lr_ratio
    return floor + 0.5 * (recipe.lr - floor) * (1 + math.cos(math.pi * progress))


def new_version(recipe: Recipe) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{recipe.name}"


def build_model(recipe: Recipe, base: str):
    """The loaded base model (LoRA-wrapped when the recipe says so) and its tokenizer."""
    from nebras_bot.generation import loader

    if base.startswith(loader.GPT2_SCRATCH) and recipe.model_config_overrides:
        spec = base.split(":", 1)[1] if ":" in base else None
        loaded = loader.gpt2_from_config(spec, seed=recipe.seed, **recipe.model_config_overrides)
    elif base.startswith(loader.GPT2_SCRATCH):
        spec = base.split(":", 1)[1] if ":" in base else None
        loaded = loader.gpt2_from_config(spec, seed=recipe.seed)
    else:
        loaded = loader.load_causal_lm(base)
    model = loaded.model
    if recipe.packing:
        packing.use_segment_attention(model)  # packed examples attend only to themselves
    if recipe.method == METHOD_LORA:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=recipe.lora.r,
            lora_alpha=recipe.lora.alpha,
            lora_dropout=recipe.lora.dropout,
            target_modules=recipe.lora.target_modules or "all-linear",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    model.train()
    return model, loaded.tokenizer, loaded.version


def _trainable_state(model) -> Dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------- the run

def fresh_accelerator(*, mixed_precision: str, grad_accum: int) -> "Accelerator":
    """An Accelerator for this run. accelerate keeps its settings in a process-wide singleton and
    refuses a second run with another precision in the same process (``nebras learn``, tests), so
    the run-level state is reset first; the process-level state (the distributed group that
    ``accelerate launch`` set up) is kept."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum)


def train(
    recipe: Recipe | str | Path = "default",
    *,
    data_dir: Optional[Path | str] = None,
    base: Optional[str] = None,
    out_dir: Optional[Path | str] = None,
    max_minutes: Optional[float] = None,
    max_steps: Optional[int] = None,
    resume: Optional[Path | str] = None,
    version: Optional[str] = None,
    domain: Optional[Path | str] = None,
    progress: bool = True,
    callback: Optional[Callable[[int, Dict[str, Any]], None]] = None,
) -> Path:
    """Train one model; returns its directory ``<out_dir>/<version>`` (default ``models/nlg/``).

    ``callback(step, record)`` is called after every optimizer step (``record`` holds what was
    logged at that step, often nothing); an exception from it stops the run like a crash would,
    leaving ``<version>.partial/`` with its last checkpoint for ``resume``.
    """
    import torch
    from tqdm.auto import tqdm

    recipe = load_recipe(recipe).with_overrides({"max_minutes": max_minutes, "max_steps": max_steps})
    base = base or recipe.base
    # No --data: the newest prepared dataset, prepared first on a fresh machine.
    data_dir = Path(data_dir) if data_dir else ensure_dataset(progress=progress)
    root = Path(out_dir) if out_dir else paths.nlg_models_dir()
    if resume:
        work = Path(resume)
        root = Path(out_dir) if out_dir else work.parent  # the finished model goes next to its partial
        state_path = work / CHECKPOINT_DIR / STATE_FILE
        if not state_path.is_file():
            raise FileNotFoundError(f"{work}: no checkpoint to resume from ({state_path} is missing)")
        state = json.loads(state_path.read_text())
        version = state["version"]
        if (work / RECIPE_FILE).is_file():
            saved = Recipe(**json.loads((work / RECIPE_FILE).read_text()))
            recipe = saved.with_overrides({"max_minutes": max_minutes, "max_steps": max_steps})
        base = state.get("base", base)
    else:
        state = {}
        version = version or new_version(recipe)
        work = root / f"{version}{PARTIAL_SUFFIX}"
        work.mkdir(parents=True, exist_ok=False)
    final = root / version
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)

    use_bf16 = recipe.bf16 == "true" or (recipe.bf16 == "auto" and bf16_supported())
    accelerator = fresh_accelerator(mixed_precision="bf16" if use_bf16 else "no", grad_accum=recipe.grad_accum)
    dataset_version = json.loads((data_dir / CARD_JSON).read_text()).get("version", data_dir.name) if (data_dir / CARD_JSON).is_file() else data_dir.name

    # ---- model and data
    model, tokenizer, base_version = build_model(recipe, base)
    pad_id = tokenizer.pad_token_id
    train_dialogues, val_dialogues = load_split(data_dir, TRAIN), load_split(data_dir, VALIDATION)
    templates = intent_templates(domain)
    index = None
    train_examples = ds.exchanges(train_dialogues, templates)
    if recipe.retrieval:
        from nebras_bot.generation.retrieval import ExemplarIndex

        index = ExemplarIndex.build(
            [e.query for e in train_examples], [e.reply for e in train_examples], [e.intent for e in train_examples],
            order=recipe.exemplar_order, pool=recipe.exemplar_pool,
        )
    _, train_encoded = encode_split(train_dialogues, tokenizer, recipe, templates, index, recipe.max_train_examples,
                                    sketches=True)
    _, val_encoded = encode_split(val_dialogues, tokenizer, recipe, templates, index)
    conditioning = ds.conditioning_report(train_encoded)
    logger.info("training prompts: %s", conditioning)
    if conditioning["kept_share"] < MIN_EXEMPLARS_KEPT or conditioning["truncated"]:
        logger.warning(
            "the recipe's limits cut the conditioning: %.0f%% of retrieved exemplars reach the prompt "
            "(raise prompt.max_prompt_tokens), %d replies cut by max_length=%d",
            100 * conditioning["kept_share"], conditioning["truncated"], recipe.max_length,
        )
    train_rows = ds.pack(train_encoded, recipe.max_length) if recipe.packing else train_encoded
    if not train_rows or not val_encoded:
        raise ValueError(f"{data_dir}: empty train or validation split")
    epoch_batches = math.ceil(len(train_rows) / recipe.batch_size)
    steps_per_epoch = max(1, epoch_batches // recipe.grad_accum)
    total_steps = recipe.max_steps
    logger.info(
        "training %s on %s (%d rows from %d examples, %d steps/epoch, %d steps max, bf16=%s, retrieval=%s)",
        base, data_dir.name, len(train_rows), len(train_encoded), steps_per_epoch, total_steps, use_bf16, recipe.retrieval,
    )

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    (work / RECIPE_FILE).write_text(recipe.json(indent=2), encoding="utf-8")

    step = int(state.get("step", 0))
    micro = int(state.get("micro", 0))  # micro-batches done (position in the data order)
    best_val = state.get("best_val")
    bad_evals = int(state.get("bad_evals", 0))
    tokens_seen = int(state.get("tokens_seen", 0))
    elapsed_before = float(state.get("elapsed_s", 0.0))
    best_state = None
    if resume:
        accelerator.load_state(str(work / CHECKPOINT_DIR))
        rng_path = work / CHECKPOINT_DIR / RNG_FILE.format(rank=accelerator.process_index)
        if rng_path.is_file():
            load_rng(rng_path)
        best_path = work / CHECKPOINT_DIR / "best.pt"
        if best_path.is_file():
            best_state = torch.load(best_path)
        logger.info("resumed %s at step %d", version, step)

    def save_checkpoint() -> None:
        target = work / CHECKPOINT_DIR
        accelerator.save_state(str(target))
        save_rng(target / RNG_FILE.format(rank=accelerator.process_index))
        if best_state is not None:
            torch.save(best_state, target / "best.pt")
        _write_json(target / STATE_FILE, {
            "version": version, "base": base, "step": step, "micro": micro, "best_val": best_val,
            "bad_evals": bad_evals, "tokens_seen": tokens_seen, "elapsed_s": elapsed_before + clock() - started,
        })

    # ---- the loop
    wall_started = time.time()
    clock = time.process_time if recipe.budget_clock == "process" else time.time
    started = clock()
    budget_s = recipe.max_minutes * 60 if recipe.max_minutes else None
    log_path = work / LOG_FILE
    stop_reason = "max_steps"
    window_tokens, window_start, window_loss, window_count = 0, time.time(), 0.0, 0
    step_tokens = 0  # tokens of the micro-batches of the current optimizer step
    bar = tqdm(total=total_steps, initial=step, desc=f"train {version}", disable=not progress, unit="step")
    epoch_cache: Dict[int, List[List[ds.Encoded]]] = {}
    while step < total_steps:
        epoch, position = divmod(micro, epoch_batches)
        if epoch not in epoch_cache:
            epoch_cache = {epoch: ds.batches(train_rows, recipe.batch_size, recipe.seed, epoch)}
        batch = epoch_cache[epoch][position]
        used = (elapsed_before + clock() - started) / budget_s if budget_s else 0.0
        current_lr = learning_rate(step, recipe, total_steps, used)
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        with accelerator.accumulate(model):
            loss, _, tensors = batch_loss(model, batch, pad_id, accelerator, accelerator.num_processes == 1)
            accelerator.backward(loss)
            if accelerator.sync_gradients and recipe.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        micro += 1
        batch_tokens = int(tensors["attention_mask"].sum())
        window_tokens += batch_tokens
        step_tokens += batch_tokens
        window_loss += loss.item()
        window_count += 1
        if not accelerator.sync_gradients:
            continue
        step += 1
        tokens_seen += step_tokens
        step_tokens = 0
        bar.update(1)
        record: Dict[str, Any] = {}
        if step % recipe.log_every == 0 or step == total_steps:
            seconds = max(1e-9, time.time() - window_start)
            record.update(loss=round(window_loss / window_count, 5), tokens_per_s=round(window_tokens / seconds, 1))
        if step % recipe.eval_every == 0 or step == total_steps:
            val_loss = evaluate_loss(model, val_encoded, recipe.batch_size, pad_id, accelerator, recipe.eval_batches)
            record["val_loss"] = round(val_loss, 5)
            if best_val is None or val_loss < best_val - 1e-4:
                best_val, bad_evals = val_loss, 0
                best_state = _trainable_state(accelerator.unwrap_model(model))
            else:
                bad_evals += 1
        if record:
            record.update(step=step, lr=current_lr, epoch=round(micro / epoch_batches, 3),
                          tokens=tokens_seen, elapsed_s=round(elapsed_before + clock() - started, 1),
                          wall_s=round(time.time() - wall_started, 1))
            with log_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            bar.set_postfix({k: record[k] for k in ("loss", "val_loss") if k in record})
            if "loss" in record:
                window_loss, window_count, window_start = 0.0, 0, time.time()
                window_tokens = 0
        if step % recipe.checkpoint_every == 0:
            save_checkpoint()
        if callback is not None:
            callback(step, record)
        if recipe.early_stopping_patience and bad_evals >= recipe.early_stopping_patience:
            stop_reason = "early_stopping"
            break
        if budget_s is not None and elapsed_before + clock() - started >= budget_s:
            stop_reason = "max_minutes"
            break
    bar.close()

    # ---- the best weights, final validation loss, everything written, then rename
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        with torch.no_grad():
            named = dict(unwrapped.named_parameters())
            for name, value in best_state.items():
                named[name].copy_(value)
    val_loss = evaluate_loss(model, val_encoded, recipe.batch_size, pad_id, accelerator, recipe.final_eval_batches)
    if recipe.method == METHOD_LORA:
        unwrapped = unwrapped.merge_and_unload()
    unwrapped.eval()
    unwrapped.save_pretrained(str(work), safe_serialization=True)
    tokenizer.save_pretrained(str(work))
    if index is not None:
        index.save(work / EXEMPLARS_DIR)
    minutes = round((elapsed_before + clock() - started) / 60, 2)
    metrics = {
        "val_loss": round(val_loss, 5),
        "val_perplexity": round(math.exp(min(val_loss, 50)), 3),
        "best_val_loss_during_training": round(best_val, 5) if best_val is not None else None,
        "steps": step,
        "epochs": round(micro / epoch_batches, 3),
        "tokens_seen": tokens_seen,
        "train_minutes": minutes,
        "budget_clock": recipe.budget_clock,
        "wall_minutes": round((time.time() - wall_started) / 60, 2),
        "stop_reason": stop_reason,
        "train_prompts": conditioning,
    }
    _write_json(work / METRICS_FILE, metrics)
    metadata = {
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": base,
        "base_model_version": base_version,
        "method": recipe.method,
        "recipe": recipe.name,
        "dataset_version": dataset_version,
        "dataset_dir": str(data_dir),
        "retrieval": bool(recipe.retrieval),
        "exemplars": recipe.exemplars if recipe.retrieval else 0,
        "prompt": recipe.prompt.dict(),
        "generation": recipe.generation,
        "bf16": use_bf16,
        "metrics": metrics,
        "training_log": LOG_FILE,
    }
    _write_json(work / METADATA_FILE, metadata)
    write_model_card(work, metadata, recipe)
    shutil.rmtree(work / CHECKPOINT_DIR, ignore_errors=True)
    if accelerator.is_main_process:
        os.replace(work, final)
    logger.info("model %s written to %s (%s)", version, final, metrics)
    return final
