"""Random state saved with every checkpoint, so a resumed run continues exactly."""
from __future__ import annotations

from pathlib import Path


def save_rng(path: Path) -> None:
    """Torch's and Python's random states (dropout, sampling), for an exact resume.

    ``accelerator.save_state`` stores them too, but its loader silently skips them when the
    pickled numpy state is refused by ``torch.load(weights_only=True)``; this file holds only a
    tensor and plain tuples, so it loads with ``weights_only=True``.
    """
    import random

    import torch

    torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, path)


def load_rng(path: Path) -> None:
    import random

    import torch

    states = torch.load(path, weights_only=True)
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
