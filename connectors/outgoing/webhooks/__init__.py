"""Webhook delivery: departments' records POSTed, signed, to the departments' own systems.

``config`` reads the YAML (who, where, which secret), ``delivery`` is the pure part (ids,
signatures, back-off, the retry loop, the parked record), ``worker`` runs one lane per
department, ``retry`` re-drives what was parked on ``webhooks.deadletter``.
"""
