"""What every command group shares, declared once: the subcommand table's type and options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Protocol


class Commands(Protocol):
    """Where a command group registers its subcommands (what ``add_subparsers`` returns);
    named here so that no module spells argparse's private ``_SubParsersAction``."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def add_rules_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules-dir", type=Path,
                        help="rules folder (default: $GRIDDISPATCH_RULES or rules)")
