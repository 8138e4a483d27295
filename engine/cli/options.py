"""What every command group shares, declared once: the subcommand table's type and options."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml


class Commands(Protocol):
    """Where a command group registers its subcommands (what ``add_subparsers`` returns);
    named here so that no module spells argparse's private ``_SubParsersAction``."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def add_rules_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules-dir", type=Path,
                        help="rules folder (default: $GRIDDISPATCH_RULES or rules)")


@cache
def help_texts() -> dict[str, dict[str, str]]:
    texts: dict[str, dict[str, str]] = yaml.safe_load(
        (Path(__file__).parent / "help.yaml").read_text(encoding="utf-8"))
    return texts


def command(commands: Commands, name: str,
            handler: Callable[..., int] | None = None) -> argparse.ArgumentParser:
    """The subcommand ``name`` (its full name, ``"rules check"``), run by ``handler``, with its
    texts from ``help.yaml``; a command missing there fails every CLI test, not a user's
    ``--help``."""
    text = help_texts()[name]
    summary = text["summary"]
    parser = commands.add_parser(name.split()[-1], help=summary, description=text.get(
        "details", f"{summary[0].upper()}{summary[1:]}."))
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def group(commands: Commands, name: str, *, dest: str) -> Commands:
    """A command that only holds subcommands (``stack up``, ``rules check``, …)."""
    subcommands: Commands = command(commands, name).add_subparsers(
        dest=dest, metavar=dest.upper(), required=True)
    return subcommands
