"""Starting and stopping the servers the HTTP benchmarks talk to (loopback only, always stopped)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx

from nebras_bot import paths

BENCH_DIR_NAME = "bench"


def bench_dir() -> Path:
    directory = paths.home() / "var" / BENCH_DIR_NAME
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def materialise_model(source: str, seed: int = 0) -> str:
    """A directory for ``source``: a ``gpt2-scratch:*`` model is built once (seeded) and saved, so
    every server process in a benchmark loads the same weights."""
    from nebras_bot.generation import loader

    if not source.startswith(loader.GPT2_SCRATCH):
        return source
    spec = source.split(":", 1)[1] if ":" in source else "default"
    label = Path(spec).stem if spec.endswith(".json") else spec  # a config file: its name, not its path
    target = bench_dir() / f"model-{label}-seed{seed}"
    if not (target / "config.json").is_file():
        loaded = loader.gpt2_from_config(spec, seed=seed)
        loaded.model.save_pretrained(target)
        loaded.tokenizer.save_pretrained(target)
    return str(target)


class Server:
    """A child process serving HTTP on a free loopback port; ``stop()`` (or ``with``) ends it."""

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], health_path: str, port: int,
                 start_timeout: float = 600.0) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = bench_dir() / f"{name}.log"
        self._log = open(self.log_path, "w", encoding="utf-8")
        child_env = dict(os.environ)
        child_env.update(env)
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=child_env,
                                        cwd=str(paths.home()))
        self._wait(health_path, start_timeout)

    def _wait(self, health_path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); log: {self.log_path}\n"
                                   + self.log_path.read_text()[-2000:])
            try:
                if httpx.get(self.url + health_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"{self.name} did not answer {health_path} within {timeout:.0f} s; log: {self.log_path}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def nebras_command() -> List[str]:
    candidate = Path(sys.executable).with_name("nebras")
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "nebras_bot.cli"]


def nlg_server(name: str, model: str, domain: Path, env: Optional[Dict[str, str]] = None) -> Server:
    port = free_port()
    argv = nebras_command() + ["nlg-server", "--host", "127.0.0.1", "--port", str(port), "--domain", str(domain),
                               "--model", model]
    return Server(name, argv, env or {}, "/healthz", port)
