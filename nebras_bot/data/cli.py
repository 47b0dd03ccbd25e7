"""``nebras data prepare``: build a versioned dataset (see ``nebras_bot.data.prepare``)."""
from __future__ import annotations

import argparse


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add this stage's commands to ``nebras``."""
    data = subparsers.add_parser("data", help="training data: prepare a versioned dataset")
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND")
    prepare = commands.add_parser(
        "prepare",
        help="clean, scrub, deduplicate and split Bitext + stories + logs into models/datasets/<version>/",
    )
    prepare.add_argument("--bitext", metavar="DIR", help="Bitext CSV directory (default: $NEBRAS_BITEXT_DIR)")
    prepare.add_argument("--out", metavar="DIR", help="parent directory of the dataset (default: models/datasets)")
    prepare.add_argument("--logs", metavar="JSONL", nargs="*", default=[],
                         help="logged conversations/tickets as Dialogue JSON Lines")
    prepare.add_argument("--domain", metavar="PATH", help="Rasa domain for stories (default: ./domain.yml)")
    prepare.add_argument("--stories", metavar="DIR", nargs="*", default=None,
                         help="Rasa training data with stories (default: ./data when present)")
    prepare.add_argument("--no-stories", action="store_true", help="do not read Rasa stories")
    prepare.add_argument("--seed", type=int, help="split seed (default 13)")
    prepare.set_defaults(func=_prepare)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def _prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nebras_bot import paths
    from nebras_bot.data.prepare import prepare
    from nebras_bot.data.settings import DataSettings
    from nebras_bot.data.templates import default_domain_path

    settings = DataSettings()
    if args.seed is not None:
        settings.seed = args.seed
    if args.no_stories:
        settings.include_stories = False
    domain = Path(args.domain) if args.domain else default_domain_path()
    stories = [Path(p) for p in args.stories] if args.stories is not None else (
        [paths.home() / "data"] if (paths.home() / "data").is_dir() else []
    )
    dataset = prepare(args.bitext, args.out, settings, args.logs, domain, stories)
    print(f"dataset {dataset.version}: {dataset.directory}")
    for name, count in dataset.card["dialogues_per_split"].items():
        print(f"  {name}: {count} dialogues")
    print(f"  removed: {dataset.card['removed']}")
    return 0
