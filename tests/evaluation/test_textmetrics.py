"""Metric code against sacrebleu / rouge-score on small examples whose values are computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nebras_bot.evaluation import textmetrics as tm


def test_bleu_identical_is_100_and_matches_sacrebleu_corpus_score():
    import sacrebleu

    refs = ["Your order is on its way.", "We accept cards and PayPal."]
    assert tm.bleu(refs, refs) == pytest.approx(100.0)
    preds = ["Your order is on the way.", "We accept PayPal."]
    expected = sacrebleu.corpus_bleu(preds, [refs], tokenize="13a").score
    assert tm.bleu(preds, refs) == pytest.approx(expected)


def test_bleu_hand_computed():
    # Clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so the brevity penalty is 1.
    value = tm.bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert value == pytest.approx(expected, abs=1e-6)


def test_bleu_zero_count_uses_exponential_smoothing():
    # 4-gram precision 0/2 is smoothed by sacrebleu's default 'exp' method to 1/(2*2);
    # precisions 4/5, 2/4, 1/3; equal lengths.
    value = tm.bleu(["the cat sat on mat"], ["the cat sat in mat"])
    expected = 100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / 4) ** 0.25
    assert value == pytest.approx(expected, abs=1e-6)


def test_bleu_brevity_penalty_by_hand():
    # Prediction is 4 of the reference's 6 tokens (all 1-4 grams match): BLEU = exp(1 - 6/4).
    value = tm.bleu(["the cat sat on"], ["the cat sat on the mat"])
    assert value == pytest.approx(100 * math.exp(1 - 6 / 4), abs=1e-6)


def test_length_ratio_counts_13a_tokens_over_all_rows():
    # 4 + 4 prediction tokens ("PayPal." is two 13a tokens) over 6 + 5 reference tokens.
    value = tm.length_ratio(["the cat sat on", "We accept PayPal."], ["the cat sat on the mat", "We accept cards too."])
    assert value == pytest.approx((4 + 4) / (6 + 5))
    # the ratio is what sets BLEU's brevity penalty
    assert tm.bleu(["the cat sat on"], ["the cat sat on the mat"]) == pytest.approx(
        100 * math.exp(1 - 1 / tm.length_ratio(["the cat sat on"], ["the cat sat on the mat"])))
    assert tm.length_ratio([], []) == 0.0
    assert "length_ratio" in tm.text_metrics(["a b"], ["a b c d"], [None])


def test_chrf_matches_sacrebleu_and_orders_sensibly():
    import sacrebleu

    refs = ["Your refund was issued today."]
    assert tm.chrf(refs, refs) == pytest.approx(100.0)
    close, far = ["Your refund was issued."], ["Hello there friend."]
    assert tm.chrf(close, refs) == pytest.approx(sacrebleu.corpus_chrf(close, [refs]).score)
    assert tm.chrf(close, refs) > tm.chrf(far, refs)


def test_rouge_hand_computed_values():
    # ROUGE-1: 2 shared unigrams, P=2/3, R=2/4 -> F = 4/7.
    scores = tm.rouge(["the cat sat"], ["the cat ran away"])
    assert scores["rouge1"] == pytest.approx(100 * 4 / 7)
    assert scores["rouge2"] == pytest.approx(100 * (2 * (1 / 2) * (1 / 3)) / (1 / 2 + 1 / 3))
    # ROUGE-L: LCS of "a b c d" and "a c b d" has length 3 -> P = R = F = 3/4.
    assert tm.rouge(["a b c d"], ["a c b d"])["rougeL"] == pytest.approx(75.0)


def test_rouge_uses_stemming_and_averages_rows():
    scores = tm.rouge(["cats running", "dog"], ["cat runs", "bird"])
    # Row 1 is identical after Porter stemming (100), row 2 shares nothing (0): mean 50.
    assert scores["rouge1"] == pytest.approx(50.0)
    assert scores["rouge2"] == pytest.approx(50.0)


def test_rouge_matches_rouge_score_library():
    from rouge_score import rouge_scorer

    preds = ["I have cancelled your order today", "The refund takes five days"]
    refs = ["Your order was cancelled today", "Refunds take 5 to 7 days"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for name in ("rouge1", "rouge2", "rougeL"):
        expected = 100 * np.mean([scorer.score(r, p)[name].fmeasure for p, r in zip(preds, refs)])
        assert tm.rouge(preds, refs)[name] == pytest.approx(expected)


def test_distinct_n_by_hand():
    assert tm.distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert tm.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert tm.distinct_n(["A b", "a B"], 1) == pytest.approx(2 / 4)  # lower-cased
    assert tm.distinct_n([""], 2) == 0.0


@pytest.mark.parametrize(
    "preds, refs, values, expected",
    [
        (["order 123 shipped"], ["your order 123"], ["123"], 1.0),
        (["your order shipped"], ["your order 123"], ["123"], 0.0),
        (["x", "order 123"], ["ref 9", "see 123"], ["9", "123"], 0.5),
        (["x"], ["no value here"], ["123"], None),  # reference lacks the value: row not counted
        (["x"], ["ref"], [None], None),
        (["Berlin it is"], ["Deliver to BERLIN"], ["berlin"], 1.0),  # case-insensitive
    ],
)
def test_entity_recall_table(preds, refs, values, expected):
    assert tm.entity_recall(preds, refs, values) == expected


def test_percentile_matches_numpy():
    values = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0]
    for q in (0, 50, 95, 100):
        assert tm.percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert tm.percentile([], 50) is None


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        tm.bleu(["a"], ["a", "b"])


def test_per_group_bleu_and_rougeL():
    groups = ["a", "b", "a"]
    preds = ["hello there", "xyz", "good day"]
    refs = ["hello there", "abc", "good day"]
    result = tm.per_group(groups, preds, refs)
    assert result["a"]["n"] == 2 and result["a"]["rougeL"] == pytest.approx(100.0)
    assert result["b"]["rougeL"] == 0.0 and result["b"]["bleu"] == pytest.approx(0.0, abs=1e-6)


def test_template_carry_is_the_rouge_l_recall_of_each_template_in_its_reply():
    template = "Click Forgot password on the sign-in page and enter your email address."
    carried = "Sorry about that! Click Forgot password on the sign-in page and enter your email address, please."
    ignored = "Please log in to your account and open the Orders section."
    assert tm.template_carry([carried], [template]) == pytest.approx(100.0)
    partly = tm.template_carry([ignored], [template])
    assert 0 <= partly < 30
    # Rows without a template do not count; no template at all gives None.
    assert tm.template_carry([carried, ignored], [template, None]) == pytest.approx(100.0)
    assert tm.template_carry([carried], [None]) is None
    with pytest.raises(ValueError):
        tm.template_carry([carried], [])
