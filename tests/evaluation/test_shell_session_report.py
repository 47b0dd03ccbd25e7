"""scripts/shell_session_report.py: the model's part in a conversation, read back from Rasa's SQL tracker store."""
from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "shell_session_report.py"
report = runpy.run_path(str(SCRIPT))


def _store_conversation(db: Path) -> None:
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(db))
    tracker = DialogueStateTracker.from_events("alice", [
        UserUttered("hello"),
        BotUttered("Hi! How can I help?"),  # no generation metadata
        UserUttered("are you a bot?"),
        BotUttered("I'm Nebras, a virtual assistant.", metadata={"generated": False}),  # rephrase: false
        UserUttered("which payment methods do you accept?"),
        BotUttered("We accept cards and PayPal.", metadata={"generated": True, "model_version": "v1"}),
        UserUttered("how do I get a refund?"),
        BotUttered("Refunds go back to your card.", metadata={"generated": False, "model_version": "v1",
                                                                "generation_fallback": "off_topic: reads as change_order"}),
    ])
    asyncio.run(store.save(tracker))


def test_reports_each_model_turn_and_the_summary(tmp_path, capsys) -> None:
    db = tmp_path / "tracker.db"
    _store_conversation(db)
    assert report["main"](["--db", f"sqlite:///{db}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "- 'which payment methods do you accept?': generated"
    assert out[2] == "- 'how do I get a refund?': template (off_topic: reads as change_order)"
    assert "Refunds go back" in out[3]
    assert out[-1] == "1 of 2 generated; fallbacks: {'off_topic': 1}"
    assert report["main"](["--db", f"sqlite:///{db}", "--sender", "nobody"]) == 1  # nothing went to the model


def test_the_store_defaults_to_endpoints_yml(tmp_path, monkeypatch, capsys) -> None:
    from nebras_bot.paths import ENV_HOME

    _store_conversation(tmp_path / "var-tracker.db")
    monkeypatch.setenv(ENV_HOME, str(tmp_path))
    assert report["main"]([]) == 2  # no endpoints.yml: says how to pass the store
    assert "--db" in capsys.readouterr().err
    (tmp_path / "endpoints.yml").write_text('tracker_store:\n  type: SQL\n  dialect: "sqlite"\n  db: "var-tracker.db"\n')
    assert report["main"]([]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 of 2 generated; fallbacks: {'off_topic': 1}"

