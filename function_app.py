"""The function app: one blueprint per capability.

Importing this module reads no setting and touches no network; settings are
validated and clients created when a function first runs. It quiets the SDKs'
loggers, which would otherwise log every storage request (shared/platform/logs.py).
"""

import azure.functions as func

from blueprints import alerts, commands, deadletters, devices, inference, lifecycle, meta, telemetry
from shared.platform.logs import quiet_sdk_loggers

quiet_sdk_loggers()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (lifecycle.bp, telemetry.bp, inference.bp, commands.bp, devices.bp, alerts.bp, deadletters.bp,
                  meta.bp):
    app.register_functions(blueprint)
