"""Device ids and the storage keys derived from them.

A device id is any MQTT client authentication name: 1-128 characters, case-sensitive
UTF-8. Table keys forbid ``/ \\ # ?`` and control characters, and a quote or ``%`` is
an invitation to escaping bugs, so keys escape those (and ``~``, the escape
character) as ``~XX``; every other character, non-ASCII included, is kept so keys
stay readable and sort like the ids. The mapping is injective and reversible.
"""

from __future__ import annotations

import hashlib
import re

from shared.platform.errors import InvalidInput

MAX_DEVICE_ID_LENGTH = 128

_ESCAPED = re.compile(r"[\x00-\x1f\x7f-\x9f/\\#?'%~]")
_UNESCAPE = re.compile(r"~([0-9A-F]{2})")
# Characters that MQTT topics give a meaning to, or that cannot be in a topic level
# (as a regular expression class that Python and JSON Schema's ECMA-262 read alike).
_TOPIC_UNSAFE = r"/+#\u0000-\u001f\u007f-\u009f"
_NOT_IN_TOPIC = re.compile(f"[{_TOPIC_UNSAFE}]")
# The OpenAPI document's pattern for an id that can be commanded.
COMMANDABLE_DEVICE_ID_PATTERN = f"^[^{_TOPIC_UNSAFE}]+$"


def validate_device_id(device_id: object) -> str:
    """Return ``device_id`` when it is a storable client authentication name."""
    if not isinstance(device_id, str) or not device_id:
        raise InvalidInput("device id must be a non-empty string")
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        raise InvalidInput(f"device id is longer than {MAX_DEVICE_ID_LENGTH} characters")
    try:
        device_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("device id is not valid UTF-8 (lone surrogate)") from None
    return device_id


def validate_commandable_device_id(device_id: object) -> str:
    """A device id that can stand as one MQTT topic level (commands need that)."""
    device_id = validate_device_id(device_id)
    if _NOT_IN_TOPIC.search(device_id):
        raise InvalidInput("device id contains '/', '+', '#' or a control character and cannot be commanded")
    return device_id


def device_key(device_id: str) -> str:
    """The table key of a device: the id with unsafe characters escaped."""
    return _ESCAPED.sub(lambda m: f"~{ord(m.group()):02X}", device_id)


def device_id_from_key(key: str) -> str:
    """Invert :func:`device_key`."""
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), key)


def stable_id(*parts: str) -> str:
    """A short deterministic id of its parts: the same input always names the same record."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]
