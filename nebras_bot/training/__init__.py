"""Nebras stage: training."""
