"""Alerts of every stream: the model and the store."""
