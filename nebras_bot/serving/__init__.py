"""Nebras stage: serving."""
