"""Decoding: stop rules, token limits, repetition control, greedy default, sampling/beam options."""
from __future__ import annotations

import pytest
import torch

from helpers.mini_bot import REPLIES
from transformers import RepetitionPenaltyLogitsProcessor

from nebras_bot.generation.decoding import Decoder, GeneratedNoRepeatNGram, StopOnMarkers, generated_only_processors
from nebras_bot.generation.loader import gpt2_tokenizer, tiny_gpt2
from nebras_bot.generation.prompt import END, PromptContext, PromptTurn, build_prompt
from nebras_bot.generation.settings import GenerationSettings

torch.set_num_threads(1)


def greet_prompt() -> str:
    context = PromptContext(history=[PromptTurn("user", "hello")], intent="greet", template="Hello! How can I help you?")
    return build_prompt(context)


def settings(**overrides) -> GenerationSettings:
    return GenerationSettings(torch_threads=1, **overrides)


# --------------------------------------------------------------------------- the pieces


def test_stop_on_markers_fires_only_once_the_generated_part_holds_a_marker():
    tokenizer = gpt2_tokenizer()
    prompt = tokenizer("<|user|> hi\n<|agent|>", return_tensors="pt").input_ids
    stop = StopOnMarkers(tokenizer, prompt.shape[1])
    assert not stop(prompt, None).any()  # markers in the prompt do not count
    partial = torch.cat([prompt, tokenizer(" Hello there.<|e", return_tensors="pt").input_ids], dim=1)
    assert not stop(partial, None).any() and not stop.hit
    done = torch.cat([prompt, tokenizer(" Hello there.<|end|>", return_tensors="pt").input_ids], dim=1)
    assert stop(done, None).all() and stop.hit
    forged = torch.cat([prompt, tokenizer(" Sure<|user|>", return_tensors="pt").input_ids], dim=1)
    assert StopOnMarkers(tokenizer, prompt.shape[1])(forged, None).all()


def test_no_repeat_ngram_bans_generated_repeats_but_not_prompt_copies():
    processor = GeneratedNoRepeatNGram(size=2, prompt_length=3)
    # prompt 7 8 9 | generated 5 6 5 -> "5 6" already generated: 6 is banned after 5
    ids = torch.tensor([[7, 8, 9, 5, 6, 5]])
    scores = processor(ids, torch.zeros(1, 10))
    assert scores[0, 6] == -float("inf")
    assert (scores[0, [0, 1, 2, 3, 4, 5, 7, 8, 9]] == 0).all()
    # "8 9" is in the prompt only: copying it (e.g. an order id) stays allowed
    ids = torch.tensor([[7, 8, 9, 8]])
    assert (processor(ids, torch.zeros(1, 10)) == 0).all()
    assert (GeneratedNoRepeatNGram(size=0, prompt_length=0)(ids, torch.zeros(1, 10)) == 0).all()


def test_generate_kwargs_default_to_greedy_with_kv_cache_and_repetition_control():
    loaded = tiny_gpt2()
    kwargs = Decoder(loaded.model, loaded.tokenizer, settings())._generate_kwargs(10, 20, 3.0)
    assert kwargs["use_cache"] is True
    assert kwargs["do_sample"] is False and kwargs["num_beams"] == 1
    assert kwargs["temperature"] is None and kwargs["top_p"] is None
    assert kwargs["max_new_tokens"] == 20 and kwargs["max_time"] == 3.0
    assert kwargs["eos_token_id"] == loaded.tokenizer.eos_token_id
    # repetition control is on, but applied by our processors (generated tokens only)
    assert kwargs["repetition_penalty"] == 1.0
    no_repeat, penalty = kwargs["logits_processor"]
    assert isinstance(no_repeat, GeneratedNoRepeatNGram) and no_repeat.prompt_length == 10
    assert isinstance(penalty, RepetitionPenaltyLogitsProcessor) and penalty.prompt_ignore_length == 10
    assert penalty.penalty == GenerationSettings().repetition_penalty > 1.0


def test_repetition_penalty_spares_tokens_copied_from_the_prompt():
    (penalty,) = [p for p in generated_only_processors(settings(repetition_penalty=2.0), 3)
                  if isinstance(p, RepetitionPenaltyLogitsProcessor)]
    ids = torch.tensor([[4, 5, 6, 7]])  # prompt 4 5 6 (e.g. an order id), generated 7
    scores = penalty(ids, torch.full((1, 10), 2.0))
    assert scores[0, 7] == 1.0  # generated token: penalised
    assert (scores[0, [4, 5, 6]] == 2.0).all()  # prompt tokens: untouched
    assert len(generated_only_processors(settings(repetition_penalty=1.0), 3)) == 1


