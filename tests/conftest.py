"""Shared fixtures for the whole suite.

- ``repo_root``: the project root (where ``domain.yml`` and ``config.yml`` live).
- ``bitext_dir``: the Bitext CSV directory from ``NEBRAS_BITEXT_DIR``; the test is skipped, with
  the reason, when it is unset or missing.
- ``rasa_cmd``: the ``rasa`` command of this interpreter (argv prefix).
- ``rasa_env``: environment for ``rasa`` subprocesses (one BLAS/TF thread, quiet TensorFlow).
- ``trained_rasa_model``: the shipped assistant (``config.yml``, ``domain.yml``, ``data/``) trained
  ONCE per test session with ``rasa train`` into a temporary directory, with Bitext when
  ``NEBRAS_BITEXT_DIR`` is set. Set ``NEBRAS_TEST_RASA_MODEL=/path/model.tar.gz`` to reuse a model
  you trained yourself. Takes about 2-3 minutes on 2 cores (most of it the first time only:
  Rasa's component cache in ``.rasa/cache`` makes a re-train with unchanged NLU data faster).
- ``sanic_test_mode`` / ``sanic_app_registry`` (autouse): several tests build Rasa's Sanic apps in
  this one process (``rasa.server.create_app`` always names its app "rasa_server"), see below.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RASA_TRAIN_TIMEOUT_S = 900
# Rasa's training cache defaults to ``.rasa/cache`` under the CURRENT directory. Pin it to the
# project root so a test that trains in-process after a chdir (or pytest started from tests/)
# never leaves a cache under tests/: `rasa test --stories tests` reads every file below tests/
# and crashes on the cache's JSON files.
os.environ.setdefault("RASA_CACHE_DIRECTORY", str(REPO_ROOT / ".rasa" / "cache"))


def rasa_executable() -> List[str]:
    """The ``rasa`` command of the interpreter running the tests."""
    candidate = Path(sys.executable).with_name("rasa")
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "rasa"]


def subprocess_env(**extra: str) -> Dict[str, str]:
    """Environment for rasa subprocesses: single-threaded numerics, quiet TensorFlow."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def rasa_cmd() -> List[str]:
    """The ``rasa`` command as an argv prefix, e.g. ``rasa_cmd + ["data", "validate"]``."""
    return rasa_executable()


@pytest.fixture(scope="session")
def rasa_env() -> Dict[str, str]:
    return subprocess_env()


@pytest.fixture(scope="session")
def bitext_dir() -> Path:
    from nebras_bot.paths import ENV_BITEXT_DIR, bitext_dir as configured

    directory = configured()
    if directory is None or not (directory / "intents.csv").is_file():
        pytest.skip(
            f"Bitext data not available: set {ENV_BITEXT_DIR} to a directory with intents.csv "
            "(e.g. ../shared/data/bitext)"
        )
    return directory


@pytest.fixture(scope="session")
def trained_rasa_model(tmp_path_factory) -> Path:
    """The shipped assistant trained once per session (see the module docstring)."""
    reuse = os.environ.get("NEBRAS_TEST_RASA_MODEL", "").strip()
    if reuse:
        path = Path(reuse).resolve()
        if not path.is_file():
            pytest.fail(f"NEBRAS_TEST_RASA_MODEL={reuse} is not a model file")
        return path
    out = tmp_path_factory.mktemp("rasa_model")
    command = rasa_executable() + [
        "train", "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
        "--out", str(out), "--fixed-model-name", "nebras",
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True,
        timeout=RASA_TRAIN_TIMEOUT_S,
    )
    model = out / "nebras.tar.gz"
    if result.returncode != 0 or not model.is_file():
        pytest.fail(f"rasa train failed (rc={result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return model


@pytest.fixture(scope="session", autouse=True)
def sanic_test_mode():
    """Run the whole session with ``Sanic.test_mode`` on (Sanic 21.12).

    Sanic keeps process-wide state that only test mode makes safe for many apps in one process:
    ``Sanic._app_registry`` refuses a second app of the same name ('Sanic app name "rasa_server"
    already in use'), and ``TouchUp.run`` (called by every app's start-up) recompiles
    ``HttpProtocol.connection_task`` and friends from their source; outside test mode the second
    app's start-up recompiles the already recompiled method, for which ``inspect.getsource``
    returns the wrong lines, and fails with ``KeyError('connection_task')`` (or another method's
    name). Test mode keeps the original methods aside and recompiles
    those. It must be on before the FIRST app starts (the originals are kept aside on that run),
    hence session scope and autouse: it is set before any test's own fixtures.
    """
    try:
        from sanic import Sanic
    except ImportError:  # pragma: no cover - sanic comes with rasa
        yield
        return
    previous = Sanic.test_mode
    Sanic.test_mode = True
    yield
    Sanic.test_mode = previous


@pytest.fixture(autouse=True)
def sanic_app_registry(sanic_test_mode):
    """Forget the Sanic apps a test registered once it is done, so an app (and the Rasa agent it
    holds) does not outlive its test through ``Sanic._app_registry``. Apps registered by wider
    fixtures (a module's server) are forgotten too; nothing in rasa or sanic looks them up by name
    while they serve."""
    yield
    sanic = sys.modules.get("sanic")
    if sanic is not None:
        sanic.Sanic._app_registry.clear()
