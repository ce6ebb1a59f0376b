"""Every template parses, gets the parameters its modules declare and, with
``BICEP_TYPES_DIR``, writes only types and properties Azure has, at pinned API versions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.bicep_check import check_file
from tests.support.bicep_parse import syntax_errors
from tests.support.infra import BICEP_FILES, INFRA, MAIN_BICEP, all_resources, bicep, type_index


def test_bicep_files_exist() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    assert "main.bicep" in names
    assert any(n.startswith("app/") for n in names)
    assert (INFRA / "main.parameters.json").is_file()
    assert (INFRA / "abbreviations.json").is_file()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_parses_without_errors(path: Path) -> None:
    assert syntax_errors(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_modules_get_declared_parameters(path: Path) -> None:
    assert [str(f) for f in check_file(path, None)] == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_resources_match_bicep_types(path: Path) -> None:
    index = type_index()
    assert [str(f) for f in check_file(path, index)] == []


def test_api_versions_are_the_pinned_ones() -> None:
    pinned = {
        "microsoft.eventgrid": {"2025-02-15"},
        "microsoft.eventhub": {"2024-01-01"},
        "microsoft.storage": {"2024-01-01"},
        "microsoft.web": {"2024-04-01", "2024-11-01"},
        "microsoft.managedidentity": {"2023-01-31"},
        "microsoft.authorization": {"2022-04-01"},
        "microsoft.operationalinsights": {"2023-09-01"},
        "microsoft.resources": {"2024-03-01"},
    }
    for path, resource in all_resources():
        provider = resource.type_name.split("/")[0].lower()
        if provider == "microsoft.insights":
            insights = {"components": {"2020-02-02"}, "metricalerts": {"2018-03-01"}, "actiongroups": {"2023-01-01"},
                            "scheduledqueryrules": {"2023-12-01"}, "workbooks": {"2023-06-01"}}
            expected = insights.get(resource.type_name.lower().rsplit("/", 1)[-1], {"2021-05-01-preview"})
        else:
            assert provider in pinned, f"{path}: unexpected provider {resource.type_name}"
            expected = pinned[provider]
        assert resource.api_version in expected, f"{path}: {resource.full_type}"


def test_no_registry_modules() -> None:
    for path in BICEP_FILES:
        for module in bicep(path).modules:
            assert not module.path.startswith(("br:", "br/", "ts:", "ts/")), f"{path}: {module.path}"


@pytest.mark.skipif(shutil.which("bicep") is None, reason="bicep CLI not on PATH")
def test_bicep_build() -> None:  # pragma: no cover - needs the CLI
    bicep_cli = shutil.which("bicep")
    assert bicep_cli is not None
    result = subprocess.run(
        [bicep_cli, "build", str(MAIN_BICEP), "--stdout"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
