"""The public gateway: orchestrates the stages, degrades gracefully, records feedback."""