def test_sampling_and_beam_search_are_configurable():
    loaded = tiny_gpt2()
    sampled = Decoder(loaded.model, loaded.tokenizer, settings(do_sample=True, temperature=0.5, top_p=0.8, top_k=7))
    kwargs = sampled._generate_kwargs(10, 20, None)
    assert kwargs["do_sample"] is True and (kwargs["temperature"], kwargs["top_p"], kwargs["top_k"]) == (0.5, 0.8, 7)
    assert "max_time" not in kwargs
    beam = Decoder(loaded.model, loaded.tokenizer, settings(num_beams=3))._generate_kwargs(10, 20, None)
    assert beam["num_beams"] == 3


# --------------------------------------------------------------------------- whole completions


def test_trained_model_stops_at_the_end_marker(tiny_loaded):
    decoder = Decoder(tiny_loaded.model, tiny_loaded.tokenizer, settings(max_new_tokens=40))
    completion = decoder.complete(greet_prompt())
    assert completion.text == REPLIES["greet"]
    assert completion.stopped_by in ("marker", "eos")
    assert END not in completion.text
    assert completion.new_tokens < 40


def test_max_new_tokens_bounds_the_reply(tiny_loaded):
    decoder = Decoder(tiny_loaded.model, tiny_loaded.tokenizer, settings(max_new_tokens=3))
    completion = decoder.complete(greet_prompt())
    assert completion.new_tokens == 3 and completion.stopped_by == "length"
    assert REPLIES["greet"].startswith(completion.text)
    assert decoder.complete(greet_prompt(), max_new_tokens=5).new_tokens == 5


def test_greedy_default_is_deterministic_and_sampling_is_seeded():
    loaded = tiny_gpt2(seed=1)
    prompt = greet_prompt()
    greedy = Decoder(loaded.model, loaded.tokenizer, settings(max_new_tokens=8, no_repeat_ngram_size=0))
    assert greedy.complete(prompt).raw == greedy.complete(prompt).raw
    sampler = Decoder(loaded.model, loaded.tokenizer, settings(max_new_tokens=8, do_sample=True, seed=5, temperature=1.5))
    first, second = sampler.complete(prompt).raw, sampler.complete(prompt).raw
    assert first == second  # same seed, same sample
    other = Decoder(loaded.model, loaded.tokenizer, settings(max_new_tokens=8, do_sample=True, seed=6, temperature=1.5))
    assert other.complete(prompt).raw != first or greedy.complete(prompt).raw != first


def test_beam_search_runs():
    loaded = tiny_gpt2(seed=2)
    decoder = Decoder(loaded.model, loaded.tokenizer, settings(max_new_tokens=4, num_beams=2))
    assert decoder.complete(greet_prompt()).new_tokens <= 4


def test_repetition_control_prevents_a_generated_loop():
    loaded = tiny_gpt2(seed=4)
    prompt = greet_prompt()
    outputs = []
    generate = loaded.model.generate
    loaded.model.generate = lambda **kwargs: outputs.append(generate(**kwargs)) or outputs[-1]

    def repeated_trigrams(decoder: Decoder) -> int:
        completion = decoder.complete(prompt)
        ids = outputs[-1][0, completion.prompt_tokens :].tolist()
        grams = [tuple(ids[i : i + 3]) for i in range(len(ids) - 2)]
        return len(grams) - len(set(grams))

    loose = settings(max_new_tokens=30, repetition_penalty=1.0, no_repeat_ngram_size=0)
    assert repeated_trigrams(Decoder(loaded.model, loaded.tokenizer, loose)) > 0  # an untrained model loops
    controlled = settings(max_new_tokens=30, no_repeat_ngram_size=3)
    assert repeated_trigrams(Decoder(loaded.model, loaded.tokenizer, controlled)) == 0


def test_time_limit_stops_generation():
    loaded = tiny_gpt2()
    decoder = Decoder(loaded.model, loaded.tokenizer, settings(max_new_tokens=200))
    completion = decoder.complete(greet_prompt(), time_limit=1e-4)
    assert completion.stopped_by == "time" and completion.new_tokens < 200


def test_overlong_prompt_keeps_its_end():
    loaded = tiny_gpt2(n_positions=64)
    decoder = Decoder(loaded.model, loaded.tokenizer, settings(max_new_tokens=8))
    prompt = "<|user|> " + "blah " * 200 + "\n<|agent|>"
    completion = decoder.complete(prompt)
    assert completion.prompt_tokens == 64 - 8
    with pytest.raises(ValueError, match="no room"):
        decoder.complete(prompt, max_new_tokens=60)
