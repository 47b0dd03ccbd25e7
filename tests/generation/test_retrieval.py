"""Exemplar retrieval: the nearest replies, or the most typical of the nearest (``central``)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from nebras_bot.generation.retrieval import ORDER_CENTRAL, ExemplarIndex
from nebras_bot.training.recipe import Recipe

# Three replies about refunds say the same thing in different words; one quirky reply belongs to
# the message nearest "refund for order 7 please" but is unlike the others.
QUERIES = [
    "refund for order 7 please",  # nearest, quirky reply
    "i want a refund",
    "how do refunds work",
    "refund please",
    "where is my parcel",  # other intent
]
REPLIES = [
    "Order 7 is special: call our warehouse on a Tuesday.",
    "Refunds go back to your card within 10 days of the return arriving.",
    "Your refund goes back to your card within 10 days of the return arriving.",
    "A refund goes back to your card within 10 days once the return arrives.",
    "Your parcel is on its way.",
]
INTENTS = ["refund", "refund", "refund", "refund", "track"]


def index(order: str, pool: int = 20) -> ExemplarIndex:
    return ExemplarIndex.build(QUERIES, REPLIES, INTENTS, order=order, pool=pool)


def test_similarity_order_returns_the_nearest_messages_replies():
    assert index("similarity").top_k("refund for order 7", k=1, intent="refund") == [REPLIES[0]]


def test_central_order_returns_the_most_typical_of_the_nearest():
    top = index(ORDER_CENTRAL).top_k("refund for order 7", k=2, intent="refund")
    assert REPLIES[0] not in top and len(top) == 2
    assert set(top) <= set(REPLIES[1:4])


def test_central_pool_of_one_is_the_nearest_and_pool_limits_the_choice():
    assert index(ORDER_CENTRAL, pool=1).top_k("refund for order 7", k=1, intent="refund") == [REPLIES[0]]
    # pool 2: the quirky nearest reply and one typical reply are equally (un)like each other -> the nearer wins
    assert index(ORDER_CENTRAL, pool=2).top_k("refund for order 7", k=1, intent="refund") == [REPLIES[0]]


def test_central_order_respects_intent_exclusion_and_k():
    top = index(ORDER_CENTRAL).top_k("refund", k=5, intent="refund", exclude=[REPLIES[1]])
    assert REPLIES[1] not in top and REPLIES[4] not in top and len(top) == 3
    assert index(ORDER_CENTRAL).top_k("refund", k=0) == []


@pytest.mark.parametrize("order", ["similarity", ORDER_CENTRAL])
def test_order_and_pool_survive_save_and_load(tmp_path, order):
    saved = index(order, pool=3)
    saved.save(tmp_path)
    loaded = ExemplarIndex.load(tmp_path)
    assert (loaded.order, loaded.pool) == (order, 3)
    assert loaded.top_k("refund for order 7", k=2, intent="refund") == saved.top_k("refund for order 7", k=2, intent="refund")


def test_an_index_saved_before_orders_existed_loads_as_similarity(tmp_path):
    import json

    index("similarity").save(tmp_path)
    path = tmp_path / "index.json"
    payload = json.loads(path.read_text())
    del payload["order"], payload["pool"]
    path.write_text(json.dumps(payload))
    assert ExemplarIndex.load(tmp_path).order == "similarity"


@pytest.mark.parametrize("order, pool, message", [("typical", 20, "must be one of similarity, central"),
                                                  ("central", 0, "at least 1")])
def test_bad_order_or_pool_is_a_clear_error(order, pool, message):
    with pytest.raises(ValueError, match=message):
        index(order, pool=pool)


def test_recipe_checks_the_exemplar_order():
    assert Recipe(exemplar_order="Central").exemplar_order == ORDER_CENTRAL
    with pytest.raises(ValidationError, match="exemplar order must be one of"):
        Recipe(exemplar_order="random")
    with pytest.raises(ValidationError):
        Recipe(exemplar_pool=0)
