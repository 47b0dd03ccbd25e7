"""The one place where the language model is called: prompt text in, reply text out.

:class:`Decoder` wraps ``model.generate`` with what Nebras needs: the KV cache, greedy decoding by
default (sampling and beam search configurable), ``max_new_tokens``, a stop at the end of the agent
turn (``<|end|>``, any role marker, or the eos token) through :class:`StopOnMarkers`, repetition
control that only looks at the *generated* tokens (so copying an order id from the prompt is never
penalised), and a hard time limit (``max_time``) so a timed-out request frees the model quickly.

Serving optimisations (int8, batching, ONNX) replace :class:`Decoder` behind the same
``complete(prompt) -> Completion`` call.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)

from nebras_bot.generation.constraints import PlaceholderBan
from nebras_bot.generation.device import attention_kernels, model_device
from nebras_bot.generation.prompt import ROLE_MARKERS, cut_at_end
from nebras_bot.generation.settings import GenerationSettings

# How many trailing tokens are decoded to look for a stop marker (markers are at most ~6 tokens).
STOP_WINDOW_TOKENS = 12


# Completion.stopped_by: why decoding ended
STOP_MARKER = "marker"  # a role marker (the agent turn is over)
STOP_EOS = "eos"
STOP_LENGTH = "length"  # max_new_tokens
STOP_TIME = "time"  # the time limit


@dataclass
class Completion:
    """What the model wrote for one prompt."""

    text: str  # the reply, cut before the first role marker, stripped
    raw: str  # everything generated, decoded
    new_tokens: int
    prompt_tokens: int
    seconds: float
    stopped_by: str  # STOP_MARKER, STOP_EOS, STOP_LENGTH or STOP_TIME


class StopOnMarkers(StoppingCriteria):
    """Stops a sequence once its generated text contains a role marker (``<|end|>``, ``<|user|>`` ...)."""

    def __init__(self, tokenizer: Any, prompt_length: int, markers: Sequence[str] = ROLE_MARKERS) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.markers = tuple(markers)
        self.hit = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        done = []
        for row in input_ids:
            generated = row[self.prompt_length :]
            tail = self.tokenizer.decode(generated[-STOP_WINDOW_TOKENS:], skip_special_tokens=False)
            done.append(any(marker in tail for marker in self.markers))
        self.hit = self.hit or any(done)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class GeneratedNoRepeatNGram(LogitsProcessor):
    """Forbids an n-gram that already occurred in the generated part (the prompt is exempt)."""

    def __init__(self, size: int, prompt_length: int) -> None:
        self.size = size
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.size <= 0:
            return scores
        for row_index, row in enumerate(input_ids):
            generated = row[self.prompt_length :].tolist()
            if len(generated) < self.size:
                continue
            prefix = tuple(generated[-(self.size - 1) :]) if self.size > 1 else ()
            banned = {
                generated[i + self.size - 1]
                for i in range(len(generated) - self.size + 1)
                if tuple(generated[i : i + self.size - 1]) == prefix
            }
            if banned:
                scores[row_index, list(banned)] = -float("inf")
        return scores


class BanPlaceholderOpenings(LogitsProcessor):
    """Bans the tokens that open a ``{placeholder}`` (:class:`nebras_bot.generation.constraints.PlaceholderBan`)."""

    def __init__(self, ban: PlaceholderBan, prompt_length: int) -> None:
        self.ban = ban
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row_index, row in enumerate(input_ids):
            banned = self.ban.banned(row[self.prompt_length :].tolist())
            if banned:
                scores[row_index, banned] = -float("inf")
        return scores


def generated_only_processors(settings: GenerationSettings, prompt_length: int) -> list:
    """Repetition control that looks at the generated tokens only (the prompt may be copied freely)."""
    processors: list = [GeneratedNoRepeatNGram(settings.no_repeat_ngram_size, prompt_length)]
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty, prompt_ignore_length=prompt_length))
    return processors


class Decoder:
    """Turns a prompt into a completion with one loaded model; calls are serialised by a lock."""

    def __init__(self, model: Any, tokenizer: Any, settings: Optional[GenerationSettings] = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or GenerationSettings()
        self._lock = threading.Lock()
        self.max_positions = self._max_positions()

    def _max_positions(self) -> int:
        config = self.model.config
        for name in ("n_positions", "max_position_embeddings"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 1024

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _generate_kwargs(
        self, prompt_length: int, max_new_tokens: int, time_limit: Optional[float],
        placeholder_ban: Optional[str] = None,
    ) -> dict:
        s = self.settings
        stop = StopOnMarkers(self.tokenizer, prompt_length)
        processors = generated_only_processors(s, prompt_length)
        if placeholder_ban is not None:
            processors.append(BanPlaceholderOpenings(PlaceholderBan(self.tokenizer, placeholder_ban), prompt_length))
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            use_cache=True,
            do_sample=s.do_sample,
            num_beams=s.num_beams,
            # generate()'s own repetition_penalty also punishes prompt tokens (an order id to copy):
            # switched off here and applied to the generated tokens only, below.
            repetition_penalty=1.0,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([stop]),
            logits_processor=LogitsProcessorList(processors),
        )
        if s.do_sample:
            kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k)
        else:  # silence "unused sampling flag" warnings from a model's own generation config
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if time_limit is not None:
            kwargs["max_time"] = time_limit
        return kwargs

    def complete(
        self, prompt: str, max_new_tokens: Optional[int] = None, time_limit: Optional[float] = None,
        placeholder_ban: Optional[str] = None,
    ) -> Completion:
        """Generate the agent's reply for ``prompt`` (which ends with the open ``<|agent|>`` turn).

        ``placeholder_ban``: ``constraints.BAN_ALL`` or ``BAN_FIRST`` bans the tokens that open a
        ``{placeholder}`` at every or at the first generated token (None: no ban).
        """
        max_new = max_new_tokens or self.settings.max_new_tokens
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        input_ids = encoded.input_ids
        room = self.max_positions - max_new
        if room < 8:
            raise ValueError(f"max_new_tokens={max_new} leaves no room for a prompt in {self.max_positions} positions")
        if input_ids.shape[1] > room:  # keep the end: the latest turns and the open agent turn
            input_ids = input_ids[:, -room:]
        input_ids = input_ids.to(model_device(self.model))
        attention_mask = torch.ones_like(input_ids)
        prompt_length = input_ids.shape[1]
        kwargs = self._generate_kwargs(prompt_length, max_new, time_limit, placeholder_ban)
        stop: StopOnMarkers = kwargs["stopping_criteria"][0]
        with self._lock:
            if self.settings.seed is not None:
                torch.manual_seed(self.settings.seed)
            started = time.perf_counter()
            with torch.inference_mode(), attention_kernels(input_ids.device):
                output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            seconds = time.perf_counter() - started
        generated = output[0, prompt_length:]
        raw = self.tokenizer.decode(generated, skip_special_tokens=False)
        eos = self.tokenizer.eos_token_id
        if stop.hit:
            stopped_by = STOP_MARKER
        elif eos is not None and eos in generated.tolist():
            stopped_by = STOP_EOS
        elif len(generated) >= max_new:
            stopped_by = STOP_LENGTH
        else:
            stopped_by = STOP_TIME
        text = raw
        if self.tokenizer.eos_token:
            text = text.split(self.tokenizer.eos_token, 1)[0]
        return Completion(
            text=cut_at_end(text),
            raw=raw,
            new_tokens=int(len(generated)),
            prompt_tokens=int(prompt_length),
            seconds=seconds,
            stopped_by=stopped_by,
        )
