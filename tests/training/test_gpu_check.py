"""scripts/gpu_check.py on the CPU: the GPU check's steps run and pass here too, so the script cannot rot.

On a machine with a GPU it runs with ``--device cuda`` (docs/performance.md, "On a GPU").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def test_gpu_check_runs_every_step_on_the_cpu(tiny_dataset: Path, tmp_path: Path) -> None:
    args = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--device", "cpu", "--size", "tiny", "--steps", "6",
            "--repeats", "1", "--examples", "8", "--replies", "4", "--data", str(tiny_dataset)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    for check in ("decode-fp32", "decode-auto", "packing", "training"):
        assert report[check]["ok"], report[check]
    assert set(report["decode-fp32"]["gpt2"]["devices"].values()) == {"cpu"}
    assert report["decode-fp32"]["llama"]["same_as_cpu_generate"]["fp32"] == report["decode-fp32"]["llama"]["prompts"]
    assert report["training"]["losses"][-1] < report["training"]["losses"][0]
    for timing in ("generation", "batching", "training_speed"):
        assert report[timing]["ratio"] > 0
    assert "| training | ok |" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device: nothing to refuse")
def test_gpu_check_refuses_a_cuda_device_it_cannot_see(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--device", "cuda"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0 and "sees no CUDA device" in done.stderr
