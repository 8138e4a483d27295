"""What leaves the engine for other systems: webhooks to the departments."""
