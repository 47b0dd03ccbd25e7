"""Nebras stage: learning."""
