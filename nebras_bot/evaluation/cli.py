"""Sub-commands of this stage for the ``nebras`` CLI (see nebras_bot/cli.py)."""
from __future__ import annotations

import argparse


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add this stage's commands to ``nebras``."""
