"""Dockerfile and Dockerfile.actions, checked without a Docker engine.

- multi-stage on python:3.10-slim; the install step is scripts/bootstrap.sh fed with
  requirements.lock (the same lock file and the same script as every other install);
- every COPY source exists and is not excluded by .dockerignore;
- non-root user, HEALTHCHECK, model directory baked by a build argument (default: a placeholder);
- the ENTRYPOINT/CMD and HEALTHCHECK commands run in the local environment (same venv layout).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import httpx
import pytest

from .conftest import ROOT, build_args, dockerfile_instructions, exec_form, free_port, stages, stop, substitute

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "Dockerfile.actions"]
VENV_BIN = Path(sys.executable).parent
LOCK = "requirements.lock"


# ---------------------------------------------------------------- .dockerignore
def _pattern_regex(pattern: str) -> "re.Pattern[str]":
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out = out[:-2] + "(?:.*/)?"
            continue
        char = pattern[i]
        out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a path's parents."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_matcher_follows_docker_rules():
    assert dockerignore_excludes(".venv/bin/python")
    assert dockerignore_excludes("nebras_bot/__pycache__/x.pyc")
    assert dockerignore_excludes("models/base/smollm2/model.safetensors")
    assert dockerignore_excludes("models/nlg/v1.partial")
    assert not dockerignore_excludes("models/nebras.tar.gz")
    assert not dockerignore_excludes("requirements.lock")
    assert not dockerignore_excludes("nebras_bot/serving/static/index.html")


# ---------------------------------------------------------------- structure
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_multi_stage_on_python_310_slim(dockerfile: Path):
    named = stages(dockerfile)
    assert list(named) == ["builder", "runtime"], named.keys()
    args = build_args(dockerfile)
    for name, instructions in named.items():
        base = substitute(instructions[0][1].split()[0], args)
        assert base == "python:3.10-slim", (name, base)
    runtime = named["runtime"]
    assert any(k == "COPY" and "--from=builder" in rest and "/app/.venv" in rest for k, rest in runtime)
    # no compiler or build tooling in the image that runs
    assert not any(k == "RUN" and "build-essential" in rest for k, rest in runtime)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_install_step_uses_the_lock_file_through_bootstrap(dockerfile: Path):
    builder = stages(dockerfile)["builder"]
    copies = [exec_form(rest) for k, rest in builder if k == "COPY"]
    copied = {src for argv in copies for src in argv[:-1] if not src.startswith("--")}
    assert LOCK in copied and "scripts/bootstrap.sh" in copied and "pyproject.toml" in copied
    runs = [rest for k, rest in builder if k == "RUN"]
    install = [r for r in runs if "bootstrap.sh" in r]
    assert install, "the builder must install with scripts/bootstrap.sh"
    # nothing else installs Python packages in the image (no second source of versions)
    for run in runs:
        assert not re.search(r"\bpip3? install\b|\buv pip\b|\bpoetry\b|\bconda\b", run), run
    # and bootstrap.sh itself installs exactly requirements.lock (uv pip sync), no other spec
    script = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r"uv\"? pip sync .*requirements\.lock", script)
    assert "pip check" in script


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_in_the_build_context(dockerfile: Path):
    args = build_args(dockerfile)
    for keyword, rest in dockerfile_instructions(dockerfile):
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [s for s in exec_form(rest)[:-1] if not s.startswith("--")]
        for source in sources:
            source = substitute(source, args)
            if source == ".":
                continue
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
            assert not dockerignore_excludes(source), f"{dockerfile.name}: {source} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_a_non_root_user_with_a_healthcheck(dockerfile: Path):
    runtime = stages(dockerfile)["runtime"]
    users = [rest for k, rest in runtime if k == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert any(k == "RUN" and f"useradd" in rest and users[-1] in rest for k, rest in runtime)
    last_user_index = max(i for i, (k, _) in enumerate(runtime) if k == "USER")
    assert not any(k == "RUN" for k, _ in runtime[last_user_index + 1:]), "RUN after USER would run unprivileged setup"
    healthchecks = [rest for k, rest in runtime if k == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "CMD" in healthchecks[0]
    assert re.search(r"--interval=\d+s", healthchecks[0]) and re.search(r"--start-period=\d+s", healthchecks[0])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runtime_copies_named_paths_only_so_models_are_not_baked_by_accident(dockerfile: Path):
    for keyword, rest in stages(dockerfile)["runtime"]:
        if keyword == "COPY" and "--from=" not in rest:
            sources = [s for s in exec_form(rest)[:-1] if not s.startswith("--")]
            assert "." not in sources and not any(s.startswith("models") for s in sources), rest


def test_image_has_what_the_commands_read():
    """The files `nebras serve`, `rasa run` and the NLG server open inside the image are copied."""
    copied = set()
    for keyword, rest in stages(ROOT / "Dockerfile")["runtime"]:
        if keyword == "COPY" and "--from=" not in rest:
            copied |= {s for s in exec_form(rest)[:-1] if not s.startswith("--")}
    assert {"nebras_bot", "actions", "domain.yml", "endpoints.yml", "credentials.yml", "deploy", "config.yml"} <= copied


def test_model_directory_is_a_build_argument_with_a_placeholder_default():
    dockerfile = ROOT / "Dockerfile"
    args = build_args(dockerfile)
    assert args["MODEL_DIR"] == "deploy/no-model"
    assert (ROOT / args["MODEL_DIR"]).is_dir()
    copies = [rest for k, rest in stages(dockerfile)["runtime"] if k == "COPY"]
    assert any("${MODEL_DIR}" in rest and rest.rstrip().endswith("/app/models/") for rest in copies)
    # baking the real models works because .dockerignore lets the model archives through
    assert not dockerignore_excludes("models/nebras.tar.gz")
    assert not dockerignore_excludes("models/nlg/20260101-gpt2/model.safetensors")


# ---------------------------------------------------------------- commands run locally
def _entrypoint_argv(dockerfile: Path) -> List[str]:
    runtime = stages(dockerfile)["runtime"]
    entry = [exec_form(rest) for k, rest in runtime if k == "ENTRYPOINT"][-1]
    cmd = [exec_form(rest) for k, rest in runtime if k == "CMD"][-1]
    return entry + cmd


def _image_env(dockerfile: Path) -> dict:
    env = {}
    for keyword, rest in stages(dockerfile)["runtime"]:
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                env[name] = value
    return env


def _local(argv: List[str]) -> List[str]:
    """The image's command with the venv's scripts (the image puts /app/.venv/bin first on PATH)."""
    return [str(VENV_BIN / argv[0])] + argv[1:]


def _child_env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_command_exists_locally_and_accepts_its_arguments(dockerfile: Path):
    argv = _local(_entrypoint_argv(dockerfile))
    assert Path(argv[0]).exists(), argv[0]
    result = subprocess.run(argv + ["--help"], capture_output=True, text=True, timeout=240, env=_child_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "usage:" in result.stdout.lower()


def test_image_default_command_serves_and_its_healthcheck_passes(tmp_path):
    """``nebras serve`` with the image's environment (NEBRAS_HOST/PORT/HOME from ENV) and no model
    mounted: the process serves /healthz (so the HEALTHCHECK passes) and /readyz says why it is not
    ready (503). Then the HEALTHCHECK command fails once the server is gone."""
    dockerfile = ROOT / "Dockerfile"
    image_env = _image_env(dockerfile)
    assert image_env["NEBRAS_HOST"] == "0.0.0.0" and image_env["NEBRAS_HOME"] == "/app"
    port = str(free_port())
    empty_models = tmp_path / "models"
    empty_models.mkdir()
    env = _child_env(NEBRAS_HOST="127.0.0.1", NEBRAS_PORT=port, NEBRAS_HOME=str(tmp_path),
                     NEBRAS_ENDPOINTS=str(tmp_path / "endpoints.yml"))
    env.pop("NEBRAS_API_TOKEN", None)
    healthcheck = [rest for k, rest in stages(dockerfile)["runtime"] if k == "HEALTHCHECK"][0]
    check_argv = exec_form(healthcheck.split(" CMD ", 1)[1])
    check_argv = [sys.executable if check_argv[0] == "python" else check_argv[0]] + check_argv[1:]

    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(_local(_entrypoint_argv(dockerfile)), cwd=str(tmp_path), env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            check = subprocess.run(check_argv, env=env, capture_output=True, timeout=30)
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        deadline = time.monotonic() + 60
        while True:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            if ready.json()["status"] != "loading":
                break
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed" and "no trained Rasa model" in ready.json()["detail"]
    finally:
        stop(proc)
    assert subprocess.run(check_argv, env=env, capture_output=True, timeout=30).returncode != 0


def test_image_runs_the_nlg_server_and_rasa_run_commands_of_compose(compose):
    """The other commands the compose file runs in the assistant image parse locally."""
    for service in ("nlg", "channels"):
        spec = compose["services"][service]
        entry = spec.get("entrypoint") or ["nebras"]
        argv = _local(list(entry) + list(spec["command"])[:1]) + ["--help"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=_child_env())
        assert result.returncode == 0, (service, result.stderr[-2000:])
        for flag in [a for a in spec["command"] if a.startswith("--")]:
            assert flag in result.stdout, (service, flag)
