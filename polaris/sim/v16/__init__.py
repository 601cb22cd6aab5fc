"""The OCPP 1.6J side of a simulated charger: `adapter.py` says the station's events in 1.6
messages, `handlers.py` answers the central system's 1.6 requests through the station's public
API, `configuration.py` holds the 1.6 configuration keys. A 2.0.1 package sits beside this one."""
