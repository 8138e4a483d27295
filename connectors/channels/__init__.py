"""Channel adapters: each maps one reporting channel's record onto the intake contract."""
