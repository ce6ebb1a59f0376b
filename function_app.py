"""The function app: one blueprint per capability.

Importing this module reads no setting and touches no network; settings are
validated and clients created when a function first runs. It quiets the SDKs'
loggers, which would otherwise log every storage request (shared/platform/logs.py),
and puts a fast path in front of the worker's parsing of Event Hubs enqueued times
(blueprints/conversion.py), which cost more than the app's own work per message.
"""

import azure.functions as func

from blueprints import alerts, commands, conversion, deadletters, devices, inference, lifecycle, meta, telemetry
from shared.platform.logs import quiet_sdk_loggers

quiet_sdk_loggers()
conversion.install()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (lifecycle.bp, telemetry.bp, inference.bp, commands.bp, devices.bp, alerts.bp, deadletters.bp,
                  meta.bp):
    app.register_functions(blueprint)
