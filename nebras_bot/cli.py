"""The ``nebras`` command. Each stage registers its own sub-commands.

Every module in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its commands with
``parser.set_defaults(func=handler)``; a handler takes the parsed ``argparse.Namespace`` and returns
an exit code. Heavy imports (torch, rasa) happen inside handlers so ``nebras --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from nebras_bot import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "nebras_bot.data.cli",  # nebras data prepare
    "nebras_bot.training.cli",  # nebras train, nebras models list|promote|rollback
    "nebras_bot.evaluation.cli",  # nebras evaluate, evaluate-dialogues, report
    "nebras_bot.learning.cli",  # nebras learn, nebras tickets ..., nebras db seed
    "nebras_bot.serving.cli",  # nebras serve, nebras nlg-server
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nebras", description="Nebras customer-support assistant tooling."
    )
    parser.add_argument("--version", action="version", version=f"nebras {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
