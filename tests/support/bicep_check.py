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
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

__all__ = [
    "BicepFile",
    "Finding",
    "Resource",
    "TypeIndex",
    "Value",
    "check_file",
    "check_role_ids",
    "check_source",
    "guid_literals",
    "parse",
    "syntax_errors",
]

FLAG_REQUIRED = 1
FLAG_READ_ONLY = 2

# Keys of a resource body that belong to Bicep, not to the resource type.
BICEP_RESOURCE_KEYWORDS = frozenset({"parent", "scope", "dependsOn"})
# Keys allowed in the body of an `existing` resource.
EXISTING_KEYS = frozenset({"name", "scope", "parent"})

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Finding:
    """One problem found in a template."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class Value:
    """A Bicep value, reduced to what the checks need.

    ``kind`` is one of ``string``, ``number``, ``bool``, ``null``, ``object``,
    ``array``, ``for`` (an array comprehension; ``items`` holds its body),
    ``ternary`` (``items`` holds both branches) or ``expr`` (anything else).
    ``literal`` is set for strings without interpolation, numbers and booleans.
    """

    kind: str
    line: int
    text: str
    literal: str | int | bool | None = None
    props: list[tuple[str, Value]] = field(default_factory=list)
    items: list[Value] = field(default_factory=list)

    @property
    def is_literal(self) -> bool:
        return self.kind in {"number", "bool", "null"} or (self.kind == "string" and self.literal is not None)

    def get(self, key: str) -> Value | None:
        """The value of property ``key`` of an object literal, if present."""
        for name, value in self.props:
            if name == key:
                return value
        return None


@dataclass
class Resource:
    """A ``resource`` declaration (top-level or nested)."""

    symbol: str
    type_name: str  # full type, e.g. Microsoft.EventHub/namespaces/eventhubs
    api_version: str
    existing: bool
    body: Value | None  # the object literal (inside any if/for)
    line: int
    condition: bool = False
    loop: bool = False

    @property
    def full_type(self) -> str:
        return f"{self.type_name}@{self.api_version}"


@dataclass
class Module:
    symbol: str
    path: str
    body: Value | None
    line: int


@dataclass
class Param:
    name: str
    type_text: str
    default: Value | None
    nullable: bool
    line: int


@dataclass
class BicepFile:
    """The declarations of one Bicep file."""

    name: str
    text: str
    root: Node
    resources: list[Resource]
    modules: list[Module]
    params: dict[str, Param]
    variables: dict[str, Value]
    outputs: dict[str, Value]


# --------------------------------------------------------------------------- parsing


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def _text(node: Node) -> str:
    data = node.text
    return data.decode("utf-8") if data is not None else ""


def _line(node: Node) -> int:
    return node.start_point[0] + 1


_ESCAPE_RE = re.compile(r"\\(u\{[0-9a-fA-F]+\}|.)")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u{"):
        return chr(int(code[2:-1], 16))
    return _ESCAPES.get(code, code)


def _string_literal(node: Node) -> str | None:
    """The value of a string node, or None when it has an interpolation."""
    raw = _text(node)
    if node.type == "multiline_string" or raw.startswith("'''"):
        body = raw[3:-3]
        return body[1:] if body.startswith("\n") else body
    if any(child.type == "interpolation" for child in node.named_children):
        return None
    return _ESCAPE_RE.sub(_unescape, raw[1:-1])


def _key(node: Node) -> str:
    if node.type == "string":
        value = _string_literal(node)
        return value if value is not None else _text(node)
    return _text(node)


def _value(node: Node) -> Value:
    kind = node.type
    line = _line(node)
    text = _text(node)
    if kind in {"string", "multiline_string"}:
        return Value("string", line, text, _string_literal(node))
    if kind == "number":
        try:
            return Value("number", line, text, int(text))
        except ValueError:
            return Value("expr", line, text)
    if kind == "boolean":
        return Value("bool", line, text, text == "true")
    if kind == "null":
        return Value("null", line, text)
    if kind == "object":
        props: list[tuple[str, Value]] = []
        for prop in node.named_children:
            if prop.type != "object_property":
                continue
            named = [c for c in prop.named_children if c.type not in {"decorators", "comment"}]
            if not named or named[0].type == "resource_declaration" or len(named) < 2:
                continue  # nested resources are collected separately
            props.append((_key(named[0]), _value(named[-1])))
        return Value("object", line, text, props=props)
    if kind == "array":
        items = [_value(c) for c in node.named_children if c.type != "comment"]
        return Value("array", line, text, items=items)
    if kind == "for_statement":
        body = node.named_children[-1]
        if body.type == "if_statement":
            body = body.named_children[-1]
        return Value("for", line, text, items=[_value(body)])
    if kind == "ternary_expression":
        branches = node.named_children[1:]
        return Value("ternary", line, text, items=[_value(b) for b in branches])
    if kind == "parenthesized_expression" and node.named_child_count == 1:
        inner = node.named_children[0]
        if inner is not None:
            return _value(inner)
    return Value("expr", line, text)


def _resource_body(node: Node) -> tuple[Value | None, bool, bool]:
    """The object literal of a resource or module value, and whether it is conditional / a loop."""
    condition = loop = False
    current: Node | None = node
    while current is not None:
        if current.type == "object":
            return _value(current), condition, loop
        if current.type == "if_statement":
            condition = True
            current = current.named_children[-1]
        elif current.type == "for_statement":
            loop = True
            current = current.named_children[-1]
        else:
            return None, condition, loop
    return None, condition, loop


def _split_type(type_string: str) -> tuple[str, str]:
    type_name, _, version = type_string.partition("@")
    return type_name, version


def _walk_resources(node: Node, parent: Resource | None, out: list[Resource]) -> None:
    named = node.named_children
    type_node = named[1]
    type_string = _string_literal(type_node) or _text(type_node)
    type_name, version = _split_type(type_string)
    if parent is not None and "/" not in type_name:
        type_name = f"{parent.type_name}/{type_name}"
        version = version or parent.api_version
    existing = any(not c.is_named and c.type == "existing" for c in node.children)
    value_node = named[-1]
    body, condition, loop = _resource_body(value_node)
    resource = Resource(_text(named[0]), type_name, version, existing, body, _line(node), condition, loop)
    out.append(resource)
    # nested resources: object properties holding a resource declaration
    obj: Node | None = value_node
    while obj is not None and obj.type in {"if_statement", "for_statement"}:
        obj = obj.named_children[-1]
    if obj is not None and obj.type == "object":
        for prop in obj.named_children:
            if prop.type == "object_property":
                for child in prop.named_children:
                    if child.type == "resource_declaration":
                        _walk_resources(child, resource, out)


def parse(text: str, name: str = "<string>") -> BicepFile:
    """Parse Bicep source into its declarations."""
    tree = _parser().parse(text.encode("utf-8"))
    root = tree.root_node
    resources: list[Resource] = []
    modules: list[Module] = []
    params: dict[str, Param] = {}
    variables: dict[str, Value] = {}
    outputs: dict[str, Value] = {}
    for node in root.named_children:
        named = node.named_children
        if node.type == "resource_declaration":
            _walk_resources(node, None, resources)
        elif node.type == "module_declaration":
            body, _, _ = _resource_body(named[-1])
            modules.append(Module(_text(named[0]), _string_literal(named[1]) or "", body, _line(node)))
        elif node.type == "parameter_declaration":
            type_node = next((c for c in named[1:] if c.type in {"type", "nullable_type"} or "type" in c.type), None)
            type_text = _text(type_node) if type_node is not None else ""
            default = _value(named[-1]) if len(named) >= 3 else None
            params[_text(named[0])] = Param(_text(named[0]), type_text, default, type_text.endswith("?"), _line(node))
        elif node.type == "variable_declaration":
            variables[_text(named[0])] = _value(named[-1])
        elif node.type == "output_declaration":
            outputs[_text(named[0])] = _value(named[-1])
    return BicepFile(name, text, root, resources, modules, params, variables, outputs)


def syntax_errors(text: str, name: str = "<string>") -> list[Finding]:
    """ERROR and MISSING nodes of the parse tree."""
    tree = _parser().parse(text.encode("utf-8"))
    findings: list[Finding] = []

    def visit(node: Node) -> None:
        if node.is_error or node.type == "ERROR":
            findings.append(Finding(name, _line(node), f"syntax error near {_text(node)[:60]!r}"))
            return
        if node.is_missing:
            findings.append(Finding(name, _line(node), f"missing {node.type!r}"))
            return
        if node.has_error:
            for child in node.children:
                visit(child)

    visit(tree.root_node)
    if tree.root_node.has_error and not findings:
        findings.append(Finding(name, 1, "syntax error"))
    return findings


# --------------------------------------------------------------------------- types


class TypeIndex:
    """The resource types of every ``types.json`` under a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._resources: dict[str, tuple[list[dict[str, Any]], int]] = {}
        for path in sorted(root.rglob("types.json")):
            nodes: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
            for node in nodes:
                if node.get("$type") == "ResourceType":
                    type_name, version = _split_type(node["name"])
                    ref = _ref(node["body"])
                    self._resources[f"{type_name.lower()}@{version}"] = (nodes, ref)
        if not self._resources:
            raise ValueError(f"no types.json with resource types under {root}")

    def lookup(self, type_name: str, api_version: str) -> tuple[list[dict[str, Any]], int] | None:
        return self._resources.get(f"{type_name.lower()}@{api_version}")

    def versions(self, type_name: str) -> list[str]:
        prefix = type_name.lower() + "@"
        return sorted(k.split("@", 1)[1] for k in self._resources if k.startswith(prefix))

    def type_names(self) -> list[str]:
        return sorted({k.split("@", 1)[0] for k in self._resources})


