"""What every benchmark shares: the shipped model, the machine, percentiles, results JSON and tables.

Each benchmark writes ``benchmarks/results/<name>.json`` with at least ``name``, ``ratio`` (above 1
means Nebras is better; the overhead benchmark's target is 0.9), ``target``, ``passed`` and the
raw figures behind the ratio, and prints a table. The machine is shared and noisy, so every
benchmark measures the plain approach and Nebras's interleaved in the same run: ratios are what
count, absolute times are not comparable between runs.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from nebras_bot import paths

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHIPPED_MODEL = "models/nlg/current"
FALLBACK_MODEL = "gpt2-scratch:default"  # GPT-2 small architecture (124M), random weights, real tokenizer


def set_threads(threads: int) -> int:
    """One setting for torch and the BLAS libraries (call before heavy work)."""
    import torch

    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def shipped_model_source(explicit: Optional[str] = None) -> tuple[str, str]:
    """``(loader source, description)``: ``--model``, else models/nlg/current, else GPT-2 small from config."""
    if explicit:
        return explicit, f"given: {explicit}"
    current = paths.home() / SHIPPED_MODEL
    if current.exists():
        return str(current), f"shipped model {SHIPPED_MODEL} -> {current.resolve().name}"
    return FALLBACK_MODEL, (
        "no models/nlg/current yet: GPT-2 small architecture (12 layers, 768 wide, 124M) built from config "
        "with random weights and the real GPT-2 tokenizer"
    )


def latest_dataset() -> Optional[Path]:
    """The newest prepared dataset version directory (``models/datasets/<hash>/``)."""
    root = paths.models_dir() / "datasets"
    candidates = [d for d in root.glob("*/") if (d / "validation.csv").is_file()] if root.is_dir() else []
    return max(candidates, key=lambda d: d.stat().st_mtime) if candidates else None


def machine() -> Dict[str, Any]:
    import torch

    model_name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "host": socket.gethostname(),
        "cpu": model_name or platform.processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_at_end": load,
        "python": platform.python_version(),
    }


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Linear-interpolated percentile (``q`` in 0..100); None for no values."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    rank = (len(data) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary(values: Sequence[float]) -> Dict[str, Optional[float]]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": statistics.fmean(values) if values else None,
    }


def write_result(name: str, ratio: float, target: float, raw: Dict[str, Any], higher_is_better: bool = True,
                 **extra: Any) -> Path:
    """Write ``results/<name>.json`` (with machine info and a pass flag) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    passed = ratio >= target if higher_is_better else ratio <= target
    payload = {
        "name": name,
        "ratio": round(float(ratio), 4),
        "target": target,
        "passed": bool(passed),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
        "raw": raw,
        "machine": machine(),
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def print_table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain aligned text table on stdout."""
    rows = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(value.ljust(w) for value, w in zip(row, widths)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def verdict(name: str, ratio: float, target: float, higher_is_better: bool = True) -> str:
    ok = ratio >= target if higher_is_better else ratio <= target
    sign = ">=" if higher_is_better else "<="
    return f"{name}: ratio {ratio:.3f} (target {sign} {target}) -> {'PASS' if ok else 'FAIL'}"


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.started


def list_of(values: Iterable[float], digits: int = 4) -> List[float]:
    return [round(float(v), digits) for v in values]
