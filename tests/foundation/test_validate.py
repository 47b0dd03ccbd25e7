"""`rasa data validate` on the shipped project passes with no errors."""
from __future__ import annotations

import subprocess


def test_rasa_data_validate_passes(repo_root, rasa_cmd, rasa_env):
    result = subprocess.run(
        rasa_cmd + ["data", "validate", "--config", "config.yml", "--domain", "domain.yml", "--data", "data"],
        cwd=repo_root, env=rasa_env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    error_lines = [line for line in output.splitlines() if " ERROR " in line or "InvalidDomain" in line]
    assert not error_lines, "\n".join(error_lines)
    assert "No story structure conflicts found" in output
