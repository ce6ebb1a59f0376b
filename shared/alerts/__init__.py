"""Alerts of every stream: the model, the store, the stream alert rules and forwarding to a hub."""
