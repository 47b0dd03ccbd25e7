"""Nebras custom actions for the rasa_sdk action server (``rasa run actions``, port 5055).

Actions are thin: they read slots and events from the tracker and call ``nebras_bot.support``,
which holds the storage (SQLAlchemy; ``NEBRAS_DB_URL``) and the reply texts.
"""
