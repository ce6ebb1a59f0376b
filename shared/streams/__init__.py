"""Telemetry and inference streams: envelopes, message models, decoding."""
