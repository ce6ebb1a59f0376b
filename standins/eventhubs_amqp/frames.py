"""The AMQP frames on the wire: the SDK's decoder needs every field of a performative,
which proton leaves out after the last non-null one, so outgoing frames are padded here;
and a message taken apart into its sections (a batch's events are data sections)."""

from __future__ import annotations

import struct
from typing import Any

from proton import Data

# The field counts of the AMQP 1.0 performatives by descriptor code (the spec's lists).
_FIELDS = {0x10: 10, 0x11: 8, 0x12: 14, 0x13: 11, 0x14: 11, 0x15: 6, 0x16: 3, 0x17: 1, 0x18: 1}


def pad_performative(frame: bytes) -> bytes:
    """An AMQP frame with its performative's list padded with nulls to its full field
    count (frames of other kinds, and lists already full, unchanged)."""
    doff = frame[4] * 4
    body = frame[doff:]
    if frame[5] != 0 or len(body) < 4 or body[0] != 0x00 or body[1] != 0x53 or body[2] not in _FIELDS:
        return frame
    wanted = _FIELDS[body[2]]
    kind = body[3]
    if kind == 0x45:  # list0
        count, items, rest = 0, b"", body[4:]
    elif kind == 0xC0:  # list8: size, count
        size, count = body[4], body[5]
        items, rest = body[6:5 + size], body[5 + size:]
    elif kind == 0xD0:  # list32
        size, count = struct.unpack(">II", body[4:12])
        items, rest = body[12:8 + size], body[8 + size:]
    else:
        return frame
    if count >= wanted:
        return frame
    items += b"\x40" * (wanted - count)
    encoded = b"\xd0" + struct.pack(">II", len(items) + 4, wanted) + items
    new_body = body[:3] + encoded + rest
    return struct.pack(">I", doff + len(new_body)) + frame[4:doff] + new_body


class Padder:
    """Proton's output stream, frame by frame, with performatives padded (the SASL
    layer's header and frames, and the AMQP header, pass as they are)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        while len(self._buffer) >= 8:
            if self._buffer.startswith(b"AMQP"):
                out.append(self._buffer[:8])
                self._buffer = self._buffer[8:]
                continue
            size = struct.unpack(">I", self._buffer[:4])[0]
            if len(self._buffer) < size:
                break
            out.append(pad_performative(self._buffer[:size]))
            self._buffer = self._buffer[size:]
        return b"".join(out)


def message_sections(encoded: bytes) -> list[tuple[int, Any]]:
    """The sections of an encoded AMQP message: (descriptor code, value)."""
    found = []
    while encoded:
        data = Data()
        consumed = data.decode(encoded)
        value: Any = data.get_object()
        inner = value.value  # a binary is a view into ``data``'s buffer: copy it before ``data`` goes
        found.append((int(value.descriptor), bytes(inner) if isinstance(inner, memoryview) else inner))
        encoded = encoded[consumed:]
    return found
