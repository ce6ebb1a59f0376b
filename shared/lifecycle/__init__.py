"""Device life cycle: MQTT client life cycle events, presence rules, the device registry, life cycle alerts."""
