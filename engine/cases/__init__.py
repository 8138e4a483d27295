"""Cases: records after routing, the lifecycle state machine, duplicate merging."""
