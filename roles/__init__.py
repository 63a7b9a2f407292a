"""pyinfra roles for llmfleet: thin operations over the pure core in ``llmfleet``."""
