"""Channel adapters: each maps one reporting channel onto the intake contract."""
