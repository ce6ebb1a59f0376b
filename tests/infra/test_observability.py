"""What an operator sees in Azure (docs/operations.md): the workbook and the alert
rules read only the metrics and dimensions the app emits (shared/platform/metrics.py),
every metric is charted, and each needs-a-person case has its rule."""

from __future__ import annotations

import json
import re

import pytest

from shared.platform.metrics import CATALOGUE
from tests.support.infra import INFRA, MAIN_BICEP
from tests.support.infra import bicep as template

WORKBOOK = INFRA / "app" / "workbook.json"
ALERTS = INFRA / "app" / "alerts.bicep"
METRICS = {m.name: m for m in CATALOGUE}


def workbook_queries() -> dict[str, str]:
    items = json.loads(WORKBOOK.read_text(encoding="utf-8"))["items"]
    return {item["name"]: item["content"]["query"] for item in items if item["type"] == 3}


def alert_queries() -> dict[str, str]:
    text = ALERTS.read_text(encoding="utf-8")
    rules = re.findall(r"name: '([\w-]+)'\n(?:(?!name: ).)*?query: '''\n(.*?)'''", text, flags=re.DOTALL)
    return dict(rules)


def named_metrics(query: str) -> set[str]:
    return set(re.findall(r"[\"'](edge\.[\w.]+)[\"']", query))


def named_dimensions(query: str) -> set[str]:
    return {a or b for a, b in re.findall(r"customDimensions(?:\.(\w+)|\[[\"'](\w+)[\"']\])", query)}


QUERIES = {f"workbook:{k}": v for k, v in workbook_queries().items()} | \
    {f"alert:{k}": v for k, v in alert_queries().items()}


@pytest.mark.parametrize("where", sorted(QUERIES))
def test_a_query_names_only_metrics_and_dimensions_the_app_emits(where: str) -> None:
    query = QUERIES[where]
    names = named_metrics(query)
    assert names <= set(METRICS), f"{where} reads metrics the app never emits: {names - set(METRICS)}"
    for dimension in named_dimensions(query):
        lacking = sorted(n for n in names if dimension not in METRICS[n].dimensions)
        assert not lacking, f"{where}: {lacking} have no dimension {dimension!r}"
    if "customMetrics" in query:
        assert names, f"{where} reads customMetrics without naming a metric"


def test_the_checks_above_would_see_a_wrong_name_or_dimension() -> None:
    assert named_metrics("customMetrics | where name in ('edge.stream.archived', \"edge.nope\")") == {
        "edge.stream.archived", "edge.nope"}
    assert named_dimensions("extend a = customDimensions.stream, b = customDimensions['reason']") == {
        "stream", "reason"}


def test_the_workbook_charts_every_metric_the_app_emits_and_the_broker_s_connections() -> None:
    charted = set().union(*(named_metrics(q) for q in workbook_queries().values()))
    assert charted == set(METRICS)
    items = json.loads(WORKBOOK.read_text(encoding="utf-8"))["items"]
    (connections,) = [i for i in items if i["type"] == 10]
    assert connections["content"]["resourceIds"] == ["__EVENT_GRID_NAMESPACE_ID__"]
    assert connections["content"]["metrics"][0]["metric"] == "microsoft.eventgrid/namespaces--Mqtt.Connections"
    assert any("requests" in q and "success == false" in q for q in workbook_queries().values()), \
        "the functions' failures"


def test_the_workbook_is_deployed_with_the_namespace_filled_in() -> None:
    workbook = template(INFRA / "app" / "workbook.bicep")
    (resource,) = [r for r in workbook.resources if r.type_name == "Microsoft.Insights/workbooks"]
    data = resource.body.get("properties").get("serializedData").text  # type: ignore[union-attr]
    assert "loadTextContent('workbook.json')" in data and "'__EVENT_GRID_NAMESPACE_ID__', namespace.id" in data
    modules = {m.path for m in template(MAIN_BICEP).modules}
    assert {"app/workbook.bicep", "app/alerts.bicep"} <= modules


def test_each_case_that_needs_a_person_has_a_rule_that_mails_only_when_asked() -> None:
    queries = alert_queries()
    assert set(queries) == {"app-dead-letters-above-rate", "app-lag-above-bound", "app-last-retry-taken",
                            "app-lifecycle-deliveries-failing"}
    assert named_metrics(queries["app-dead-letters-above-rate"]) == {"edge.stream.dead_lettered"}
    assert named_metrics(queries["app-lag-above-bound"]) == {"edge.stream.lag"}
    assert named_metrics(queries["app-last-retry-taken"]) == {"edge.batch.last_retry"}
    assert 'operation_Name == "client_lifecycle"' in queries["app-lifecycle-deliveries-failing"]
    alerts = template(ALERTS)
    (rules,) = [r for r in alerts.resources if r.type_name == "Microsoft.Insights/scheduledQueryRules"]
    groups = rules.body.get("properties").get("actions").get("actionGroups").text  # type: ignore[union-attr]
    assert groups.startswith("notify ?"), "an action group only with ALERT_EMAIL"


def test_every_function_named_by_a_query_exists() -> None:
    from standins.invoke import FUNCTIONS

    for where, query in QUERIES.items():
        for function in re.findall(r'operation_Name == "(\w+)"', query):
            assert function in FUNCTIONS, f"{where}: no function {function}"
