"""`azd up` works the first time and every time after: what azd's parameter substitution
(:mod:`tests.support.azd_model`, from azd's source) makes of hostile values, and what
``main.bicep`` makes of them (:mod:`tests.support.bicep_eval`): alert rules, a first
device, sessions, a later provision that keeps routing, bounds and sovereign clouds,
``azure.yaml``; checked offline. The hooks are in test_azd_up_hooks.py, roles, logs and
alerts in test_azd_up_access_and_logs.py; what only Azure can tell is written in
``docs/deploy.md``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.azd import DEPLOY_MD, HOSTILE, azd_values, b64, decorators, parameter_types, parameters_file
from tests.support.azd_model import AZD_VARIABLES, ParametersError, load_parameters, variables
from tests.support.bicep_eval import DeploymentFailed, Unsupported, evaluate
from tests.support.bicep_parse import parse
from tests.support.infra import INFRA, MAIN_BICEP, ROOT
from tests.support.infra import bicep as template

# --------------------------------------------------------------------------- values azd substitutes


def test_azd_breaks_on_json_in_a_string_parameter_as_its_source_says() -> None:
    """The model of azd reproduces the failure: "error unmarshalling Bicep template parameters"."""
    with pytest.raises(ParametersError, match="unmarshalling"):
        load_parameters({"alertRules": {"value": "${ALERT_RULES=}"}}, {"ALERT_RULES": HOSTILE},
                        {"alertRules": "string"})
    assert load_parameters({"count": {"value": "${COUNT=2}"}}, {}, {"count": "int"}) == {"count": 2}
    assert load_parameters({"text": {"value": "${TEXT=}"}}, {}, {"text": "string"}) == {}  # default applies


@given(st.text(max_size=300))
@settings(max_examples=60, deadline=None)
def test_alert_rules_reach_the_function_app_exactly_whatever_they_hold(rules: str) -> None:
    values = azd_values({"ALERT_RULES_BASE64": b64(rules)})
    assert evaluate(template(MAIN_BICEP), "alertRules", values) == rules


def test_alert_rules_left_unset_mean_the_apps_defaults() -> None:
    values = azd_values({})
    assert "alertRulesBase64" not in values
    assert evaluate(template(MAIN_BICEP), "alertRules", values) == ""
    function_module = next(m for m in template(MAIN_BICEP).modules if m.path == "app/function.bicep")
    passed = function_module.body.get("params").get("alertRules")  # type: ignore[union-attr]
    assert passed is not None
    assert passed.text == "alertRules"


# Mapped parameters whose every valid value is a short name from a closed alphabet without
# quotes, backslashes or control characters (docs/deploy.md, Onboarding a device).
NAME_PARAMETERS = {
    "firstDeviceName": "Event Grid client names: letters, digits, - : . _",
    "firstDeviceThumbprint": "a SHA-256 thumbprint: hexadecimal digits",
    "alertEmail": "an email address: letters, digits, . _ % + - and one @ (no quoted local part)",
    "authClientId": "an Entra ID client id: a GUID",
}


@pytest.mark.parametrize("name", sorted(parameters_file()))
def test_every_mapped_parameter_survives_quotes_backslashes_and_newlines(name: str) -> None:
    """Free text travels base64-encoded and arrives exactly; every other mapped variable
    takes only values from a closed alphabet (numbers, booleans, @allowed words, names)."""
    (variable,) = variables(parameters_file())[name]
    kind = parameter_types()[name]
    if variable in AZD_VARIABLES:
        return  # set by azd itself, never by hand
    if variable.endswith("_BASE64"):
        values = azd_values({variable: b64(HOSTILE)})
        assert base64.b64decode(values[name]).decode("utf-8") == HOSTILE
        assert f"base64ToString({name})" in MAIN_BICEP.read_text(encoding="utf-8")
        return
    closed = kind in {"int", "bool"} or "@allowed" in decorators(name) or name in NAME_PARAMETERS
    assert closed, f"{variable} carries free text into {name}: carry it base64-encoded (*_BASE64)"
    with pytest.raises(ParametersError):
        azd_values({variable: HOSTILE})  # what azd does with it: the reason for this rule


def test_the_parameters_file_only_uses_references_the_model_knows() -> None:
    """azd substitutes inside each parameter; the model knows ${VAR} and ${VAR=default}."""
    text = json.dumps(parameters_file())
    assert text.count("$") == len(re.findall(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", text))


# --------------------------------------------------------------------------- first device, sessions, Event Hubs, azd


def device_clients(env: dict[str, str]) -> Any:
    return evaluate(template(MAIN_BICEP), "allDeviceClients", azd_values(env))


def test_a_first_device_gets_its_thumbprint() -> None:
    assert device_clients({}) == []
    assert device_clients({"FIRST_DEVICE_NAME": "cam-1", "FIRST_DEVICE_THUMBPRINT": "AB12"}) == [
        {"name": "cam-1", "thumbprints": ["AB12"]}
    ]


@pytest.mark.parametrize(("given", "missing"), [
    ({"FIRST_DEVICE_NAME": "cam-1"}, "FIRST_DEVICE_THUMBPRINT"),
    ({"FIRST_DEVICE_NAME": "cam-1", "FIRST_DEVICE_THUMBPRINT": ""}, "FIRST_DEVICE_THUMBPRINT"),
    ({"FIRST_DEVICE_THUMBPRINT": "AB12"}, "FIRST_DEVICE_NAME"),
])
def test_a_half_set_first_device_stops_the_deployment_with_a_clear_message(
    given: dict[str, str], missing: str
) -> None:
    with pytest.raises(DeploymentFailed) as failure:
        device_clients(given)
    message = str(failure.value)
    assert f"{missing} is empty" in message
    assert "docs/deploy.md" in message
    assert "cam-1" not in message
    assert "AB12" not in message


def test_the_evaluator_takes_only_the_branch_chosen_and_refuses_what_it_cannot_read() -> None:
    source = parse("param a string = ''\nvar ok = empty(a) ? 'none' : fail('boom')\n"
                   "var bad = !empty(a) ? 'x' : fail('boom')\nvar odd = a || b.c\nvar call = guid(a)\n")
    assert evaluate(source, "ok") == "none"
    with pytest.raises(DeploymentFailed, match="boom"):
        evaluate(source, "bad")
    with pytest.raises(Unsupported):
        evaluate(source, "odd")
    with pytest.raises(Unsupported):
        evaluate(source, "call")


def test_sessions_per_device_is_an_azd_variable_and_the_connect_example_keeps_to_it() -> None:
    assert variables(parameters_file())["maximumClientSessionsPerAuthenticationName"] == [
        "EVENTGRID_MAX_SESSIONS_PER_DEVICE"]
    assert azd_values({})["maximumClientSessionsPerAuthenticationName"] == 1
    assert azd_values({"EVENTGRID_MAX_SESSIONS_PER_DEVICE": "2"})["maximumClientSessionsPerAuthenticationName"] == 2
    docs = DEPLOY_MD.read_text(encoding="utf-8")
    assert "EVENTGRID_MAX_SESSIONS_PER_DEVICE" in docs
    # With one session per device, the example never runs two MQTT clients of one device at once:
    # no mosquitto client is left running in the background.
    statements = [s for block in re.findall(r"```sh\n(.*?)```", docs, re.DOTALL)
                  for s in re.sub(r"\\\n\s*", " ", block).splitlines()]
    clients = [s for s in statements if s.startswith("mosquitto_")]
    assert clients
    assert [s for s in clients if s.rstrip().endswith("&")] == []


def test_the_event_hubs_namespace_sets_no_kafka_flag() -> None:
    """kafkaEnabled is ignored on Standard (Kafka is always on there)."""
    namespaces = [r for r in template(INFRA / "app" / "eventhubs.bicep").resources
                  if r.type_name == "Microsoft.EventHub/namespaces"]
    assert namespaces
    for namespace in namespaces:
        assert namespace.body.get("properties").get("kafkaEnabled") is None  # type: ignore[union-attr]


def test_azure_yaml_requires_an_azd_that_honours_funcignore() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    match = re.search(r'^requiredVersions:\n  azd: "?>=\s*([0-9]+)\.([0-9]+)\.([0-9]+)"?$', text, re.MULTILINE)
    assert match, "azure.yaml needs requiredVersions.azd"
    assert tuple(int(g) for g in match.groups()) >= (1, 18, 0)  # .funcignore: azure-dev 1.18.0 (#5383)


# --------------------------------------------------------------------------- docs agree


def test_the_docs_list_every_variable_azd_maps() -> None:
    docs = DEPLOY_MD.read_text(encoding="utf-8")
    table = docs[docs.index("## Parameters"):docs.index("## Cost drivers")]
    for name, refs in variables(parameters_file()).items():
        for variable in refs:
            if variable not in AZD_VARIABLES - {"AZURE_LOCATION"}:
                assert f"`{variable}`" in table, f"{variable} ({name}) is not in the Parameters table"
    assert re.search(r"azd env set ALERT_RULES\s", docs) is None

# --------------------------------------------------------------------------- re-provision keeps routing


EVENTGRID_BICEP = INFRA / "app" / "eventgrid.bicep"


def namespace_writes(established: bool) -> tuple[Any, Any]:
    """The topic spaces configuration of the namespace's first write (eventgrid.bicep)
    and of its second (the routing module), for a provision with ``established``."""
    params = {"name": "evgns-abc", "maximumClientSessionsPerAuthenticationName": 1,
              "maximumSessionExpiryInHours": 1, "routingEstablished": established}
    symbols = {"resourceId": lambda kind, *names: f"/{kind}/{'/'.join(names)}"}
    eventgrid = template(EVENTGRID_BICEP)
    return (evaluate(eventgrid, "firstTopicSpaces", params, symbols),
            evaluate(eventgrid, "routedTopicSpaces", params, symbols))


def test_the_first_provision_routes_from_the_second_write_of_the_namespace() -> None:
    first, second = namespace_writes(established=False)
    assert "routeTopicResourceId" not in first, "the route topic does not exist before the namespace"
    assert second["routeTopicResourceId"] == "/Microsoft.EventGrid/namespaces/topics/evgns-abc/device-messages"
    assert {e["key"] for e in second["routingEnrichments"]["dynamic"]} == {"deviceid", "mqtttopic", "clientrole"}


def test_a_later_provision_keeps_routing_in_every_write_of_the_namespace() -> None:
    first, second = namespace_writes(established=True)
    assert first == second, "no write of the namespace switches routing off"
    assert first["routeTopicResourceId"].endswith("/device-messages")


def test_the_routing_module_writes_what_eventgrid_bicep_decides() -> None:
    routing = (INFRA / "app" / "eventgrid-routing.bicep").read_text(encoding="utf-8")
    assert "topicSpacesConfiguration: topicSpacesConfiguration" in routing
    assert "routingEnrichments" not in routing, "one source for the namespace's configuration"
    main = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert "routingEstablished: eventGridRoutingEstablished" in main
    assert azd_values({})["eventGridRoutingEstablished"] is False
    assert azd_values({"EVENTGRID_ROUTING_ESTABLISHED": "true"})["eventGridRoutingEstablished"] is True


def test_the_routing_module_waits_for_every_other_write_of_the_namespace() -> None:
    eventgrid = template(EVENTGRID_BICEP)
    text = EVENTGRID_BICEP.read_text(encoding="utf-8")
    block = text[text.index("module routing"):]
    block = block[:block.index("\n}\n")]
    waits = set(re.findall(r"^    (\w+)$", block[block.index("dependsOn"):], flags=re.M))
    others = {r.symbol for r in eventgrid.resources if not r.existing and r.symbol != "namespace"
              and r.type_name.startswith("Microsoft.EventGrid/")}
    assert others <= waits, f"the routing module writes the namespace while {sorted(others - waits)} may be written"


# --------------------------------------------------------------------------- bounds and sovereign clouds


def test_a_device_has_one_or_two_thumbprints_as_event_grid_takes() -> None:
    text = MAIN_BICEP.read_text(encoding="utf-8")
    declaration = text[text.index("type deviceClient = {"):]
    declaration = declaration[:declaration.index("\n}\n")]
    assert re.search(r"@minLength\(1\)\s*@maxLength\(2\)\s*thumbprints: string\[\]\?", declaration), declaration


def test_the_instance_ceiling_takes_what_flex_consumption_allows() -> None:
    assert "@minValue(1)" in decorators("maximumInstanceCount")
    assert "@maxValue(1000)" in decorators("maximumInstanceCount")
    assert "per function scale group" in decorators("maximumInstanceCount")


@pytest.mark.parametrize("endpoint, host", [
    ("https://evhns-x.servicebus.windows.net:443/", "evhns-x.servicebus.windows.net"),
    ("https://evhns-x.servicebus.usgovcloudapi.net:443/", "evhns-x.servicebus.usgovcloudapi.net"),
    ("https://evhns-x.servicebus.chinacloudapi.cn/", "evhns-x.servicebus.chinacloudapi.cn"),
])
def test_the_event_hubs_host_comes_from_the_namespace_in_any_cloud(endpoint: str, host: str) -> None:
    eventhubs = template(INFRA / "app" / "eventhubs.bicep")
    namespace = {"name": "evhns-x", "properties": {"serviceBusEndpoint": endpoint}}
    assert evaluate(eventhubs, "fullyQualifiedNamespace", {}, {"namespace": namespace}) == host
    for path in INFRA.rglob("*.bicep"):
        code = "\n".join(line.split("//")[0] for line in path.read_text(encoding="utf-8").splitlines())
        assert "servicebus.windows.net" not in code, f"{path.name} hard-codes the public cloud's suffix"
