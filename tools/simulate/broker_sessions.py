"""Client sessions as the broker sees them, for the MQTT client life cycle events.

Event Grid reports a client's connects and disconnects from the broker's side; locally
Mosquitto says the same in its notices, which it publishes on ``$SYS/broker/log/N``
when started with ``log_topic`` (:func:`standins.services.run_mosquitto`). Mosquitto 2.0
writes (after a ``1733300000: `` time stamp)::

    New client connected from 127.0.0.1:51643 as sim-000 (p5, c0, k60, u'sim-000').
    Client sim-000 disconnected.                          (it sent DISCONNECT)
    Client sim-000 closed its connection.                 (the socket closed without one)
    Client sim-000 has exceeded timeout, disconnecting.   (keep alive)
    Client sim-000 already connected, closing old connection.
    Client sim-000 disconnected due to protocol error.
    Client <unknown> disconnected: Protocol error.        (TLS refused: no client yet)

:class:`BrokerSessions` reads them and hands the registered clients' sessions to a
:class:`tools.simulate.stand_in.StandIn` as its ``session_started`` and
``session_ended``, with Event Grid's ``disconnectionReason`` for each kind.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

from standins.edge import Inbox, TlsClient
from tools.simulate.stand_in import StandIn

LOG_TOPIC = "$SYS/broker/log/N"  # notices
CONNECTED = re.compile(r"New client connected from \S+ as (?P<client>\S+) \(")
ENDED = (  # Mosquitto's words, Event Grid's disconnectionReason
    (re.compile(r"Client (?P<client>\S+) disconnected\.$"), "ClientInitiatedDisconnect"),
    (re.compile(r"Client (?P<client>\S+) closed its connection\.$"), "ConnectionLost"),
    (re.compile(r"Client (?P<client>\S+) has exceeded timeout"), "ConnectionLost"),
    (re.compile(r"Client (?P<client>\S+) already connected, closing old connection"), "SessionTakenOver"),
    (re.compile(r"Client (?P<client>\S+) disconnected(?: due to |: )"), "ClientError"),
)


@dataclass(frozen=True)
class Session:
    client_id: str
    started: bool  # connected; else ended, for ``reason``
    reason: str = ""


def parse(line: str) -> Session | None:
    """The session event one log line states, if any."""
    text = line.split(": ", 1)[1] if re.match(r"\d+: ", line) else line
    if found := CONNECTED.match(text):
        return Session(found["client"], started=True)
    for pattern, reason in ENDED:
        if (found := pattern.match(text)) and found["client"] != "<unknown>":
            return Session(found["client"], started=False, reason=reason)
    return None


class BrokerSessions:
    """The broker's notices, read by an MQTT client of its own (one the broker trusts)."""

    def __init__(self, broker_url: str, *, client_id: str, tls: TlsClient | None = None) -> None:
        self.open: set[str] = set()  # clients with a session, as the broker logged them
        self._inbox = Inbox(broker_url, [LOG_TOPIC], client_id=client_id, tls=tls)

    def take(self) -> list[Session]:
        """The session events logged since the last take, in the broker's order."""
        return [s for _, line in self._inbox.take() if (s := parse(line.decode(errors="replace")))]

    def forward(self, stand_in: StandIn, clients: Container[str]) -> list[Session]:
        """Hand the sessions of ``clients`` (the registered ones: Event Grid reports no
        others) to ``stand_in`` for its next flush; those handed. An end without a start
        seen (a client connected before this reader) is left out."""
        handed = []
        for session in self.take():
            if session.client_id not in clients:
                continue
            if session.started:
                self.open.add(session.client_id)
                stand_in.session_started(session.client_id)
            elif session.client_id in self.open:
                self.open.discard(session.client_id)
                stand_in.session_ended(session.client_id, session.reason)
            else:
                continue
            handed.append(session)
        return handed

    def close(self) -> None:
        self._inbox.close()
