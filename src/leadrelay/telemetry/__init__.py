"""Delivery telemetry: provider status webhooks normalized into delivery events."""
