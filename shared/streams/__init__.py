"""Telemetry and inference streams from Event Hubs."""
