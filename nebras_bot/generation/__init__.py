"""Nebras stage: generation."""
