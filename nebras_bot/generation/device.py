"""Where the generation model runs: the ``device`` setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

``auto`` takes the first CUDA device when torch sees one, else the CPU. A CUDA device named
explicitly where torch sees none is an error when the model loads (serving then keeps its
templated replies), not a silent fall-back to a CPU that would miss every reply's time limit.

:func:`nebras_bot.generation.fastpath.build_decoder` moves the model there before converting it,
and every decoding loop creates its tensors on the model's device (:func:`model_device`). The
CPU-only fast paths (``int8``: torch's dynamic quantisation kernels; ``w8``/``w4``: the int8/int4
weight-only CPU kernels) decode in ``bf16`` on a GPU (``fastpath.resolve_fast_path``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from nebras_bot.generation.settings import DEVICE_AUTO, check_device_name

DEVICE_CPU = "cpu"
DEVICE_CUDA = "cuda"


def resolve_device(name: str = DEVICE_AUTO) -> torch.device:
    """The ``torch.device`` for a ``device`` setting; a CUDA device torch cannot see is a ``RuntimeError``."""
    name = check_device_name(name)
    if name == DEVICE_AUTO:
        return torch.device(DEVICE_CUDA if torch.cuda.is_available() else DEVICE_CPU)
    device = torch.device(name)
    if device.type != DEVICE_CUDA:
        return device
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device {name!r}: torch {torch.__version__} sees no CUDA device here; "
            f"set the generation device to cpu or auto (NEBRAS_GEN_DEVICE, endpoints.yml nlg: device)"
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def model_device(model: Any) -> torch.device:
    """The device of ``model``'s first parameter or buffer (the CPU for a model with neither)."""
    for tensors in (model.parameters(), model.buffers()):
        for tensor in tensors:
            return tensor.device
    return torch.device(DEVICE_CPU)


def on_gpu(device: torch.device) -> bool:
    return device.type == DEVICE_CUDA


@contextmanager
def attention_kernels(device: torch.device) -> Iterator[None]:
    """Scaled-dot-product attention without the cuDNN backend on a CUDA device (nothing changes on the CPU).

    torch picks cuDNN's attention for bf16 on Hopper GPUs, and cuDNN builds an execution plan for
    every new sequence length: about 2 ms of CPU time per call (profiled on an H100 with torch 2.11,
    SmolLM2-135M's shape: 390 calls of ``_cudnn_attention_forward``/``backward`` took 1.5 s of a
    2.6 s training profile in which the GPU worked 82 ms). Training rows, examples and prompts
    change length all the time, so the flash and memory-efficient kernels, which need no plan,
    are used instead (docs/performance.md, "On a GPU").
    """
    if not on_gpu(device):
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield
