"""The fast path for single replies (CPU first; on a GPU it decodes in bf16), and the factory that picks the decoder the generator uses.

What makes a reply fast on a small CPU (measured in ``benchmarks/bench_generation.py``, reported in
``docs/performance.md``):

- **int8 dynamic quantisation** (``torch.ao.quantization.quantize_dynamic``) of every linear layer,
  the LM head included. GPT-2 uses transformers' ``Conv1D`` (a transposed linear layer), which
  ``quantize_dynamic`` does not know, so those layers are first turned into ``nn.Linear``
  (:func:`conv1d_to_linear`). Decoding one token reads every weight once, so a 4x smaller weight
  (and an LM head that fits the CPU cache) is most of the win. ``bf16`` is available too
  (Zen 4 / Sapphire Rapids have bf16 instructions): slower than int8 on GPT-2, but the fast path
  for the Llama-style SmolLM2 models, where int8 is not quality-safe.
- **Weight-only int8/int4** (``w8``/``w4``, :mod:`nebras_bot.generation.weightonly`): only the
  weights are rounded, activations stay bf16; on an AMX/AVX512-BF16 CPU torch's weight-only
  kernels read a token's weights 2x (int8) or 4x (int4) faster than bf16 matrix products do.
- **A lean forward for Llama-style models** (:class:`nebras_bot.generation.lean.LeanLlama`, single
  replies on the fp32/bf16/w8/w4 paths): fused projections, a preallocated KV cache, about a third
  of transformers' per-token operations.
- **Nebras's own greedy loop** (:class:`nebras_bot.generation.batching.GreedyEngine`): logits only
  for the last prompt position, no per-step ``generate`` bookkeeping, stop checks only on tokens
  that can end a marker.
- **Prompt-lookup decoding** (:mod:`nebras_bot.generation.lookup`): drafts copied from the prompt
  are verified several tokens per model pass (greedy-equivalent; with bf16 a pass over 9 tokens
  costs little more than over one), plus **corpus drafts** (:mod:`nebras_bot.generation.drafts`)
  from the model's training replies where the prompt has nothing to copy.
- **Held bf16 weights** (``hold_bf16_weights``, w8/w4): prompt passes use de-quantised weights kept
  from load instead of de-quantising every weight for every prompt.
- **Prompt reuse** (:class:`FastDecoder`): the token ids of prompt lines are cached (the system
  lines, exemplars and history turns recur from turn to turn), and the KV cache of the previous
  prompt is kept, so a new prompt only runs the model over what differs from the last one.

``build_decoder`` returns what ``ResponseGenerator`` calls ``complete(prompt)`` on: the plain
``Decoder`` (``fast_path: off``, or sampling/beam search), a :class:`FastDecoder`, or a
:class:`nebras_bot.generation.worker.BatchingWorker` (``batching: true``) for servers that
answer many conversations at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, List, Optional, Sequence

import torch
from torch import nn

from nebras_bot.generation.attention import ATTENTION_NAME, use_grouped_decode_attention
from nebras_bot.generation.batching import DecodeRequest, GreedyEngine, Row
from nebras_bot.generation.worker import BatchingWorker
from nebras_bot.generation.decoding import Completion, Decoder
from nebras_bot.generation.device import attention_kernels, model_device, on_gpu, resolve_device
from nebras_bot.generation.drafts import CorpusDrafts
from nebras_bot.generation.lookup import LOOKUP_TOKENS, decode_with_lookup
from nebras_bot.generation.prompt import END
from nebras_bot.generation.settings import FAST_PATHS, GenerationSettings
from nebras_bot.generation.lean import LeanLlama, lean_supported
from nebras_bot.generation.weightonly import INT8_KERNEL_MAX_ROWS, int8_kernel_available, quantize_weights

logger = logging.getLogger(__name__)

FAST_OFF = "off"  # transformers' model.generate (the Decoder)
FAST_FP32 = "fp32"  # Nebras's greedy loop and prompt reuse, full precision
FAST_INT8 = "int8"  # ... on the int8 dynamically quantised model
FAST_BF16 = "bf16"  # ... on the bf16 model
FAST_W8 = "w8"  # ... on the bf16 model with int8 weights (nebras_bot.generation.weightonly)
FAST_W4 = "w4"  # ... on the bf16 model with int4 weights (groups of 32)
FAST_AUTO = "auto"  # w8 on a CPU with native bf16, bf16 on a GPU, else fp32 (measured: docs/performance.md)
assert set(FAST_PATHS) == {FAST_OFF, FAST_FP32, FAST_INT8, FAST_BF16, FAST_W8, FAST_W4, FAST_AUTO}  # the names live in settings.py
TOKEN_CACHE_SIZE = 4096
# The line-by-line tokenisation is checked against whole-prompt tokenisation on this many prompts.
TOKEN_CACHE_CHECKS = 16
# With int8/int4 weights a pass over more rows than the int8 kernel takes de-quantises every weight:
# drafts are kept short enough for the kernel (docs/performance.md).
LOOKUP_TOKENS_W8 = INT8_KERNEL_MAX_ROWS - 1
# Paths whose single replies run through LeanLlama for a Llama-style model (int8 dynamic layers cannot be fused).
LEAN_PATHS = (FAST_FP32, FAST_BF16, FAST_W8, FAST_W4)
CPU_ONLY_PATHS = (FAST_INT8, FAST_W8, FAST_W4)  # CPU kernels: on a GPU these decode in bf16
WEIGHT_ONLY_PATHS = (FAST_W8, FAST_W4)
MIN_PREFIX_REUSE = 4  # shorter shared prefixes are recomputed (not worth the cache bookkeeping)


# --------------------------------------------------------------------------- model preparation


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers ``Conv1D`` with an equivalent ``nn.Linear``; returns how many."""
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                linear = nn.Linear(child.nx, child.nf, bias=True)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                setattr(module, name, linear)
                replaced += 1
    return replaced


