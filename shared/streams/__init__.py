"""Telemetry and inference streams from Event Hubs: envelopes, message models, decoding, settings."""
