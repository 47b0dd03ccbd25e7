"""Intent and entities from a trained Rasa model, for ``nebras evaluate --nlu`` (the realistic setting).

Loads the model once with ``rasa.core.agent.Agent.load`` and parses each message with
``Agent.parse_message`` on a private event loop. ``nlu`` is any ``rasa train`` output (.tar.gz).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

logger = logging.getLogger(__name__)


@dataclass
class ParseResult:
    intent: Optional[str]
    confidence: float
    entities: Dict[str, str] = field(default_factory=dict)


class RasaNLU:
    """A loaded Rasa model that parses single messages."""

    def __init__(self, model_path: Path | str) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"Rasa model {path} not found (expected a .tar.gz from `rasa train`)")
        from rasa.core.agent import Agent

        self._loop = asyncio.new_event_loop()
        try:
            self.agent = Agent.load(str(path))
        except Exception as error:
            self._loop.close()
            raise RuntimeError(f"could not load the Rasa model {path}: {error}") from error
        if not self.agent.is_ready():
            self._loop.close()
            raise RuntimeError(f"the Rasa model {path} has no NLU/dialogue graph to parse with")
        self.path = path

    def parse(self, text: str) -> ParseResult:
        parsed = self._loop.run_until_complete(self.agent.parse_message(text))
        intent = parsed.get("intent") or {}
        entities: Dict[str, str] = {}
        for entity in parsed.get("entities") or []:
            name, value = entity.get("entity"), entity.get("value")
            if name and value is not None and name not in entities:  # first mention wins
                entities[name] = str(value)
        return ParseResult(intent.get("name"), float(intent.get("confidence") or 0.0), entities)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()
