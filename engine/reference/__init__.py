"""Reference data under ``rules/reference/``: registries that rules refer to by code."""
