"""Rules: layered, validated, indexed; see ``ruleset.py`` and ``scope.py`` for the semantics."""

from engine.rules.ruleset import RuleSet
from engine.rules.scope import CompiledScope, KeywordRule, PriorityRule

__all__ = ["CompiledScope", "KeywordRule", "PriorityRule", "RuleSet"]
