"""The one error every channel adapter raises for a payload it cannot map.

Adapters are pure functions (payload dict → ``IntakeReport``); when a payload is malformed
they name the offending field in the channel's own vocabulary (``工单编号``, ``photos[2]``),
because that is what the channel's operators can look up and fix. The HTTP layer turns it
into a 400 with ``field`` and ``reason``; the MQTT and file bridges dead-letter it.
"""

from __future__ import annotations


class AdapterError(ValueError):
    """A channel payload that cannot become an intake report; ``field`` names where."""

    def __init__(self, field: str, reason: str) -> None:
        field = field or '""'  # a key that is the empty string, named so it can be seen
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
