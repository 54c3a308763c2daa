"""Code every service shares: settings, lifecycle, errors, telemetry, bundle and catalogue loading."""
