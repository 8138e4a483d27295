"""``griddispatch topics apply|diff``: make the cluster's topics match ``topics/*.yaml``."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.options import Commands, add_rules_dir, command
from engine.runtime import kafka
from engine.runtime.settings import Settings
from engine.runtime.topic_admin import ApplyRefused, apply, pending_changes


def register(commands: Commands) -> None:
    topics = command(commands, "topics")
    verbs = topics.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, handler, text in (
            ("apply", topics_apply, "create missing topics, add partitions, fix configs"),
            ("diff", topics_diff, "show what apply would change; exit 1 if anything")):
        verb = verbs.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        verb.add_argument("--topics-dir", type=Path, help="topic specs (default: topics)")
        add_rules_dir(verb)
        verb.set_defaults(handler=handler)


def _settings(args: argparse.Namespace, settings: Settings) -> Settings:
    return settings.with_(topics_dir=args.topics_dir, rules_dir=args.rules_dir)


def topics_diff(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(args, settings)
    desired, changes = pending_changes(settings, kafka.admin_client(settings))
    for note in sorted({n for t in desired for n in t.notes}):
        print(f"note: {note}")
    for change in changes:
        print(change)
    if not changes:
        print(f"no changes: {len(desired)} topics match")
    return 1 if changes else 0


def topics_apply(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(args, settings)
    return apply_topics(settings)


def apply_topics(settings: Settings, verbose: bool = True) -> int:
    """Apply the topic specs; ``verbose=False`` prints a count instead of every change."""
    admin = kafka.admin_client(settings)
    desired, changes = pending_changes(settings, admin)
    for change in changes:
        if verbose or change.kind == "refuse":
            print(change)
    try:
        apply(admin, changes)
    except ApplyRefused as exc:
        print(f"error: {exc}")
        return 1
    print(f"{len(changes)} change(s) applied; {len(desired)} topics in the spec"
          if changes else f"no changes: {len(desired)} topics match")
    return 0
