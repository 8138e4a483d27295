"""Routing: which departments get a classified incident, under which SLA policy.

``table`` holds the layered rules (loaded with the rule set), ``decide`` the pure decision.
"""
