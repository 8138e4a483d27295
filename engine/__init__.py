"""griddispatch core: contracts, decision logic and the runtime that moves records."""

__version__ = "0.1.0"
