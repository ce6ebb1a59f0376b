"""The fleet simulator (``python -m tools.simulate``): local mode, and with ``--azure`` a
run against a deployment made by ``azd up`` (:mod:`tools.simulate.azure`).

Local mode: simulated devices are real MQTT v5 clients against a local Mosquitto; a local
stand-in for Event Grid routing and Event Hubs (:mod:`tools.simulate.stand_in`)
hands their messages and their connects and disconnects to the app's functions in
process; the operator's commands and broadcast go through the local API server
(:mod:`tools.serve`) over real HTTP, and so do the operator's other requests
(:mod:`tools.simulate.scenario`). The final report checks the invariants: every
message accounted for exactly once, the registry's connection states equal the
simulator's, every command in the status its device's behaviour implies, and each
promise of the scenario (an offline device's queue in order, an idempotent retry, a
fleet job's reach and counts, each broadcast's reach, a disabled client's 409).
"""
