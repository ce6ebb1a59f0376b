"""Where the Bicep types are, for the tests that check requests against them."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.bicep_types import TypeIndex


def bicep_types() -> TypeIndex | None:
    folder = os.environ.get("BICEP_TYPES_DIR")
    return TypeIndex(Path(folder)) if folder and Path(folder).is_dir() else None
