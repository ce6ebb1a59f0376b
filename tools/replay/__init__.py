"""Replay a range of one Event Hubs partition through the ingest code, exactly once.

    python -m tools.replay --hub telemetry --partition 0 --from 1000 --to 1999

When the last retry of a batch could not process it (dead letters with the reason
``internal: not processed after the last retry``, or ``LOST unless replayed: ...`` in
the function's log), its events are still in Event Hubs for the hub's retention. This
reads sequence numbers FROM to TO (both included) with the ``azure-eventhub`` consumer
and hands them, in batches of at most host.json's ``maxEventBatchSize``, to
:func:`shared.streams.service.ingest`, the code ``telemetry_ingest`` and
``inference_ingest`` run, as the host hands them to the worker: each batch is the
host's trigger data (:func:`standins.eventhub_factory.host_batch`), decoded by the worker
runtime's own conversion, each event with its real sequence number, offset, enqueued
time, partition key and properties, so archive lines and dead letters name the event's
true origin.

Exactly once is the archive's: its ledger in storage says what is archived, so a range
already archived archives nothing, a range it does not hold is filled, and a replay run
twice, or beside the live function, lands every message once. A ``not processed after
the last retry`` dead letter of an event the archive now holds is marked ``redrivenAt``
(history: listed, never redriven again; its event's place is the archive); a bad
message's dead letter keeps its validation reason.

The range is checked against the partition's properties first: a range past the
partition's end or expired from retention is refused before anything is read. Reading
waits at most ``--wait`` seconds for the next event. Ctrl-C stops after the batch in
hand (a second one at once; either way storage stays consistent, every step being
idempotent) and names the sequence number to resume from.

Exit code: 0 the whole range was read and ingested; 1 it was not (refused, stalled,
a read or ingest failure: the summary says why and where to resume); 2 bad arguments or
settings; 130 interrupted.

The package by concern: :mod:`.model` (the request, its summary and why a range was not
read whole), :mod:`.reading` (the range from Event Hubs), :mod:`.replaying` (each batch
through ingest, the last retry's dead letters superseded), :mod:`.progress` (a bar or a
line per batch) and :mod:`.__main__` (the command).
"""
