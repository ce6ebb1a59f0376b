"""A stand-in for the Event Hubs service that the real ``azure-eventhub`` producer talks
to over AMQP 1.0, on loopback, through an emulator-style connection string
(``Endpoint=sb://127.0.0.1:PORT;SharedAccessKeyName=...;SharedAccessKey=...;
UseDevelopmentEmulator=true``: plain TCP and SASL ANONYMOUS, as the SDK does for the
emulator; the SAS key is proven in claims-based security, below).

The protocol engine is Qpid Proton's (``python-qpid-proton``), driven by asyncio: bytes
from the socket are pushed into a proton ``Transport`` and its output written back. What
the producer does, and what this checks:

- claims-based security: a ``put-token`` request on ``$cbs`` carrying a shared access
  signature for ``sb://{namespace}/{hub}`` signed with the key of the connection string
  (HMAC-SHA256 of the URL-encoded audience, a line feed and the expiry); answered with
  ``status-code`` 200, or 401 for a bad signature, another key name or an expired token;
- ``$management``: the READ of ``com.microsoft:eventhub`` the producer makes before it
  sends (its partition ids), with a valid ``security_token``; an unknown hub is a 404;
- a sender link to ``{hub}`` (no partition: the service assigns one by partition key);
  a hub the namespace does not have is refused with ``amqp:not-found`` as the service
  refuses it; the link's maximum message size is announced (1 MB, Standard);
- batched messages (``EventDataBatch``: one AMQP message whose data sections are the
  encoded events, the partition key in the ``x-opt-partition-key`` message annotation).
  Each event must be a routed CloudEvent for that hub as Event Grid delivers it
  (content type ``application/cloudevents+json; charset=utf-8``, the CloudEvents AMQP
  binding's structured mode; ``type`` ``MQTT.EventPublished``; a ``subject`` that is a
  device topic of the hub; ``deviceid`` and ``clientrole`` enrichments; ``data`` or
  ``data_base64``), and the partition key must be its ``deviceid``. A batch that breaks the contract is
  rejected whole (``amqp:precondition-failed`` with the reason), as the service rejects a
  batch it cannot take; one that keeps it is accepted.

Accepted events get per-partition sequence numbers, offsets and enqueued times (whole
milliseconds: the service stamps an AMQP timestamp) in
:class:`standins.eventhub_factory.Partition` logs; :meth:`EventHubsStandIn.pump` hands each
partition's new events to the hub's function as batches built by the library's own
converter, retried by the function's retry policy, as the Functions host does.

What the ``EventHubConsumerClient`` does, and what this checks:

- claims-based security as above, for the audience ``sb://{namespace}/{hub}`` or
  ``sb://{namespace}/{hub}/consumergroups/{group}`` (the consumer's); a receiver without
  one is refused with ``amqp:unauthorized-access`` (the 'Listen' claim);
- ``$management``: the READ of ``com.microsoft:partition`` (``name``, ``partition``):
  ``begin_sequence_number``, ``last_enqueued_sequence_number``, ``last_enqueued_offset``,
  ``last_enqueued_time_utc``, ``is_partition_empty``; a partition the hub does not have
  is a 400;
- a receiver link (our sender) from ``{hub}/ConsumerGroups/{group}/Partitions/{id}``
  (the SDK writes it as ``amqps://{host}/...``): a hub or consumer group the namespace
  does not have is ``amqp:not-found``, a partition id it does not have
  ``com.microsoft:argument-out-of-range``, a sixth receiver of one partition and group
  ``amqp:resource-limit-exceeded`` (the service allows five), an epoch (exclusive)
  receiver ``amqp:not-implemented`` (none is kept here);
- its starting position, the source's ``apache.org:selector-filter:string`` filter:
  ``amqp.annotation.x-opt-sequence-number``, ``x-opt-offset`` (``-1`` the start,
  ``@latest`` the end) or ``x-opt-enqueued-time`` (milliseconds), with ``>`` or ``>=``
  and the value quoted; any other expression is ``com.microsoft:argument-error``, a
  sequence number past the next one to be enqueued (or an offset past the last one)
  ``com.microsoft:argument-out-of-range`` with the service's words ("The supplied
  sequence number '9' is invalid. The last sequence number in the system is '4'"), a
  position before the oldest event held starts at the oldest;
- link credit: as many events as the client granted, each one message, settled as
  sent: its original body (one data section), application properties and content type,
  with the annotations ``x-opt-sequence-number`` (long), ``x-opt-offset`` (string),
  ``x-opt-enqueued-time`` (timestamp) and ``x-opt-partition-key`` (string, when it has
  one); events enqueued later reach a waiting receiver as they arrive.

Proton writes the fields of a performative only up to its last non-null one (which AMQP
allows); the SDK's decoder needs every field of ``open``, ``begin``, ``attach`` and the
others, so outgoing frames are padded with nulls to their full field count (what the
service sends), and errors carry an ``info`` map (the SDK reads it too). Nothing else is
changed on the wire.

The package by concern: :mod:`.frames` (the performatives padded, a message's sections),
:mod:`.batches` (the producer's batches against the contract), :mod:`.consumers` (a
receiver's starting position and the events it gets), :mod:`.claims` (connection strings
and shared access signatures) and :mod:`.service` (:class:`~.service.EventHubsStandIn`:
the namespace's partitions, the connections and their links).
"""
