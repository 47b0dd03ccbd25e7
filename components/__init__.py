"""Rasa graph components of Nebras (referenced from config.yml by module path)."""
