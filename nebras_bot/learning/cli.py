"""``nebras learn``, ``nebras tickets resolve|show|list``, ``nebras db seed|migrate`` (see nebras_bot/cli.py)."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add this stage's commands to ``nebras``."""
    learn = subparsers.add_parser("learn", help="continuous learning: harvest, curate, fine-tune, evaluate, promote")
    learn.add_argument("--tracker-db", help="SQLAlchemy URL of Rasa's SQL tracker store (default: endpoints.yml)")
    learn.add_argument("--broker", action=argparse.BooleanOptionalAction, default=None,
                       help="also drain Rasa's RabbitMQ event queue (NEBRAS_LEARN_BROKER_URL / _QUEUE)")
    learn.add_argument("--recipe", help="training recipe for the fine-tuning run")
    learn.add_argument("--max-minutes", type=float, help="training budget")
    learn.add_argument("--tolerance", type=float, help="allowed relative validation loss, e.g. 0.02")
    learn.add_argument("--metric", help="score metric from nebras evaluate (default bits_per_byte)")
    learn.add_argument("--from-start", action="store_true", help="use everything harvested, not only what is new")
    learn.add_argument("--history", action="store_true", help="print the recorded runs and exit")
    learn.set_defaults(func=_learn)

    tickets = subparsers.add_parser("tickets", help="support tickets")
    commands = tickets.add_subparsers(dest="tickets_command", metavar="COMMAND", required=True)
    resolve = commands.add_parser("resolve", help="record an agent's resolution (used by nebras learn)")
    resolve.add_argument("ticket_id")
    resolve.add_argument("--reply", required=True, help="the agent's answer to the customer")
    resolve.set_defaults(func=_tickets_resolve)
    show = commands.add_parser("show", help="show one ticket as JSON")
    show.add_argument("ticket_id")
    show.set_defaults(func=_tickets_show)
    listing = commands.add_parser("list", help="list recent tickets")
    listing.add_argument("--status", choices=("open", "resolved"))
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=_tickets_list)

    database = subparsers.add_parser("db", help="support database (NEBRAS_DB_URL, default SQLite under var/)")
    db_commands = database.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    seed = db_commands.add_parser("seed", help="create the schema and add the demo orders")
    seed.add_argument("--count", type=int, default=40)
    seed.set_defaults(func=_db_seed)
    migrate = db_commands.add_parser("migrate", help="create or upgrade the schema")
    migrate.set_defaults(func=_db_migrate)


def _learn(args: argparse.Namespace) -> int:
    from nebras_bot.learning.harvest import BrokerUnavailable
    from nebras_bot.learning.lock import LockHeld
    from nebras_bot.learning.pipeline import learn, run_history
    from nebras_bot.learning.settings import LearningSettings

    if args.history:
        for run in run_history():
            print(json.dumps({k: run.get(k) for k in ("run_id", "decision", "reasons", "previous_version",
                                                        "promoted_version", "metrics")}, sort_keys=True))
        return 0
    overrides = {k: v for k, v in {"recipe": args.recipe, "max_minutes": args.max_minutes,
                                   "validation_tolerance": args.tolerance, "score_metric": args.metric}.items()
                 if v is not None}
    settings = LearningSettings(**overrides)
    try:
        record = learn(settings, tracker_url=args.tracker_db, broker=args.broker, from_start=args.from_start)
    except LockHeld as error:
        print(f"nebras learn: {error}", file=sys.stderr)
        return 3
    except (FileNotFoundError, BrokerUnavailable) as error:
        print(f"nebras learn: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"run_id": record.run_id, "decision": record.decision, "reasons": record.reasons,
                      "promoted_version": record.promoted_version, "metrics": record.metrics,
                      "exports": record.exports}, indent=2, sort_keys=True))
    return 0


def _ticket_json(ticket) -> str:
    from dataclasses import asdict

    data = asdict(ticket)
    data.pop("created", None)
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def _tickets_resolve(args: argparse.Namespace) -> int:
    from nebras_bot.support.tickets import TicketNotFound, TicketStore

    try:
        ticket = TicketStore().resolve(args.ticket_id, args.reply)
    except TicketNotFound:
        print(f"nebras tickets: no ticket {args.ticket_id}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"nebras tickets: {error}", file=sys.stderr)
        return 2
    print(f"{ticket.id} resolved")
    return 0


def _tickets_show(args: argparse.Namespace) -> int:
    from nebras_bot.support.tickets import TicketStore

    ticket = TicketStore().get(args.ticket_id)
    if ticket is None:
        print(f"nebras tickets: no ticket {args.ticket_id}", file=sys.stderr)
        return 1
    print(_ticket_json(ticket))
    return 0


def _tickets_list(args: argparse.Namespace) -> int:
    from nebras_bot.support.tickets import TicketStore

    for ticket in TicketStore().list(status=args.status, limit=args.limit):
        print(f"{ticket.id}\t{ticket.status}\t{ticket.created_at:%Y-%m-%d %H:%M}\t{ticket.description[:70]}")
    return 0


def _db_seed(args: argparse.Namespace) -> int:
    from nebras_bot.support.orders import OrderStore, seed

    store = OrderStore()
    added = seed(store, args.count)
    print(f"{added} orders added ({store.count()} in the database)")
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    from nebras_bot.support import db
    from nebras_bot.support.settings import SupportSettings

    settings = SupportSettings()
    engine = db.create_engine(settings.resolved_db_url(), settings)
    print(f"schema version {db.migrate(engine)} at {engine.url.render_as_string(hide_password=True)}")
    return 0
