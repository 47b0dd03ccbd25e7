"""Packed rows: flattened batches, positions per example, attention that stays within an example."""
from __future__ import annotations

import pytest
import torch

from nebras_bot.training import dataset as ds
from nebras_bot.training import packing
from nebras_bot.training.loss import scored_loss


def _example(start: int, length: int, scored: int) -> ds.Encoded:
    ids = [start + i for i in range(length)]
    return ds.Encoded(ids, [ds.IGNORE_INDEX] * (length - scored) + ids[length - scored :])


def test_collate_flattens_packed_rows_with_positions_and_boundaries() -> None:
    rows = ds.pack([_example(10, 4, 2), _example(20, 3, 1), _example(30, 5, 2)], max_length=7)
    assert [row.segments for row in rows] == [[4, 3], [5]]
    batch = ds.collate(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[10, 11, 12, 13, 20, 21, 22, 30, 31, 32, 33, 34]]
    assert batch["attention_mask"].tolist() == [[1] * 12]
    assert batch["labels"].tolist() == [[-100, -100, 12, 13, -100, -100, 22, -100, -100, -100, 33, 34]]
    assert batch[packing.POSITIONS].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]]
    assert batch[packing.BOUNDARIES].tolist() == [0, 4, 7, 12]
    # Unpacked examples keep the padded layout, without positions or boundaries.
    plain = ds.collate([_example(10, 4, 2), _example(20, 3, 1)], pad_id=0)
    assert packing.POSITIONS not in plain and packing.BOUNDARIES not in plain


def test_collate_refuses_segments_that_do_not_add_up() -> None:
    row = ds.Encoded([1, 2, 3], [1, 2, 3], segments=[2, 2])
    with pytest.raises(ValueError, match="do not add up"):
        ds.collate([row], pad_id=0)


def _tiny(kind: str):
    torch.manual_seed(0)
    if kind == "llama":  # grouped-query attention (4 query heads share 2 key/value heads), rotary positions
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = LlamaForCausalLM(config)
    else:  # learned absolute positions
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    model.set_attn_implementation("sdpa")
    return model.eval()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_packed_row_gives_each_example_the_logits_it_has_alone(kind: str) -> None:
    model = _tiny(kind)
    examples = [_example(3, 9, 4), _example(40, 6, 3), _example(20, 11, 5)]
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([e.input_ids])).logits[0] for e in examples]
        batch = ds.collate(ds.pack(examples, max_length=64), pad_id=0)
        assert packing.use_segment_attention(model)
        packed = model(input_ids=batch["input_ids"], **packing.model_inputs(batch)).logits[0]
        assert torch.allclose(packed, torch.cat(alone), atol=1e-5)
        # Plain causal attention over the row lets the later examples see the earlier ones.
        model.set_attn_implementation("sdpa")
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[0]
        assert torch.allclose(plain[:9], alone[0], atol=1e-5)
        assert not torch.allclose(plain[9:15], alone[1], atol=1e-3)


def test_packed_loss_is_the_token_weighted_loss_of_the_examples_alone() -> None:
    model = _tiny("llama")
    packing.use_segment_attention(model)
    examples = [_example(3, 9, 4), _example(40, 6, 3)]
    with torch.no_grad():
        packed, scored = scored_loss(model, ds.collate(ds.pack(examples, 64), pad_id=0), fast=True)
        alone = [scored_loss(model, ds.collate([e], pad_id=0), fast=True) for e in examples]
    assert scored == sum(n for _, n in alone) == 7
    assert packed.item() == pytest.approx(sum(loss.item() * n for loss, n in alone) / scored, abs=1e-5)


def test_only_sdpa_models_switch_and_boundaries_must_cover_the_row() -> None:
    model = _tiny("llama")
    model.set_attn_implementation("eager")
    assert not packing.use_segment_attention(model)
    assert model.config._attn_implementation == "eager"
    model.set_attn_implementation("sdpa")
    assert packing.use_segment_attention(model)
    batch = ds.collate(ds.pack([_example(3, 9, 4), _example(40, 6, 3)], 64), pad_id=0)
    batch[packing.BOUNDARIES] = torch.tensor([0, 9, 14], dtype=torch.int32)
    with pytest.raises(ValueError, match="do not cover"), torch.no_grad():
        model(input_ids=batch["input_ids"], **packing.model_inputs(batch))


@pytest.mark.parametrize("packed", [True, False])
def test_build_model_switches_packed_recipes_to_segment_attention(tiny_recipe, packed: bool) -> None:
    from nebras_bot.training.trainer import build_model

    model, _, _ = build_model(tiny_recipe.with_overrides({"packing": packed}), tiny_recipe.base)
    expected = packing.ATTENTION_NAME if packed else "sdpa"
    assert model.config._attn_implementation == expected


def test_to_device_keeps_the_boundaries_where_python_reads_them() -> None:
    batch = ds.collate(ds.pack([_example(3, 9, 4), _example(40, 6, 3)], 64), pad_id=0)
    moved = packing.to_device(batch, torch.device("meta"))
    assert moved[packing.BOUNDARIES].device.type == "cpu"
    assert all(value.device.type == "meta" for name, value in moved.items() if name != packing.BOUNDARIES)
