"""The domain's templated reply per intent (``utter_<intent>``), as the prompt's ``template:`` field.

At serving time the generator sees the reply Rasa's templated NLG would send; training shows the
model the same thing: :func:`render_template` picks the variant Rasa would pick (a conditional
variant whose slot conditions hold comes first, then unconditional ones) and fills its ``{slot}``
placeholders from the known values, skipping variants with a placeholder that has no value.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from nebras_bot import paths

logger = logging.getLogger(__name__)

Variant = Dict[str, Any]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_domain_path() -> Optional[Path]:
    """``domain.yml`` or ``domain/`` under the project root, when present."""
    for candidate in (paths.home() / "domain.yml", paths.home() / "domain"):
        if candidate.exists():
            return candidate
    return None


def intent_templates(domain_path: Optional[Path | str] = None) -> Dict[str, List[Variant]]:
    """``{intent: [response variants]}`` for every intent with an ``utter_<intent>`` response.

    Empty (with a log line) when there is no domain: training then runs without templates.
    """
    domain_path = Path(domain_path) if domain_path else default_domain_path()
    if domain_path is None or not domain_path.exists():
        logger.info("no Rasa domain found; prompts are built without templates")
        return {}
    from rasa.shared.core.domain import Domain

    domain = Domain.load(str(domain_path))
    templates: Dict[str, List[Variant]] = {}
    for intent in domain.intents:
        variants = [v for v in domain.responses.get(f"utter_{intent}") or [] if v.get("text")]
        if variants:
            templates[intent] = variants
    return templates


def _conditions_hold(variant: Variant, values: Mapping[str, str]) -> bool:
    for condition in variant.get("condition") or []:
        if condition.get("type", "slot") != "slot":
            return False
        expected, actual = condition.get("value"), values.get(condition.get("name", ""))
        if expected is None and actual not in (None, ""):
            return False
        if expected is not None and str(expected) != str(actual):
            return False
    return True


def render_template(variants: List[Variant], values: Mapping[str, str]) -> Optional[str]:
    """The text Rasa would send for these variants given slot ``values`` (None when none fits)."""
    conditional = [v for v in variants if v.get("condition") and _conditions_hold(v, values)]
    plain = [v for v in variants if not v.get("condition")]
    for variant in conditional + plain:
        text = variant["text"]
        names = _PLACEHOLDER.findall(text)
        if all(values.get(name) for name in names):
            return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
    return None
