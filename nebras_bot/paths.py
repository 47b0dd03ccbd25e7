"""Where Nebras keeps its files. Every path is derived from one root, ``NEBRAS_HOME``.

``NEBRAS_HOME`` defaults to the current working directory, which is the project root for
``make``, ``rasa`` and ``nebras`` commands alike (and ``/app`` in the Docker image).
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "NEBRAS_HOME"
ENV_BITEXT_DIR = "NEBRAS_BITEXT_DIR"


def home() -> Path:
    """The project root that all relative Nebras paths hang off."""
    return Path(os.environ.get(ENV_HOME, os.getcwd())).resolve()


def models_dir() -> Path:
    """Trained artefacts (git-ignored): Rasa models, ``nlg/`` response models, ``datasets/``."""
    return home() / "models"


def nlg_models_dir() -> Path:
    """The response-model registry: ``models/nlg/<version>/`` plus the ``current`` link."""
    return models_dir() / "nlg"


def current_nlg_model() -> Path:
    """The promoted response model (a symbolic link replaced atomically on promotion)."""
    return nlg_models_dir() / "current"


def datasets_dir() -> Path:
    """Versioned prepared datasets: ``models/datasets/<version>/``."""
    return models_dir() / "datasets"


def var_dir() -> Path:
    """Runtime state (git-ignored): SQLite databases, harvest store, logs, caches."""
    return home() / "var"


def bitext_dir() -> Path | None:
    """The Bitext CSV directory from ``NEBRAS_BITEXT_DIR``, or None when unset or missing."""
    value = os.environ.get(ENV_BITEXT_DIR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_dir() else None
