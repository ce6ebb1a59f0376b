"""The README stays short and the documentation's links hold: README.md is a page a
newcomer reads in minutes, its "Read on" lists every page of docs/, each page there
leads back to it, and every relative link in README.md and docs/*.md names a file
that exists and, for a Markdown file, a heading that it has (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
# An inline link or image: [text](target) or [text](target "title"); text may span lines.
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)


def prose(text: str) -> str:
    """The text outside fenced code blocks (each fenced line kept empty, so lines count alike)."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
        else:
            lines.append("" if fenced else line)
    return "\n".join(lines)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: its text without markup, lower-case, punctuation
    other than hyphens removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file's headings, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path.read_text()).split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        slug = anchor(match.group(2))
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def link_targets(markdown: str) -> list[tuple[int, str]]:
    """Each link target of Markdown text outside code, with the line it is on."""
    text = prose(markdown)
    # A code span becomes as many spaces (newlines kept): a bracket in code is no link.
    text = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in LINK.finditer(text)]


def links(path: Path) -> list[tuple[int, str]]:
    return link_targets(path.read_text())


def test_the_readme_starts_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move depth to docs/ (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_a_file_and_a_heading_that_exist(page: Path) -> None:
    wrong = []
    for line, target in links(page):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto: and the like
        path_part, _, fragment = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}:{line}: {target}"
        if not linked.exists():
            wrong.append(f"{where}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            wrong.append(f"{where}: no heading with that anchor in {linked.relative_to(ROOT)}")
    assert wrong == []


def test_the_link_check_finds_links_and_anchors() -> None:
    """The parsing above sees what GitHub sees, so the checks are not vacuous."""
    assert anchor("Access (least privilege)") == "access-least-privilege"
    assert anchor("`azd up`") == "azd-up"
    assert anchor("1. A certificate and its thumbprint") == "1-a-certificate-and-its-thumbprint"
    assert anchor("Python version and the worker") == "python-version-and-the-worker"
    assert {"read-on", "architecture", "two-commands"} <= anchors(README)
    targets = [target for _, target in links(DOCS / "simulator.md")]
    assert "deploy.md#onboarding-a-device" in targets, "a link whose text spans two lines"
    assert "../README.md#two-commands" in targets


def test_the_readme_lists_every_page_and_every_page_leads_back() -> None:
    readme = README.read_text()
    assert "\n## Read on\n" in readme
    read_on = readme.split("\n## Read on\n", 1)[1].split("\n## ", 1)[0]
    listed = {target for _, target in link_targets(read_on)}
    for page in sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("*.http")):
        name = f"docs/{page.name}"
        assert name in listed, f"README's Read on does not list {name}"
    for page in sorted(DOCS.glob("*.md")):
        first, *rest = page.read_text().split("\n", 4)
        assert first.startswith("# "), f"{page.name} starts with its title"
        assert any("](../README.md" in line for line in rest[:3]), f"{page.name} links back to the README at its top"


def test_the_architecture_names_every_function_and_every_module() -> None:
    """README's Architecture names each function by its blueprint, and the table of
    docs/architecture.md each module of shared/ in its package's row."""
    readme = README.read_text().split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]
    for blueprint in sorted((ROOT / "blueprints").glob("*.py")):
        for name in re.findall(r'function_name\("(\w+)"\)', blueprint.read_text()):
            assert f"`{name}`" in readme, f"README, Architecture: {name} ({blueprint.name}) is missing"
    rows = {line.split(" | ", 1)[0].strip("| `"): line
            for line in (DOCS / "architecture.md").read_text().splitlines() if line.startswith("| `shared/")}
    for package in sorted(p for p in (ROOT / "shared").iterdir() if (p / "__init__.py").exists()):
        row = rows.get(f"shared/{package.name}/")
        assert row is not None, f"docs/architecture.md has no row for shared/{package.name}/"
        for module in sorted(package.glob("*.py")):
            if module.name != "__init__.py":
                assert f"`{module.name}`" in row, f"docs/architecture.md: {package.name}/{module.name} is missing"
