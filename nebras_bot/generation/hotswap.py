"""``ReloadingGenerator``: a :class:`ResponseGenerator` that follows its model source.

Serving wraps the generator in this class (``nebras_bot.nlg`` does) so that:

- **promotion and rollback take effect without a restart.** At most every
  :data:`DEFAULT_CHECK_INTERVAL_S` seconds a reply checks the source's fingerprint (the resolved
  target of ``models/nlg/current`` and its ``config.json``/``nebras.json`` mtimes). When it changed,
  a background thread loads the new model COMPLETELY (a new ``ResponseGenerator``), then swaps one
  reference. A reply takes that reference once, at its start, so every reply is produced by either
  the old or the new model, never by a half-loaded one; the old model finishes the replies it was
  given (its worker is shut down without cancelling them). A source that fails to load is not
  swapped in: the model in use stays, the error is logged and kept in ``load_error``;
- **a missing model is picked up when it appears** (same check, while no model is loaded);
- **runtime failures are visible.** After :data:`DEFAULT_FAILURE_THRESHOLD` consecutive replies that
  fell back because of an exception or a timeout (e.g. ``RuntimeError: out of memory``), the
  ``nebras_generator_degraded`` gauge is set to 1 (``/readyz`` says ``degraded``); the next reply
  the model produces (generated, or rejected by the guard, which means the model ran) clears it.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Tuple

from nebras_bot.generation.generator import ERROR, NO_MODEL, TIMEOUT, GenerationResult, ResponseGenerator
from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.monitoring import metrics

logger = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 2.0
DEFAULT_FAILURE_THRESHOLD = 3
FINGERPRINT_FILES = ("config.json", "nebras.json", "model.safetensors", "pytorch_model.bin")
_RUNTIME_FAILURES = (ERROR, TIMEOUT)

Loader = Callable[[GenerationSettings, Optional[str]], ResponseGenerator]


def source_fingerprint(source: str) -> Optional[Tuple[Any, ...]]:
    """What identifies the model behind ``source`` on disk; None when it is not a local directory
    that exists (a hub id, ``gpt2-scratch``, or a missing/dangling path)."""
    path = Path(str(source)).expanduser()
    try:
        if not path.exists():
            return None
        resolved = path.resolve()
        if not resolved.is_dir():
            return None
        stamps = []
        for name in FINGERPRINT_FILES:
            candidate = resolved / name
            stamps.append(candidate.stat().st_mtime_ns if candidate.exists() else None)
        return (str(resolved), *stamps)
    except OSError:
        return None


def _is_runtime_failure(result: GenerationResult) -> bool:
    reason = (result.reason or "").split(":", 1)[0].strip()
    return not result.generated and reason in _RUNTIME_FAILURES


class ReloadingGenerator:
    """Same interface as :class:`ResponseGenerator` (``areply``, ``reply``, ``available``,
    ``model_version``, ``load_error``, ...); other attributes are those of the model in use."""

    def __init__(
        self,
        active: ResponseGenerator,
        source: Optional[str] = None,
        settings: Optional[GenerationSettings] = None,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        loader: Optional[Loader] = None,
    ) -> None:
        self.active = active
        self.settings = settings or active.settings
        self.source = str(source or self.settings.model)
        self.check_interval_s = check_interval_s
        self.failure_threshold = max(1, failure_threshold)
        self._loader: Loader = loader or (lambda s, src: ResponseGenerator.load(s, src))
        self._fingerprint = source_fingerprint(self.source) if active.available else None
        self._next_check = time.monotonic() + check_interval_s
        self._reload_lock = threading.Lock()
        self._reloading: Optional[threading.Thread] = None
        self.reload_error: Optional[str] = None
        self.swaps = 0
        self.consecutive_failures = 0
        self._publish()

    @classmethod
    def load(cls, settings: Optional[GenerationSettings] = None, source: Optional[str] = None,
             **options: Any) -> "ReloadingGenerator":
        settings = settings or GenerationSettings()
        return cls(ResponseGenerator.load(settings, source), source or settings.model, settings, **options)

    # ------------------------------------------------------------------ delegation

    def __getattr__(self, name: str) -> Any:  # loaded, decoder, exemplar_index, build_prompt, ...
        if name == "active":  # not set yet (during construction): no recursion
            raise AttributeError(name)
        return getattr(self.active, name)

    @property
    def available(self) -> bool:
        return self.active.available

    @property
    def model_version(self) -> Optional[str]:
        return self.active.model_version

    @property
    def load_error(self) -> Optional[str]:
        return self.reload_error or self.active.load_error

    @property
    def degraded(self) -> bool:
        return not self.available or self.consecutive_failures >= self.failure_threshold

    def _publish(self) -> None:
        metrics.GENERATOR_DEGRADED.set(1 if self.degraded else 0)

    # ------------------------------------------------------------------ replies

    def _record(self, result: GenerationResult) -> GenerationResult:
        if result.reason == NO_MODEL:
            pass  # degraded through ``available``
        elif _is_runtime_failure(result):
            self.consecutive_failures += 1
            if self.consecutive_failures == self.failure_threshold:
                logger.error("generator degraded: %d replies in a row failed (last: %s)",
                             self.consecutive_failures, result.reason)
        else:
            if self.consecutive_failures >= self.failure_threshold:
                logger.info("generator recovered after %d failed replies", self.consecutive_failures)
            self.consecutive_failures = 0
        self._publish()
        return result

    def reply(self, context: Any, template: Optional[str] = None, values: Optional[Mapping[str, Any]] = None,
              time_limit: Optional[float] = None) -> GenerationResult:
        self.check_for_new_model()
        generator = self.active  # one model for the whole reply
        return self._record(generator.reply(context, template, values, time_limit=time_limit))

    async def areply(self, context: Any, template: Optional[str] = None, values: Optional[Mapping[str, Any]] = None,
                     timeout: Optional[float] = None) -> GenerationResult:
        self.check_for_new_model()
        generator = self.active  # one model for the whole reply
        return self._record(await generator.areply(context, template, values, timeout=timeout))

    # ------------------------------------------------------------------ reloading

    def check_for_new_model(self, force: bool = False, wait: bool = False) -> bool:
        """Start a background reload when the source changed; True when one was started.

        ``force`` skips the interval; ``wait`` blocks until that reload finished (tests, CLI).
        """
        now = time.monotonic()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self.check_interval_s
        fingerprint = source_fingerprint(self.source)
        if fingerprint is None or fingerprint == self._fingerprint:
            return False
        with self._reload_lock:
            if self._reloading is not None and self._reloading.is_alive():
                thread = self._reloading
                started = False
            else:
                thread = threading.Thread(target=self._reload, args=(fingerprint,), name="nebras-gen-reload",
                                          daemon=True)
                self._reloading = thread
                thread.start()
                started = True
        if wait:
            thread.join()
        return started

    def _reload(self, fingerprint: Tuple[Any, ...]) -> None:
        logger.info("response model source %s changed (%s): loading it", self.source, fingerprint[0])
        try:
            candidate = self._loader(self.settings, self.source)
        except Exception as error:  # noqa: BLE001 - the model in use keeps serving
            candidate = None
            self.reload_error = f"{type(error).__name__}: {error}"
        if candidate is None or not candidate.available:
            if candidate is not None:
                self.reload_error = candidate.load_error or "the new model is not usable"
            logger.error("keeping response model %s: the new one did not load (%s)",
                         self.model_version, self.reload_error)
            self._fingerprint = fingerprint  # do not retry the same broken files on every reply
            self._publish()
            return
        old = self.active
        self.active = candidate  # the swap: one reference, the new model fully loaded
        self._fingerprint = fingerprint
        self.reload_error = None
        self.consecutive_failures = 0
        self.swaps += 1
        self._publish()
        metrics.MODEL_INFO.info({"version": str(candidate.model_version), "source": str(self.source)})
        logger.info("response model swapped: %s -> %s", old.model_version, candidate.model_version)
        old_executor = getattr(old, "_executor", None)
        if old_executor is not None:
            old_executor.shutdown(wait=False)  # replies already given to the old model still finish

    def close(self) -> None:
        self.active.close()

