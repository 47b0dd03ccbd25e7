"""``nebras train`` and ``nebras models list|promote|rollback``."""
from __future__ import annotations

import argparse


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add this stage's commands to ``nebras``."""
    train = subparsers.add_parser("train", help="fine-tune a response model on a prepared dataset")
    train.add_argument("--recipe", default="default", help="recipe name (nebras_bot/training/recipes) or YAML path")
    train.add_argument("--data", metavar="DIR", help="prepared dataset directory (default: the newest under models/datasets; one is prepared first when there is none)")
    train.add_argument("--base", metavar="SOURCE", help="base model: gpt2-scratch[:preset], smollm2, a directory, a hub id")
    train.add_argument("--out", metavar="DIR", help="registry directory (default: models/nlg)")
    train.add_argument("--max-minutes", type=float, help="time budget; training stops cleanly when it is spent")
    train.add_argument("--max-steps", type=int, help="optimizer steps (overrides the recipe)")
    train.add_argument("--resume", metavar="DIR", help="continue a <version>.partial directory from its checkpoint")
    train.add_argument("--version", help="version name (default: <UTC time>-<recipe>)")
    train.add_argument("--promote", action="store_true", help="promote the trained model to models/nlg/current")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    models = subparsers.add_parser("models", help="the response-model registry")
    commands = models.add_subparsers(dest="models_command", metavar="COMMAND")
    listing = commands.add_parser("list", help="trained versions (* = current)")
    listing.add_argument("--out", metavar="DIR", help="registry directory (default: models/nlg)")
    listing.set_defaults(func=_list)
    promote = commands.add_parser("promote", help="point models/nlg/current at a version (atomic)")
    promote.add_argument("version")
    promote.add_argument("--out", metavar="DIR", help="registry directory (default: models/nlg)")
    promote.set_defaults(func=_promote)
    rollback = commands.add_parser("rollback", help="re-promote the previously current version")
    rollback.add_argument("--out", metavar="DIR", help="registry directory (default: models/nlg)")
    rollback.set_defaults(func=_rollback)
    models.set_defaults(func=lambda args: (models.print_help(), 2)[1])


def _train(args: argparse.Namespace) -> int:
    from nebras_bot.training import registry
    from nebras_bot.training.trainer import train

    directory = train(
        args.recipe, data_dir=args.data, base=args.base, out_dir=args.out, max_minutes=args.max_minutes,
        max_steps=args.max_steps, resume=args.resume, version=args.version, progress=not args.no_progress,
    )
    print(f"trained {directory.name}: {directory}")
    if args.promote:
        registry.promote(directory.name, directory.parent)
        print(f"promoted {directory.name} to {directory.parent / registry.CURRENT}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from nebras_bot.training import registry

    rows = registry.list_versions(args.out)
    if not rows:
        print("no trained models; run `nebras train`")
        return 0
    for row in rows:
        metrics = row["metrics"] or {}
        marker = "*" if row["current"] else " "
        print(f"{marker} {row['version']}  base={row['base_model']}  recipe={row['recipe']}  "
              f"data={row['dataset_version']}  retrieval={row['retrieval']}  val_loss={metrics.get('val_loss')}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from nebras_bot.training import registry

    try:
        directory = registry.promote(args.version, args.out)
    except registry.RegistryError as error:
        print(f"error: {error}")
        return 1
    print(f"current -> {directory.name}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from nebras_bot.training import registry

    try:
        version = registry.rollback(args.out)
    except registry.RegistryError as error:
        print(f"error: {error}")
        return 1
    print(f"rolled back: current -> {version}")
    return 0
