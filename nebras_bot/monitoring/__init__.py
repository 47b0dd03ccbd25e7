"""Nebras stage: monitoring."""
