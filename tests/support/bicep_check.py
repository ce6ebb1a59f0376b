"""Offline checks of Bicep templates against Azure resource type definitions.

No Bicep CLI is needed: the templates are parsed with ``tree-sitter-bicep`` and
every resource declaration is compared with the ``types.json`` files of
Azure/bicep-types-az (folder ``generated/``), found under a directory given by
the caller (the tests use the ``BICEP_TYPES_DIR`` environment variable).

What is checked:

* syntax: the parse tree has no ``ERROR`` or ``MISSING`` node;
* every resource's ``Type@apiVersion`` exists in the definitions (top-level
  resources with their full type, nested resources with a short type relative
  to their parent, ``parent:`` resources with their full type);
* every property written in an object literal exists at its path in that type,
  through nested objects, arrays (literal items and ``for`` bodies), unions,
  discriminated objects and maps (``additionalProperties``); both branches of
  a ternary are checked;
* literal values of enumerated properties are allowed values, and literal
  scalars have the declared primitive type;
* read-only properties are not written, required ones are not left out;
* a module's ``params`` name parameters that its file declares, and every
  required parameter of the module is given.

Values that are expressions (parameters, function calls, references) are not
checked against the type: only literals are.

The source is parsed by :mod:`tests.support.bicep_parse` and the type definitions are
read by :mod:`tests.support.bicep_types`; this module checks resources, modules and
role ids with them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from tree_sitter import Node

from .bicep_parse import (
    BicepFile,
    Finding,
    Resource,
    Value,
    _line,
    _parser,
    _string_literal,
    parse,
    syntax_errors,
)
from .bicep_types import TypeIndex, _Checker

__all__ = [
    "check_file",
    "check_role_ids",
    "check_source",
    "guid_literals",
]

# Keys of a resource body that belong to Bicep, not to the resource type.
BICEP_RESOURCE_KEYWORDS = frozenset({"parent", "scope", "dependsOn"})
# Keys allowed in the body of an `existing` resource.
EXISTING_KEYS = frozenset({"name", "scope", "parent"})

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def check_resource(resource: Resource, index: TypeIndex, file: str) -> list[Finding]:
    """Check one resource declaration against its type definition."""
    found = index.lookup(resource.type_name, resource.api_version)
    if found is None:
        versions = index.versions(resource.type_name)
        if versions:
            hint = f"; API versions available: {', '.join(versions)}"
        else:
            close = difflib.get_close_matches(resource.type_name.lower(), index.type_names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        return [Finding(file, resource.line, f"{resource.symbol}: unknown resource type {resource.full_type}{hint}")]
    if resource.body is None:
        return []
    nodes, ref = found
    checker = _Checker(nodes)
    if resource.existing:
        return [
            Finding(file, v.line, f"{resource.symbol}: {k!r} is not allowed in an existing resource")
            for k, v in resource.body.props
            if k not in EXISTING_KEYS
        ]
    body = checker.node(ref)
    prefix = f"{resource.symbol} ({resource.full_type})"
    if body["$type"] == "ObjectType":
        errors = checker.check_object(
            body.get("properties", {}),
            body.get("additionalProperties"),
            resource.body,
            "",
            skip=BICEP_RESOURCE_KEYWORDS,
        )
    else:
        stripped = Value(
            "object",
            resource.body.line,
            resource.body.text,
            props=[(k, v) for k, v in resource.body.props if k not in BICEP_RESOURCE_KEYWORDS],
        )
        errors = checker.check(body, stripped, "")
    return [Finding(file, line, f"{prefix}: {msg}") for line, msg in errors]


def _module_findings(bicep: BicepFile, base_dir: Path | None) -> list[Finding]:
    findings: list[Finding] = []
    if base_dir is None:
        return findings
    for module in bicep.modules:
        target = base_dir / module.path
        if not target.is_file():
            findings.append(Finding(bicep.name, module.line, f"module {module.symbol}: file {module.path} not found"))
            continue
        declared = parse(target.read_text(encoding="utf-8"), str(target)).params
        params = module.body.get("params") if module.body is not None else None
        given = {k for k, _ in params.props} if params is not None and params.kind == "object" else set()
        for key in sorted(given - set(declared)):
            findings.append(
                Finding(bicep.name, module.line, f"module {module.symbol}: {module.path} has no parameter {key!r}")
            )
        if params is None or params.kind == "object":
            for name, param in declared.items():
                if param.default is None and not param.nullable and name not in given:
                    findings.append(
                        Finding(
                            bicep.name, module.line, f"module {module.symbol}: required parameter {name!r} not given"
                        )
                    )
    return findings


def check_source(
    text: str, index: TypeIndex | None, name: str = "<string>", base_dir: Path | None = None
) -> list[Finding]:
    """All findings for one Bicep source: syntax, types (when ``index``), module parameters."""
    findings = syntax_errors(text, name)
    bicep = parse(text, name)
    if index is not None:
        for resource in bicep.resources:
            findings += check_resource(resource, index, name)
    findings += _module_findings(bicep, base_dir)
    return findings


def check_file(path: Path, index: TypeIndex | None) -> list[Finding]:
    return check_source(path.read_text(encoding="utf-8"), index, str(path), path.parent)


# --------------------------------------------------------------------------- roles


def _string_nodes(node: Node) -> Iterator[Node]:
    if node.type == "string":
        yield node
    for child in node.named_children:
        yield from _string_nodes(child)


def guid_literals(text: str) -> list[tuple[str, int]]:
    """Every string literal of the source that is a GUID (role definition ids), with its line."""
    root = _parser().parse(text.encode("utf-8")).root_node
    out: list[tuple[str, int]] = []
    for node in _string_nodes(root):
        literal = _string_literal(node)
        if literal is not None and GUID_RE.match(literal):
            out.append((literal.lower(), _line(node)))
    return out


def check_role_ids(text: str, allowed: Mapping[str, object], name: str = "<string>") -> list[Finding]:
    """GUID literals that are not keys of ``allowed`` (role definition id -> role name or description)."""
    known = {k.lower() for k in allowed}
    return [
        Finding(name, line, f"role definition id {guid} is not an allowed built-in role")
        for guid, line in guid_literals(text)
        if guid not in known
    ]
