"""The device registry's HTTP operations, as the OpenAPI document describes them."""

from __future__ import annotations

from shared.lifecycle.models import Device, DevicePage
from shared.platform.operations import CONTINUATION_TOKEN, DEVICE_ID, LIMIT, Operation, Param

OPERATIONS = (
    Operation("get", "/devices", "list_devices", "List devices in the registry",
              {200: ("One page of devices, in key order", DevicePage)},
              (Param("connected", "query", {"type": "boolean"}, "Only devices that are (or are not) connected."),
               LIMIT, CONTINUATION_TOKEN)),
    Operation("get", "/devices/{deviceId}", "get_device", "Read one device",
              {200: ("The device", Device)}, (DEVICE_ID,)),
)
