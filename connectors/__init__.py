"""Channel adapters: each maps one reporting channel onto the intake contract.

``AdapterError(field, reason)`` is the shared error of every adapter; ``publish`` holds the
one entry onto ``incidents.reported`` (``IntakePublisher``).
"""

from connectors.errors import AdapterError

__all__ = ["AdapterError"]
