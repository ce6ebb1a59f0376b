"""Cloud-to-edge commands: transports, offline policy."""
