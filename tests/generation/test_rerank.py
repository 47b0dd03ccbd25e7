"""Consensus reranking: the candidate most like the others and the exemplars is sent; refused ones never."""
from __future__ import annotations

import pytest
import torch

from nebras_bot.generation import rerank
from nebras_bot.generation.batching import DecodeRequest, GreedyEngine
from nebras_bot.generation.decoding import Completion
from nebras_bot.generation.generator import ResponseGenerator
from nebras_bot.generation.loader import tiny_gpt2
from nebras_bot.generation.prompt import PromptContext, PromptTurn
from nebras_bot.generation.rerank import Candidate
from nebras_bot.generation.retrieval import ExemplarIndex
from nebras_bot.generation.settings import GenerationSettings, model_settings
from nebras_bot.monitoring import metrics

TEMPLATE = "Your order is on its way."
CONTEXT = PromptContext(
    history=[PromptTurn("user", "where is my order 48213?")],
    intent="track_order",
    slots={"order_id": "48213"},
    template=TEMPLATE,
)
TYPICAL = "You can track order {order_id} on the Order History page of your account."
ODD = "Our parrots sing on Tuesdays and the moon is made of cheese."


class Scripted:
    """A decoder that returns fixed completions: ``complete`` the greedy one, ``sample`` the rest."""

    def __init__(self, greedy: str, samples: list[str] | None = None, fail: bool = False) -> None:
        self.greedy, self.samples, self.fail = greedy, samples or [], fail
        self.sampled: list[int] = []

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def complete(self, prompt, max_new_tokens=None, time_limit=None, placeholder_ban=None) -> Completion:
        return Completion(self.greedy, self.greedy, 10, 50, 0.01, "marker")

    def sample(self, prompt, n, max_new_tokens=None, time_limit=None, placeholder_ban=None) -> list[Completion]:
        if self.fail:
            raise RuntimeError("sampling broke")
        self.sampled.append(n)
        return [Completion(text, text, 10, 50, 0.01, "marker") for text in self.samples[:n]]


@pytest.fixture(scope="module")
def loaded():
    return tiny_gpt2()


def exemplars() -> ExemplarIndex:
    return ExemplarIndex.build(
        ["where is my order", "track my order please", "status of my order", "cancel my order"],
        [TYPICAL, "Track order {order_id} on the Order History page.", "Order {order_id}: see the Order History page of your account.",
         "I have cancelled your order."],
        ["track_order", "track_order", "track_order", "cancel_order"],
    )


def reranking(loaded, greedy: str, samples: list[str], fail: bool = False, n: int = 3,
              when: str = "always") -> ResponseGenerator:
    settings = GenerationSettings(torch_threads=1, timeout_s=5, rerank_samples=n, topic_top=0, rerank_when=when)
    generator = ResponseGenerator(loaded, settings, exemplar_index=exemplars())
    generator.decoder = Scripted(greedy)
    generator.sampler = Scripted(greedy, samples, fail)
    return generator


# ------------------------------------------------------------------ the choice


def test_typicality_prefers_the_candidate_like_the_evidence():
    scores = rerank.typicality([ODD, TYPICAL], ["Track order {order_id} on the Order History page of your account."])
    assert scores[1] > scores[0]
    assert rerank.typicality([], ["anything"]) == []
    assert rerank.typicality(["alone"]) == [0.0]


@pytest.mark.parametrize(
    "candidates, expected",
    [
        ([Candidate("a", None, "profanity"), Candidate("b", None, "unknown_number")], None),  # none passed
        ([Candidate("a", "a", None)], 0),
        ([Candidate(TYPICAL, None, "unknown_number"), Candidate(ODD, ODD, None)], 1),  # refused never chosen
        ([Candidate(ODD, ODD, None), Candidate(TYPICAL, TYPICAL, None)], 1),
        ([Candidate(TYPICAL, TYPICAL, None), Candidate(TYPICAL, TYPICAL, None, sampled=True)], 0),  # tie: greedy
    ],
)
def test_choose(candidates, expected):
    asked = []
    evidence = lambda: asked.append(1) or [TYPICAL.replace("You can", "Please")]  # noqa: E731
    assert rerank.choose(candidates, evidence) == expected
    assert bool(asked) == (sum(c.text is not None for c in candidates) > 1)  # retrieved only to choose


# ------------------------------------------------------------------ in the generator


