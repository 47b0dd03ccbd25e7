"""The generation ``device`` setting: names, resolution, and decoders that follow the model's device."""
from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError

from nebras_bot.generation.device import model_device, resolve_device
from nebras_bot.generation.fastpath import build_decoder
from nebras_bot.generation.settings import GenerationSettings


@pytest.mark.parametrize(("given", "kept"), [(" CUDA:1 ", "cuda:1"), ("cpu", "cpu"), ("auto", "auto"), ("cuda", "cuda")])
def test_device_names_are_normalised(given: str, kept: str) -> None:
    assert GenerationSettings(device=given).device == kept


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "mps", ""])
def test_an_unknown_device_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValidationError, match="device must be auto, cpu, cuda or cuda:N"):
        GenerationSettings(device=bad)


def test_the_device_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("NEBRAS_GEN_DEVICE", "cpu")
    assert GenerationSettings().device == "cpu"
    assert GenerationSettings.from_options({"device": "auto"}).device == "auto"  # endpoints.yml wins


def test_auto_is_the_gpu_when_torch_sees_one(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_cuda_device_torch_cannot_see_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RuntimeError, match="sees 1 CUDA device"):
        resolve_device("cuda:3")


@pytest.fixture(scope="module")
def tiny():
    from nebras_bot.generation.loader import tiny_gpt2

    return tiny_gpt2(seed=2)


def test_the_decoder_moves_the_model_to_the_device_and_decodes_there(tiny, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = copy.deepcopy(tiny.model)
    decoder = build_decoder(model, tiny.tokenizer, GenerationSettings(fast_path="fp32", device="auto"))
    assert decoder.engine.device == model_device(model) == torch.device("cpu")
    assert decoder.complete("<|user|> where is my order?\n<|agent|>", max_new_tokens=5).new_tokens >= 1
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        build_decoder(copy.deepcopy(tiny.model), tiny.tokenizer, GenerationSettings(fast_path="fp32", device="cuda"))


def test_model_device_of_a_model_without_tensors_is_the_cpu() -> None:
    assert model_device(torch.nn.Sequential()) == torch.device("cpu")
    assert model_device(torch.nn.Linear(2, 2).to(torch.device("meta"))) == torch.device("meta")


def test_attention_kernels_leave_out_cudnn_on_a_gpu_only() -> None:
    from nebras_bot.generation.device import attention_kernels

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with attention_kernels(torch.device("cuda")):  # only flags: no GPU needed to set them
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
