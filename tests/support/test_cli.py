"""The operator's commands on the embedded default database (SQLite under var/):
``nebras db migrate|seed`` and ``nebras tickets resolve|show|list``."""
from __future__ import annotations

import json

import pytest

from nebras_bot.cli import main as nebras
from nebras_bot.support import orders as o
from nebras_bot.support.service import reset_services
from nebras_bot.support.tickets import TicketStore


@pytest.fixture
def default_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NEBRAS_HOME", str(tmp_path))
    monkeypatch.delenv("NEBRAS_DB_URL", raising=False)
    reset_services()
    yield tmp_path
    reset_services()


def test_db_seed_fills_the_orders_table_under_var(default_home, capsys):
    assert nebras(["db", "seed"]) == 0
    assert f"{len(o.seed_rows())} orders added" in capsys.readouterr().out
    assert (default_home / "var" / "nebras.db").is_file()
    assert nebras(["db", "seed"]) == 0 and "0 orders added" in capsys.readouterr().out
    assert o.OrderStore().count() == len(o.seed_rows())
    assert nebras(["db", "migrate"]) == 0 and "schema version" in capsys.readouterr().out


def test_tickets_resolve_show_and_list(default_home, capsys):
    ticket = TicketStore().create(description="My parcel arrived empty, mail me at x.y@mail.com",
                                  idempotency_key="cli-1", email="x.y@mail.com")
    assert nebras(["tickets", "list", "--status", "open"]) == 0 and ticket.id in capsys.readouterr().out
    assert nebras(["tickets", "resolve", ticket.id.lower(), "--reply", "We are sending a new one today."]) == 0
    assert f"{ticket.id} resolved" in capsys.readouterr().out
    assert nebras(["tickets", "show", ticket.id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "resolved" and shown["resolution"] == "We are sending a new one today."
    assert "x.y@mail.com" not in shown["description"]  # PII-scrubbed when stored
    assert nebras(["tickets", "resolve", ticket.id, "--reply", "   "]) == 2
    assert "empty" in capsys.readouterr().err
    assert nebras(["tickets", "show", "TCK-ABSENT00"]) == 1
    assert "no ticket TCK-ABSENT00" in capsys.readouterr().err
