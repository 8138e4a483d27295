"""``engine/cli/help.yaml`` holds every command's texts: none missing, none left over."""

from __future__ import annotations

import argparse

from engine.cli import build_parser
from engine.cli.options import help_texts


def command_names(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                names.add(full)
                names |= command_names(sub, full)
    return names


def test_every_text_belongs_to_a_command_and_reads_as_help() -> None:
    names = command_names(build_parser())
    texts = help_texts()
    assert set(texts) <= names, f"texts of no command: {sorted(set(texts) - names)}"
    for name, text in texts.items():
        assert set(text) <= {"summary", "details"}, name
        assert text["summary"] and not text["summary"].endswith("."), name
        assert text.get("details", "a sentence.").endswith((".", ")")), name


def test_a_command_shows_its_texts() -> None:
    subcommands = next(a for a in build_parser()._actions
                       if isinstance(a, argparse._SubParsersAction))
    rules = subcommands.choices["rules"]
    assert rules.description == "Check, test and explain the YAML rules."  # from the summary
    simulate = subcommands.choices["simulate"]
    assert simulate.description == help_texts()["simulate"]["details"]
    assert [c.help for c in subcommands._choices_actions if c.dest == "simulate"] == [
        help_texts()["simulate"]["summary"]]
