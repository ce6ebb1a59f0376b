"""The device registry's HTTP operations, as the OpenAPI document describes them."""

from __future__ import annotations

from shared.lifecycle.models import Device, DevicePage
from shared.platform.operations import CONTINUATION_TOKEN, DEVICE_ID, LIMIT, Link, Operation, Param, next_page

FIRST_DEVICE = {"deviceId": "$response.body#/items/0/deviceId"}

OPERATIONS = (
    Operation("get", "/devices", "list_devices", "List devices in the registry",
              {200: ("One page of devices, in key order", DevicePage)},
              (Param("connected", "query", {"type": "boolean"}, "Only devices that are (or are not) connected."),
               LIMIT, CONTINUATION_TOKEN),
              links={200: next_page("list_devices", "connected") | {
                  "device": Link("get_device", FIRST_DEVICE, "The first device of the page.")}}),
    Operation("get", "/devices/{deviceId}", "get_device", "Read one device",
              {200: ("The device", Device)}, (DEVICE_ID,)),
)
