"""``ResponseGenerator``: context in, a safe non-empty reply out.

One reply goes through these steps; any failure sends the templated reply instead, with the
reason logged and counted (``nebras_fallbacks_total{reason=...}``):

1. no model loaded -> ``no_model``;
2. exemplar replies for the user's message from the model's ``exemplars/`` index (when the model
   was trained with retrieval and the index is there);
3. the prompt (:func:`nebras_bot.generation.prompt.build_prompt`, token budget counted with the
   model's tokenizer);
4. decoding (:class:`nebras_bot.generation.decoding.Decoder`) -> ``error`` on an exception. It
   stops at the end of the agent turn, at ``max_new_tokens`` or ``deadline_margin_s`` before the
   reply's timeout; a reply cut by the token limit or the deadline keeps its complete sentences
   (-> ``timeout`` when the deadline came before the first one);
5. placeholders filled from slots and entities -> ``missing_placeholder: name``;
6. the output guard (:func:`nebras_bot.generation.guard.check`) -> its reason; then a reply that asks
   for a value the conversation holds (:mod:`nebras_bot.generation.known`) -> ``asks_known: slot``;
7. the topic check (:class:`nebras_bot.generation.topic.TopicCheck`, over the exemplar index's
   replies) -> ``off_topic: reads as <intent>`` when the reply is about another intent;
8. with ``rerank_samples`` > 0, that many sampled replies go through steps 5-7 as well (for every
   reply, or with ``rerank_when: refused`` only when the greedy one was refused) and the candidate
   that passed and agrees most with the others and the retrieved exemplar replies is sent
   (:mod:`nebras_bot.generation.rerank`); the templated reply only when none passed.

:meth:`ResponseGenerator.areply` runs all of this in a worker thread, off the event loop, with a
per-reply timeout (``timeout``, counted from the call, queueing included) -> ``timeout``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, List, Mapping, Optional

from nebras_bot.generation import constraints, guard, known, placeholders, rerank
from nebras_bot.generation.batching import GreedyEngine
from nebras_bot.generation.decoding import STOP_LENGTH, STOP_TIME, Completion
from nebras_bot.generation.loader import METADATA_FILE, LoadedModel, ModelLoadError, load_causal_lm, read_metadata
from nebras_bot.generation.prompt import PromptContext, build_prompt
from nebras_bot.generation.rerank import Candidate
from nebras_bot.generation.settings import RERANK_ALWAYS, GenerationSettings, ModelSettingsError, model_settings
from nebras_bot.generation.topic import TopicCheck
from nebras_bot.monitoring import metrics

logger = logging.getLogger(__name__)

EXEMPLARS_DIR = "exemplars"
# Sent when there is neither a generated nor a templated reply: a reply is never empty.
LAST_RESORT_TEXT = (
    "Sorry, I can't answer that properly right now. Could you rephrase it, or ask me to open a "
    "support ticket?"
)
NO_MODEL = "no_model"
TIMEOUT = "timeout"
ERROR = "error"


@dataclass
class GenerationResult:
    """The reply to send and how it came about."""

    text: str
    generated: bool
    reason: Optional[str] = None  # why the templated reply was sent instead (None when generated)
    latency_ms: float = 0.0
    model_version: Optional[str] = None
    prompt: Optional[str] = None
    raw: Optional[str] = None  # the model's reply before placeholder filling and the guard
    channel: Optional[str] = None  # the output channel the reply goes to (from the context)
    # with consensus reranking (rerank_samples > 0): every candidate (Candidate.as_dict) and the one sent
    candidates: Optional[List[dict]] = None
    chosen: Optional[int] = None


def _load_exemplars(directory: Path) -> Any:
    """The exemplar index of a trained model directory, or None (absent, disabled or unreadable)."""
    if not (directory / EXEMPLARS_DIR).is_dir():
        return None
    if read_metadata(directory).get("retrieval") is False:
        logger.info("%s has exemplars/ but was trained without retrieval: not using them", directory)
        return None
    try:
        from nebras_bot.generation.retrieval import ExemplarIndex
    except ImportError as error:
        logger.warning("exemplar retrieval unavailable (%s); generating without exemplars", error)
        return None
    try:
        return ExemplarIndex.load(directory / EXEMPLARS_DIR)
    except Exception as error:  # noqa: BLE001 - a broken index must not stop generation
        logger.warning("could not load the exemplar index in %s: %s", directory, error)
        return None


def settings_for_model(settings: GenerationSettings, source: str) -> GenerationSettings:
    """``settings`` completed with the model directory's ``nebras.json`` (prompt and generation
    blocks) where the environment and explicit options left a field unset (precedence: defaults <
    model < environment < explicit; :mod:`nebras_bot.generation.settings`). Sources that are not a
    directory (``gpt2-scratch``, a hub id) have no ``nebras.json``: ``settings`` unchanged.
    Raises :class:`ModelSettingsError` (naming the file) for unusable values."""
    directory = Path(str(source))
    if not directory.is_dir():
        return settings
    metadata, origin = read_metadata(directory), str(directory / METADATA_FILE)
    resolved = settings.with_model_settings(metadata, origin)
    stated = model_settings(metadata, origin)  # valid: with_model_settings checked it
    if stated:
        overridden = sorted(set(stated) & settings.__fields_set__)
        logger.info(
            "generation settings from %s: %s%s", origin,
            ", ".join(f"{k}={v}" for k, v in sorted(resolved.from_model.items())) or "none used",
            f"; overridden by the environment or explicit options: {', '.join(overridden)}" if overridden else "",
        )
    return resolved


class ResponseGenerator:
    """Generates replies with one loaded causal LM; degrades to templated replies without one."""

    def __init__(
        self,
        loaded: Optional[LoadedModel],
        settings: Optional[GenerationSettings] = None,
        exemplar_index: Any = None,
        load_error: Optional[str] = None,
    ) -> None:
        from nebras_bot.generation.fastpath import build_decoder

        self.settings = settings or GenerationSettings()
        self.loaded = loaded
        self.exemplar_index = exemplar_index
        self.topic_check = TopicCheck.from_index(exemplar_index, self.settings.topic_top)
        self.load_error = load_error
        # Decoder, FastDecoder or BatchingWorker, per settings.fast_path / settings.batching.
        corpus = exemplar_index.replies if exemplar_index is not None else None
        self.decoder = build_decoder(loaded.model, loaded.tokenizer, self.settings, corpus) if loaded is not None else None
        # Sampled candidates for consensus reranking: Nebras's batched loop on the (prepared) model.
        self.sampler = (
            rerank.Sampler(GreedyEngine(loaded.model, loaded.tokenizer, self.settings))
            if loaded is not None and self.settings.rerank_samples > 0 else None
        )
        # With batching, concurrent replies wait in the worker's queue together (one thread each).
        workers = self.settings.batch_max_size if self.settings.batching else 1
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nebras-gen")
        metrics.GENERATOR_DEGRADED.set(0 if self.available else 1)
        if self.available:
            metrics.MODEL_INFO.info({"version": str(self.model_version), "source": str(loaded.source)})

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, settings: Optional[GenerationSettings] = None, source: Optional[str] = None) -> "ResponseGenerator":
        """Load the configured model; never raises: without a model the generator is degraded."""
        settings = settings or GenerationSettings()
        source = source or settings.model
        try:
            import torch

            torch.set_num_threads(settings.torch_threads)
            loaded = load_causal_lm(source)
        except (ModelLoadError, OSError, ValueError) as error:
            logger.error("Response model %r could not be loaded: %s. Serving templated replies only.", source, error)
            return cls(None, settings, load_error=str(error))
        except Exception as error:  # noqa: BLE001 - start-up must survive any loader failure
            logger.exception("Response model %r failed to load; serving templated replies only", source)
            metrics.ERRORS.labels(component="generation").inc()
            return cls(None, settings, load_error=f"{type(error).__name__}: {error}")
        try:
            settings = settings_for_model(settings, loaded.source)
        except ModelSettingsError as error:
            logger.error("Response model %r not used: %s. Serving templated replies only.", source, error)
            return cls(None, settings, load_error=str(error))
        index = None
        if settings.use_retrieval and Path(loaded.source).is_dir():
            index = _load_exemplars(Path(loaded.source))
        logger.info("Response model %s loaded from %s (exemplars: %s)", loaded.version, loaded.source, index is not None)
        return cls(loaded, settings, exemplar_index=index)

    @property
    def available(self) -> bool:
        return self.decoder is not None

    @property
    def model_version(self) -> Optional[str]:
        return self.loaded.version if self.loaded is not None else None

    # ------------------------------------------------------------------ the steps

    def with_exemplars(self, context: PromptContext) -> PromptContext:
        """``context`` plus retrieved exemplar replies for the latest user message (when indexed)."""
        if self.exemplar_index is None or context.exemplars or self.settings.exemplars <= 0:
            return context
        query = _latest_user_text(context)
        if not query:
            return context
        try:
            found = self.exemplar_index.top_k(query, k=self.settings.exemplars, intent=context.intent)
        except Exception as error:  # noqa: BLE001
            logger.warning("exemplar retrieval failed: %s", error)
            return context
        return replace(context, exemplars=list(found))

    def build_prompt(self, context: PromptContext) -> str:
        counter = self.decoder.count_tokens if self.decoder is not None else None
        return build_prompt(self.with_exemplars(context), self.settings.prompt_settings(), counter)

    @staticmethod
    def allowed_texts(context: PromptContext, template: Optional[str], values: Mapping[str, Any]) -> list[str]:
        """Everything a reply may quote facts from: the conversation, the template, slot/entity values."""
        texts = [turn.text for turn in context.history]
        texts += [t for t in (template, context.template) if t]
        texts += list(placeholders.value_texts(values))
        texts += list(placeholders.value_texts(dict(context.slots)))
        texts += list(placeholders.value_texts(dict(context.entities)))
        return texts

    def check(self, text: str, context: PromptContext, template: Optional[str], values: Mapping[str, Any]) -> Optional[str]:
        """The output guard's verdict on ``text`` (None: it may be sent)."""
        return guard.check(
            text,
            allowed_texts=self.allowed_texts(context, template, values),
            min_chars=self.settings.min_chars,
            max_chars=self.settings.max_chars,
            max_repeated_ngram=self.settings.max_repeated_ngram,
        )

    def fallback(self, template: Optional[str], reason: str, started: float, **extra: Any) -> GenerationResult:
        """The templated reply (never empty), with the reason logged and counted."""
        text = templated_text(template)
        metrics.FALLBACKS.labels(reason=metrics.fallback_reason_label(reason)).inc()
        logger.info(
            "generated reply rejected, sending the templated reply: %s (channel %s)", reason, extra.get("channel")
        )
        return GenerationResult(
            text=text, generated=False, reason=reason, latency_ms=(time.perf_counter() - started) * 1000,
            model_version=self.model_version, **extra,
        )

    def reply(
        self,
        context: PromptContext,
        template: Optional[str] = None,
        values: Optional[Mapping[str, Any]] = None,
        time_limit: Optional[float] = None,
    ) -> GenerationResult:
        """Generate a reply for ``context``; ``template`` is the reply to send if that fails."""
        started = time.perf_counter()
        channel = context.channel
        if not self.available:
            return self.fallback(template, NO_MODEL, started, channel=channel)
        values = placeholders.merge_values(context.entities, context.slots, values or {})
        prompt = raw = None
        limit = self.settings.timeout_s if time_limit is None else time_limit
        try:
            prompt = self.build_prompt(context)
            deadline = started + limit - self.settings.deadline_margin_s
            steer = self.settings.steer_placeholders
            completion = self.decoder.complete(
                prompt, time_limit=max(deadline - time.perf_counter(), 0.0),
                placeholder_ban=constraints.ban_for(values) if steer else None,
            )
            if steer:
                completion = constraints.continue_without(
                    self.decoder, prompt, completion, values, self.settings.placeholder_retries,
                    self.settings.max_new_tokens, deadline,
                )
            raw = _trim_unfinished(completion.text, completion.stopped_by)
        except Exception as error:  # noqa: BLE001 - any model failure becomes the templated reply
            logger.exception("generation failed")
            metrics.ERRORS.labels(component="generation").inc()
            return self.fallback(template, f"{ERROR}: {type(error).__name__}", started, prompt=prompt, channel=channel)
        if _nothing_by_deadline(completion):
            return self.fallback(template, TIMEOUT, started, prompt=prompt, raw=raw, channel=channel)
        candidates = [self.vet(raw, context, template, values)]
        if self.sampler is not None and (self.settings.rerank_when == RERANK_ALWAYS or candidates[0].text is None):
            candidates += self.sampled_candidates(prompt, context, template, values, deadline)
        chosen = rerank.choose(candidates, lambda: self.evidence(context))
        alternatives = [c.as_dict() for c in candidates] if len(candidates) > 1 else None
        if chosen is None:
            return self.fallback(template, candidates[0].reason, started, prompt=prompt, raw=raw, channel=channel,
                                 candidates=alternatives)
        seconds = time.perf_counter() - started
        metrics.GENERATED_REPLIES.inc()
        metrics.GENERATION_LATENCY.observe(seconds)
        if candidates[chosen].sampled:
            metrics.SAMPLED_REPLIES.inc()
        return GenerationResult(
            text=candidates[chosen].text, generated=True, latency_ms=seconds * 1000, model_version=self.model_version,
            prompt=prompt, raw=candidates[chosen].raw, channel=channel, candidates=alternatives, chosen=chosen,
        )

    def vet(self, raw: str, context: PromptContext, template: Optional[str], values: Mapping[str, Any]) -> Candidate:
        """``raw`` filled and checked: placeholders (steps 5), the guard with the loop cut and the
        asking-again rule (6), the topic check (7). The candidate's ``text`` is None and its
        ``reason`` says why when refused."""
        filled = placeholders.fill(raw, values)
        if filled is None:
            missing = ", ".join(placeholders.missing(raw, values))
            return Candidate(raw, None, f"{guard.MISSING_PLACEHOLDER}: {missing}")
        reason = self.check(filled, context, template, values)
        if reason is not None and guard.rule_of(reason) == guard.REPETITION and self.settings.cut_repetition:
            shorter = guard.cut_repetition(filled, self.settings.max_repeated_ngram)
            if shorter is not None and self.check(shorter, context, template, values) is None:
                logger.info("generated reply cut before it repeats itself (%s): %d -> %d chars", reason, len(filled), len(shorter))
                filled, reason = shorter, None
        if reason is None:
            reason = known.asks_for_known(filled, values)
        if reason is None and self.topic_check is not None:
            reason = self.topic_check.check(filled, context.intent)
        return Candidate(raw, filled if reason is None else None, reason)

    def sampled_candidates(
        self, prompt: str, context: PromptContext, template: Optional[str], values: Mapping[str, Any], deadline: float,
    ) -> List[Candidate]:
        """``rerank_samples`` sampled replies, vetted; none when the deadline has passed or sampling fails
        (the greedy reply is then judged alone)."""
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return []
        ban = constraints.ban_for(values) if self.settings.steer_placeholders else None
        try:
            completions = self.sampler.sample(prompt, self.settings.rerank_samples, time_limit=remaining, placeholder_ban=ban)
        except Exception:  # noqa: BLE001 - the greedy reply stands on its own
            logger.exception("sampling candidate replies failed; judging the greedy reply alone")
            metrics.ERRORS.labels(component="generation").inc()
            return []
        candidates = []
        for completion in completions:
            if _nothing_by_deadline(completion):
                continue
            raw = _trim_unfinished(completion.text, completion.stopped_by)
            if raw.strip():
                candidates.append(replace(self.vet(raw, context, template, values), sampled=True))
        return candidates

    def evidence(self, context: PromptContext) -> List[str]:
        """The exemplar replies the candidates are compared with (:mod:`nebras_bot.generation.rerank`)."""
        query = _latest_user_text(context)
        if self.exemplar_index is None or self.settings.rerank_evidence <= 0 or not query:
            return []
        try:
            return list(self.exemplar_index.top_k(query, k=self.settings.rerank_evidence, intent=context.intent))
        except Exception as error:  # noqa: BLE001 - the candidates are then compared with each other only
            logger.warning("exemplar retrieval for reranking failed: %s", error)
            return []

    async def areply(
        self,
        context: PromptContext,
        template: Optional[str] = None,
        values: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> GenerationResult:
        """:meth:`reply` in a worker thread, so the event loop keeps serving; templated on timeout."""
        started = time.perf_counter()
        if not self.available:
            return self.fallback(template, NO_MODEL, started, channel=context.channel)
        limit = timeout if timeout is not None else self.settings.timeout_s

        def in_worker() -> GenerationResult:  # the time spent queued for the worker counts
            return self.reply(context, template, values, time_limit=limit - (time.perf_counter() - started))

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, in_worker)
        try:
            return await asyncio.wait_for(future, timeout=limit)
        except asyncio.TimeoutError:
            return self.fallback(template, TIMEOUT, started, channel=context.channel)
        except Exception as error:  # noqa: BLE001
            logger.exception("generation failed in the worker")
            metrics.ERRORS.labels(component="generation").inc()
            return self.fallback(template, f"{ERROR}: {type(error).__name__}", started, channel=context.channel)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        close_decoder = getattr(self.decoder, "close", None)  # the batching worker's thread
        if close_decoder is not None:
            close_decoder()


def templated_text(template: Optional[str]) -> str:
    """What a fallback sends for ``template``: the template, or :data:`LAST_RESORT_TEXT` when it is empty."""
    return (template or "").strip() or LAST_RESORT_TEXT


def _nothing_by_deadline(completion: Completion) -> bool:
    """The deadline came before the completion's first complete sentence: nothing worth sending."""
    return completion.stopped_by == STOP_TIME and not guard.SENTENCE_END.search(completion.text)


def _latest_user_text(context: PromptContext) -> str:
    return next((t.text for t in reversed(list(context.history)) if t.role == "user"), "")


def _trim_unfinished(text: str, stopped_by: str) -> str:
    """A reply cut by the token limit or the deadline ends at its last complete sentence, when it has one."""
    if stopped_by not in (STOP_LENGTH, STOP_TIME):
        return text
    return guard.complete_sentences(text) or text

