"""Rules: layered, validated, indexed; see ``ruleset.py`` for the semantics."""

from engine.rules.ruleset import CompiledScope, KeywordRule, PriorityRule, RuleSet

__all__ = ["CompiledScope", "KeywordRule", "PriorityRule", "RuleSet"]
