"""The story part of `rasa test --stories tests` on the trained assistant: every story passes.

`rasa test` runs the stories end to end (`--e2e`): the user's text in each test story is parsed by
the trained NLU, so a wrong intent or entity fails the story, and then the policies must predict
every action. (`rasa test core` without `--e2e` would use the stories' gold intents instead.)
"""
from __future__ import annotations

import json
import subprocess

import yaml


def test_all_test_stories_pass(trained_rasa_model, repo_root, rasa_cmd, rasa_env, tmp_path):
    out = tmp_path / "results"
    result = subprocess.run(
        rasa_cmd + ["test", "core", "--e2e", "--model", str(trained_rasa_model),
                    "--stories", "tests/test_stories.yml", "--out", str(out), "--no-plot"],
        cwd=repo_root, env=rasa_env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    failed_path = out / "failed_test_stories.yml"
    failed = (yaml.safe_load(failed_path.read_text()) or {}) if failed_path.exists() else {}
    failed_stories = failed.get("stories") or []
    assert not failed_stories, "failed test stories:\n" + failed_path.read_text()
    report = json.loads((out / "story_report.json").read_text())
    total = len(yaml.safe_load((repo_root / "tests" / "test_stories.yml").read_text())["stories"])
    assert report["conversation_accuracy"]["correct"] == total
    assert report["conversation_accuracy"]["accuracy"] == 1.0