def quantize_int8(model: nn.Module) -> nn.Module:
    """int8 dynamic quantisation of every linear layer (Conv1D converted first), in place."""
    from torch.ao.quantization import quantize_dynamic

    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    conv1d_to_linear(model)
    return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def bf16_supported() -> bool:
    """True when bf16 is native here: a CUDA device that supports it, or a CPU with AVX512-BF16/AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_bf16_supported()


def cpu_bf16_supported() -> bool:
    """True when this CPU has bf16 instructions (AVX512-BF16 or AMX-BF16) and torch uses them."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX512", "AMX"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_fast_path(fast_path: str, device: Optional[torch.device] = None) -> str:
    """The fast path that decodes on ``device`` (``None``: the CPU).

    On the CPU ``auto`` becomes ``w8`` (int8 weights, bf16 arithmetic) with native bf16, and
    ``fp32`` (Nebras's loop with prompt lookup, the same replies as ``model.generate``) without:
    the measured wins within the quality bound on the shipped SmolLM2 model (docs/performance.md).
    On a CUDA device ``auto`` becomes ``bf16`` (``fp32`` on a GPU without bf16), and the CPU-only
    paths (``int8``, ``w8``, ``w4``: CPU kernels) become ``bf16`` with a warning. Other values are kept.
    """
    if fast_path not in FAST_PATHS:
        raise ValueError(f"fast_path must be one of {', '.join(FAST_PATHS)}, not {fast_path!r}")
    gpu = device is not None and on_gpu(device)
    if fast_path == FAST_AUTO:
        if gpu:
            resolved = FAST_BF16 if torch.cuda.is_bf16_supported() else FAST_FP32
        elif not cpu_bf16_supported():
            resolved = FAST_FP32
        elif not int8_kernel_available():
            resolved = FAST_BF16
        else:
            resolved = FAST_W8
        logger.info("fast_path auto -> %s on %s", resolved, device or "cpu")
        return resolved
    if gpu and fast_path in CPU_ONLY_PATHS:
        logger.warning("fast_path %s uses CPU kernels: on %s replies decode in bf16", fast_path, device)
        return FAST_BF16
    return fast_path


def prepare_model(model: nn.Module, fast_path: str) -> nn.Module:
    """The model converted for ``fast_path`` on the device it is on (in place; the caller keeps the
    returned object)."""
    device = model_device(model)
    fast_path = resolve_fast_path(fast_path, device)
    model.eval()
    if use_grouped_decode_attention(model):
        logger.info("grouped-query decoding steps without copying the KV cache (%s)", ATTENTION_NAME)
    if fast_path == FAST_INT8:
        return quantize_int8(model)
    if fast_path == FAST_BF16 or fast_path in WEIGHT_ONLY_PATHS:
        if not on_gpu(device) and not cpu_bf16_supported():
            logger.warning("this CPU has no bf16 instructions: %s decoding will be slow", fast_path)
        if fast_path in WEIGHT_ONLY_PATHS:
            conv1d_to_linear(model)
            return quantize_weights(model, bits=8 if fast_path == FAST_W8 else 4)
        return model.to(torch.bfloat16)
    return model


