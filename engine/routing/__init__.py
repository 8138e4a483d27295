"""Routing: which departments get a classified incident, under which SLA policy.

``table`` holds the merged rules (loaded with the rule set), ``decide`` the pure decision.
"""
