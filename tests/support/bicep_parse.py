"""Bicep source parsed into the declarations the checks read (:mod:`tests.support.bicep_check`).

The templates are parsed with ``tree-sitter-bicep``: resources (nested ones with their
full type), modules, parameters, variables and outputs, each value reduced to a
:class:`Value`; :func:`syntax_errors` reports the parse tree's ``ERROR`` and ``MISSING``
nodes as :class:`Finding` (what every check reports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

__all__ = [
    "BicepFile",
    "Finding",
    "Resource",
    "Value",
    "parse",
    "syntax_errors",
]


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
