"""Fixed messages replayed through the serving path, one reply each (``scripts/follow_up_report.py``,
``scripts/out_of_scope_report.py``): the generator serving would build, the templates Rasa would
send, and the command line the reports share."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

DEFAULT_TIMEOUT_S = 600.0  # no cut: the replies are read, not timed


@dataclass
class Replay:
    generator: Any  # ResponseGenerator (serving_path.build_generator)
    templates: Any  # IntentTemplateBaseline of the project's domain
    mode: str  # rephrase | generate, as the generator's settings say


def replay(model: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Replay:
    from nebras_bot.evaluation import serving_path

    generator = serving_path.build_generator(model, timeout_s=timeout_s)
    return Replay(generator, serving_path.project_templates(), serving_path.generation_mode(generator))


def parse_arguments(description: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """``--model``, ``--timeout``, ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="models/nlg/current")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per reply (default 600: no cut)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    return parser.parse_args(argv)


def save_rows(path: Optional[Path], rows: List[dict]) -> None:
    if path is not None:
        path.write_text(json.dumps(rows, indent=2))
