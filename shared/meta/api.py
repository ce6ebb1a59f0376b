"""The API's own operations: health and this document (both anonymous)."""

from __future__ import annotations

from shared.meta.models import Health
from shared.platform.operations import Operation

OPERATIONS = (
    # health reads storage but reports its failures in its own body, never as a problem
    Operation("get", "/health", "health", "Settings and storage reachability (storage probed every few seconds)",
              {200: ("Every check is ok", Health), 503: ("A check failed; `checks` says which and why", Health)},
              secured=False, storage=False),
    Operation("get", "/openapi.json", "openapi", "This document",
              {200: ("The OpenAPI 3.1 document", {"type": "object", "required": ["openapi", "info", "paths"]})},
              secured=False, storage=False),
)
