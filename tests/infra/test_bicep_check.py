"""The checker (bicep_check.py) cannot be fooled: each kind of mistake is reported, against
the real type definitions and against a tiny synthetic one that needs no download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.bicep_check import check_role_ids, check_source
from tests.support.bicep_types import TypeIndex
from tests.support.infra import ALLOWED_ROLES, type_index

SNIPPET_OK = """
resource ns 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: 'evhns-x'
  location: 'westeurope'
  sku: {
    name: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
  resource hub 'eventhubs' = {
    name: 'telemetry'
    properties: {
      partitionCount: 2
    }
  }
}
"""


def test_checker_accepts_a_correct_snippet() -> None:
    assert check_source(SNIPPET_OK, type_index()) == []


@pytest.mark.parametrize(
    ("mistake", "source", "expected"),
    [
        ("misspelled property", SNIPPET_OK.replace("disableLocalAuth", "disableLocalAuht"), "disableLocalAuht"),
        ("wrong case", SNIPPET_OK.replace("disableLocalAuth", "DisableLocalAuth"), "case-sensitive"),
        ("misspelled nested property", SNIPPET_OK.replace("partitionCount", "partitonCount"), "partitonCount"),
        ("wrong API version", SNIPPET_OK.replace("@2024-01-01", "@2024-01-02"), "unknown resource type"),
        (
            "unknown type",
            SNIPPET_OK.replace("Microsoft.EventHub/namespaces@", "Microsoft.EventHub/namespace@"),
            "unknown",
        ),
        ("enum value", SNIPPET_OK.replace("'Standard'", "'Standrd'"), "not an allowed value"),
        ("TLS value", SNIPPET_OK.replace("'1.2'", "'1.3'"), "not an allowed value"),
        ("wrong literal type", SNIPPET_OK.replace("partitionCount: 2", "partitionCount: 'two'"), "expected int"),
        ("read-only property", SNIPPET_OK.replace("disableLocalAuth: true", "serviceBusEndpoint: 'x'"), "read-only"),
        ("syntax error", SNIPPET_OK.replace("sku: {", "sku: {{"), "syntax"),
        (
            "missing required property",
            "resource st 'Microsoft.Storage/storageAccounts@2024-01-01' = {\n"
            "  name: 'st1'\n  location: 'westeurope'\n  sku: {\n    name: 'Standard_LRS'\n  }\n}\n",
            "kind: required property is missing",
        ),
    ],
)
def test_checker_reports_mistakes(mistake: str, source: str, expected: str) -> None:
    findings = check_source(source, type_index())
    assert any(expected in f.message for f in findings), f"{mistake} not reported: {findings}"


def test_checker_follows_discriminated_objects_and_for_bodies() -> None:
    source = """
resource sub 'Microsoft.EventGrid/namespaces/topics/eventSubscriptions@2025-02-15' = [for s in subs: {
  name: s
  properties: {
    deliveryConfiguration: {
      deliveryMode: 'Push'
      push: {
        deliveryWithResourceIdentity: {
          identity: { type: 'SystemAssigned' }
          destination: {
            endpointType: 'EventHub'
            properties: { resourceId: 'x', queueName: 'only-on-storage-queues' }
          }
        }
      }
    }
    filtersConfiguration: {
      filters: [
        { operatorType: 'StringEndsWith', key: 'subject', values: ['/telemetry'], value: true }
      ]
    }
  }
}]
"""
    messages = [f.message for f in check_source(source, type_index())]
    assert any("queueName" in m for m in messages), messages
    assert any("filters[0].value" in m for m in messages), messages


def test_checker_checks_module_parameters(tmp_path: Path) -> None:
    (tmp_path / "child.bicep").write_text("param required string\nparam optional int = 1\n", encoding="utf-8")
    source = "module m 'child.bicep' = {\n  name: 'm'\n  params: {\n    optinal: 2\n  }\n}\n"
    messages = [f.message for f in check_source(source, None, "main.bicep", tmp_path)]
    assert any("'optinal'" in m for m in messages), messages
    assert any("'required'" in m for m in messages), messages


def test_checker_reports_unknown_roles() -> None:
    source = """
resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid('x')
  properties: {
    roleDefinitionId: subscriptionResourceId(
      'Microsoft.Authorization/roleDefinitions', '00000000-1111-2222-3333-444444444444'
    )
    principalId: 'p'
  }
}
"""
    findings = check_role_ids(source, ALLOWED_ROLES)
    assert [f.line for f in findings] == [6]
    assert (
        check_role_ids(
            source.replace("00000000-1111-2222-3333-444444444444", "3913510d-42f4-4e42-8a64-420c390055eb"),
            ALLOWED_ROLES,
        )
        == []
    )


# A tiny types.json in the bicep-types format, so that the checker's own tests
# run even where BICEP_TYPES_DIR is not available.
SYNTHETIC_TYPES: list[dict[str, Any]] = [
    {"$type": "StringType"},  # 0
    {"$type": "BooleanType"},  # 1
    {"$type": "IntegerType"},  # 2
    {"$type": "StringLiteralType", "value": "Basic"},  # 3
    {"$type": "StringLiteralType", "value": "Premium"},  # 4
    {"$type": "UnionType", "elements": [{"$ref": "#/3"}, {"$ref": "#/4"}, {"$ref": "#/0"}]},  # 5 open enum
    {"$type": "StringLiteralType", "value": "Queue"},  # 6
    {"$type": "StringLiteralType", "value": "Hub"},  # 7
    {
        "$type": "ObjectType",
        "name": "QueueTarget",
        "properties": {
            "kind": {"type": {"$ref": "#/6"}, "flags": 1},
            "queueName": {"type": {"$ref": "#/0"}, "flags": 0},
        },
    },  # 8
    {
        "$type": "ObjectType",
        "name": "HubTarget",
        "properties": {
            "kind": {"type": {"$ref": "#/7"}, "flags": 1},
            "hubName": {"type": {"$ref": "#/0"}, "flags": 0},
        },
    },  # 9
    {
        "$type": "DiscriminatedObjectType",
        "name": "Target",
        "discriminator": "kind",
        "baseProperties": {"label": {"type": {"$ref": "#/0"}, "flags": 0}},
        "elements": {"Queue": {"$ref": "#/8"}, "Hub": {"$ref": "#/9"}},
    },  # 10
    {"$type": "ArrayType", "itemType": {"$ref": "#/10"}},  # 11
    {
        "$type": "ObjectType",
        "name": "WidgetProperties",
        "properties": {
            "enabled": {"type": {"$ref": "#/1"}, "flags": 0},
            "tier": {"type": {"$ref": "#/5"}, "flags": 0},
            "count": {"type": {"$ref": "#/2"}, "flags": 0},
            "targets": {"type": {"$ref": "#/11"}, "flags": 0},
            "endpoint": {"type": {"$ref": "#/0"}, "flags": 2},
        },
    },  # 12
    {
        "$type": "ObjectType",
        "name": "Contoso.Widgets/widgets",
        "properties": {
            "name": {"type": {"$ref": "#/0"}, "flags": 9},
            "id": {"type": {"$ref": "#/0"}, "flags": 10},
            "kind": {"type": {"$ref": "#/0"}, "flags": 1},
            "properties": {"type": {"$ref": "#/12"}, "flags": 0},
        },
    },  # 13
    {"$type": "ResourceType", "name": "Contoso.Widgets/widgets@2025-01-01", "body": {"$ref": "#/13"}},  # 14
]

SYNTHETIC_OK = """
resource w 'Contoso.Widgets/widgets@2025-01-01' = [for i in range(0, 2): {
  name: 'w${i}'
  kind: 'round'
  properties: {
    enabled: true
    tier: 'Premium'
    count: 3
    targets: [
      { kind: 'Queue', queueName: 'q', label: 'a' }
      { kind: 'Hub', hubName: 'h' }
    ]
  }
}]
"""


@pytest.fixture
def synthetic_index(tmp_path: Path) -> TypeIndex:
    folder = tmp_path / "contoso.widgets" / "2025-01-01"
    folder.mkdir(parents=True)
    (folder / "types.json").write_text(json.dumps(SYNTHETIC_TYPES), encoding="utf-8")
    return TypeIndex(tmp_path)


def test_checker_accepts_a_correct_synthetic_snippet(synthetic_index: TypeIndex) -> None:
    assert check_source(SYNTHETIC_OK, synthetic_index) == []


@pytest.mark.parametrize(
    ("mistake", "before", "after", "expected"),
    [
        ("misspelled property", "enabled: true", "enabeld: true", "properties.enabeld: unknown property"),
        ("wrong API version", "@2025-01-01", "@2025-02-01", "unknown resource type"),
        ("enum value", "'Premium'", "'Premum'", "not an allowed value"),
        ("literal type", "count: 3", "count: 'three'", "expected int"),
        ("read-only", "count: 3", "endpoint: 'x'", "read-only"),
        ("required", "  kind: 'round'\n", "", "kind: required property is missing"),
        ("discriminated element", "queueName: 'q'", "hubName: 'q'", "targets[0].hubName: unknown property"),
        ("discriminator value", "kind: 'Hub'", "kind: 'Hubs'", "not an allowed value"),
    ],
)
def test_checker_reports_mistakes_offline(
    synthetic_index: TypeIndex, mistake: str, before: str, after: str, expected: str
) -> None:
    assert before in SYNTHETIC_OK
    findings = check_source(SYNTHETIC_OK.replace(before, after, 1), synthetic_index)
    assert any(expected in f.message for f in findings), f"{mistake} not reported: {findings}"
