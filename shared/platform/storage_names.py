"""Names of the blob containers and tables the app keeps in ``DataStorage``."""

TELEMETRY_CONTAINER = "telemetry"
INFERENCE_CONTAINER = "inference"
DEADLETTER_CONTAINER = "deadletter"
BLOB_CONTAINERS = (TELEMETRY_CONTAINER, INFERENCE_CONTAINER, DEADLETTER_CONTAINER)

DEVICES_TABLE = "devices"
ALERTS_TABLE = "alerts"
COMMANDS_TABLE = "commands"
FLEET_JOBS_TABLE = "fleetjobs"
APP_META_TABLE = "appmeta"  # the app's own state: the continuation tokens' key, the archive's watermarks
MODEL_STATS_TABLE = "modelstats"
BROADCASTS_TABLE = "broadcasts"
DEADLETTERS_TABLE = "deadletters"  # the index of container deadletter (shared/platform/deadletter.py)
LATEST_STATE_TABLE = "lateststate"  # devices' latest state by Event Hubs partition (shared/streams/state.py)
TABLES = (DEVICES_TABLE, ALERTS_TABLE, COMMANDS_TABLE, FLEET_JOBS_TABLE, APP_META_TABLE, MODEL_STATS_TABLE,
          BROADCASTS_TABLE, DEADLETTERS_TABLE, LATEST_STATE_TABLE)
