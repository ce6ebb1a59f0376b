"""Azure resource type definitions (``types.json`` of Azure/bicep-types-az) and a
Bicep value checked against them, for :mod:`tests.support.bicep_check`.

:class:`TypeIndex` finds each ``Type@apiVersion`` among the ``types.json`` files under
a directory; ``_Checker`` walks a type node of one file's definitions alongside a
:class:`~tests.support.bicep_parse.Value` and gives (line, message) for each mismatch.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .bicep_parse import Value, _split_type

__all__ = ["TypeIndex"]

FLAG_REQUIRED = 1
FLAG_READ_ONLY = 2


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