def _ref(ref: Mapping[str, Any]) -> int:
    return int(str(ref["$ref"]).rsplit("/", 1)[1])


def _count(errors: list[tuple[int, str]]) -> int:
    return len(errors)


class _Checker:
    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = nodes

    def node(self, ref: Mapping[str, Any] | int) -> dict[str, Any]:
        return self.nodes[ref if isinstance(ref, int) else _ref(ref)]

    def describe(self, t: Mapping[str, Any]) -> str:
        kind = str(t["$type"])
        if kind == "StringLiteralType":
            return repr(str(t["value"]))
        if kind == "UnionType":
            return " | ".join(self.describe(self.node(e)) for e in t["elements"])
        return {
            "StringType": "string",
            "IntegerType": "int",
            "BooleanType": "bool",
            "ObjectType": "object",
            "ArrayType": "array",
            "DiscriminatedObjectType": "object",
            "AnyType": "any",
        }.get(kind, kind)

    def check(self, t: Mapping[str, Any], value: Value, path: str) -> list[tuple[int, str]]:
        """Errors (line, message) of ``value`` against type node ``t``."""
        kind = t["$type"]
        if value.kind == "ternary":
            return [err for branch in value.items for err in self.check(t, branch, path)]
        if value.kind in {"expr", "null"} or kind in {"AnyType", "ResourceFunctionType"}:
            return []
        if kind == "UnionType":
            members = [self.node(e) for e in t["elements"]]
            known = [m["value"] for m in members if m["$type"] == "StringLiteralType"]
            if known and value.kind == "string" and value.literal is not None:
                # An enumeration, open (`'a' | 'b' | string`) or closed: a literal must be a known value.
                if value.literal in known:
                    return []
                return [(value.line, f"{path}: {value.text} is not an allowed value ({self.describe(t)})")]
            results = [self.check(m, value, path) for m in members]
            if any(not r for r in results):
                return []
            if value.is_literal:
                return [(value.line, f"{path}: {value.text} is not an allowed value ({self.describe(t)})")]
            return min(results, key=_count)
        if kind == "StringLiteralType":
            if value.kind == "string" and value.literal is not None and value.literal != t["value"]:
                return [(value.line, f"{path}: {value.text} is not an allowed value ({t['value']!r})")]
            return self._expect(value, {"string"}, path, "string")
        if kind == "StringType":
            return self._expect(value, {"string"}, path, "string")
        if kind == "IntegerType":
            return self._expect(value, {"number"}, path, "int")
        if kind == "BooleanType":
            return self._expect(value, {"bool"}, path, "bool")
        if kind == "ArrayType":
            if value.kind == "array":
                item_type = self.node(t["itemType"])
                return [e for i, item in enumerate(value.items) for e in self.check(item_type, item, f"{path}[{i}]")]
            if value.kind == "for":
                return self.check(self.node(t["itemType"]), value.items[0], f"{path}[*]")
            return self._expect(value, set(), path, "array")
        if kind == "ObjectType":
            if value.kind != "object":
                return self._expect(value, set(), path, "object")
            return self.check_object(t.get("properties", {}), t.get("additionalProperties"), value, path)
        if kind == "DiscriminatedObjectType":
            if value.kind != "object":
                return self._expect(value, set(), path, "object")
            return self.check_discriminated(t, value, path)
        return []

    @staticmethod
    def _expect(value: Value, kinds: set[str], path: str, expected: str) -> list[tuple[int, str]]:
        if value.kind in kinds or value.kind in {"expr", "null", "ternary"}:
            return []
        if value.kind == "string" and value.literal is None and "string" in kinds:
            return []
        return [(value.line, f"{path}: expected {expected}, got {value.kind} {value.text[:40]!r}")]

    def check_object(
        self,
        properties: Mapping[str, Any],
        additional: Mapping[str, Any] | None,
        value: Value,
        path: str,
        skip: Iterable[str] = (),
    ) -> list[tuple[int, str]]:
        errors: list[tuple[int, str]] = []
        skipped = set(skip)
        for key, prop_value in value.props:
            where = f"{path}.{key}" if path else key
            if key in skipped:
                continue
            prop = properties.get(key)
            if prop is None:
                if additional is not None:
                    errors += self.check(self.node(additional), prop_value, where)
                    continue
                errors.append((prop_value.line, self._unknown(key, where, properties)))
                continue
            if int(prop.get("flags", 0)) & FLAG_READ_ONLY:
                errors.append((prop_value.line, f"{where}: property is read-only"))
                continue
            errors += self.check(self.node(prop["type"]), prop_value, where)
        given = {key for key, _ in value.props}
        for key, prop in properties.items():
            flags = int(prop.get("flags", 0))
            if flags & FLAG_REQUIRED and not flags & FLAG_READ_ONLY and key not in given:
                where = f"{path}.{key}" if path else key
                errors.append((value.line, f"{where}: required property is missing"))
        return errors

    @staticmethod
    def _unknown(key: str, where: str, properties: Mapping[str, Any]) -> str:
        names = list(properties)
        same_case = [n for n in names if n.lower() == key.lower()]
        if same_case:
            return f"{where}: unknown property (did you mean {same_case[0]!r}? property names are case-sensitive)"
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}: unknown property{hint}"

    def check_discriminated(self, t: Mapping[str, Any], value: Value, path: str) -> list[tuple[int, str]]:
        disc = str(t["discriminator"])
        base: dict[str, Any] = dict(t.get("baseProperties", {}))
        elements: dict[str, Any] = dict(t.get("elements", {}))
        disc_value = value.get(disc)
        if disc_value is not None and disc_value.kind == "string" and disc_value.literal is not None:
            chosen = elements.get(str(disc_value.literal))
            if chosen is None:
                allowed = ", ".join(sorted(elements))
                return [(disc_value.line, f"{path}.{disc}: {disc_value.text} is not an allowed value ({allowed})")]
            element = self.node(chosen)
            props = {**base, **element.get("properties", {})}
            return self.check_object(props, element.get("additionalProperties"), value, path, skip=[disc])
        # discriminator not a literal: accept a property found in any element
        errors: list[tuple[int, str]] = []
        element_nodes = [self.node(e) for e in elements.values()]
        for key, prop_value in value.props:
            where = f"{path}.{key}" if path else key
            if key == disc:
                continue
            candidates = [base[key]] if key in base else []
            candidates += [e["properties"][key] for e in element_nodes if key in e.get("properties", {})]
            if not candidates:
                merged: dict[str, Any] = dict(base)
                for e in element_nodes:
                    merged.update(e.get("properties", {}))
                errors.append((prop_value.line, self._unknown(key, where, merged)))
                continue
            results: list[list[tuple[int, str]]] = []
            for prop in candidates:
                if int(prop.get("flags", 0)) & FLAG_READ_ONLY:
                    results.append([(prop_value.line, f"{where}: property is read-only")])
                else:
                    results.append(self.check(self.node(prop["type"]), prop_value, where))
            if all(results):
                errors.extend(sorted(results, key=_count)[0])
        return errors


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
