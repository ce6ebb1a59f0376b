"""Domain package of the function app: models, validation, storage and transports.

Nothing here is imported when ``function_app`` is indexed; blueprints import what
they need on first invocation so that cold start stays light.
"""

__version__ = "0.1.0"
