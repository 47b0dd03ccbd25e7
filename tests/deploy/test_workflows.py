"""GitHub Actions workflows: CI runs the README's test command with the service containers the
`services` tests need; the nightly quality gate trains, evaluates and gates; tags release images."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ROOT, load_yaml

WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    data = load_yaml(WORKFLOWS / name)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(job: dict) -> list:
    return job["steps"]


def run_lines(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(job))


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_workflow_is_valid_and_pins_action_versions(name):
    data = workflow(name)
    assert data["name"] and data["on"] and data["jobs"]
    for job_name, job in data["jobs"].items():
        assert job["runs-on"] and isinstance(job.get("timeout-minutes"), int), job_name
        for step in steps(job):
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), step["uses"]


def test_ci_runs_the_readme_test_command_on_python_310():
    data = workflow("ci.yml")
    assert set(data["on"]) == {"push", "pull_request"}
    job = data["jobs"]["test"]
    python = [s for s in steps(job) if s.get("uses", "").startswith("actions/setup-python")]
    assert python and python[0]["with"]["python-version"] == "3.10"
    assert [s["run"] for s in steps(job) if "run" in s and ".ci/run" in s["run"]] == [".ci/run"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # .ci/run is the README's command


def test_ci_provides_the_services_the_services_tests_use():
    job = workflow("ci.yml")["jobs"]["test"]
    services = job["services"]
    assert {"postgres", "redis", "rabbitmq"} <= set(services)
    ports = {name: service["ports"] for name, service in services.items()}
    assert "5432:5432" in ports["postgres"] and "6379:6379" in ports["redis"] and "5672:5672" in ports["rabbitmq"]
    pg_env = services["postgres"]["env"]
    assert pg_env["POSTGRES_HOST_AUTH_METHOD"] == "trust" and pg_env["POSTGRES_DB"] == "test"  # tests/services
    assert services["rabbitmq"]["env"]["RABBITMQ_DEFAULT_USER"] == "guest"
    for service in services.values():
        assert "--health-cmd" in service["options"]  # steps start once the services are healthy


def test_ci_venv_cache_key_follows_the_bootstrap_hash_inputs():
    job = workflow("ci.yml")["jobs"]["test"]
    cache = [s for s in steps(job) if s.get("uses", "").startswith("actions/cache")][0]
    assert cache["with"]["path"] == ".venv"
    for name in ("requirements.lock", "pyproject.toml"):
        assert name in cache["with"]["key"]
        assert name in (ROOT / "scripts" / "bootstrap.sh").read_text()


def test_ci_points_the_browser_tests_at_the_installed_chromium():
    job = workflow("ci.yml")["jobs"]["test"]
    test_step = [s for s in steps(job) if s.get("run") == ".ci/run"][0]
    assert {"NEBRAS_CHROMIUM", "NEBRAS_CHROMEDRIVER"} <= set(test_step["env"])
    for test_file in ("tests/serving/test_web_chat.py", "nebras_bot/evaluation/screenshot.py"):  # the report tests use it
        source = (ROOT / test_file).read_text()
        assert "NEBRAS_CHROMIUM" in source and "NEBRAS_CHROMEDRIVER" in source, test_file


def test_quality_gate_is_nightly_and_manual_and_gates_on_the_evaluation():
    data = workflow("quality-gate.yml")
    assert "schedule" in data["on"] and "workflow_dispatch" in data["on"]
    job = data["jobs"]["gate"]
    commands = run_lines(job)
    order = [commands.index(marker) for marker in
             ("nebras data prepare", "make train-rasa", "nebras train", "make evaluate", "scripts/quality_gate.py")]
    assert order == sorted(order), "prepare -> train -> evaluate -> gate"
    assert "results/evaluation/metrics.json" in commands
    assert "results/evaluation" in (ROOT / "Makefile").read_text()  # where `make evaluate` writes
    gate_step = [s for s in steps(job) if "quality_gate.py" in s.get("run", "")][0]
    assert "if" not in gate_step and "continue-on-error" not in gate_step  # a failing gate fails the job


def test_release_builds_and_pushes_both_images_on_tags():
    data = workflow("release.yml")
    assert data["on"]["push"]["tags"] == ["v*"]
    assert data["permissions"]["packages"] == "write"
    job = data["jobs"]["images"]
    dockerfiles = {entry["dockerfile"] for entry in job["strategy"]["matrix"]["include"]}
    assert dockerfiles == {"Dockerfile", "Dockerfile.actions"}
    assert all((ROOT / d).is_file() for d in dockerfiles)
    build = [s for s in steps(job) if s.get("uses", "").startswith("docker/build-push-action")][0]
    assert build["with"]["push"] is True and build["with"]["file"] == "${{ matrix.dockerfile }}"
