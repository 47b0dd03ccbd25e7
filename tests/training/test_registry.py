"""The response-model registry: list, atomic promotion, rollback, and the ``nebras models`` CLI."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from nebras_bot.cli import main
from nebras_bot.training import registry


def _version(root: Path, name: str, created: str, val_loss: float = 2.0) -> Path:
    """A version directory as the trainer leaves it (only the files the registry reads)."""
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    (directory / registry.METADATA_FILE).write_text(json.dumps({
        "version": name, "created": created, "base_model": "gpt2-scratch:tiny", "recipe": "quick",
        "dataset_version": "abc123", "retrieval": True, "metrics": {"val_loss": val_loss},
    }))
    return directory


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "nlg"
    _version(root, "v1", "2026-01-01T00:00:00Z", 3.0)
    _version(root, "v2", "2026-01-02T00:00:00Z", 2.5)
    _version(root, "v3", "2026-01-03T00:00:00Z", 2.0)
    (root / "v4.partial").mkdir()  # an unfinished run is never a version
    (root / "v4.partial" / "config.json").write_text("{}")
    (root / "notes").mkdir()  # neither is a directory without a model
    return root


def test_list_versions_oldest_first_without_partial_runs(root: Path) -> None:
    rows = registry.list_versions(root)
    assert [r["version"] for r in rows] == ["v1", "v2", "v3"]
    assert not any(r["current"] for r in rows)
    assert rows[0]["metrics"] == {"val_loss": 3.0} and rows[0]["recipe"] == "quick"
    assert registry.list_versions(root / "missing") == []


def test_promote_points_a_relative_link_and_records_history(root: Path) -> None:
    assert registry.current_version(root) is None
    assert registry.promote("v1", root) == root / "v1"
    link = root / registry.CURRENT
    assert link.is_symlink() and os.readlink(link) == "v1"  # relative: the registry can move
    registry.promote("v2", root)
    assert registry.current_version(root) == "v2"
    assert [(e["action"], e["version"], e["previous"]) for e in registry.history(root)] == [
        ("promote", "v1", None), ("promote", "v2", "v1"),
    ]
    assert [r["version"] for r in registry.list_versions(root) if r["current"]] == ["v2"]
    assert not [p for p in root.iterdir() if p.name.startswith(".current")]  # no temporary links left


@pytest.mark.parametrize("version", ["v9", "v4.partial", "notes", "current"])
def test_promote_unknown_or_unfinished_version_is_refused(root: Path, version: str) -> None:
    registry.promote("v1", root)
    with pytest.raises(registry.RegistryError, match="no trained model version"):
        registry.promote(version, root)
    assert registry.current_version(root) == "v1"  # unchanged


def test_rollback_walks_back_through_promotions(root: Path) -> None:
    with pytest.raises(registry.RegistryError, match="no current model"):
        registry.rollback(root)
    for version in ("v1", "v2", "v3"):
        registry.promote(version, root)
    assert registry.rollback(root) == "v2"
    assert registry.rollback(root) == "v1"
    with pytest.raises(registry.RegistryError, match="nothing to roll back"):
        registry.rollback(root)
    assert registry.current_version(root) == "v1"


def test_promotion_is_atomic_for_concurrent_readers(root: Path) -> None:
    """A reader resolving ``current`` while promotions happen always sees a whole version."""
    registry.promote("v1", root)
    seen, problems, done = set(), [], threading.Event()

    def read() -> None:
        link = root / registry.CURRENT
        while not done.is_set():
            try:
                target = os.readlink(link)
            except OSError as error:  # a missing link would mean a non-atomic swap
                problems.append(repr(error))
                continue
            if not (root / target / "config.json").is_file():
                problems.append(target)
            seen.add(target)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for number in range(200):
            registry.promote(("v1", "v2", "v3")[number % 3], root)
    finally:
        done.set()
        reader.join()
    assert problems == []
    assert seen <= {"v1", "v2", "v3"} and len(seen) >= 2


def test_models_cli_list_promote_rollback(root: Path, capsys) -> None:
    assert main(["models", "list", "--out", str(root)]) == 0
    assert "v1" in capsys.readouterr().out
    assert main(["models", "promote", "v2", "--out", str(root)]) == 0
    assert "current -> v2" in capsys.readouterr().out
    assert main(["models", "promote", "v3", "--out", str(root)]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--out", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("*")] == ["v3"]
    assert main(["models", "rollback", "--out", str(root)]) == 0
    assert "current -> v2" in capsys.readouterr().out
    assert main(["models", "promote", "nope", "--out", str(root)]) == 1
    assert "no trained model version 'nope'" in capsys.readouterr().out
    assert main(["models", "list", "--out", str(root / "empty")]) == 0
    assert "no trained models" in capsys.readouterr().out
