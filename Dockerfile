# syntax=docker/dockerfile:1
# Nebras assistant image: `nebras serve` (FastAPI + the Rasa agent in-process) by default; the same
# image runs `nebras nlg-server` and `rasa run` (see docker-compose.yml and docs/deployment.md).
#
#   docker build -t nebras .                                # models mounted at run time
#   docker build --build-arg MODEL_DIR=models -t nebras .   # models/ baked into the image
#   docker run -p 8000:8000 -v "$PWD/models:/app/models:ro" nebras
#
# Dependencies are installed by scripts/bootstrap.sh from requirements.lock, exactly as on a
# developer machine and in CI (one lock file for every install).

ARG PYTHON_IMAGE=python:3.10-slim

# ---------------------------------------------------------------- builder: the locked venv
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Only what the install needs, so this layer is rebuilt only when the lock changes. The package
# roots are enough for the editable install: the code itself is copied in the runtime stage.
COPY requirements.lock pyproject.toml README.md ./
COPY scripts/bootstrap.sh scripts/bootstrap.sh
COPY nebras_bot/__init__.py nebras_bot/__init__.py
COPY actions/__init__.py actions/__init__.py
COPY components/__init__.py components/__init__.py
COPY rasa_sdk_plugins/__init__.py rasa_sdk_plugins/__init__.py
RUN ./scripts/bootstrap.sh \
 && find .venv -name "__pycache__" -type d -prune -exec rm -rf {} +

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG MODEL_DIR=deploy/no-model
ARG NEBRAS_UID=10001
ENV PATH=/app/.venv/bin:$PATH \
    NEBRAS_HOME=/app \
    NEBRAS_HOST=0.0.0.0 \
    NEBRAS_PORT=8000 \
    NEBRAS_ENDPOINTS=/app/endpoints.yml \
    OMP_NUM_THREADS=2 \
    TF_CPP_MIN_LOG_LEVEL=3 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/nebras
RUN useradd --create-home --home-dir /home/nebras --uid ${NEBRAS_UID} --shell /usr/sbin/nologin nebras
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
# The application: code, Rasa project files, deployment files. Never `COPY .`: models/ enters the
# image only through MODEL_DIR below.
COPY --chown=nebras:nebras nebras_bot /app/nebras_bot
COPY --chown=nebras:nebras actions /app/actions
COPY --chown=nebras:nebras components /app/components
COPY --chown=nebras:nebras rasa_sdk_plugins /app/rasa_sdk_plugins
COPY --chown=nebras:nebras data /app/data
COPY --chown=nebras:nebras deploy /app/deploy
COPY --chown=nebras:nebras scripts /app/scripts
COPY --chown=nebras:nebras config.yml domain.yml endpoints.yml credentials.yml pyproject.toml requirements.lock README.md /app/
# Trained models: an empty placeholder by default (mount /app/models), or baked with MODEL_DIR=models.
COPY --chown=nebras:nebras ${MODEL_DIR} /app/models/
RUN mkdir -p /app/var && chown nebras:nebras /app /app/var /app/models
USER nebras
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('NEBRAS_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["nebras"]
CMD ["serve"]
