"""The Python client of the public gateway API."""
