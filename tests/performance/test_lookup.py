"""Prompt-lookup decoding: drafts from the text so far, verified greedily; the reply is the greedy one."""
from __future__ import annotations

import pytest

from nebras_bot.generation.batching import GreedyEngine
from nebras_bot.generation.decoding import Decoder
from nebras_bot.generation.fastpath import FastDecoder
from nebras_bot.generation.lookup import draft_tokens


@pytest.mark.parametrize(
    "context, k, expected",
    [
        ([1, 2, 3, 4, 5, 9, 2, 3], 3, [4, 5, 9]),  # "2 3" occurred before: what followed it
        ([1, 2, 3, 4, 2, 3, 7, 8, 2, 3], 2, [7, 8]),  # the latest earlier occurrence wins
        ([5, 6, 7, 1, 6, 7], 8, [1, 6, 7]),  # the draft stops at the end of the text
        ([7, 8, 9, 1, 2, 3, 7, 8, 9], 2, [1, 2]),  # the longest suffix (3 tokens) is looked up
        ([1, 2, 3, 4, 5, 6], 4, []),  # nothing repeats
        ([1, 2, 3, 1], 4, []),  # a single repeated token is not enough
        ([1, 2, 1, 2], 0, []),
        ([], 4, []),
    ],
)
def test_draft_tokens(context, k, expected):
    assert draft_tokens(context, k) == expected


def test_draft_tokens_searches_only_before_search_end():
    context = [1, 2, 3, 4, 9, 9, 2, 3, 5, 6, 2, 3]
    assert draft_tokens(context, 2) == [5, 6]
    assert draft_tokens(context, 2, search_end=6) == [4, 9]  # only the first 6 tokens (the prompt)
    assert draft_tokens(context, 2, search_end=2) == []


@pytest.mark.parametrize("no_repeat", [4, 0])
def test_lookup_gives_the_greedy_replies_in_fewer_passes(tiny, settings, prompts, no_repeat):
    settings = settings.copy(update={"no_repeat_ngram_size": no_repeat})
    copying = [p + " order 12345 order 12345 order 12345" for p in prompts]
    expected = [c.raw for c in map(Decoder(tiny.model, tiny.tokenizer, settings).complete, prompts + copying)]
    one_by_one = FastDecoder(GreedyEngine(tiny.model, tiny.tokenizer, settings), lookup_tokens=0)
    lookup = FastDecoder(GreedyEngine(tiny.model, tiny.tokenizer, settings), lookup_tokens=6)
    assert [one_by_one.complete(p).raw for p in prompts + copying] == expected
    assert [lookup.complete(p).raw for p in prompts + copying] == expected
    assert lookup.generated_tokens == one_by_one.generated_tokens
    assert one_by_one.decoding_passes == one_by_one.generated_tokens - len(expected)
    assert lookup.decoding_passes <= one_by_one.decoding_passes
    if not no_repeat:  # this random model repeats itself: drafts from its own reply are accepted
        assert lookup.decoding_passes < one_by_one.decoding_passes


def test_lookup_respects_the_token_limit_and_the_deadline(tiny, settings, prompts):
    lookup = FastDecoder(GreedyEngine(tiny.model, tiny.tokenizer, settings), lookup_tokens=6)
    for limit in (1, 2, 7):
        completion = lookup.complete(prompts[4], max_new_tokens=limit, force_length=True)
        assert (completion.new_tokens, completion.stopped_by) == (limit, "length")
    late = lookup.complete(prompts[0], max_new_tokens=20, time_limit=-1.0)
    assert (late.new_tokens, late.stopped_by) == (1, "time")


@pytest.mark.parametrize("no_repeat", [4, 0])
def test_corpus_drafts_keep_the_greedy_replies_and_save_passes(tiny, settings, prompts, no_repeat):
    """A corpus of the replies the model writes (as after fine-tuning: it repeats its training
    replies) lets most drafts through; a corpus of unrelated text changes nothing but the cost."""
    from nebras_bot.generation.drafts import CorpusDrafts

    settings = settings.copy(update={"no_repeat_ngram_size": no_repeat})
    expected = [c.raw for c in map(Decoder(tiny.model, tiny.tokenizer, settings).complete, prompts)]
    own = CorpusDrafts.from_texts(tiny.tokenizer, expected * 2)  # each continuation seen twice
    unrelated = CorpusDrafts.from_texts(tiny.tokenizer, ["the fee is listed on the invoice page"] * 2)
    decoders = {
        name: FastDecoder(GreedyEngine(tiny.model, tiny.tokenizer, settings), lookup_tokens=3, corpus=corpus)
        for name, corpus in (("prompt only", None), ("own", own), ("unrelated", unrelated))
    }
    for name, decoder in decoders.items():
        assert [decoder.complete(p).raw for p in prompts] == expected, name
    assert decoders["own"].decoding_passes < decoders["prompt only"].decoding_passes
    assert decoders["own"].decoding_passes <= sum(len(tiny.tokenizer(e).input_ids) for e in expected) / 2