def test_the_most_typical_candidate_is_sent_and_every_candidate_reported(loaded):
    generator = reranking(loaded, ODD, ["Track order {order_id} on the Order History page of your account.", ODD])
    sampled_before = metrics.SAMPLED_REPLIES._value.get()
    result = generator.reply(CONTEXT, TEMPLATE)
    assert metrics.SAMPLED_REPLIES._value.get() == sampled_before + 1
    assert result.generated and result.chosen == 1
    assert result.text == "Track order 48213 on the Order History page of your account."
    assert [c["sampled"] for c in result.candidates] == [False, True, True]
    assert generator.sampler.sampled == [3]


def test_a_sample_replaces_a_greedy_reply_the_guard_refused(loaded):
    generator = reranking(loaded, "Your order 99999 ships tomorrow.", [TYPICAL])
    result = generator.reply(CONTEXT, TEMPLATE)
    assert result.generated and result.text == "You can track order 48213 on the Order History page of your account."
    assert result.candidates[0]["reason"].startswith("unknown_id")


def test_rerank_when_refused_samples_only_for_a_refused_greedy_reply(loaded):
    passing = reranking(loaded, ODD, [TYPICAL], when="refused")
    result = passing.reply(CONTEXT, TEMPLATE)
    assert result.text == ODD and result.candidates is None and passing.sampler.sampled == []
    refused = reranking(loaded, "Your order 99999 ships tomorrow.", [ODD, TYPICAL], when="refused")
    result = refused.reply(CONTEXT, TEMPLATE)
    assert result.generated and result.chosen == 2 and refused.sampler.sampled == [3]
    with pytest.raises(ValueError, match="rerank_when"):
        GenerationSettings(rerank_when="sometimes")


def test_the_template_when_no_candidate_passes_with_the_greedy_reason(loaded):
    generator = reranking(loaded, "Your order 99999 ships tomorrow.", ["Call 555-0100 now.", "{refund_id} is done."])
    result = generator.reply(CONTEXT, TEMPLATE)
    assert not result.generated and result.text == TEMPLATE
    assert result.reason.startswith("unknown_id") and len(result.candidates) == 3


def test_sampling_failure_leaves_the_greedy_reply(loaded):
    generator = reranking(loaded, TYPICAL, [], fail=True)
    result = generator.reply(CONTEXT, TEMPLATE)
    assert result.generated and result.text.startswith("You can track order 48213") and result.candidates is None


def test_no_sampler_without_rerank_samples(loaded):
    assert ResponseGenerator(loaded, GenerationSettings(torch_threads=1)).sampler is None
    assert ResponseGenerator(loaded, GenerationSettings(torch_threads=1, rerank_samples=2)).sampler is not None


def test_a_model_may_ship_reranking_in_its_nebras_json():
    assert model_settings({"generation": {"rerank_samples": 4, "rerank_evidence": 5, "rerank_when": "refused"}}) == {
        "rerank_samples": 4, "rerank_evidence": 5, "rerank_when": "refused"}


# ------------------------------------------------------------------ the sampler


def test_sampler_writes_n_replies_reproducibly_with_a_seed(loaded):
    settings = GenerationSettings(torch_threads=1, max_new_tokens=6, seed=3, temperature=1.0, top_p=1.0, top_k=0,
                                  repetition_penalty=1.0, no_repeat_ngram_size=0)
    sampler = rerank.Sampler(GreedyEngine(loaded.model, loaded.tokenizer, settings))
    first = sampler.sample("<|user|> hello <|agent|>", 3)
    again = sampler.sample("<|user|> hello <|agent|>", 3)
    assert len(first) == 3 and all(0 < c.new_tokens <= 6 for c in first)
    assert [c.raw for c in first] == [c.raw for c in again]
    assert len({c.raw for c in first}) > 1  # a random tiny model at temperature 1: the rows differ
    assert sampler.sample("<|user|> hello <|agent|>", 0) == []


def test_sampling_at_a_tiny_top_p_is_greedy(loaded):
    """top_p near 0 keeps only the most likely token: every row is the greedy reply."""
    settings = GenerationSettings(torch_threads=1, max_new_tokens=6, top_p=1e-6, repetition_penalty=1.0,
                                  no_repeat_ngram_size=0)
    engine = GreedyEngine(loaded.model, loaded.tokenizer, settings)
    greedy = engine.decode([DecodeRequest(engine.encode("<|user|> hello <|agent|>"), 6)])[0]
    assert [c.raw for c in rerank.Sampler(engine).sample("<|user|> hello <|agent|>", 2)] == [greedy.raw] * 2


def test_top_k_one_is_the_argmax():
    sampler = rerank.Sampler.__new__(rerank.Sampler)
    sampler.settings = GenerationSettings(top_k=1, top_p=1.0)
    sampler._generator = torch.Generator()
    scores = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.9]])
    assert sampler.pick(scores).tolist() == [1, 0]
