"""The matter model: learned from ``rules/examples``, it reads reports the way residents write.

``features`` turns text into character n-grams, ``train`` fits and calibrates the model
(cached by the hash of its inputs), ``model`` scores reports, ``decide`` turns scores into a
dispatch or a triage with suggestions, ``evaluate`` measures it on held-out reports.
"""
