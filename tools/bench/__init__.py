"""``make bench``: figures for cold start and life cycle throughput.

* ``import_ratio``: time to import ``function_app`` in a fresh interpreter divided
  by the time to import ``azure.functions`` alone (best of several, same run).
* ``cold_request_ratio``: the first request of a fresh worker process (the worker
  runtime imported, as it is before the host's init): the host's init request, in
  which the runtime imports ``function_app`` and indexes it, then one ``get_device``
  invocation for a stored device, as the host sends it; divided by the same work
  done naively: import ``azure.functions`` and ``azure.data.tables.aio``, build a
  ``TableClient``, one ``get_entity`` of that device's row (fresh interpreters against
  one Azurite, best of several, same run).
* life cycle events applied per second through ``client_lifecycle`` against Azurite,
  one at a time and 16 at once, and as a ratio to a baseline of bare Table upserts
  (one per event, the I/O floor) run in the same process.
* ``telemetry_cpu_ratio``: CPU time per message of decode, validation and the
  archive line's serialisation, divided by a bare ``orjson.loads`` of the same
  bodies (routed CloudEvents), same process, best of several rounds.
* ``telemetry_requests_per_1000``: storage requests per 1 000 messages of a worker
  that owns the partition, batches of 100 from 10 devices, through
  ``telemetry_ingest``, counted by a request hook in the storage clients' pipelines.
* ``telemetry_speedup_vs_naive``: messages per second through ``telemetry_ingest``
  over batches of 100 (one partition, one batch at a time, as one worker runs it),
  divided by those of a naive handler in this module (one message at a time:
  ``json.loads``, validate, one blob and one Table upsert, as quickstart samples
  do), same clients, same Azurite, same process; also ``telemetry_msgs_per_s``,
  ``telemetry_fleet_msgs_per_s`` (every message of a batch from another device, as
  in a large fleet's partition), the worker's CPU per message of both, and
  ``inference_msgs_per_s``; ``log_records_per_1000_messages``, the records the app
  and its SDKs write with the root logger at Information during the fleet-shaped
  round (the worker ships each to the host).
* command figures, with Mosquitto beside Azurite (the ``mqtt`` transport):
  ``command_overhead_ratio``, the median latency of ``send_command`` to an online
  device (an MQTT v5 client subscribed to its commands, answering nothing) divided
  by the median of the least a tracked command needs, one Table insert of a command
  row and one QoS 1 publish of the same message awaited until its PUBACK (sequential,
  alternating chunks, same process); ``command_p99_ms``; ``commands_per_s`` with 32
  requests at once; ``fleet_1000_seconds``, from a fleet command's request until all
  1 000 commands are ``sent`` (its queue drained as the host would); life cycle
  connects per second of devices without and with a pending command, and the
  storage requests of one such connect.
* the simulator's paths, rounds of :data:`PATH_MESSAGES` telemetry messages from 10
  devices, each as a ratio to as many handed straight to ``telemetry_ingest`` in
  batches of 100 (half before the path, half after; best of 3 rounds, same process):
  ``simulator_overhead_ratio``, through local mode's path (the fleet's MQTT v5
  devices publishing at QoS 1 to Mosquitto, the routing stand-in's Inbox, routed
  CloudEvents in Event Hub batches, ``telemetry_ingest``, Azurite); and
  ``eventhubs_producer_overhead_ratio``, through ``--via eventhubs``'s sender (the
  async ``azure-eventhub`` producer, batched per device) over AMQP to the Event Hubs
  stand-in, whose pump feeds ``telemetry_ingest``. Both as the path's seconds over the
  direct seconds (1: the simulator measures the app), with the messages stored per
  second of each; every message is checked to be archived once.

The last line of output is one JSON object of the figures.
"""
