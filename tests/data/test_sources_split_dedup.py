"""Sources -> dialogues, duplicate removal and the stratified split."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nebras_bot.data.bitext import BitextRow
from nebras_bot.data.dedup import EXACT, NEAR, dedup_key, remove_duplicates
from nebras_bot.data.records import Dialogue, Turn
from nebras_bot.data.sources import bitext_dialogues, jsonl_dialogues, resolve_entity
from nebras_bot.data.split import split_counts, stratified_split

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    "instruction, value, start, end, expected",
    [
        ("cancel order 12345", "12345", 13, 18, {"order_id": "12345"}),  # offsets right
        ("cancel order 12345", "12345", 0, 5, {"order_id": "12345"}),  # offsets wrong: searched
        ("cancel purchase 00123842", "123842", 0, 6, {"order_id": "00123842"}),  # widened to the token
        ("cancel order 12345.", "12345", 1, 2, {"order_id": "12345"}),  # sentence dot not included
        ("cancel my order", "12345", 0, 5, {}),  # not in the message: dropped
    ],
)
def test_resolve_entity(instruction, value, start, end, expected) -> None:
    row = BitextRow(instruction=instruction, intent="cancel_order", entity_type="order_id",
                    entity_value=value, start_offset=start, end_offset=end)
    assert resolve_entity(row) == expected


def test_bitext_dialogues_from_fixture() -> None:
    stats = Counter()
    dialogues = list(bitext_dialogues(FIXTURES, ["bitext_small.csv"], stats))
    assert len(dialogues) == 18
    first = dialogues[0]
    assert [t.role for t in first.turns] == ["user", "agent"]
    assert first.turns[0].intent == "track_order" and first.turns[0].entities == {"order_id": "12345"}
    assert dialogues[2].turns[0].entities == {"order_id": "67890"}  # wrong offsets repaired
    assert stats["entity_offset_repaired"] >= 1
    assert len({d.id for d in dialogues}) == len(dialogues)


def test_jsonl_dialogues_reports_bad_line(tmp_path: Path) -> None:
    good = Dialogue(id="t1", source="tickets", turns=[Turn(role="user", text="hi"), Turn(role="agent", text="hello")])
    path = tmp_path / "log.jsonl"
    path.write_text(good.json() + "\n\n{not json}\n")
    with pytest.raises(ValueError, match="line 3"):
        list(jsonl_dialogues([path]))
    path.write_text(good.json() + "\n")
    assert [d.id for d in jsonl_dialogues([path])] == ["t1"]


def _dialogue(i: str, intent: str, user: str, agent: str) -> Dialogue:
    return Dialogue(id=i, source="bitext", turns=[Turn(role="user", text=user, intent=intent), Turn(role="agent", text=agent)])


DEDUP_CASES = [
    # (second dialogue's user text, agent text, expected reason or None)
    ("Cancel order 67890!", "Order {order_id} is cancelled.", EXACT),  # digits and punctuation ignored
    ("cancel order 12345", "Order {order_id} is cancelled now.", None),  # different reply: kept (low threshold aside)
    ("please help me with the weather", "It is sunny today in the city.", None),
]


@pytest.mark.parametrize("user, agent, reason", DEDUP_CASES)
def test_remove_duplicates_exact(user: str, agent: str, reason) -> None:
    first = _dialogue("a", "cancel_order", "cancel order 12345", "Order {order_id} is cancelled.")
    second = _dialogue("b", "cancel_order", user, agent)
    kept, removed = remove_duplicates([first, second], near_threshold=1.0)
    if reason is None:
        assert len(kept) == 2 and not removed
    else:
        assert [d.id for d in kept] == ["a"] and removed == [("b", reason, "a")]


def test_remove_near_duplicates_within_intent_only() -> None:
    reply = "To cancel an order open the order page and choose cancel, then confirm the cancellation."
    a = _dialogue("a", "cancel_order", "how do I cancel my order", reply)
    b = _dialogue("b", "cancel_order", "how do I cancel my order please", reply)
    c = _dialogue("c", "other_intent", "how do I cancel my order please", reply)
    kept, removed = remove_duplicates([a, b, c], near_threshold=0.8)
    assert [d.id for d in kept] == ["a", "c"]
    assert removed == [("b", NEAR, "a")]


def test_dedup_key() -> None:
    assert dedup_key("Order #123, please!") == dedup_key("order 456 please")


@pytest.mark.parametrize(
    "size, val, test, expected",
    [(10, 0.1, 0.1, (8, 1, 1)), (100, 0.1, 0.2, (70, 10, 20)), (3, 0.1, 0.1, (1, 1, 1)),
     (2, 0.1, 0.1, (2, 0, 0)), (1, 0.5, 0.4, (1, 0, 0)), (20, 0.0, 0.1, (18, 0, 2))],
)
def test_split_counts(size, val, test, expected) -> None:
    assert split_counts(size, val, test) == expected


def test_stratified_split_is_deterministic_and_stratified() -> None:
    dialogues = [_dialogue(f"{intent}-{i}", intent, f"text {intent} {i}", "reply text here")
                 for intent in ("a", "b", "c") for i in range(20)]
    first = stratified_split(dialogues, 0.1, 0.1, seed=7)
    again = stratified_split(list(reversed(dialogues)), 0.1, 0.1, seed=7)
    other = stratified_split(dialogues, 0.1, 0.1, seed=8)
    ids = {k: [d.id for d in v] for k, v in first.items()}
    assert ids == {k: [d.id for d in v] for k, v in again.items()}
    assert ids != {k: [d.id for d in v] for k, v in other.items()}
    for name, count in (("train", 16), ("validation", 2), ("test", 2)):
        per_intent = Counter(d.turns[0].intent for d in first[name])
        assert per_intent == {"a": count, "b": count, "c": count}
    all_ids = [i for v in ids.values() for i in v]
    assert sorted(all_ids) == sorted(d.id for d in dialogues)


def test_full_dataset_loader_uses_the_hub_and_explains_offline_failures(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    from nebras_bot.data import bitext

    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        target = tmp_path / "full.csv"
        target.write_text("instruction,intent,response\nwhere is my order,track_order,It is on its way.\n")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = bitext.download_full_dataset(tmp_path / "cache")
    assert calls[0]["repo_id"] == bitext.HUB_DATASET_ID and calls[0]["repo_type"] == "dataset"
    assert [r.intent for r in bitext.read_csv(path)] == ["track_order"]

    def offline(**kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(RuntimeError, match="NEBRAS_BITEXT_DIR"):
        bitext.download_full_dataset(tmp_path / "cache")
