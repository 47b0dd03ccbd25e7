"""Shared helpers for the deployment tests (Dockerfiles, compose file, endpoints, CI workflows)."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml
from helpers.processes import free_port, stop  # noqa: F401 - re-exported for the deploy tests

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_ENDPOINTS = ROOT / "deploy" / "endpoints.docker.yml"


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def dockerfile_instructions(path: Path) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    lines: List[str] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        lines.append(buffer + stripped)
        buffer = ""
    if buffer:
        lines.append(buffer)
    out = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages(path: Path) -> Dict[str, List[Tuple[str, str]]]:
    """Instructions per build stage, keyed by the stage name (``FROM x AS name``)."""
    result: Dict[str, List[Tuple[str, str]]] = {}
    current = None
    for keyword, rest in dockerfile_instructions(path):
        if keyword == "FROM":
            parts = rest.split()
            current = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else f"stage{len(result)}"
            result[current] = []
        if current is not None:
            result[current].append((keyword, rest))
    return result


def exec_form(arguments: str) -> List[str]:
    """The argv of an exec-form instruction (``["a", "b"]``) or a shell-form one."""
    arguments = arguments.strip()
    if arguments.startswith("["):
        import json

        return json.loads(arguments)
    return shlex.split(arguments)


def build_args(path: Path) -> Dict[str, str]:
    """Default values of the ``ARG name=value`` instructions."""
    values = {}
    for keyword, rest in dockerfile_instructions(path):
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            values[name.strip()] = value.strip()
    return values


def substitute(text: str, values: Dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


