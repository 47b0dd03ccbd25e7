"""Nebras stage: evaluation."""