# --------------------------------------------------------------------------- prompt reuse


class TokenCache:
    """Token ids of prompts, tokenised line by line with an LRU cache of lines.

    A prompt's lines are joined by ``\\n``; the BPE pre-tokeniser splits a single new line off as
    its own token, so the concatenation equals whole-prompt tokenisation. That is checked on the
    first prompts; on a mismatch (an unusual tokenizer) the cache turns itself off.
    """

    def __init__(self, tokenizer: Any, size: int = TOKEN_CACHE_SIZE, checks: int = TOKEN_CACHE_CHECKS) -> None:
        self.tokenizer = tokenizer
        self.size = size
        self.checks_left = checks
        self.enabled = True
        self.hits = 0
        self.misses = 0
        self._lines: "OrderedDict[str, List[int]]" = OrderedDict()
        self._newline = self._encode("\n")

    def _encode(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _line(self, line: str) -> List[int]:
        ids = self._lines.get(line)
        if ids is not None:
            self._lines.move_to_end(line)
            self.hits += 1
            return ids
        self.misses += 1
        ids = self._encode(line) if line else []
        self._lines[line] = ids
        if len(self._lines) > self.size:
            self._lines.popitem(last=False)
        return ids

    def encode(self, prompt: str) -> List[int]:
        if not self.enabled:
            return self._encode(prompt)
        ids: List[int] = []
        for index, line in enumerate(prompt.split("\n")):
            if index:
                ids.extend(self._newline)
            ids.extend(self._line(line))
        if self.checks_left > 0:
            self.checks_left -= 1
            whole = self._encode(prompt)
            if whole != ids:
                logger.warning("line-wise tokenisation differs from whole-prompt tokenisation: cache off")
                self.enabled = False
                return whole
        return ids

    def count(self, text: str) -> int:
        return len(self.encode(text))


def _shared_prefix(left: Sequence[int], right: Sequence[int]) -> int:
    length = min(len(left), len(right))
    for index in range(length):
        if left[index] != right[index]:
            return index
    return length


class FastDecoder:
    """``Decoder.complete`` for one prompt at a time through the greedy engine, reusing prompt work."""

    def __init__(self, engine: GreedyEngine, reuse_prefix: bool = True, lookup_tokens: int = LOOKUP_TOKENS,
                 corpus: Any = None) -> None:
        self.engine = engine
        self.lookup_tokens = lookup_tokens  # prompt-lookup draft tokens per pass (0: one token per pass)
        self.corpus = corpus  # CorpusDrafts: guesses from the training replies where the prompt has none
        self.settings = engine.settings
        self.tokenizer = engine.tokenizer
        self.max_positions = engine.max_positions
        self.tokens = TokenCache(engine.tokenizer)
        self.reuse_prefix = reuse_prefix
        self.reused_tokens = 0  # prompt tokens whose KV came from the previous prompt (all calls)
        self.generated_tokens = 0  # tokens generated (all calls) ...
        self.decoding_passes = 0  # ... in this many model passes after the prompt passes
        self._lock = threading.Lock()
        self._cache: Any = None
        self._cached_ids: List[int] = []

    def count_tokens(self, text: str) -> int:
        return self.tokens.count(text)

    def complete(
        self,
        prompt: str,
        max_new_tokens: Optional[int] = None,
        time_limit: Optional[float] = None,
        force_length: bool = False,
        placeholder_ban: Optional[str] = None,
    ) -> Completion:
        started = time.perf_counter()
        max_new = max_new_tokens or self.settings.max_new_tokens
        ids = self.engine.fit_prompt(self.tokens.encode(prompt), max_new)
        if not ids:
            raise ValueError("empty prompt")
        request = DecodeRequest(
            ids, max_new, started + time_limit if time_limit is not None else None, force_length=force_length,
            ban=self.engine.placeholder_ban(placeholder_ban),
        )
        with self._lock, torch.inference_mode(), attention_kernels(self.engine.device):
            reuse = _shared_prefix(self._cached_ids, ids[:-1]) if self.reuse_prefix and self._cache is not None else 0
            if reuse >= MIN_PREFIX_REUSE:
                self._cache.crop(reuse)
                logits, cache, mask, positions = self.engine.prefill([ids[reuse:]], self._cache, past_length=reuse)
                self.reused_tokens += reuse
            else:
                logits, cache, mask, positions = self.engine.prefill([ids])
            self._cache, self._cached_ids = None, []  # invalid while decoding (an error leaves it unusable)
            row = Row(request)
            if self.lookup_tokens > 0:
                cache, passes = decode_with_lookup(self.engine, row, ids, logits, cache, self.lookup_tokens, self.corpus)
                self.decoding_passes += passes
                completion = self.engine.completion(row, len(ids), time.perf_counter() - started)
            else:
                completion = self.engine.decode_rows([row], [ids], logits, cache, mask, positions, started)[0]
                self.decoding_passes += len(row.generated) - 1
            self.generated_tokens += len(row.generated)
            if self.reuse_prefix:
                # The cache now holds the prompt and every generated token but the last one.
                self._cache, self._cached_ids = cache, ids + row.generated[:-1]
        return completion


# --------------------------------------------------------------------------- the factory


def build_decoder(model: Any, tokenizer: Any, settings: GenerationSettings, corpus: Any = None) -> Any:
    """The decoder ``ResponseGenerator`` should call for ``settings`` (see the module docstring);
    ``corpus``: the model's training replies (texts) for corpus drafts on the single-reply path.
    The model is moved to the settings' ``device`` first (nebras_bot.generation.device)."""
    device = resolve_device(settings.device)
    model.to(device)
    fast_path, batching = resolve_fast_path(settings.fast_path, device), settings.batching
    greedy = not settings.do_sample and settings.num_beams == 1
    if not greedy and (batching or fast_path != FAST_OFF):
        logger.info("sampling/beam search: using model.generate (only greedy decoding has the fast path)")
    if not greedy or (fast_path == FAST_OFF and not batching):
        return Decoder(model, tokenizer, settings)
    fast_path = fast_path if fast_path != FAST_OFF else FAST_FP32  # batching alone: Nebras's loop in fp32
    if batching and fast_path in WEIGHT_ONLY_PATHS:
        # A batch step over many rows would de-quantise every weight at every step.
        logger.info("batching: %s weights serve one row at a time; batches decode in bf16", fast_path)
        fast_path = FAST_BF16
    model = prepare_model(model, fast_path)
    if batching:
        return BatchingWorker(
            GreedyEngine(model, tokenizer, settings),
            max_batch_size=settings.batch_max_size,
            wait_ms=settings.batch_wait_ms,
        )
    return fast_decoder(model, tokenizer, settings, fast_path, corpus=corpus if settings.corpus_drafts else None)


def fast_decoder(model: Any, tokenizer: Any, settings: GenerationSettings, fast_path: str,
                 lookup: bool = True, corpus: Optional[Sequence[str]] = None) -> FastDecoder:
    """The single-reply decoder for a model already prepared for ``fast_path`` (not ``auto``):
    :class:`LeanLlama` for a Llama-style model on the fp32, bf16, w8 and w4 paths, prompt lookup with
    drafts sized for the path (``lookup=False``: one token per pass), plus corpus drafts from the
    texts in ``corpus`` (the model's training replies) when given."""
    if fast_path in LEAN_PATHS and lean_supported(model):
        model = LeanLlama(model)
        if fast_path in WEIGHT_ONLY_PATHS and settings.hold_bf16_weights:
            logger.info("%s: prompt passes use %.0f MB of de-quantised bf16 weights held in memory",
                        fast_path, model.hold_dequantized() / 2**20)
    tokens = (LOOKUP_TOKENS_W8 if fast_path in WEIGHT_ONLY_PATHS else LOOKUP_TOKENS) if lookup else 0
    drafts = _corpus_drafts(tokenizer, corpus) if tokens and corpus else None
    return FastDecoder(GreedyEngine(model, tokenizer, settings), lookup_tokens=tokens, corpus=drafts)


def _corpus_drafts(tokenizer: Any, texts: Sequence[str]) -> Optional[CorpusDrafts]:
    started = time.perf_counter()
    try:
        drafts = CorpusDrafts.from_texts(tokenizer, texts, suffix=END)
    except Exception as error:  # drafts only speed decoding up: without them the replies are the same
        logger.warning("corpus drafts unavailable (%s); prompt lookup only", error)
        return None
    logger.info("corpus drafts: %d n-gram entries from %d replies in %.1f s", len(drafts), len(texts),
                time.perf_counter() - started)
    return drafts
