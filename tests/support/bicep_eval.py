"""A small evaluator of Bicep expressions, for the few values of ``infra/`` whose
behaviour the offline checks must see: what a parameter turns into (a base64 value
decoded, a list of device clients) and where ``fail()`` stops a deployment.

It knows the parts of the language those values use: literals, strings with
interpolations, arrays, objects, parameters (given, else their default), variables,
``!``, ``&&``, ``||``, ``==``, ``!=``, ``??``, the ternary operator (only the branch
taken is evaluated, as ARM's ``if()`` does, which is what lets ``fail()`` guard a
value), member access, and the functions listed in ``FUNCTIONS`` plus ``fail``.
Anything else raises :class:`Unsupported` instead of guessing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from tree_sitter import Node

from .bicep_parse import _ESCAPE_RE, BicepFile, _text, _unescape

__all__ = ["FUNCTIONS", "DeploymentFailed", "Unsupported", "evaluate"]


class DeploymentFailed(Exception):
    """``fail(message)`` was evaluated: ARM stops the deployment with ``message``."""


class Unsupported(Exception):
    """An expression this evaluator does not model."""


def _empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


def _concat(*parts: Any) -> Any:
    if all(isinstance(p, list) for p in parts):
        return [item for part in parts for item in part]
    return "".join(str(p) for p in parts)


def _skip(value: Any, count: int) -> Any:
    return value[count:]


def _contains(container: Any, item: Any) -> bool:
    return item in container


def _union(*objects: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for obj in objects:
        merged.update(obj)
    return merged


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "empty": _empty,
    "concat": _concat,
    "skip": _skip,
    "contains": _contains,
    "union": _union,
    "length": len,
    "string": lambda v: v if isinstance(v, str) else json.dumps(v),
    "toLower": str.lower,
    "split": lambda value, separator: value.split(separator),
    # ARM decodes with .NET's Convert.FromBase64String, which rejects what is not base64.
    "base64ToString": lambda v: base64.b64decode(v, validate=True).decode("utf-8"),
    "base64": lambda v: base64.b64encode(v.encode("utf-8")).decode("ascii"),
}

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _string(node: Node, scope: _Scope) -> str:
    """A string node: its text between the quotes, escapes undone, interpolations evaluated."""
    raw = node.text or b""
    start = node.start_byte
    out: list[str] = []
    position = start + 1
    for child in node.named_children:
        if child.type == "interpolation":
            out.append(_ESCAPE_RE.sub(_unescape, raw[position - start:child.start_byte - start].decode("utf-8")))
            value = scope.eval(child.named_children[0])
            out.append(value if isinstance(value, str) else json.dumps(value))
            position = child.end_byte
    out.append(_ESCAPE_RE.sub(_unescape, raw[position - start:-1].decode("utf-8")))
    return "".join(out)


class _Scope:
    def __init__(self, template: BicepFile, params: Mapping[str, Any], symbols: Mapping[str, Any]) -> None:
        self.template = template
        self.params = params
        self.symbols = symbols
        self.declarations: dict[str, Node] = {}
        for node in template.root.named_children:
            if node.type in {"parameter_declaration", "variable_declaration"}:
                self.declarations[_text(node.named_children[0])] = node

    def identifier(self, name: str) -> Any:
        if name in self.symbols:
            return self.symbols[name]
        declaration = self.declarations.get(name)
        if declaration is None:
            raise Unsupported(f"{name!r} is neither a parameter, a variable nor a given symbol")
        if declaration.type == "parameter_declaration":
            if name in self.params:
                return self.params[name]
            named = declaration.named_children
            if len(named) < 3:
                raise Unsupported(f"parameter {name!r} has no default and was not given")
            return self.eval(named[-1])
        return self.eval(declaration.named_children[-1])

    def eval(self, node: Node) -> Any:
        kind = node.type
        named = [c for c in node.named_children if c.type != "comment"]
        if kind == "string":
            return _string(node, self)
        if kind == "number":
            return int(_text(node))
        if kind == "boolean":
            return _text(node) == "true"
        if kind == "null":
            return None
        if kind == "identifier":
            return self.identifier(_text(node))
        if kind == "parenthesized_expression":
            return self.eval(named[0])
        if kind == "array":
            return [self.eval(item) for item in named]
        if kind == "object":
            obj: dict[str, Any] = {}
            for prop in named:
                key_node, value_node = prop.named_children[0], prop.named_children[-1]
                key = _string(key_node, self) if key_node.type == "string" else _text(key_node)
                obj[key] = self.eval(value_node)
            return obj
        if kind == "ternary_expression":
            condition, when_true, when_false = named
            return self.eval(when_true) if self.eval(condition) else self.eval(when_false)
        if kind == "unary_expression" and _text(node.children[0]) == "!":
            return not self.eval(named[0])
        if kind == "binary_expression":
            return self._binary(node, named)
        if kind == "member_expression":
            return self._member(node, named)
        if kind == "call_expression":
            return self._call(named)
        if kind == "subscript_expression":  # a[i]: an array's item or an object's property
            container, index = self.eval(named[0]), self.eval(named[-1])
            if isinstance(container, list) and not (isinstance(index, int) and 0 <= index < len(container)):
                raise DeploymentFailed(f"index {index!r} is out of range in {_text(node)[:60]!r}")
            return container[index]
        raise Unsupported(f"{kind}: {_text(node)[:60]!r}")

    def _binary(self, node: Node, named: list[Node]) -> Any:
        operator = _text(node.children[1])
        left = self.eval(named[0])
        if operator == "&&":
            return left and self.eval(named[1])
        if operator == "||":
            return left or self.eval(named[1])
        if operator == "??":
            return left if left is not None else self.eval(named[1])
        if operator in _BINARY:
            return _BINARY[operator](left, self.eval(named[1]))
        raise Unsupported(f"operator {operator}")

    def _member(self, node: Node, named: list[Node]) -> Any:
        # tree-sitter-bicep binds `.` looser than binary and ternary operators
        # (`a || b.c` parses as `(a || b).c`): such a tree is refused, not misread.
        if named[0].type in {"binary_expression", "ternary_expression", "unary_expression"}:
            raise Unsupported(f"ambiguous member access in {_text(node)[:60]!r}: add parentheses")
        target = self.eval(named[0])
        key = _text(named[-1])
        safe = _text(node.children[1]) == ".?"
        if not isinstance(target, Mapping):
            raise Unsupported(f"member {key!r} of a {type(target).__name__}")
        if key not in target and not safe:
            raise Unsupported(f"no member {key!r}")
        return target.get(key)

    def _call(self, named: list[Node]) -> Any:
        name = _text(named[0])
        args = [self.eval(a) for a in named[1].named_children if a.type != "comment"]
        if name == "fail":
            raise DeploymentFailed(args[0])
        if name in self.symbols and callable(self.symbols[name]):
            return self.symbols[name](*args)
        if name not in FUNCTIONS:
            raise Unsupported(f"function {name}()")
        return FUNCTIONS[name](*args)


def evaluate(
    template: BicepFile, name: str, params: Mapping[str, Any] | None = None, symbols: Mapping[str, Any] | None = None
) -> Any:
    """The value of variable or output ``name`` of ``template``.

    ``params`` are the parameter values of the deployment (the others take their
    defaults); ``symbols`` gives what the template reads from elsewhere: module
    outputs (``{"functionApp": {"outputs": {...}}}``) and functions such as
    ``environment``."""
    scope = _Scope(template, params or {}, symbols or {})
    if name in scope.declarations:
        return scope.identifier(name)
    for node in template.root.named_children:
        if node.type == "output_declaration" and _text(node.named_children[0]) == name:
            return scope.eval(node.named_children[-1])
    raise KeyError(name)
