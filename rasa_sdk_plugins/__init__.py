"""rasa_sdk plug-ins of Nebras. rasa_sdk imports this package by its name when the action server
starts (``rasa run actions``); the action server then serves ``GET /metrics``
(see nebras_bot/monitoring/action_server.py)."""
from nebras_bot.monitoring.action_server import init_hooks

__all__ = ["init_hooks"]
