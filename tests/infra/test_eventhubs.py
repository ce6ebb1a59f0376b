"""eventhubs.bicep and main.bicep's hub parameters: the names the app expects, no local
auth, TLS 1.2."""

from __future__ import annotations

import json

from tests.support.infra import HUB_SETTING_PARAMS, MAIN_BICEP, ROOT, bicep, literal, prop, resources_of

APP_HUB_DEFAULTS = {
    "telemetryHubName": "telemetry",
    "inferenceHubName": "inference",
    "commandResponsesHubName": "command-responses",
    "alertsHubName": "alerts",
}


def test_hub_names_match_the_app_defaults() -> None:
    main = bicep(MAIN_BICEP)
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    for setting, param in HUB_SETTING_PARAMS.items():
        if sample.get(setting):
            assert sample[setting] == APP_HUB_DEFAULTS[param], setting
    for param, default in APP_HUB_DEFAULTS.items():
        declared = main.params[param].default
        assert declared is not None, param
        assert declared.literal == default, param
    function_module = next(m for m in main.modules if m.path == "app/function.bicep")
    params = prop(function_module.body, "params")
    for param in APP_HUB_DEFAULTS:
        passed = prop(params, param)
        assert passed is not None
        assert passed.text == param
    consumer_group = main.params["functionsConsumerGroupName"].default
    assert consumer_group is not None
    assert consumer_group.literal == "functions"
    passed_group = prop(params, "consumerGroupName")
    assert passed_group is not None
    assert passed_group.text == "functionsConsumerGroupName"
    alert_rules = main.params["alertRulesBase64"].default
    assert alert_rules is not None
    assert alert_rules.literal == ""


def test_event_hubs_is_secure_by_default() -> None:
    (namespace,) = resources_of("Microsoft.EventHub/namespaces")
    assert literal(namespace.body, "properties.disableLocalAuth") is True
    assert literal(namespace.body, "properties.minimumTlsVersion") == "1.2"
    assert literal(namespace.body, "sku.name") == "Standard"
    hubs = resources_of("Microsoft.EventHub/namespaces/eventhubs")
    for hub in hubs:
        assert prop(hub.body, "properties.partitionCount") is not None
        assert prop(hub.body, "properties.messageRetentionInDays") is not None
    assert resources_of("Microsoft.EventHub/namespaces/eventhubs/consumergroups")
