"""Loader: every source except the hub (no network here)."""
from __future__ import annotations

import json
import os

import pytest
import torch

from nebras_bot.generation import loader
from nebras_bot.generation.loader import ModelLoadError, gpt2_tokenizer, load_causal_lm, tiny_gpt2

torch.set_num_threads(1)


def test_gpt2_tokenizer_is_the_real_bpe():
    tokenizer = gpt2_tokenizer()
    assert len(tokenizer) == 50257
    assert tokenizer("Hello world").input_ids == [15496, 995]  # GPT-2's published ids
    assert tokenizer(" Hello world").input_ids == [18435, 995]
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    text = "Your order {order_id} ships to Zürich <|end|>"
    assert tokenizer.decode(tokenizer(text).input_ids) == text


def test_tiny_gpt2_is_small_and_generates():
    loaded = tiny_gpt2()
    config = loaded.model.config
    assert (config.n_layer, config.n_head, config.n_embd) == (2, 2, 64)
    assert config.vocab_size == len(loaded.tokenizer)
    assert loaded.model.config.pad_token_id == loaded.tokenizer.pad_token_id
    assert loaded.version == "gpt2-scratch:tiny"
    inputs = loaded.tokenizer("hello", return_tensors="pt")
    output = loaded.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] == inputs.input_ids.shape[1] + 3


def test_tiny_gpt2_overrides_and_seed_are_deterministic():
    first = tiny_gpt2(seed=3, n_layer=1)
    second = tiny_gpt2(seed=3, n_layer=1)
    assert first.model.config.n_layer == 1
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("source, layers", [("gpt2-scratch:tiny", 2), ("gpt2-scratch:small", 6)])
def test_scratch_presets(source, layers):
    loaded = load_causal_lm(source)
    assert loaded.model.config.n_layer == layers
    assert loaded.model.config.model_type == "gpt2"
    assert loaded.tokenizer.pad_token is not None


def test_scratch_from_config_file(tmp_path):
    config = tmp_path / "shape.json"
    config.write_text(json.dumps({"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 128}))
    loaded = load_causal_lm(f"gpt2-scratch:{config}")
    assert (loaded.model.config.n_layer, loaded.model.config.n_embd) == (1, 32)
    assert loaded.version == "gpt2-scratch:shape.json"


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="unknown GPT-2 preset"):
        load_causal_lm("gpt2-scratch:enormous")


def test_directory_and_current_symlink_report_the_version(tmp_path):
    loaded = tiny_gpt2()
    version_dir = tmp_path / "nlg" / "20260101-120000-abc"
    loaded.model.save_pretrained(version_dir)
    loaded.tokenizer.save_pretrained(version_dir)
    (version_dir / "nebras.json").write_text(json.dumps({"version": "v-test-7", "retrieval": False}))
    current = tmp_path / "nlg" / "current"
    os.symlink(version_dir.name, current)

    reloaded = load_causal_lm(current)
    assert reloaded.source == str(version_dir.resolve())
    assert reloaded.version == "v-test-7"
    assert reloaded.tokenizer.pad_token is not None
    ids = loaded.tokenizer("where is my order", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, reloaded.model(ids).logits, atol=1e-5)


def test_directory_without_metadata_uses_its_name(tmp_path):
    loaded = tiny_gpt2()
    target = tmp_path / "my-model"
    loaded.model.save_pretrained(target)
    loaded.tokenizer.save_pretrained(target)
    assert load_causal_lm(str(target)).version == "my-model"


def test_missing_directory_and_dangling_link_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(tmp_path / "nope")
    link = tmp_path / "current"
    os.symlink(tmp_path / "gone", link)
    with pytest.raises(ModelLoadError, match="no model"):
        load_causal_lm(str(link))
    with pytest.raises(ModelLoadError, match="not a save_pretrained"):
        load_causal_lm(tmp_path)


def test_smollm2_gguf_is_found():
    path = loader.smollm2_gguf_path()
    assert path.name == loader.SMOLLM2_GGUF and path.stat().st_size > 50_000_000


def test_smollm2_tokenizer_rebuilt_from_gguf():
    tokenizer = loader.tokenizer_from_gguf(loader.smollm2_gguf_path())
    assert len(tokenizer) == 49152
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"
    text = " Hello world, your order 12345 {order_id}"
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(ids[:2]) == ["ĠHello", "Ġworld"]


@pytest.mark.slow
def test_smollm2_converts_once_and_loads(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    loaded = load_causal_lm("smollm2")
    assert "SmolLM2 GGUF -> save_pretrained (once)" in capfd.readouterr().err  # progress is shown
    cache = tmp_path / "models" / "base" / "smollm2-135m-instruct"
    assert (cache / "config.json").is_file()
    assert loaded.model.config.model_type == "llama"
    assert loaded.version == "smollm2-135m-instruct"
    stamp = (cache / "config.json").stat().st_mtime_ns
    assert loader.convert_smollm2() == cache and (cache / "config.json").stat().st_mtime_ns == stamp
    assert "SmolLM2 GGUF" not in capfd.readouterr().err  # cached: no second conversion
    inputs = loaded.tokenizer(" Hello", return_tensors="pt")
    with torch.no_grad():
        assert loaded.model(**inputs).logits.shape[-1] == 49152


def _finished(directory: Path, marker: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}", encoding="utf-8")
    (directory / "marker").write_text(marker, encoding="utf-8")
    return directory


@pytest.mark.parametrize(
    "existing, replace, kept",
    [
        (None, False, "ours"),  # first conversion: moved into place
        ("complete", False, "theirs"),  # a concurrent conversion finished first: its copy stays
        ("complete", True, "ours"),  # --force style: replaced
        ("incomplete", False, "ours"),  # an interrupted older run: replaced
    ],
)
def test_publish_directory_is_one_rename_and_keeps_a_finished_copy(tmp_path, existing, replace, kept):
    target = tmp_path / "smollm2"
    if existing == "complete":
        _finished(target, "theirs")
    elif existing == "incomplete":
        target.mkdir()
        (target / "model.safetensors").write_text("half", encoding="utf-8")
    partial = _finished(tmp_path / "smollm2.x.partial", "ours")
    assert loader.publish_directory(partial, target, replace=replace) == target
    assert (target / "marker").read_text(encoding="utf-8") == kept
    assert not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smollm2"]
