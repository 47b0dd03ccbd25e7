"""Nebras stage: data."""
