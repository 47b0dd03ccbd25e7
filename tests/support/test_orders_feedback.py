import pytest

from nebras_bot.support import orders as o
from nebras_bot.support.conversation import last_bot_reply, transcript
from nebras_bot.support.feedback import FeedbackStore, normalise_rating


@pytest.fixture
def seeded(support):
    assert o.seed(support.orders) == 40
    return support


def test_seed_is_realistic_and_idempotent(seeded):
    assert o.seed(seeded.orders) == 0 and seeded.orders.count() == 40
    rows = o.seed_rows()
    assert len({r["order_id"] for r in rows}) == 40
    assert {r["status"] for r in rows} == {o.PROCESSING, o.SHIPPED, o.DELIVERED, o.CANCELLED, o.RETURNED}
    for row in rows:
        assert row["total_cents"] > 0 and "@example.com" in row["email"]
        assert (row["refund_status"] is not None) == (row["status"] in (o.CANCELLED, o.RETURNED))
    assert seeded.orders.get("#370795561790").order_id == "370795561790"


def test_order_answers_use_the_stored_order(seeded):
    processing = next(r for r in o.seed_rows() if r["status"] == o.PROCESSING)
    shipped = next(r for r in o.seed_rows() if r["status"] == o.SHIPPED)
    assert "has not shipped yet" in seeded.order_status(processing["order_id"])
    assert shipped["tracking_number"] in seeded.order_status(shipped["order_id"])
    assert "no refund" in seeded.refund_status(processing["order_id"])


def test_cancel_only_before_shipping(seeded):
    rows = o.seed_rows()
    processing = next(r for r in rows if r["status"] == o.PROCESSING)["order_id"]
    shipped = next(r for r in rows if r["status"] == o.SHIPPED)["order_id"]
    assert "is cancelled" in seeded.cancel_order(processing)
    assert seeded.orders.get(processing).status == o.CANCELLED
    assert "already cancelled" in seeded.cancel_order(processing)
    assert "pending" in seeded.refund_status(processing)
    assert "can no longer be cancelled" in seeded.cancel_order(shipped)
    assert seeded.orders.get(shipped).status == o.SHIPPED


@pytest.mark.parametrize("order_id", ["99999999", "nonsense", "", None])
def test_unknown_orders_get_a_clear_answer(seeded, order_id):
    for answer in (seeded.order_status(order_id), seeded.cancel_order(order_id), seeded.refund_status(order_id)):
        assert answer.startswith("I couldn't")


EVENTS = [
    {"event": "user", "text": "where is my order?", "timestamp": 1.0, "parse_data": {"intent": {"name": "track_order"}}},
    {"event": "bot", "text": "Your order {order_id} is on its way.", "metadata": {"generated": True, "model_version": "20261125-1"}},
    {"event": "action", "name": "action_listen"},
    {"event": "user", "text": "👎", "timestamp": 2.0},
]


def test_last_bot_reply_reads_generation_metadata():
    reply = last_bot_reply(EVENTS)
    assert reply.text.startswith("Your order") and reply.generated is True and reply.model_version == "20261125-1"
    assert reply.user_text == "where is my order?" and reply.intent == "track_order"
    custom = [EVENTS[0], {"event": "bot", "text": "hi", "data": {"custom": {"nebras_generated": False}}}, EVENTS[3]]
    assert last_bot_reply(custom).generated is False and last_bot_reply(custom).model_version is None
    assert last_bot_reply([EVENTS[0]]) is None
    assert [t["role"] for t in transcript(EVENTS)] == ["user", "agent", "user"]


def test_feedback_is_stored_with_reply_text_and_model(support):
    assert "improve" in support.record_feedback(sender_id="s1", rating="down", events=EVENTS)
    [stored] = FeedbackStore(support.engine, support.settings).since(0)
    assert stored.rating == "down" and stored.generated is True and stored.model_version == "20261125-1"
    assert stored.bot_text == "Your order {order_id} is on its way." and stored.intent == "track_order"
    assert support.feedback.down_rated_texts() == {"Your order {order_id} is on its way."}
    assert "thumbs up" in support.record_feedback(sender_id="s1", rating="maybe", events=EVENTS)
    with pytest.raises(ValueError):
        support.feedback.record(rating="sideways", bot_text="x")
    assert normalise_rating("Thumbs Up") == "up"


def test_feedback_add_is_the_serving_api_spelling(support):
    row = support.feedback.add(sender_id="s", rating="up", reply_text="Happy to help!", generated=False,
                               model_version=None, comment="quick answer, thanks (me@x.org)")
    [stored] = support.feedback.since(0)
    assert stored.id == row.id and stored.bot_text == "Happy to help!" and stored.comment == "quick answer, thanks ([EMAIL])"
