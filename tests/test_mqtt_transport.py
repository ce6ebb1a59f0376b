"""The ``mqtt`` command transport on its own: credentials, TLS, and the reason codes and
broker URLs it reads. What it shares with the ``eventgrid`` transport is in
test_transports.py."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from shared.commands.mqtt_transport import BrokerAddress, MqttTransport, connack_error, puback_error
from shared.commands.transport import PublishError
from standins.services import Mosquitto, run_mosquitto
from tests.support.transports import command, prefix


def test_mqtt_credentials_are_sent_and_a_bad_password_fails_as_not_transient(run: Any) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    with run_mosquitto(passwords={"cloud": password}) as broker:
        good = MqttTransport.from_url(broker.url, username="cloud", password=password, timeout=3)
        in_url = MqttTransport.from_url(f"mqtt://cloud:{password}@127.0.0.1:{broker.port}", timeout=3)
        wrong = MqttTransport.from_url(broker.url, username="cloud", password="not-" + password, timeout=3)
        try:
            run(good.publish(command(prefix())))
            run(in_url.publish(command(prefix())))
            with pytest.raises(PublishError) as refused:
                run(wrong.publish(command(prefix())))
        finally:
            for each in (good, in_url, wrong):
                run(each.close())
    assert not refused.value.transient
    assert "refused the connection" in refused.value.reason and "MQTT_PASSWORD" in refused.value.reason
    assert password not in refused.value.reason


def test_mqtts_speaks_tls_so_a_plain_listener_fails_it_as_transient(mosquitto: Mosquitto, run: Any) -> None:
    tls = MqttTransport.from_url(f"mqtts://127.0.0.1:{mosquitto.port}", timeout=3)
    plain = MqttTransport.from_url(f"mqtt://127.0.0.1:{mosquitto.port}", timeout=3)
    try:
        run(plain.publish(command(prefix())))
        started = time.monotonic()
        with pytest.raises(PublishError) as failed:
            run(tls.publish(command(prefix())))
        assert time.monotonic() - started < 4
    finally:
        run(tls.close())
        run(plain.close())
    assert failed.value.transient


# --- pure parts --------------------------------------------------------------------------


def test_puback_and_connack_reason_codes_decide_success_and_transience() -> None:
    assert puback_error(0x00, "Success") is None
    assert puback_error(0x10, "No matching subscribers") is None
    not_authorized = puback_error(0x87, "Not authorized")
    quota = puback_error(0x97, "Quota exceeded")
    assert not_authorized is not None and not not_authorized.transient
    assert quota is not None and quota.transient
    assert not connack_error(0x86, "Bad user name or password").transient
    assert connack_error(0x88, "Server unavailable").transient


def test_broker_urls_give_the_address_tls_and_credentials() -> None:
    assert BrokerAddress.from_url("mqtt://broker.local") == BrokerAddress("broker.local", 1883, tls=False)
    assert BrokerAddress.from_url("mqtts://broker.example.com") == BrokerAddress("broker.example.com", 8883, tls=True)
    from_url = BrokerAddress.from_url("mqtts://us%40r:p%3Ass@broker.example.com:8884")
    assert (from_url.port, from_url.username, from_url.password) == (8884, "us@r", "p:ss")
    settings_win = BrokerAddress.from_url("mqtts://u:p@h", username="cloud", password="pw")
    assert (settings_win.username, settings_win.password) == ("cloud", "pw")
    assert "p:ss" not in repr(from_url)
