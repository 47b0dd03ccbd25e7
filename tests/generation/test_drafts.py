"""Corpus drafts: an n-gram table over training replies, chained into guesses."""
from __future__ import annotations

import pytest

from nebras_bot.generation.drafts import CorpusDrafts

CORPUS = [
    [1, 2, 3, 4, 5],
    [1, 2, 3, 4, 6],
    [9, 2, 3, 7, 5],
    [8, 8, 3, 4, 5],
]


@pytest.mark.parametrize(
    "context, k, expected",
    [
        ([1, 2, 3], 2, [4, 5]),  # "1 2 3" -> 4 (twice); then "2 3 4" -> 5 (wins 2 of 3 over 6)
        ([0, 2, 3], 1, [4]),  # an unknown 3-token context falls back to "2 3" -> 4 (2 of 3)
        ([9, 2, 3], 1, [4]),  # "9 2 3" -> 7 was seen once: no entry, the 2-token context decides
        ([3, 4], 3, [5]),  # "3 4" -> 5 (2 of 3); "4 5" ends every reply: nothing follows
        ([5, 5], 3, []),  # never seen
        ([1, 2, 3], 0, []),
        ([], 2, []),
    ],
)
def test_draft_chains_the_most_frequent_continuations(context, k, expected):
    assert CorpusDrafts(CORPUS).draft(context, k) == expected


def test_an_entry_needs_enough_occurrences_and_a_majority():
    assert CorpusDrafts(CORPUS, min_count=3).draft([2, 3], 1) == []  # "2 3 -> 4" seen twice only
    assert CorpusDrafts(CORPUS, min_count=1).draft([9, 2, 3], 1) == [7]  # now the 3-token context wins
    split = [[1, 2, 3], [1, 2, 3], [1, 2, 4], [1, 2, 4], [1, 2, 5]]
    assert CorpusDrafts(split, orders=(2,)).draft([1, 2], 1) == []  # 2 of 5: no majority
    assert CorpusDrafts(split, orders=(2,), min_share=0.4).draft([1, 2], 1) == [3]  # ties: the first seen


def test_orders_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        CorpusDrafts(CORPUS, orders=(0,))
    with pytest.raises(ValueError, match="positive"):
        CorpusDrafts(CORPUS, orders=())


def test_from_texts_tokenises_replies_as_completions_do():
    from nebras_bot.generation.loader import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    replies = ["I understand your concern about order {order_id}.", "I understand your concern about the fee."] * 2
    drafts = CorpusDrafts.from_texts(tokenizer, replies + ["", "  "], suffix="<|end|>")
    context = tokenizer(" I understand your", add_special_tokens=False).input_ids
    guess = tokenizer.decode(drafts.draft(context, 3))
    assert guess == " concern about order"  # "order" and "the" tie: the first seen
    ending = tokenizer(" about the fee", add_special_tokens=False).input_ids
    assert tokenizer.decode(drafts.draft(ending, 8)) == ".<|end|>"  # the reply's end, then nothing
    with pytest.raises(ValueError, match="non-empty"):
        CorpusDrafts.from_texts(tokenizer, ["", " "])


@pytest.mark.parametrize(("fast_path", "corpus_drafts", "expected"), [("fp32", True, True), ("fp32", False, False), ("off", True, False)])
def test_the_generator_drafts_from_its_exemplar_index(fast_path, corpus_drafts, expected):
    """The fast-path decoder gets the model's training replies (the exemplar index) as its corpus."""
    from nebras_bot.generation.generator import ResponseGenerator
    from nebras_bot.generation.loader import tiny_gpt2
    from nebras_bot.generation.retrieval import ExemplarIndex
    from nebras_bot.generation.settings import GenerationSettings

    replies = ["Please log in to your account and open Order History."] * 3
    index = ExemplarIndex(["where is my order", "track my order", "order status"], replies)
    settings = GenerationSettings(torch_threads=1, fast_path=fast_path, corpus_drafts=corpus_drafts, max_new_tokens=4)
    generator = ResponseGenerator(tiny_gpt2(), settings, exemplar_index=index)
    drafts = getattr(generator.decoder, "corpus", None)
    assert (drafts is not None) is expected
    if expected:
        context = generator.loaded.tokenizer(" Please log in to", add_special_tokens=False).input_ids
        assert generator.loaded.tokenizer.decode(drafts.draft(context, 3)) == " your account and"
    generator.close()
