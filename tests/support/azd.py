"""An azd environment's values, as the simulator reads them."""

from __future__ import annotations

from pathlib import Path

import orjson


def azd_env(project: Path, values: dict[str, str], *, name: str = "dev", default: bool = True) -> Path:
    """A temporary azd project: ``.azure/{name}/.env`` (quoted as azd writes) and config.json."""
    (project / ".azure" / name).mkdir(parents=True, exist_ok=True)
    (project / ".azure" / name / ".env").write_text(
        "".join(f'{k}="{v}"\n' for k, v in values.items()))
    if default:
        (project / ".azure" / "config.json").write_text(orjson.dumps({"version": 1, "defaultEnvironment": name})
                                                        .decode())
    return project
