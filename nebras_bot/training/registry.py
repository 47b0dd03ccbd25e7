"""The response-model registry: ``models/nlg/<version>/`` directories and the ``current`` link.

``promote(version)`` points ``models/nlg/current`` at a version directory atomically: a new
symbolic link is created under a temporary name and renamed over ``current`` (``os.replace``), so
a reader sees either the old or the new target, never a missing link. Every promotion and
rollback is appended to ``models/nlg/history.jsonl``; ``rollback()`` re-promotes the version that
was current before the present one.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from nebras_bot import paths

CURRENT = "current"
HISTORY_FILE = "history.jsonl"
METADATA_FILE = "nebras.json"
PARTIAL_SUFFIX = ".partial"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why."""


def registry_dir(root: Optional[Path] = None) -> Path:
    return Path(root) if root else paths.nlg_models_dir()


def _is_version_dir(path: Path) -> bool:
    return (
        path.is_dir()
        and not path.is_symlink()
        and not path.name.endswith(PARTIAL_SUFFIX)
        and (path / "config.json").is_file()
    )


def read_metadata(directory: Path) -> Dict[str, Any]:
    try:
        return json.loads((Path(directory) / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def list_versions(root: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every trained version, oldest first: ``version``, ``path``, ``current``, metadata fields."""
    root = registry_dir(root)
    if not root.is_dir():
        return []
    current = current_version(root)
    rows = []
    for path in sorted(p for p in root.iterdir() if _is_version_dir(p)):
        meta = read_metadata(path)
        rows.append({
            "version": path.name,
            "path": str(path),
            "current": path.name == current,
            "created": meta.get("created", ""),
            "base_model": meta.get("base_model", ""),
            "recipe": meta.get("recipe", ""),
            "dataset_version": meta.get("dataset_version", ""),
            "retrieval": meta.get("retrieval"),
            "metrics": meta.get("metrics", {}),
        })
    return sorted(rows, key=lambda r: (r["created"], r["version"]))


def current_version(root: Optional[Path] = None) -> Optional[str]:
    """The version ``current`` points at, or None (no link, or a dangling one)."""
    link = registry_dir(root) / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    return target.name if target.is_dir() else None


def history(root: Optional[Path] = None) -> List[Dict[str, Any]]:
    path = registry_dir(root) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _record(root: Path, entry: Dict[str, Any]) -> None:
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
    with (root / HISTORY_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")


def _point_current(root: Path, version: str) -> None:
    link = root / CURRENT
    temporary = root / f".{CURRENT}.{os.getpid()}.{time.monotonic_ns()}"
    os.symlink(version, temporary)  # relative target: the registry can be moved as a whole
    try:
        os.replace(temporary, link)  # atomic rename over the old link
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def promote(version: str, root: Optional[Path] = None, reason: str = "promote") -> Path:
    """Make ``version`` the current model (atomic); returns the version directory."""
    root = registry_dir(root)
    directory = root / version
    if not _is_version_dir(directory):
        known = [row["version"] for row in list_versions(root)]
        raise RegistryError(f"no trained model version {version!r} in {root}; known: {known}")
    previous = current_version(root)
    _point_current(root, version)
    _record(root, {"action": reason, "version": version, "previous": previous})
    return directory


def rollback(root: Optional[Path] = None) -> str:
    """Re-promote the version that was current before the present one; returns it."""
    root = registry_dir(root)
    present = current_version(root)
    if present is None:
        raise RegistryError("no current model to roll back from")
    # Walk the history backwards: the newest promotion (not rollback) of `present` names what was
    # current before it, so repeated rollbacks walk back through the promotions like a stack.
    for entry in reversed(history(root)):
        if entry.get("action") != "promote" or entry.get("version") != present:
            continue
        if entry.get("previous") and entry["previous"] != present:
            target = entry["previous"]
            if _is_version_dir(root / target):
                promote(target, root, reason="rollback")
                return target
        break
    raise RegistryError(f"nothing to roll back to: {present!r} has no earlier promoted version")
